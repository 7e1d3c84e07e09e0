"""`kit export --to peft`: a run's Keras LoRA adapter as an exact PEFT LoRA adapter for the HF Gemma base.

PEFT holds one update per module, `scaling * lora_B @ lora_A` with
`lora_A` (R, in) and `lora_B` (out, R). Keras' LoRA on an `EinsumDense`
kernel of shape `(..., last)` adds `(alpha / rank) * A @ B` with `A` of shape
`(..., rank)` and `B` of shape `(rank, last)`. So:

* Feed-forward and attention-output kernels are 2-D (or fold to 2-D with
  the heads in the input): the update is a rank-r product, copied as it is
  (transposed into torch's (out, in) layout).
* Query/key/value kernels are `(heads, hidden, head_dim)`: Keras gives every
  head its own A block `A[n]` (hidden, r) but one shared `B` (r, head_dim).
  As an (heads*head_dim, hidden) matrix the update has rank up to heads*r.
  It is written exactly at rank heads*r: `lora_A` stacks the heads' A blocks
  (row n*r + j = `A[n, :, j]`) and `lora_B` is block-diagonal (block n =
  `B.T`), so `lora_B @ lora_A` row n*head_dim + h is
  `sum_j B[j, h] * A[n, :, j]`, the Keras update for head n.

One rank R is used for every module (the largest needed, heads*r for the
query): smaller updates are padded with zero rows of `lora_A` and zero
columns of `lora_B`, which adds exactly nothing. A single `r` and
`lora_alpha = (alpha / rank) * R` keep the same scaling everywhere and keep
the adapter loadable by servers that ignore PEFT's `rank_pattern` (vLLM's
multi-LoRA). Anything this mapping does not cover is refused with the
reason; nothing is approximated.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kit.errors import UserError
from kit.families import FAMILIES, common

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."

# Keras preset names (and Kaggle variations) of every family and their Hugging Face repositories.
HF_BASE_MODELS = {p: repo for f in FAMILIES for p, repo in f.HF_BASE_MODELS.items()}


def hf_base_model(preset: str) -> str | None:
    """The Hugging Face repository of a Keras Gemma preset, or None when there is none (a local base).

    Example:
        >>> hf_base_model("gemma2_2b_en"), hf_base_model("kaggle://keras/gemma2/keras/gemma2_2b_en/2")
        ('google/gemma-2-2b', 'google/gemma-2-2b')
        >>> hf_base_model("hf://google/gemma-2-2b"), hf_base_model("models/tiny-base")
        ('google/gemma-2-2b', None)
    """
    if preset.startswith("hf://"):
        return preset.removeprefix("hf://").strip("/")
    if preset.startswith("kaggle://"):
        parts = preset.removeprefix("kaggle://").strip("/").split("/")
        return HF_BASE_MODELS.get(parts[3]) if len(parts) >= 4 else None
    return HF_BASE_MODELS.get(preset)


def _arr(x) -> np.ndarray:
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x, dtype=np.float32)


def _module_update(kind: str, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(lora_A (R, in), lora_B (out, R))` with `lora_B @ lora_A` equal to the Keras `A @ B` in HF layout."""
    if kind == "heads":  # kernel (heads, hidden, head_dim): A (heads, hidden, r), B (r, head_dim)
        heads, hidden, r = a.shape
        head_dim = b.shape[1]
        lora_a = np.transpose(a, (0, 2, 1)).reshape(heads * r, hidden)
        lora_b = np.zeros((heads * head_dim, heads * r), dtype=np.float32)
        for n in range(heads):
            lora_b[n * head_dim : (n + 1) * head_dim, n * r : (n + 1) * r] = b.T
        return lora_a, lora_b
    if kind == "folded":  # kernel (heads, head_dim, hidden): the heads are the input, A (heads, head_dim, r)
        return a.reshape(-1, a.shape[-1]).T, b.T
    if a.ndim != 2:
        raise UserError(f"Cannot convert a LoRA kernel of shape {a.shape} to PEFT: expected a 2-D dense kernel.")
    return a.T, b.T  # Dense kernel (in, out): A (in, r), B (r, out)


def peft_adapter(lm) -> tuple[dict[str, np.ndarray], int, float, list[str]]:
    """The LoRA adapter of `lm` as PEFT tensors: `(tensors, r, lora_alpha, target_modules)`.

    Raises:
        UserError: `lm` has no LoRA adapter, or one on a layer this mapping does not cover.

    Example:
        >>> tensors, r, alpha, targets = peft_adapter(load_run("runs/tiny-lora"))  # doctest: +SKIP
        >>> targets  # doctest: +SKIP
        ['q_proj', 'v_proj']
    """
    backbone = lm.backbone
    covered, updates, scales = set(), {}, set()
    for name, kind, layer in common.lora_modules(backbone):
        covered.add(id(layer))
        if getattr(layer, "lora_enabled", False):
            scales.add(float(layer.lora_alpha) / float(layer.lora_rank))
            updates[name] = _module_update(kind, _arr(layer.lora_kernel_a), _arr(layer.lora_kernel_b))
    stray = [
        layer.path
        for layer in backbone._flatten_layers(include_self=False)
        if getattr(layer, "lora_enabled", False) and id(layer) not in covered
    ]
    if stray:
        raise UserError(f"Cannot convert to PEFT exactly: LoRA on {stray[0]}, which has no Hugging Face Gemma module.")
    if not updates:
        raise UserError("This run has no LoRA adapter (a base model): nothing to export as PEFT; use --to hf.")
    if len(scales) != 1:
        raise UserError(f"Cannot convert to one PEFT scaling: the layers use alpha/rank {sorted(scales)}.")
    scale = scales.pop()
    r = max(a.shape[0] for a, _ in updates.values())
    tensors = {}
    for name, (a, b) in updates.items():
        pad = r - a.shape[0]  # zero rows of A / columns of B add exactly nothing
        tensors[f"{PEFT_PREFIX}{name}.lora_A.weight"] = np.ascontiguousarray(np.pad(a, ((0, pad), (0, 0))))
        tensors[f"{PEFT_PREFIX}{name}.lora_B.weight"] = np.ascontiguousarray(np.pad(b, ((0, 0), (0, pad))))
    targets = sorted({name.rsplit(".", 1)[1] for name in updates}, key=_MODULE_ORDER.index)
    return tensors, r, scale * r, targets


_MODULE_ORDER = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def adapter_config(*, r: int, lora_alpha: float, targets: list[str], base_model: str | None) -> dict:
    """PEFT's `adapter_config.json` for a LoRA on a causal LM (no dropout, no bias, no rank_pattern).

    Example:
        >>> adapter_config(r=32, lora_alpha=64.0, targets=["q_proj"], base_model="google/gemma-2-2b")["peft_type"]
        'LORA'
    """
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": int(r),
        "lora_alpha": float(lora_alpha),
        "target_modules": list(targets),
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "rank_pattern": {},
        "alpha_pattern": {},
        "modules_to_save": None,
        "inference_mode": True,
    }


def write_peft_adapter(lm, out: str | Path, *, base_model: str | None, dtype: str | None = None) -> dict:
    """Write `adapter_config.json` + `adapter_model.safetensors` of `lm`'s LoRA into `out`; returns the config.

    Args:
        lm: A causal LM with LoRA enabled (`kit.model.load_run` of a LoRA run).
        out: Directory to write into (exists).
        base_model: `base_model_name_or_path` of the config (an HF repo or dir), or None.
        dtype: Tensor dtype (default float32, the dtype the adapter trained in).
    """
    import jax.numpy as jnp
    from safetensors.flax import save_file  # the numpy writer has no bfloat16; jax arrays do

    tensors, r, lora_alpha, targets = peft_adapter(lm)
    config = adapter_config(r=r, lora_alpha=lora_alpha, targets=targets, base_model=base_model)
    out = Path(out)
    save_file(
        {k: jnp.asarray(v, dtype=dtype or "float32") for k, v in tensors.items()},
        str(out / ADAPTER_WEIGHTS),
        metadata={"format": "pt"},
    )
    (out / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return config
