"""Gemma 3 (text): KerasHub's `Gemma3CausalLM` / `Gemma3Backbone`, transformers' `Gemma3ForCausalLM`.

What differs from Gemma 2, checked against KerasHub 0.32's
`gemma3_backbone.py` / `gemma3_attention.py` and transformers' `gemma3`:

* no soft caps: neither on the attention logits nor on the final logits
  (both `None` in every preset); RMS norms on the queries and keys of every
  block (`use_query_key_norm`, scales of `head_dim`), plus Gemma 2's
  pre/post attention and FFW norms, all `x * (1 + scale)`;
* five sliding-window layers to one global (`i % 6 < 5` is local: layers
  5, 11, ... are global, as transformers' `layer_types`), window 512 on
  270m and 1b, 1,024 on 4b; RoPE base 10,000 on local layers and 1,000,000
  on global ones, the global positions divided by 8 on 4b (linear scaling);
* `intermediate_dim` is the width of each gated projection (transformers'
  `intermediate_size`), not twice it as in Gemma 2;
* a 262,144-token vocabulary (tied embedding), `<end_of_turn>` = 106.

KerasHub against transformers (`hf_config_from`; `tests/model/test_export_gemma3.py`
checks each with float32 logits equal to 1e-5 on prompts several windows long):

* sliding window: the same semantics, so `sliding_window` is copied as it
  is. A local layer's query i sees keys i-W+1 .. i, W tokens counting
  itself (KerasHub: `triu(ones, 1-W) * tril(ones, W-1)` on the causal
  mask; transformers: `kv_idx > q_idx - W`). The test tells W from W +- 1.
* which layers are global and their RoPE: KerasHub's `i % 6 < 5` is local,
  written out as `layer_types`; RoPE base 10,000 local, 1,000,000 global
  (KerasHub hard-codes both; written in `rope_parameters`); linear scaling
  divides the inverse frequencies by the factor on both sides. A layer's
  RoPE base follows its type, so turning the window off in KerasHub
  (`use_sliding_window_attention=False`) also moves every layer to the
  global base.
* query scaling: KerasHub 0.32's `Gemma3DecoderBlock` passes
  `query_head_dim_normalize=True` to its attention whatever the backbone
  says, so queries are always scaled by 1/sqrt(head_dim), and the kit
  writes `query_pre_attn_scalar = head_dim` (what KerasHub computes, not
  what the flag asks for). KerasHub's converter reads it back as True.
* soft caps: transformers applies `final_logit_softcapping` like KerasHub,
  but its Gemma 3 attention never applies `attn_logit_softcapping`: a
  backbone with an attention cap is refused (no Gemma 3 preset has one).
* norms: RMSNorm in float32, `x * (1 + scale)`, eps 1e-6, on both sides,
  for the query/key norms and the four block norms; transformers' Gemma 3
  always has all six, so a backbone without them is refused.
* embedding scale: both multiply by sqrt(hidden) rounded to the weights'
  dtype (KerasHub `ops.cast(ops.sqrt(d), dtype)`, transformers
  `embed_scale.to(weight.dtype)`), equal in float32 and bfloat16.

KerasHub's `Gemma3CausalLMPreprocessor` refuses to exist without TensorFlow,
which the kit keeps out of the process (`kit/__init__.py`); for text the
Gemma 2 preprocessor does the same work with a `Gemma3Tokenizer`, so the kit
builds and loads Gemma 3 models with it (`load`, `causal_lm`). KerasHub's
`Gemma3Backbone` has no `get_layout_map`; `common.layout_map` applies the
Gemma rules to the same weight names.

Example:
    >>> [param_count(ARCHITECTURES[p][0]) == ARCHITECTURES[p][1] for p in ("gemma3_270m", "gemma3_1b", "gemma3_4b_text")]
    [True, True, True]
"""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from kit.errors import UserError
from kit.families import common

NAME = "gemma3"
TITLE = "Gemma 3"
HF_MODEL_TYPES = ("gemma3_text", "gemma3")
KAGGLE_MODEL = "keras/gemma3"
LORA_TARGET_LAYERS = common.LORA_TARGET_LAYERS
STOP_PIECES = common.STOP_PIECES
CHAT_TEMPLATE = common.GEMMA_CHAT_TEMPLATE

LOCAL_ROPE_BASE = 10_000.0
GLOBAL_ROPE_BASE = 1_000_000.0
SLIDING_PATTERN = 6  # five local layers, then one global

# Shared by every Gemma 3 text size (keras_hub `gemma3_*` presets; transformers `gemma3_text`).
_COMMON = {
    "vocabulary_size": 262144,
    "image_size": None,
    "head_dim": 256,
    "layer_norm_epsilon": 1e-6,
    "dropout": 0,
    "query_head_dim_normalize": True,
    "use_query_key_norm": True,
    "use_post_ffw_norm": True,
    "use_post_attention_norm": True,
    "final_logit_soft_cap": None,
    "attention_logit_soft_cap": None,
    "use_sliding_window_attention": True,
    "local_rope_scaling_factor": 1.0,
    "global_rope_scaling_factor": 1.0,
}

# Gemma 3 270M (gemma3_270m / google/gemma-3-270m): built for task-specific fine-tuning.
GEMMA3_270M = {
    **_COMMON,
    "num_layers": 18,
    "num_query_heads": 4,
    "num_key_value_heads": 1,
    "hidden_dim": 640,
    "intermediate_dim": 2048,
    "sliding_window_size": 512,
}

# Gemma 3 1B (gemma3_1b / google/gemma-3-1b-pt).
GEMMA3_1B = {
    **_COMMON,
    "num_layers": 26,
    "num_query_heads": 4,
    "num_key_value_heads": 1,
    "hidden_dim": 1152,
    "intermediate_dim": 6912,
    "sliding_window_size": 512,
}

# Gemma 3 4B, text only (gemma3_4b_text / the language model of google/gemma-3-4b-pt).
GEMMA3_4B = {
    **_COMMON,
    "num_layers": 34,
    "num_query_heads": 8,
    "num_key_value_heads": 4,
    "hidden_dim": 2560,
    "intermediate_dim": 10240,
    "sliding_window_size": 1024,
    "global_rope_scaling_factor": 8.0,
}

# preset -> (backbone config, published parameter count: keras_hub's preset metadata).
ARCHITECTURES: dict[str, tuple[dict, int]] = {
    "gemma3_270m": (GEMMA3_270M, 268_098_176),
    "gemma3_instruct_270m": (GEMMA3_270M, 268_098_176),
    "gemma3_1b": (GEMMA3_1B, 999_885_952),
    "gemma3_instruct_1b": (GEMMA3_1B, 999_885_952),
    "gemma3_4b_text": (GEMMA3_4B, 3_880_099_328),
    "gemma3_instruct_4b_text": (GEMMA3_4B, 3_880_099_328),
}

HF_BASE_MODELS = {
    "gemma3_270m": "google/gemma-3-270m",
    "gemma3_instruct_270m": "google/gemma-3-270m-it",
    "gemma3_1b": "google/gemma-3-1b-pt",
    "gemma3_instruct_1b": "google/gemma-3-1b-it",
    "gemma3_4b_text": "google/gemma-3-4b-pt",
    "gemma3_instruct_4b_text": "google/gemma-3-4b-it",
}

# The `Gemma3Backbone` arguments the kit reads from a preset's config.json.
CONFIG_KEYS = tuple(GEMMA3_4B)

SIZES = (
    "vocabulary_size",
    "num_layers",
    "num_query_heads",
    "num_key_value_heads",
    "hidden_dim",
    "intermediate_dim",
    "head_dim",
)
DEFAULTS = {
    "query_head_dim_normalize": True,
    "use_query_key_norm": True,
    "use_post_ffw_norm": False,
    "use_post_attention_norm": False,
    "attention_logit_soft_cap": None,
    "final_logit_soft_cap": None,
    "use_sliding_window_attention": False,
    "sliding_window_size": 1024,
    "local_rope_scaling_factor": 1.0,
    "global_rope_scaling_factor": 1.0,
    "layer_norm_epsilon": 1e-6,
}


def classes() -> SimpleNamespace:
    """The KerasHub classes of the family (the preprocessor is Gemma's: see the module docstring)."""
    import keras_hub

    return SimpleNamespace(
        causal_lm=keras_hub.models.Gemma3CausalLM,
        backbone=keras_hub.models.Gemma3Backbone,
        tokenizer=keras_hub.models.Gemma3Tokenizer,
        preprocessor=keras_hub.models.GemmaCausalLMPreprocessor,
    )


def owns_config(config: Mapping[str, Any]) -> bool:
    """Whether a backbone config dict is a `Gemma3Backbone`'s (it has query/key norms)."""
    return "use_query_key_norm" in config


def owns_name(name: str) -> bool:
    """Whether a preset name, Kaggle variation or HF repo name is Gemma 3's (not 3n, which differs).

    Example:
        >>> owns_name("gemma3_instruct_1b"), owns_name("gemma-3-270m-it"), owns_name("gemma3n_e2b"), owns_name("gemma2_2b_en")
        (True, True, False, False)
    """
    for prefix in ("gemma3", "gemma-3"):
        if name.startswith(prefix):
            rest = name[len(prefix) :]
            return rest == "" or rest[0] in "_-"
    return False


def tiny_config(vocabulary_size: int, **sizes) -> dict:
    """A small text backbone config with every Gemma 3 feature (query/key norms, no caps, 5:1 sliding window).

    `sizes` as in `kit.families.gemma2.tiny_config` (`intermediate_dim` is
    each gated projection's width here). Six or more layers show a global one.

    Example:
        >>> tiny_config(256, num_layers=6, num_query_heads=2, num_key_value_heads=1, hidden_dim=16,
        ...     intermediate_dim=32, head_dim=8, sliding_window_size=8)["use_query_key_norm"]
        True
    """
    return {**_COMMON, "vocabulary_size": vocabulary_size, **sizes}


def build_backbone(config: Mapping[str, Any], dtype: str):
    """A text-only `Gemma3Backbone` from a config dict (random weights)."""
    return classes().backbone(**{"image_size": None, **config}, dtype=dtype)


def tokenizer(proto: bytes):
    """A `Gemma3Tokenizer` around a SentencePiece model; vision tokens only when the model has them."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_proto=proto)
    vision = all(sp.piece_to_id(p) != sp.unk_id() for p in ("<img>", "<start_of_image>", "<end_of_image>"))
    return classes().tokenizer(proto=proto, has_vision_tokens=vision)


def tokenizer_from_preset(source: str):
    """The `Gemma3Tokenizer` of a preset (a local dir or a handle KerasHub loads)."""
    return classes().tokenizer.from_preset(source)


def causal_lm(backbone, tokenizer, sequence_length: int):
    """The `Gemma3CausalLM` around `backbone` and `tokenizer` (Gemma's TF-free preprocessor)."""
    c = classes()
    preprocessor = c.preprocessor(tokenizer=tokenizer, sequence_length=sequence_length)
    return c.causal_lm(backbone=backbone, preprocessor=preprocessor)


def load(source: str, dtype: str):
    """`Gemma3CausalLM.from_preset(source)` with the TF-free preprocessor (a preset's own asks for TensorFlow)."""
    c = classes()
    preprocessor = c.preprocessor(tokenizer=tokenizer_from_preset(source), sequence_length=1024)
    return c.causal_lm.from_preset(source, dtype=dtype, preprocessor=preprocessor)


def empty_cache(backbone, batch: int, length: int, dtype):
    """The zero KV cache `Gemma3CausalLM.call_with_cache` takes: per layer a (key, value) pair of (batch, length, kv, hd)."""
    import jax.numpy as jnp

    shape = (batch, length, backbone.num_key_value_heads, backbone.head_dim)
    return tuple((jnp.zeros(shape, dtype=dtype), jnp.zeros(shape, dtype=dtype)) for _ in range(backbone.num_layers))


def layout_map(device_mesh):
    """The Gemma ModelParallel layout (`common.layout_map`); KerasHub has none for Gemma 3."""
    return common.layout_map(device_mesh)


def ffw_width(config: Mapping[str, Any]) -> int:
    """The width of each gated FFN projection (Gemma 3's `intermediate_dim` is it)."""
    return int(config["intermediate_dim"])


def intermediate_dim(ffw: int) -> int:
    """KerasHub's `intermediate_dim` for gated projections `ffw` wide (Gemma 3's is one projection's width); the inverse of `ffw_width`."""
    return int(ffw)


def param_count(config: Mapping[str, Any]) -> int:
    """Parameters of a backbone config: embedding, attention, query/key norms, FFN and four norms per block."""
    d, hd = int(config["hidden_dim"]), int(config["head_dim"])
    qk_norms = 2 * hd if config.get("use_query_key_norm", True) else 0
    block = common.attention_params(config) + qk_norms + 3 * d * ffw_width(config) + 4 * d
    return int(config["vocabulary_size"]) * d + int(config["num_layers"]) * block + d


def layer_types(num_layers: int, sliding: bool) -> list[str]:
    """Which layers attend locally, as transformers names them (KerasHub: `i % 6 < 5` is local).

    Example:
        >>> layer_types(7, True)[4:]
        ['sliding_attention', 'full_attention', 'sliding_attention']
    """
    return [
        "sliding_attention" if sliding and i % SLIDING_PATTERN < SLIDING_PATTERN - 1 else "full_attention"
        for i in range(num_layers)
    ]


def hf_config_from(arch: Mapping[str, Any], *, torch_dtype: str = "float32") -> dict:
    """The Hugging Face `Gemma3ForCausalLM` (`gemma3_text`) `config.json` for a text `Gemma3Backbone`.

    Raises:
        UserError: a required argument is missing, the backbone is an embedding model, or it has what
            transformers' Gemma 3 cannot express (no query/key or post norms, an attention soft cap).

    Example:
        >>> c = hf_config_from(GEMMA3_4B)
        >>> c["intermediate_size"], c["rope_parameters"]["full_attention"]["factor"], c["layer_types"][5]
        (10240, 8.0, 'full_attention')
    """
    missing = [k for k in SIZES if k not in arch]
    if missing:
        raise UserError(f"The Gemma 3 backbone config lacks {', '.join(missing)}.")
    if arch.get("is_embedding_model") or arch.get("use_bidirectional_attention"):
        raise UserError("`--to hf` writes Gemma 3 causal LMs; this backbone is an embedding model (EmbeddingGemma).")
    b = SimpleNamespace(**{**DEFAULTS, **{k: v for k, v in arch.items() if k in (*SIZES, *DEFAULTS)}})
    # transformers' Gemma 3 block always has query/key norms and post-attention/post-FFW norms.
    lacking = [k for k in ("use_query_key_norm", "use_post_attention_norm", "use_post_ffw_norm") if not getattr(b, k)]
    if lacking:
        raise UserError(
            f"`--to hf` writes Gemma 3 checkpoints, whose blocks always have query/key and post norms; "
            f"this backbone has {', '.join(lacking)} off."
        )
    if b.attention_logit_soft_cap is not None:
        # transformers' Gemma3Attention keeps `attn_logit_softcapping` in its config but never applies it.
        raise UserError(
            "`--to hf` cannot write this Gemma 3 exactly: it caps its attention logits "
            f"({b.attention_logit_soft_cap}), which transformers' Gemma 3 ignores (no Gemma 3 preset has the cap)."
        )

    def rope(base: float, factor: float) -> dict:
        if float(factor) == 1.0:
            return {"rope_type": "default", "rope_theta": base}
        return {"rope_type": "linear", "factor": float(factor), "rope_theta": base}

    return {
        "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text",
        "vocab_size": int(b.vocabulary_size),
        "hidden_size": int(b.hidden_dim),
        "intermediate_size": int(b.intermediate_dim),
        "num_hidden_layers": int(b.num_layers),
        "num_attention_heads": int(b.num_query_heads),
        "num_key_value_heads": int(b.num_key_value_heads),
        "head_dim": int(b.head_dim),
        "hidden_activation": "gelu_pytorch_tanh",  # keras gelu(approximate=True)
        "max_position_embeddings": 32768,
        "rms_norm_eps": float(b.layer_norm_epsilon),
        "rope_parameters": {
            "full_attention": rope(GLOBAL_ROPE_BASE, b.global_rope_scaling_factor),
            "sliding_attention": rope(LOCAL_ROPE_BASE, b.local_rope_scaling_factor),
        },
        "attention_bias": False,
        "attention_dropout": 0.0,
        # KerasHub 0.32's Gemma3DecoderBlock hands its attention `query_head_dim_normalize=True` whatever the
        # backbone was given, so a Gemma 3 in KerasHub always scales queries by 1/sqrt(head_dim): write what it
        # computes. (Gemma 3 27B's 168 = hidden/heads is what KerasHub cannot express; no kit size has it.)
        "query_pre_attn_scalar": int(b.head_dim),
        "final_logit_softcapping": None if b.final_logit_soft_cap is None else float(b.final_logit_soft_cap),
        "attn_logit_softcapping": None,  # refused above: transformers would not apply it
        # The same number in both libraries: a sliding layer's query i sees keys i-W+1 .. i, W tokens with
        # itself (KerasHub: triu(ones, 1-W) * tril(ones, W-1) on the causal mask; transformers:
        # kv_idx > q_idx - W). tests/model/test_export_gemma3.py tells W from W +- 1 on both sides.
        "sliding_window": int(b.sliding_window_size),
        "layer_types": layer_types(int(b.num_layers), bool(b.use_sliding_window_attention)),
        "use_bidirectional_attention": False,
        "tie_word_embeddings": True,
        "pad_token_id": 0,
        "bos_token_id": 2,
        "eos_token_id": 1,
        "initializer_range": 0.02,
        "use_cache": True,
        "torch_dtype": torch_dtype,
    }


def hf_config(backbone, torch_dtype: str) -> dict:
    """The Hugging Face config of a built text-only `Gemma3Backbone`."""
    if getattr(backbone, "vision_encoder", None) is not None:
        raise UserError("`--to hf` writes text-only Gemma 3 models; this one has a vision encoder.")
    arch = {name: getattr(backbone, name) for name in (*SIZES, *DEFAULTS)}
    arch["is_embedding_model"] = getattr(backbone, "is_embedding_model", False)
    arch["use_bidirectional_attention"] = getattr(backbone, "use_bidirectional_attention", False)
    return hf_config_from(arch, torch_dtype=torch_dtype)


def hf_weights(backbone) -> dict:
    """Hugging Face Gemma 3 tensors from a `Gemma3Backbone`, LoRA merged: `common`'s table plus q_norm/k_norm."""

    def qk_norms(block, prefix):
        att = block.attention
        return {
            prefix + "self_attn.q_norm.weight": common.arr(att.query_norm.scale),
            prefix + "self_attn.k_norm.weight": common.arr(att.key_norm.scale),
        }

    return common.backbone_weights(backbone, extra=qk_norms)
