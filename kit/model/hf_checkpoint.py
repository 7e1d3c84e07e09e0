"""The Hugging Face Gemma 2 checkpoint format: config, weights, tokenizer files and shards of a `GemmaBackbone`.

A `transformers` `Gemma2ForCausalLM` checkpoint (`kit export --to hf`).
keras-hub's own `export_to_transformers` writes a Gemma 1 config for a
Gemma 2 backbone (no soft-caps, sliding window or post-norms), so the
config and the weight mapping are ours (the inverse of keras-hub's
Hugging Face converter, which the tests use to load the export back):

======================================  ===========================================
KerasHub (GemmaBackbone)                Hugging Face (Gemma2ForCausalLM)
======================================  ===========================================
token_embedding (vocab, d)              model.embed_tokens.weight (same; lm_head tied)
attention.query (heads, d, hd)          self_attn.q_proj.weight (heads*hd, d)
attention.key/value (kv, d, hd)         self_attn.k_proj/v_proj.weight (kv*hd, d)
attention.attention_output (heads,hd,d) self_attn.o_proj.weight (d, heads*hd)
ffw_gating / ffw_gating_2 / ffw_linear  mlp.gate_proj / up_proj / down_proj (transposed)
pre_attention_norm, post_attention_norm input_layernorm, post_attention_layernorm
pre_ffw_norm, post_ffw_norm             pre_feedforward_layernorm, post_feedforward_layernorm
final_normalization                     model.norm.weight
======================================  ===========================================

Both libraries compute RMSNorm as `x * (1 + scale)` and multiply embeddings
by sqrt(d), so norm scales and embeddings copy over unchanged. Reading a
LoRA-wrapped layer's `.kernel` gives the merged kernel.

This module imports neither Keras nor JAX at load time (numpy only), so the
benchmarks' Hugging Face side can load it from its file without the Keras
stack (`bench/hf_gemma2.py`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from kit.errors import UserError

SHARD_BYTES = 4 * 1024**3

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


def hf_config(backbone) -> dict:
    """The `config.json` of a Hugging Face Gemma 2 model equal to `backbone`.

    Raises:
        UserError: the backbone is not Gemma 2 (no post-norms).
    """
    arch = {name: getattr(backbone, name) for name in (*GEMMA_SIZES, *GEMMA_DEFAULTS)}
    return hf_config_from(arch, torch_dtype=_np_dtype(backbone))


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


def hf_weights(backbone) -> dict[str, np.ndarray]:
    """Hugging Face Gemma 2 tensors (name -> array) from a `GemmaBackbone`, LoRA merged.

    Example:
        >>> w = hf_weights(lm.backbone)  # doctest: +SKIP
        >>> w["model.layers.0.self_attn.q_proj.weight"].shape  # doctest: +SKIP
        (128, 128)
    """

    def arr(x):
        return np.asarray(x.numpy() if hasattr(x, "numpy") else x)

    w = {"model.embed_tokens.weight": arr(backbone.get_layer("token_embedding").embeddings)}
    for i in range(backbone.num_layers):
        block = backbone.get_layer(f"decoder_block_{i}")
        att, p = block.attention, f"model.layers.{i}."
        for name, layer in (("q_proj", att.query_dense), ("k_proj", att.key_dense), ("v_proj", att.value_dense)):
            k = arr(layer.kernel)  # (heads, d, head_dim); merged with LoRA when wrapped
            w[p + f"self_attn.{name}.weight"] = np.transpose(k, (0, 2, 1)).reshape(-1, k.shape[1])
        o = arr(att.output_dense.kernel)  # (heads, head_dim, d)
        w[p + "self_attn.o_proj.weight"] = np.transpose(o, (2, 0, 1)).reshape(o.shape[2], -1)
        w[p + "mlp.gate_proj.weight"] = arr(block.gating_ffw.kernel).T
        w[p + "mlp.up_proj.weight"] = arr(block.gating_ffw_2.kernel).T
        w[p + "mlp.down_proj.weight"] = arr(block.ffw_linear.kernel).T
        w[p + "input_layernorm.weight"] = arr(block.pre_attention_norm.scale)
        w[p + "post_attention_layernorm.weight"] = arr(block.post_attention_norm.scale)
        w[p + "pre_feedforward_layernorm.weight"] = arr(block.pre_ffw_norm.scale)
        w[p + "post_feedforward_layernorm.weight"] = arr(block.post_ffw_norm.scale)
    w["model.norm.weight"] = arr(backbone.get_layer("final_normalization").scale)
    return {k: np.ascontiguousarray(v) for k, v in w.items()}


def write_hf_checkpoint(lm, out: str | Path) -> list[str]:
    """Write config, safetensors weights (sharded above 4 GiB) and tokenizer files of `lm` into `out`.

    Returns:
        The file names written.

    Example:
        >>> write_hf_checkpoint(lm, "exports/tiny-hf")  # doctest: +SKIP
        ['model.safetensors', 'config.json', 'tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json']
    """
    import jax.numpy as jnp
    from safetensors.flax import save_file  # the numpy writer has no bfloat16; jax arrays do

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    backbone = lm.backbone
    config = hf_config(backbone)
    weights = hf_weights(backbone)
    written = []
    shards = _shards(weights)
    index = {}
    for n, names in enumerate(shards, 1):
        file = "model.safetensors" if len(shards) == 1 else f"model-{n:05d}-of-{len(shards):05d}.safetensors"
        save_file({k: jnp.asarray(weights[k]) for k in names}, str(out / file), metadata={"format": "pt"})
        index.update(dict.fromkeys(names, file))
        written.append(file)
    if len(shards) > 1:
        total = int(sum(v.nbytes for v in weights.values()))
        _dump(out / "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": index})
        written.append("model.safetensors.index.json")
    _dump(out / "config.json", config)
    sp_proto = lm.preprocessor.tokenizer.proto
    (out / "tokenizer.model").write_bytes(sp_proto)
    tok_config, special, stops = _tokenizer_files(sp_proto)
    _dump(out / "tokenizer_config.json", tok_config)
    _dump(out / "special_tokens_map.json", special)
    # Stop on <eos> and <end_of_turn>, as `kit generate` does.
    _dump(
        out / "generation_config.json",
        {
            "bos_token_id": 2,
            "eos_token_id": [config["eos_token_id"], *stops],
            "pad_token_id": 0,
            "cache_implementation": "hybrid",
        },
    )
    return [
        *written,
        "config.json",
        "tokenizer.model",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "generation_config.json",
    ]


def _tokenizer_files(proto: bytes) -> tuple[dict, dict, list[int]]:
    import sentencepiece as spm

    from kit.model.card import GEMMA_CHAT_TEMPLATE

    sp = spm.SentencePieceProcessor(model_proto=proto)
    specials = [
        p
        for p in ("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>")
        if sp.piece_to_id(p) != sp.unk_id() or p == "<unk>"
    ]
    added = {
        str(sp.piece_to_id(p)): {
            "content": p,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for p in specials
    }
    turn = [p for p in ("<start_of_turn>", "<end_of_turn>") if p in specials]
    config = {
        "tokenizer_class": "GemmaTokenizer",
        "bos_token": "<bos>",
        "eos_token": "<eos>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "additional_special_tokens": turn,
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "spaces_between_special_tokens": False,
        "model_max_length": 8192,
        "padding_side": "left",
        "added_tokens_decoder": added,
        # Gemma's user/model turns: `apply_chat_template` builds exactly the kit's prompt.
        "chat_template": GEMMA_CHAT_TEMPLATE,
    }
    special = {
        "bos_token": "<bos>",
        "eos_token": "<eos>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "additional_special_tokens": turn,
    }
    stops = [sp.piece_to_id("<end_of_turn>")] if "<end_of_turn>" in specials else []
    return config, special, stops


def _shards(weights: dict[str, np.ndarray]) -> list[list[str]]:
    shards, size = [[]], 0
    for name, value in weights.items():
        if shards[-1] and size + value.nbytes > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += value.nbytes
    return shards


def _dump(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _float_or_none(x) -> float | None:
    return None if x is None else float(x)


def _np_dtype(backbone) -> str:
    return str(np.asarray(backbone.get_layer("token_embedding").embeddings.numpy()).dtype)
