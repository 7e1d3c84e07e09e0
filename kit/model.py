"""Load a Gemma causal LM from any preset source, pick its dtype, and add LoRA adapters.

Sources (all through `keras_hub.models.GemmaCausalLM.from_preset`):
built-in names (`gemma2_2b_en`), `kaggle://owner/model/keras/variant/N`,
`hf://owner/repo` (KerasHub converts Hugging Face checkpoints) and local preset
directories, including the tiny base written by `kit tiny`.

Credentials come from the environment or a `.env` file and are never printed:
`KAGGLE_USERNAME`/`KAGGLE_KEY` for Kaggle, `HUGGING_FACE_ACCESS_TOKEN` (or
`HF_TOKEN`, the name `huggingface_hub` reads) for the Hub. A failed download
becomes one `UserError` line naming the variable to set or licence to accept.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import keras
import keras_hub

import kit  # noqa: F401  (sets KERAS_BACKEND before keras is imported)
from kit.errors import UserError

# Layer names inside GemmaDecoderBlock / GemmaAttention that are EinsumDense
# layers, i.e. the ones `enable_lora` can wrap (matched by exact layer name).
LORA_TARGET_LAYERS = {
    "qv": ("query", "value"),
    "all": ("query", "key", "value", "attention_output", "ffw_gating", "ffw_gating_2", "ffw_linear"),
}
TINY_HINT = "To work offline use the tiny base: `kit tiny` then `kit finetune --config configs/tiny.toml`."
_LICENCE = {
    "kaggle": "https://www.kaggle.com/models/google/gemma-2",
    "hf": "https://huggingface.co/google/gemma-2-2b",
}


def load_credentials() -> None:
    """Read `.env` (without overriding the environment) and align token variable names.

    keras-hub's Hugging Face path goes through `huggingface_hub`, which reads
    `HF_TOKEN`; we also accept `HUGGING_FACE_ACCESS_TOKEN` (Kaggle/Colab secret
    name used in Gemma tutorials) and copy one to the other. Values are never
    logged.

    Example:
        >>> load_credentials()  # no output, never prints secrets
    """
    try:
        from dotenv import load_dotenv

        load_dotenv(override=False)
    except ImportError:  # python-dotenv is a dependency; stay usable without it
        pass
    hf = os.environ.get("HUGGING_FACE_ACCESS_TOKEN") or os.environ.get("HF_TOKEN")
    if hf:
        os.environ.setdefault("HF_TOKEN", hf)
        os.environ.setdefault("HUGGING_FACE_ACCESS_TOKEN", hf)


def default_dtype() -> str:
    """bfloat16 on GPU/TPU (half the memory, native speed), float32 on CPU (bf16 is slow there).

    Example:
        >>> default_dtype() in ("float32", "bfloat16")
        True
    """
    import jax

    return "float32" if jax.default_backend() == "cpu" else "bfloat16"


def resolve_dtype(dtype: str) -> str:
    """Map `auto` to `default_dtype()`; pass explicit dtypes through.

    Example:
        >>> resolve_dtype("float32")
        'float32'
    """
    return default_dtype() if dtype == "auto" else dtype


def preset_kind(preset: str) -> str:
    """Classify a preset string: `local`, `kaggle`, `hf`, `builtin` or `unknown`.

    Example:
        >>> preset_kind("hf://google/gemma-2-2b"), preset_kind("gemma2_2b_en")
        ('hf', 'builtin')
    """
    if preset.startswith("kaggle://"):
        return "kaggle"
    if preset.startswith("hf://"):
        return "hf"
    if Path(preset).is_dir():
        return "local"
    if preset in keras_hub.models.GemmaCausalLM.presets:
        return "builtin"  # built-in Gemma presets are downloaded from Kaggle
    return "unknown"


def load_causal_lm(preset: str, *, dtype: str = "auto") -> keras_hub.models.GemmaCausalLM:
    """Load a `GemmaCausalLM` (backbone + tokenizer + preprocessor) from `preset`.

    Args:
        preset: Built-in name, `kaggle://...`, `hf://...` or local preset dir.
        dtype: `auto`, `float32`, `bfloat16` or `float16`.

    Returns:
        The model, with weights in `dtype`.

    Raises:
        UserError: the preset does not exist, the network is unreachable or
            the credentials/licence are missing.

    Example:
        >>> lm = load_causal_lm("models/tiny-base")  # doctest: +SKIP
    """
    load_credentials()
    kind = preset_kind(preset)
    if kind == "unknown":
        raise UserError(
            f"Unknown model preset {preset!r}: not a local directory, a built-in Gemma preset "
            "(e.g. gemma2_2b_en), kaggle://... or hf://.... "
            f"{'Run `kit tiny` first. ' if 'tiny' in preset else ''}"
        )
    if kind in ("kaggle", "builtin", "hf"):
        _check_network(preset, kind)
    try:
        return keras_hub.models.GemmaCausalLM.from_preset(preset, dtype=resolve_dtype(dtype))
    except UserError:
        raise
    except Exception as e:  # keras-hub surfaces network/auth problems as many types
        raise UserError(explain_load_failure(preset, kind, e)) from None


def _check_network(preset: str, kind: str) -> None:
    """Fail fast (seconds, not a minute of retries) when the download host is unreachable."""
    host = "huggingface.co" if kind == "hf" else "www.kaggle.com"
    if kind != "hf" and _in_kaggle_cache(preset):
        return
    try:
        with socket.create_connection((host, 443), timeout=5):
            pass
    except OSError:
        raise UserError(
            f"Cannot load {preset!r}: no network connection to {host}. {TINY_HINT}"
        ) from None


def _in_kaggle_cache(preset: str) -> bool:
    # kagglehub keeps downloads under KAGGLEHUB_CACHE (or ~/.cache/kagglehub):
    # with a cached copy no network is needed, so do not fail early.
    cache = Path(os.environ.get("KAGGLEHUB_CACHE", Path.home() / ".cache" / "kagglehub"))
    return (cache / "models").is_dir()


def explain_load_failure(preset: str, kind: str, error: BaseException) -> str:
    """Turn a keras-hub/kagglehub/huggingface_hub exception into one actionable line.

    Example:
        >>> explain_load_failure("gemma2_2b_en", "builtin", RuntimeError("401 Unauthorized"))[:36]
        "Cannot load 'gemma2_2b_en': Kaggle r"
    """
    if type(error).__name__ == "IndivisibleError":
        # The active ModelParallel mesh cannot split a weight evenly. Gemma 2 2B
        # has 4 key/value heads, so its model axis can be at most 4 wide.
        detail = str(error).split("(full shape", 1)[0].strip()
        return (f"The distribution.mesh cannot shard {preset!r}: {detail}. Choose a model axis that "
                "divides the number of key/value heads (Gemma 2 2B: 4, e.g. 'batch:2,model:4').")
    text = f"{type(error).__name__}: {error}".lower()
    auth = any(s in text for s in ("401", "403", "unauthori", "forbidden", "gated", "permission", "credential", "access"))
    network = any(s in text for s in ("connection", "resolve", "timed out", "timeout", "network", "name or service"))
    if kind in ("kaggle", "builtin"):
        if auth:
            return (f"Cannot load {preset!r}: Kaggle refused access. Set KAGGLE_USERNAME and KAGGLE_KEY "
                    f"(environment or .env) and accept the Gemma licence at {_LICENCE['kaggle']}.")
        if network:
            return f"Cannot load {preset!r}: Kaggle is unreachable (no network). {TINY_HINT}"
    if kind == "hf":
        if auth or "no config.json" in text:
            return (f"Cannot load {preset!r}: the Hugging Face Hub refused access or the repo does not exist. "
                    "Set HUGGING_FACE_ACCESS_TOKEN (or HF_TOKEN) and accept the licence at "
                    f"{_LICENCE['hf']}.")
        if network:
            return f"Cannot load {preset!r}: the Hugging Face Hub is unreachable (no network). {TINY_HINT}"
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"Cannot load {preset!r}: {first}"


def enable_lora(lm: keras_hub.models.GemmaCausalLM, *, rank: int, alpha: float, targets: str) -> list[str]:
    """Freeze the backbone and add rank-`rank` adapters to the `targets` layers.

    keras-hub's `enable_lora` does not take alpha, so it is set on each
    wrapped layer afterwards (EinsumDense scales by `lora_alpha / lora_rank`).

    Args:
        lm: The causal LM.
        rank: Adapter rank (> 0).
        alpha: Scale numerator.
        targets: `qv` or `all` (see `LORA_TARGET_LAYERS`).

    Returns:
        The paths of the LoRA-wrapped layers, for `run.json`.

    Example:
        >>> enable_lora(lm, rank=4, alpha=8.0, targets="qv")[:1]  # doctest: +SKIP
        ['decoder_block_0/attention/query']
    """
    if targets not in LORA_TARGET_LAYERS:
        raise UserError(f"lora.targets must be 'qv' or 'all', received {targets!r}.")
    backbone = lm.backbone
    backbone.enable_lora(rank, target_layer_names=list(LORA_TARGET_LAYERS[targets]))
    wrapped = []
    # Same layer walk keras-hub's own enable_lora uses (no public recursive API).
    for layer in backbone._flatten_layers(include_self=False):
        if getattr(layer, "lora_enabled", False):
            layer.lora_alpha = float(alpha)
            wrapped.append(layer.lora_kernel_a.path.rsplit("/", 1)[0])
    return wrapped


def parameter_counts(model: keras.Model) -> dict[str, int]:
    """Trainable and total parameter counts (LoRA adapters included).

    Example:
        >>> parameter_counts(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
        {'trainable': 8, 'total': 8, 'trainable_share': 1.0}
    """
    trainable = sum(_size(v) for v in model.trainable_weights)
    total = sum(_size(v) for v in model.weights)
    return {"trainable": trainable, "total": total, "trainable_share": round(trainable / max(total, 1), 6)}


def _size(variable) -> int:
    n = 1
    for d in variable.shape:
        n *= int(d)
    return n
