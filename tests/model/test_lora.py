"""kit.model.lora: LoRA on the micro model: trainable parameter counts per target set, identity at the start."""

import numpy as np
import pytest

from kit.model import LORA_TARGET_LAYERS, enable_lora, load_causal_lm, parameter_counts
from kit.testing import MICRO_NON_EMBEDDING

# Micro model (kit.testing.MICRO): 2 layers, hidden 16, 4 q/kv heads of 4, FFW 32.
# Per layer and rank r, LoRA adds A+B: q, k, v: 4*16*r + r*4 = 68r each; attention
# output: 4*4*r + r*16 = 32r; ffw_gating, ffw_gating_2, ffw_linear (16x16): 32r each.


def micro_total(lm) -> int:
    """The micro model's parameters without LoRA, embeddings included."""
    return MICRO_NON_EMBEDDING + lm.backbone.vocabulary_size * 16


@pytest.mark.parametrize(("targets", "per_rank"), [("qv", 2 * (68 + 68)), ("all", 2 * (3 * 68 + 32 + 3 * 32))])
def test_lora_trainable_parameter_counts(tiny_preset, targets, per_rank):
    lm = load_causal_lm(str(tiny_preset))
    layers = enable_lora(lm, rank=4, alpha=8.0, targets=targets)
    counts = parameter_counts(lm)
    assert counts["trainable"] == 4 * per_rank  # qv: 1088, all: 2656
    assert counts["total"] == micro_total(lm) + 4 * per_rank
    assert len(layers) == 2 * len(LORA_TARGET_LAYERS[targets])
    assert all(v.path.split("/")[-1].startswith("lora_kernel") for v in lm.trainable_weights)
    # alpha is applied: scale alpha / rank = 2
    query = [lyr for lyr in lm.backbone._flatten_layers() if getattr(lyr, "lora_enabled", False)][0]
    assert query.lora_alpha / query.lora_rank == 2.0


def test_lora_starts_as_identity(tiny_preset):
    lm = load_causal_lm(str(tiny_preset))
    x = {"token_ids": np.array([[2, 5, 6, 7]], "int32"), "padding_mask": np.ones((1, 4), "int32")}
    before = np.asarray(lm(x))
    enable_lora(lm, rank=2, alpha=4.0, targets="all")
    np.testing.assert_allclose(np.asarray(lm(x)), before, atol=1e-6)  # B = 0 at start
