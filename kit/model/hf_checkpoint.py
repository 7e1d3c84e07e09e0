"""The Hugging Face checkpoint format: config, weights, tokenizer files and shards of a Gemma backbone.

A `transformers` checkpoint (`kit export --to hf`): `Gemma2ForCausalLM` for
Gemma 2, `Gemma3ForCausalLM` (`gemma3_text`) for Gemma 3. The config and the
weight mapping are each family's (`kit.families.gemma2`, `kit.families.gemma3`,
the shared table in `kit.families.common`); this module writes the files:
safetensors shards, `config.json`, the SentencePiece model with the
tokenizer config and chat template, and a generation config that stops
where `kit generate` stops.

This module imports neither Keras nor JAX at load time (numpy only), so the
benchmarks' Hugging Face side can load it from its file without the Keras
stack (`bench/hf_gemma2.py`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kit.families import family_of, family_of_backbone, family_of_config
from kit.families.gemma2 import GEMMA2_2B, GEMMA_DEFAULTS, GEMMA_SIZES  # noqa: F401  (re-exported)
from kit.families.gemma3 import GEMMA3_1B  # noqa: F401  (the example)

SHARD_BYTES = 4 * 1024**3


def hf_config(backbone) -> dict:
    """The `config.json` of the Hugging Face model equal to `backbone` (its family's).

    Raises:
        UserError: the backbone's family has no Hugging Face form the kit writes (Gemma 1, vision, embeddings).
    """
    return family_of_backbone(backbone).hf_config(backbone, _np_dtype(backbone))


def hf_config_from(arch: Mapping[str, Any], *, torch_dtype: str = "float32") -> dict:
    """The Hugging Face `config.json` for a backbone described by its constructor arguments (its family's).

    Example:
        >>> hf_config_from(GEMMA2_2B)["model_type"], hf_config_from(GEMMA3_1B)["model_type"]
        ('gemma2', 'gemma3_text')
    """
    return family_of_config(arch).hf_config_from(arch, torch_dtype=torch_dtype)


def hf_weights(backbone) -> dict[str, np.ndarray]:
    """Hugging Face tensors (name -> array) from a Gemma backbone, LoRA merged.

    Example:
        >>> w = hf_weights(lm.backbone)  # doctest: +SKIP
        >>> w["model.layers.0.self_attn.q_proj.weight"].shape  # doctest: +SKIP
        (128, 128)
    """
    return family_of_backbone(backbone).hf_weights(backbone)


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
    tok_config, special, stops = _tokenizer_files(sp_proto, family_of(lm).CHAT_TEMPLATE)
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


def _tokenizer_files(proto: bytes, chat_template: str) -> tuple[dict, dict, list[int]]:
    import sentencepiece as spm

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
        "chat_template": chat_template,
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


def _np_dtype(backbone) -> str:
    return str(np.asarray(backbone.get_layer("token_embedding").embeddings.numpy()).dtype)
