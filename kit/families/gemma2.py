"""Gemma 2: KerasHub's `GemmaCausalLM` / `GemmaBackbone`, transformers' `Gemma2ForCausalLM`.

The architecture table holds each preset's `GemmaBackbone` config (as
KerasHub's `config.json` for the preset has it) and its published parameter
count. Gemma 2 caps its attention logits at 50 and its final logits at 30
(`tanh` soft caps), has post-attention and post-FFW norms, and alternates
sliding-window (4,096, even layers) and global attention. KerasHub's
`intermediate_dim` is the total of the two gated projections, twice
transformers' `intermediate_size`.

keras-hub's own `export_to_transformers` writes a Gemma 1 config for a
Gemma 2 backbone (no soft-caps, sliding window or post-norms), so the config
here is the kit's (the inverse of keras-hub's Hugging Face converter, which
the tests use to load the export back).

Example:
    >>> ARCHITECTURES["gemma2_2b_en"][1]
    2614341888
    >>> param_count(GEMMA2_2B)
    2614341888
"""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from kit.errors import UserError
from kit.families import common

NAME = "gemma2"
TITLE = "Gemma 2"
HF_MODEL_TYPES = ("gemma2",)
# Where Google publishes the Keras weights on Kaggle (the attach hint names it).
KAGGLE_MODEL = "google/gemma-2"
LORA_TARGET_LAYERS = common.LORA_TARGET_LAYERS
STOP_PIECES = common.STOP_PIECES
CHAT_TEMPLATE = common.GEMMA_CHAT_TEMPLATE

# Shared by every Gemma 2 size (keras_hub `gemma2_*` presets).
_COMMON = {
    "vocabulary_size": 256000,
    "head_dim": 256,
    "layer_norm_epsilon": 1e-6,
    "dropout": 0,
    "query_head_dim_normalize": True,
    "use_post_ffw_norm": True,
    "use_post_attention_norm": True,
    "final_logit_soft_cap": 30.0,
    "attention_logit_soft_cap": 50.0,
    "sliding_window_size": 4096,
    "use_sliding_window_attention": True,
}

# Gemma 2 2B (keras_hub gemma2_2b_en / transformers google/gemma-2-2b).
GEMMA2_2B = {
    **_COMMON,
    "num_layers": 26,
    "num_query_heads": 8,
    "num_key_value_heads": 4,
    "hidden_dim": 2304,
    "intermediate_dim": 18432,
}

# Gemma 2 9B (gemma2_9b_en). Its queries are scaled by head_dim (256) like 2B's.
GEMMA2_9B = {
    **_COMMON,
    "num_layers": 42,
    "num_query_heads": 16,
    "num_key_value_heads": 8,
    "hidden_dim": 3584,
    "intermediate_dim": 28672,
}

# preset -> (backbone config, published parameter count: keras_hub's preset metadata).
ARCHITECTURES: dict[str, tuple[dict, int]] = {
    "gemma2_2b_en": (GEMMA2_2B, 2_614_341_888),
    "gemma2_instruct_2b_en": (GEMMA2_2B, 2_614_341_888),
    "gemma2_9b_en": (GEMMA2_9B, 9_241_705_984),
    "gemma2_instruct_9b_en": (GEMMA2_9B, 9_241_705_984),
}

# Keras preset names (and Kaggle variations) and their Hugging Face repositories.
HF_BASE_MODELS = {
    "gemma2_2b_en": "google/gemma-2-2b",
    "gemma2_instruct_2b_en": "google/gemma-2-2b-it",
    "gemma2_9b_en": "google/gemma-2-9b",
    "gemma2_instruct_9b_en": "google/gemma-2-9b-it",
    "gemma2_27b_en": "google/gemma-2-27b",
    "gemma2_instruct_27b_en": "google/gemma-2-27b-it",
}

# The `GemmaBackbone` arguments the kit reads from a preset's config.json.
CONFIG_KEYS = tuple(GEMMA2_2B)

# The `GemmaBackbone` constructor arguments the Hugging Face config depends on,
# by keras-hub's names (those of a preset's config.json and of `get_config()`):
# the sizes are required, the rest default as in keras-hub.
GEMMA_SIZES = (
    "vocabulary_size",
    "num_layers",
    "num_query_heads",
    "num_key_value_heads",
    "hidden_dim",
    "intermediate_dim",
    "head_dim",
)
GEMMA_DEFAULTS = {
    "query_head_dim_normalize": True,
    "use_post_ffw_norm": False,
    "use_post_attention_norm": False,
    "attention_logit_soft_cap": None,
    "final_logit_soft_cap": None,
    "use_sliding_window_attention": False,
    "sliding_window_size": 4096,
    "layer_norm_epsilon": 1e-6,
}


def classes() -> SimpleNamespace:
    """The KerasHub classes of the family: `causal_lm`, `backbone`, `tokenizer`, `preprocessor`."""
    import keras_hub

    return SimpleNamespace(
        causal_lm=keras_hub.models.GemmaCausalLM,
        backbone=keras_hub.models.GemmaBackbone,
        tokenizer=keras_hub.models.GemmaTokenizer,
        preprocessor=keras_hub.models.GemmaCausalLMPreprocessor,
    )


def owns_config(config: Mapping[str, Any]) -> bool:
    """Whether a backbone config dict is a `GemmaBackbone`'s (Gemma 3 adds query/key norms)."""
    return "use_query_key_norm" not in config and "num_layers" in config


def owns_name(name: str) -> bool:
    """Whether a preset name, Kaggle variation or HF repo name is Gemma 2's.

    Example:
        >>> owns_name("gemma2_instruct_2b_en"), owns_name("gemma-2-9b-it"), owns_name("gemma3_1b")
        (True, True, False)
    """
    return name.startswith("gemma2") or name.startswith("gemma-2")


def tiny_config(vocabulary_size: int, **sizes) -> dict:
    """A small backbone config with every Gemma 2 feature (soft caps 30/50, post-norms, alternating sliding window).

    `sizes`: `num_layers`, `num_query_heads`, `num_key_value_heads`,
    `hidden_dim`, `intermediate_dim` (KerasHub's: gate + up), `head_dim`,
    `sliding_window_size`.

    Example:
        >>> tiny_config(256, num_layers=2, num_query_heads=2, num_key_value_heads=1, hidden_dim=16,
        ...     intermediate_dim=32, head_dim=8, sliding_window_size=8)["final_logit_soft_cap"]
        30.0
    """
    return {**_COMMON, "vocabulary_size": vocabulary_size, **sizes}


def build_backbone(config: Mapping[str, Any], dtype: str):
    """A `GemmaBackbone` from a config dict (random weights)."""
    return classes().backbone(**config, dtype=dtype)


def tokenizer(proto: bytes):
    """The family's tokenizer around a SentencePiece model."""
    return classes().tokenizer(proto=proto)


def tokenizer_from_preset(source: str):
    """The family's tokenizer of a preset (a local dir or a handle KerasHub loads)."""
    return classes().tokenizer.from_preset(source)


def causal_lm(backbone, tokenizer, sequence_length: int):
    """The causal LM around `backbone` and `tokenizer`."""
    c = classes()
    preprocessor = c.preprocessor(tokenizer=tokenizer, sequence_length=sequence_length)
    return c.causal_lm(backbone=backbone, preprocessor=preprocessor)


def load(source: str, dtype: str):
    """`GemmaCausalLM.from_preset(source)` in `dtype`."""
    return classes().causal_lm.from_preset(source, dtype=dtype)


def empty_cache(backbone, batch: int, length: int, dtype):
    """The zero KV cache `GemmaCausalLM.call_with_cache` takes: one array (batch, layers, 2, length, kv, hd)."""
    import jax.numpy as jnp

    shape = (batch, backbone.num_layers, 2, length, backbone.num_key_value_heads, backbone.head_dim)
    return jnp.zeros(shape, dtype=dtype)


def layout_map(device_mesh):
    """KerasHub's own ModelParallel layout for `GemmaBackbone`."""
    return classes().backbone.get_layout_map(device_mesh)


def ffw_width(config: Mapping[str, Any]) -> int:
    """The width of each gated FFN projection (KerasHub's `intermediate_dim` counts gate + up)."""
    return int(config["intermediate_dim"]) // 2


def intermediate_dim(ffw: int) -> int:
    """KerasHub's `intermediate_dim` for gated projections `ffw` wide (Gemma 2's counts gate + up); the inverse of `ffw_width`."""
    return 2 * int(ffw)


def param_count(config: Mapping[str, Any]) -> int:
    """Parameters of a backbone config: embedding, attention, FFN and the four norms per block.

    Example:
        >>> param_count(GEMMA2_9B)
        9241705984
    """
    d = int(config["hidden_dim"])
    block = common.attention_params(config) + 3 * d * ffw_width(config) + 4 * d
    return int(config["vocabulary_size"]) * d + int(config["num_layers"]) * block + d


def hf_config_from(arch: Mapping[str, Any], *, torch_dtype: str = "float32") -> dict:
    """The Hugging Face Gemma 2 `config.json` for a `GemmaBackbone` described by its arguments.

    Args:
        arch: `GemmaBackbone` constructor arguments by name, as in a
            preset's `config.json` "config": `GEMMA_SIZES` are required,
            `GEMMA_DEFAULTS` optional; other keys are ignored.
        torch_dtype: The weights dtype the config names.

    Raises:
        UserError: a required argument is missing, or the backbone is not
            Gemma 2 (no post-norms).

    Example:
        >>> c = hf_config_from({"vocabulary_size": 256000, "num_layers": 26, "num_query_heads": 8,
        ...     "num_key_value_heads": 4, "hidden_dim": 2304, "intermediate_dim": 18432, "head_dim": 256,
        ...     "use_post_ffw_norm": True, "use_post_attention_norm": True, "use_sliding_window_attention": True})
        >>> c["intermediate_size"], c["query_pre_attn_scalar"], c["layer_types"][:2]
        (9216, 256, ['sliding_attention', 'full_attention'])
    """
    missing = [k for k in GEMMA_SIZES if k not in arch]
    if missing:
        raise UserError(f"The Gemma backbone config lacks {', '.join(missing)}.")
    known = (*GEMMA_SIZES, *GEMMA_DEFAULTS)
    b = SimpleNamespace(**{**GEMMA_DEFAULTS, **{k: v for k, v in arch.items() if k in known}})
    if not (b.use_post_attention_norm and b.use_post_ffw_norm):
        raise UserError(
            "`--to hf` writes Gemma 2 checkpoints; this backbone has no post-norms (Gemma 1). "
            "Use keras-hub's `export_to_transformers` for Gemma 1."
        )
    sliding = bool(b.use_sliding_window_attention)
    return {
        "architectures": ["Gemma2ForCausalLM"],
        "model_type": "gemma2",
        "vocab_size": int(b.vocabulary_size),
        "hidden_size": int(b.hidden_dim),
        "intermediate_size": int(b.intermediate_dim) // 2,  # keras-hub counts gate + up together
        "num_hidden_layers": int(b.num_layers),
        "num_attention_heads": int(b.num_query_heads),
        "num_key_value_heads": int(b.num_key_value_heads),
        "head_dim": int(b.head_dim),
        "hidden_activation": "gelu_pytorch_tanh",  # keras gelu(approximate=True)
        "max_position_embeddings": 8192,
        "rms_norm_eps": float(b.layer_norm_epsilon),
        # keras-hub's Gemma RoPE has a fixed 10k wavelength; both keys so 4.x and 5.x read it.
        "rope_theta": 10000.0,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "attention_bias": False,
        "attention_dropout": 0.0,
        # Scores are scaled by query_pre_attn_scalar**-0.5 (HF) = 1/sqrt(head_dim) or
        # 1/sqrt(hidden/heads) (keras-hub's query_head_dim_normalize).
        "query_pre_attn_scalar": int(b.head_dim if b.query_head_dim_normalize else b.hidden_dim // b.num_query_heads),
        "final_logit_softcapping": _float_or_none(b.final_logit_soft_cap),
        "attn_logit_softcapping": _float_or_none(b.attention_logit_soft_cap),
        "sliding_window": int(b.sliding_window_size),
        # keras-hub: even layers (0, 2, ...) are local when sliding attention is on.
        "layer_types": [
            ("sliding_attention" if sliding and i % 2 == 0 else "full_attention") for i in range(b.num_layers)
        ],
        "tie_word_embeddings": True,
        "pad_token_id": 0,
        "bos_token_id": 2,
        "eos_token_id": 1,
        "initializer_range": 0.02,
        "use_cache": True,
        "torch_dtype": torch_dtype,
    }


def hf_config(backbone, torch_dtype: str) -> dict:
    """The Hugging Face config of a built `GemmaBackbone`."""
    arch = {name: getattr(backbone, name) for name in (*GEMMA_SIZES, *GEMMA_DEFAULTS)}
    return hf_config_from(arch, torch_dtype=torch_dtype)


def hf_weights(backbone) -> dict:
    """Hugging Face Gemma 2 tensors (name -> array) from a `GemmaBackbone`, LoRA merged (`common`'s table)."""
    return common.backbone_weights(backbone)


def _float_or_none(x) -> float | None:
    return None if x is None else float(x)
