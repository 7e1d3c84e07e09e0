"""The model families: each module defines the whole protocol, its tables match KerasHub and the published counts,
and no module outside `kit/families` names a family's KerasHub classes."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import keras
import numpy as np
import pytest

from kit.errors import UserError
from kit.families import (
    ARCHITECTURES,
    FAMILIES,
    REQUIRED,
    architecture,
    family_named,
    family_of_backbone,
    family_of_config,
    family_of_preset,
)
from kit.model.architectures import backbone_config, build_random_lm, kv_heads, layout_of
from kit.model.loader import kaggle_handle, preset_kind
from kit.model.tiny import TinySpec, build_tiny_lm, train_tokenizer

ROOT = Path(__file__).resolve().parents[2]

# The parameter counts Google / KerasHub publish for each preset (the figures, KerasHub's preset metadata).
PUBLISHED = {
    "gemma2_2b_en": 2_614_341_888,
    "gemma2_9b_en": 9_241_705_984,
    "gemma3_270m": 268_098_176,
    "gemma3_1b": 999_885_952,
    "gemma3_4b_text": 3_880_099_328,
}


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.NAME)
def test_every_family_module_defines_the_whole_protocol(family):
    missing = [name for name in REQUIRED if not hasattr(family, name)]
    assert not missing, f"kit/families/{family.NAME}.py lacks {missing}"
    assert set(family.LORA_TARGET_LAYERS) == {"qv", "all"}
    assert "<end_of_turn>" in family.STOP_PIECES


@pytest.mark.parametrize("preset", sorted(PUBLISHED))
def test_the_tables_give_the_published_parameter_counts(preset):
    config, published = architecture(preset)
    assert published == PUBLISHED[preset]
    assert family_of_config(config).param_count(config) == PUBLISHED[preset]


@pytest.mark.parametrize("preset", ["gemma2_2b_en", "gemma3_270m", "gemma3_1b", "gemma3_4b_text"])
def test_keras_hub_builds_the_table_architecture_with_the_published_count(preset):
    # KerasHub itself counts: the backbone built from the table with no values allocated.
    config, published = architecture(preset)
    family = family_of_config(config)
    with keras.StatelessScope(initialize_variables=False):
        backbone = family.build_backbone(config, "bfloat16")
    try:
        assert sum(math.prod(v.shape) for v in backbone.weights) == published
        assert family_of_backbone(backbone) is family
    finally:
        # Keras keeps deferred variables in a global list and would allocate them all
        # (gigabytes) at the next eager build in this process: drop them.
        keras.utils.clear_session()


def test_instruct_variants_share_their_base_architecture():
    for base, instruct in (
        ("gemma3_270m", "gemma3_instruct_270m"),
        ("gemma3_1b", "gemma3_instruct_1b"),
        ("gemma3_4b_text", "gemma3_instruct_4b_text"),
        ("gemma2_2b_en", "gemma2_instruct_2b_en"),
    ):
        assert backbone_config(base) == backbone_config(instruct)


def test_gemma3_differs_from_gemma2_where_keras_hub_says():
    g2, g3 = backbone_config("gemma2_2b_en"), backbone_config("gemma3_1b")
    assert (g2["final_logit_soft_cap"], g2["attention_logit_soft_cap"]) == (30.0, 50.0)
    assert (g3["final_logit_soft_cap"], g3["attention_logit_soft_cap"]) == (None, None)
    assert g3["use_query_key_norm"] and "use_query_key_norm" not in g2
    assert g3["sliding_window_size"] == 512 and backbone_config("gemma3_4b_text")["sliding_window_size"] == 1024
    assert kv_heads("gemma3_1b") == 1 and kv_heads("gemma3_4b_text") == 4


@pytest.mark.parametrize(
    ("preset", "family"),
    [
        ("gemma3_1b", "gemma3"),
        ("gemma3_instruct_270m", "gemma3"),
        ("kaggle://keras/gemma3/keras/gemma3_4b_text/2", "gemma3"),
        ("hf://google/gemma-3-1b-it", "gemma3"),
        ("gemma2_2b_en", "gemma2"),
        ("kaggle://google/gemma-2/keras/gemma2_2b_en", "gemma2"),
        ("hf://google/gemma-2-2b", "gemma2"),
        ("models/tiny-base", "gemma2"),
    ],
)
def test_the_family_of_a_preset_in_every_form(preset, family):
    assert family == family_of_preset(str(ROOT / preset) if preset.startswith("models/") else preset).NAME


def test_a_preset_of_no_known_family_is_one_line():
    with pytest.raises(UserError, match="cannot tell the model family of 'hf://someone/llama'") as e:
        family_of_preset("hf://someone/llama")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError):
        family_of_preset("gemma3n_e2b")  # Gemma 3n is another architecture, not Gemma 3
    with pytest.raises(UserError, match="Unknown model family 'gemma4'"):
        family_named("gemma4")


def test_a_local_hugging_face_dir_is_told_by_its_model_type(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "gemma3_text"}')
    assert family_of_preset(str(tmp_path)).NAME == "gemma3"
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(UserError, match="Hugging Face 'llama' model"):
        family_of_preset(str(tmp_path))


def test_built_in_gemma3_presets_are_known_to_the_loader():
    assert preset_kind("gemma3_1b") == "builtin" and preset_kind("gemma2_2b_en") == "builtin"
    owner, model, framework, variation, _ = kaggle_handle("gemma3_1b")
    assert (framework, variation) == ("keras", "gemma3_1b")
    assert layout_of("gemma3_1b") is family_named("gemma3").layout_map


def test_a_tiny_gemma3_and_a_random_gemma3_build_and_run():
    proto = train_tokenizer(["Хорошее место, вкусный кофе."] * 40, vocab_size=300)
    lm = build_tiny_lm(
        proto,
        TinySpec(num_layers=6, hidden_dim=16, intermediate_dim=32, head_dim=8, sliding_window_size=4),
        family="gemma3",
    )
    assert type(lm.backbone).__name__ == "Gemma3Backbone"
    assert lm.backbone.use_query_key_norm and lm.backbone.final_logit_soft_cap is None
    assert lm.backbone.intermediate_dim == 16  # each gated projection: half Gemma 2's gate+up total
    x = {"token_ids": np.array([[2, 5, 6, 7, 8, 9, 10, 11]]), "padding_mask": np.ones((1, 8), bool)}
    logits = np.asarray(lm(x))
    assert logits.shape == (1, 8, lm.backbone.vocabulary_size) and np.isfinite(logits).all()
    # A random-weight model of a real Gemma 3 size, from the table, abstract (nothing allocated).
    big = build_random_lm("gemma3_1b", dtype="bfloat16", abstract=True)
    try:
        assert type(big.backbone).__name__ == "Gemma3Backbone" and big.backbone.num_layers == 26
    finally:
        keras.utils.clear_session()  # its deferred variables (see above)


def test_every_preset_in_the_tables_has_a_hugging_face_repo():
    for family in FAMILIES:
        assert set(family.ARCHITECTURES) <= set(family.HF_BASE_MODELS), family.NAME
    assert len(ARCHITECTURES) == sum(len(f.ARCHITECTURES) for f in FAMILIES)


def _family_names_in(path: Path) -> list[str]:
    """Attribute reads of KerasHub family classes (`keras_hub.models.Gemma...`) in a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr.startswith("Gemma"):
            base = node.value
            if isinstance(base, ast.Attribute) and base.attr == "models":
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.attr}")
    return found


def test_only_the_family_modules_name_a_familys_keras_hub_classes():
    modules = [p for d in ("kit", "streamlit_app") for p in (ROOT / d).rglob("*.py") if "families" not in p.parts]
    offenders = [hit for p in modules for hit in _family_names_in(p)]
    assert not offenders, f"ask kit.families instead: {offenders}"
    # The check sees what it looks for: the family modules do name them.
    assert _family_names_in(ROOT / "kit" / "families" / "gemma3.py")
