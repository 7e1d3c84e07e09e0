"""`kit import --gguf`: a llama.cpp GGUF file of a Gemma 2 or Gemma 3 model becomes a KerasHub preset dir.

The GGUF's metadata gives the backbone's sizes (`kit.families` builds it), its
tensors are dequantised to float32 (`gguf.quants.dequantize`: F32, F16, BF16,
Q8_0, Q5_0, Q4_K, Q6_K, ...) and assigned by name, and its vocabulary is
rebuilt as a SentencePiece model, so the dir loads with
`kit.model.loader.load_causal_lm(dir)` and with
`keras_hub.models.CausalLM.from_preset(dir)`.

What llama.cpp's converter changes, and is undone here (checked against
transformers' GGUF loader, `modeling_gguf_pytorch_utils.py`, which is the
oracle of `tests/model/test_gguf_import.py`):

* norm weights are stored as `1 + w` (Gemma's RMSNorm computes `x * (1 + w)`):
  every `*norm.weight` gets 1 subtracted, in float32 as transformers does;
* the query/key rows are NOT permuted for Gemma (llama.cpp's `permute` is
  for the `llama` architecture only; transformers' Gemma processor does not
  reverse one either), so `attn_q` / `attn_k` are HF's `q_proj` / `k_proj`;
* a GGUF tensor of shape `[in, out]` reads in numpy as `(out, in)`, the
  Hugging Face layout, so `kit.families.common`'s table applies inverted:

==============================  =======================================
GGUF (blk.N.)                   KerasHub (decoder_block_N)
==============================  =======================================
token_embd (vocab, d)           token_embedding.embeddings (tied head)
attn_q (heads*hd, d)            attention.query.kernel (heads, d, hd)
attn_k / attn_v (kv*hd, d)      attention.key / value.kernel (kv, d, hd)
attn_output (d, heads*hd)       attention.attention_output (heads, hd, d)
attn_q_norm / attn_k_norm       attention.query_norm / key_norm (Gemma 3)
attn_norm, post_attention_norm  pre_attention_norm, post_attention_norm
ffn_norm, post_ffw_norm         pre_ffw_norm, post_ffw_norm
ffn_gate / ffn_up / ffn_down    ffw_gating / ffw_gating_2 / ffw_linear (.T)
output_norm                     final_normalization
==============================  =======================================

The tokenizer: the file's pieces, scores and types become a SentencePiece
BPE model (Gemma's settings: byte fallback, no dummy prefix, whitespace kept,
digits split) with three repairs so it cuts text as transformers' tokenizer
from the same file does: `<unk>` (marked CONTROL) is UNKNOWN; pieces of
spaces only (stored with real spaces) are spelled with `▁`; control pieces
other than pad/bos/eos (`<start_of_turn>`, `<mask>`, `<unusedN>`, ...) are
USER_DEFINED, so they match inside text.

Values Gemma needs that the file may not store (Gemma 3: the 5:1 sliding
pattern, the local RoPE base 10,000, the query scaling by head_dim; Gemma 2:
the query scaling) are filled with the family's values and listed in
`import.json` under `defaults_filled`. A file that states a different value
KerasHub cannot express is refused.

Example:
    >>> info = import_gguf("gemma-3-270m-q4_k_m.gguf", "models/gemma3-270m")  # doctest: +SKIP
    >>> info["architecture"], info["tensor_types"]["Q8_0"]  # doctest: +SKIP
    ('gemma3', 10)
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from kit.atomic import OutputKind, check_output_dir, output_dir, write_json
from kit.errors import UserError

IMPORT_INFO = "import.json"
# An imported model dir; one from before the kit's marker is known by its import.json.
IMPORTED = OutputKind("imported model", "kit import", legacy=(IMPORT_INFO,))
ARCHITECTURES = ("gemma2", "gemma3")
GGUF_MAGIC = b"GGUF"
SEQUENCE_LENGTH = 1024  # the preprocessor's default length, as kit.families' load uses

# GGUF token types (gguf.TokenType) are numbered as SentencePiece's ModelProto.SentencePiece.Type.
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6
_SPACE = "\u2581"


def import_gguf(gguf: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False) -> dict:
    """Write the Gemma model of the GGUF file `gguf` as a KerasHub preset dir `out` (float32).

    Everything is read and checked before anything is written; the dir is
    written atomically under the kit's output rule (`kit.atomic`), with an
    `import.json` naming the source, its sha256, its tensor types and every
    value filled in by default.

    Args:
        gguf: A `.gguf` file of a Gemma 2 or Gemma 3 text model.
        out: Output dir: new or empty, or (with `overwrite`) an earlier import.
        overwrite: Replace an earlier `kit import` at `out`.

    Returns:
        What was written (also `out/import.json`).

    Raises:
        UserError: the file is missing, not a GGUF, truncated, of another
            architecture, lacks a tokenizer or tensors; or `out` may not be written.

    Example:
        >>> import_gguf("gemma-3-270m-q4_k_m.gguf", "models/gemma3-270m")["architecture"]  # doctest: +SKIP
        'gemma3'
    """
    started = time.perf_counter()
    check_output_dir(out, IMPORTED, overwrite=overwrite)
    reader = read_gguf(gguf)
    arch, config, filled = backbone_config(reader)
    proto = tokenizer_proto(reader)
    tensors = dequantized(reader)
    lm = build_model(arch, config, proto, tensors)
    info = {
        "source": Path(gguf).name,
        "sha256": file_sha256(gguf),
        "size_bytes": Path(gguf).stat().st_size,
        "name": _field(reader, "general.name"),
        "license": _field(reader, "general.license"),
        "architecture": arch,
        "tensor_types": dict(sorted(Counter(t.tensor_type.name for t in reader.tensors).items())),
        "tensors": len(reader.tensors),
        "dtype": "float32",
        "backbone": {k: v for k, v in config.items() if k != "image_size"},
        "defaults_filled": filled,
        "norms": "GGUF stores 1 + w; 1 subtracted (as transformers' GGUF loader does)",
        "parameters": int(sum(np.prod(v.shape) for v in lm.backbone.weights)),
    }
    with output_dir(out, IMPORTED, overwrite=overwrite) as tmp:
        lm.save_to_preset(str(tmp))
        info["seconds"] = round(time.perf_counter() - started, 1)
        write_json(Path(tmp) / IMPORT_INFO, info)
    return info


def read_gguf(path: str | os.PathLike):
    """A `gguf.GGUFReader` on `path`, after checking it is a whole GGUF file.

    Raises:
        UserError: missing, not a GGUF (magic), unreadable, or shorter than its tensors need.

    Example:
        >>> read_gguf("gemma-3-270m-q4_k_m.gguf").fields["general.architecture"].contents()  # doctest: +SKIP
        'gemma3'
    """
    from gguf import GGUFReader

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} is not a file; give --gguf a .gguf model file.")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise UserError(f"{path} is not a GGUF file (it does not start with 'GGUF').")
    try:
        reader = GGUFReader(str(path))
    except Exception as e:  # the reader raises ValueError/IndexError/... on a cut header
        raise UserError(f"{path} is not a readable GGUF file ({type(e).__name__}: {e}); is it truncated?") from None
    size = path.stat().st_size
    for t in reader.tensors:
        if t.data_offset + t.n_bytes > size or t.data.nbytes != t.n_bytes:
            raise UserError(f"{path} is truncated: tensor {t.name} ends past the file's {size} bytes.")
    return reader


def _field(reader, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def backbone_config(reader) -> tuple[str, dict, dict]:
    """`(architecture, KerasHub backbone config, values filled by default)` from a GGUF's metadata.

    Raises:
        UserError: the architecture is not Gemma 2/3, a size is missing, or the
            file states a value KerasHub's backbone cannot express.

    Example:
        >>> arch, config, filled = backbone_config(read_gguf("gemma-3-270m-q4_k_m.gguf"))  # doctest: +SKIP
        >>> config["sliding_window_size"], filled["sliding_window_pattern"]  # doctest: +SKIP
        (512, 6)
    """
    from kit.families import family_named

    arch = _field(reader, "general.architecture")
    if arch not in ARCHITECTURES:
        raise UserError(
            f"The GGUF's architecture is {arch!r}; `kit import` reads Gemma 2 and Gemma 3 ({', '.join(ARCHITECTURES)})."
        )

    def need(key: str):
        value = _field(reader, f"{arch}.{key}")
        if value is None:
            raise UserError(f"The GGUF lacks {arch}.{key}: it is not a complete {arch} model file.")
        return value

    embd = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    if embd is None:
        raise UserError("The GGUF has no token_embd.weight tensor: it is not a complete Gemma model file.")
    hidden, heads = int(need("embedding_length")), int(need("attention.head_count"))
    head_dim = int(_field(reader, f"{arch}.attention.key_length", hidden // heads))
    value_dim = int(_field(reader, f"{arch}.attention.value_length", head_dim))
    if value_dim != head_dim:
        raise UserError(
            f"The GGUF's value heads ({value_dim}) differ from its key heads ({head_dim}); Gemma's are equal."
        )
    ffn = int(need("feed_forward_length"))
    family = family_named(arch)
    sizes = {
        "num_layers": int(need("block_count")),
        "num_query_heads": heads,
        "num_key_value_heads": int(_field(reader, f"{arch}.attention.head_count_kv", heads)),
        "hidden_dim": hidden,
        # Gemma 3's intermediate_dim is each gated projection's width, Gemma 2's twice it (kit.families).
        "intermediate_dim": family.intermediate_dim(ffn),
        "head_dim": head_dim,
        "layer_norm_epsilon": float(_field(reader, f"{arch}.attention.layer_norm_rms_epsilon", 1e-6)),
    }
    window = _field(reader, f"{arch}.attention.sliding_window")
    filled: dict[str, Any] = {}
    config = family.tiny_config(int(embd.shape[1]), **sizes)  # GGUF shape is [d, vocab]
    config["use_sliding_window_attention"] = window is not None
    if window is not None:
        config["sliding_window_size"] = int(window)
    config["dropout"] = 0
    # Not in a llama.cpp Gemma GGUF: the query scaling. Gemma 2 2B/9B and every Gemma 3 text size scale
    # queries by 1/sqrt(head_dim) (query_pre_attn_scalar = head_dim); KerasHub's Gemma 3 block always does.
    filled["query_pre_attn_scalar"] = head_dim
    config["query_head_dim_normalize"] = True
    if arch == "gemma3":
        _fill_gemma3(reader, config, filled)
    else:
        _fill_gemma2(reader, config, filled)
    return arch, config, filled


def _fill_gemma3(reader, config: dict, filled: dict) -> None:
    from kit.families import gemma3

    def stated_or_default(key: str, default, name: str):
        value = _field(reader, key)
        if value is None:
            filled[name] = default
            return default
        return value

    pattern = stated_or_default(
        "gemma3.attention.sliding_window_pattern", gemma3.SLIDING_PATTERN, "sliding_window_pattern"
    )
    local = stated_or_default("gemma3.rope.freq_base_swa", gemma3.LOCAL_ROPE_BASE, "local_rope_base")
    base = stated_or_default("gemma3.rope.freq_base", gemma3.GLOBAL_ROPE_BASE, "global_rope_base")
    # KerasHub's Gemma3Backbone hard-codes these three; a file that says otherwise is another model.
    for name, value, expected in (
        ("sliding window pattern", pattern, gemma3.SLIDING_PATTERN),
        ("local RoPE base", local, gemma3.LOCAL_ROPE_BASE),
        ("global RoPE base", base, gemma3.GLOBAL_ROPE_BASE),
    ):
        if not isinstance(value, (int, float)) or float(value) != float(expected):
            raise UserError(
                f"The GGUF's {name} is {value}; KerasHub's Gemma 3 has {expected:g} (no other is supported)."
            )
    scaling = _field(reader, "gemma3.rope.scaling.type")
    factor = _field(reader, "gemma3.rope.scaling.factor")
    if scaling not in (None, "none", "linear"):
        raise UserError(f"The GGUF's RoPE scaling is {scaling!r}; KerasHub's Gemma 3 scales linearly or not at all.")
    config["global_rope_scaling_factor"] = float(factor) if scaling == "linear" and factor else 1.0
    for key in ("attn_logit_softcapping", "final_logit_softcapping"):
        if _field(reader, f"gemma3.{key}") is not None:
            raise UserError(f"The GGUF states gemma3.{key}; no Gemma 3 has a soft cap and the kit does not import one.")


def _fill_gemma2(reader, config: dict, filled: dict) -> None:
    base = _field(reader, "gemma2.rope.freq_base")
    if base is not None and float(base) != 10_000.0:
        raise UserError(f"The GGUF's RoPE base is {base}; KerasHub's Gemma 2 has 10000 (no other is supported).")
    for key, name in (
        ("attn_logit_softcapping", "attention_logit_soft_cap"),
        ("final_logit_softcapping", "final_logit_soft_cap"),
    ):
        value = _field(reader, f"gemma2.{key}")
        config[name] = None if value is None else float(value)
        if value is None:
            filled[name] = None  # a Gemma 2 file without caps: imported without (say so)


def tokenizer_proto(reader) -> bytes:
    """The serialized SentencePiece model of a GGUF's `llama` (SentencePiece) vocabulary, repaired for Gemma.

    Raises:
        UserError: no tokenizer, a tokenizer that is not SentencePiece, or pieces that collide.

    Example:
        >>> import sentencepiece as spm
        >>> sp = spm.SentencePieceProcessor(model_proto=tokenizer_proto(read_gguf("g.gguf")))  # doctest: +SKIP
        >>> sp.encode("<start_of_turn>user")  # doctest: +SKIP
        [105, 2364]
    """
    from sentencepiece import sentencepiece_model_pb2 as pb

    kind = _field(reader, "tokenizer.ggml.model")
    if kind is None:
        raise UserError("The GGUF has no tokenizer (tokenizer.ggml.model); `kit import` needs the model's vocabulary.")
    if kind != "llama":
        raise UserError(f"The GGUF's tokenizer is {kind!r}; Gemma's is SentencePiece ('llama').")
    tokens = _field(reader, "tokenizer.ggml.tokens")
    scores = _field(reader, "tokenizer.ggml.scores")
    types = _field(reader, "tokenizer.ggml.token_type")
    if not tokens or scores is None or types is None or not len(tokens) == len(scores) == len(types):
        raise UserError("The GGUF's tokenizer lacks pieces, scores or token types (or their counts differ).")
    special = {
        name: int(_field(reader, f"tokenizer.ggml.{name}_token_id", default))
        for name, default in (("padding", 0), ("eos", 1), ("bos", 2), ("unknown", 3))
    }
    m = pb.ModelProto()
    t = m.trainer_spec
    t.model_type = pb.TrainerSpec.BPE
    t.vocab_size = len(tokens)
    t.byte_fallback = True
    t.split_digits = True
    t.allow_whitespace_only_pieces = True
    t.pad_id, t.eos_id, t.bos_id, t.unk_id = (special[k] for k in ("padding", "eos", "bos", "unknown"))
    t.pad_piece, t.eos_piece, t.bos_piece, t.unk_piece = (
        tokens[special[k]] for k in ("padding", "eos", "bos", "unknown")
    )
    n = m.normalizer_spec
    n.name = "identity"
    n.add_dummy_prefix = bool(_field(reader, "tokenizer.ggml.add_space_prefix", False))
    n.remove_extra_whitespaces = False
    n.escape_whitespaces = True
    kept_control = {special["padding"], special["eos"], special["bos"]}
    seen: set[str] = set()
    for i, (token, score, kind_) in enumerate(zip(tokens, scores, types, strict=True)):
        piece = str(token)
        if " " in piece and not piece.strip(" "):
            piece = _SPACE * len(piece)  # stored with real spaces; SentencePiece spells spaces as ▁
        kind_ = int(kind_)
        if i == special["unknown"]:
            kind_ = _UNKNOWN  # llama.cpp marks <unk> CONTROL; SentencePiece needs exactly one UNKNOWN
        elif kind_ == _CONTROL and i not in kept_control:
            kind_ = _USER_DEFINED  # <start_of_turn>, <mask>, <unusedN>: matched whole inside text, as transformers does
        if piece in seen:
            raise UserError(f"The GGUF's vocabulary spells piece {i} ({piece!r}) like an earlier one.")
        seen.add(piece)
        p = m.pieces.add()
        p.piece, p.score, p.type = piece, float(score), kind_
    return m.SerializeToString()


def dequantized(reader) -> dict[str, np.ndarray]:
    """Every tensor of a GGUF as float32 numpy, in the Hugging Face layout `(out, in)`.

    Raises:
        UserError: a tensor type the `gguf` package cannot dequantise.

    Example:
        >>> dequantized(read_gguf("gemma-3-270m-q4_k_m.gguf"))["blk.0.attn_q.weight"].shape  # doctest: +SKIP
        (1024, 640)
    """
    from gguf.quants import dequantize

    out = {}
    for t in reader.tensors:
        try:
            w = dequantize(t.data, t.tensor_type)
        except NotImplementedError:
            raise UserError(
                f"The GGUF's tensor {t.name} is {t.tensor_type.name}, which `gguf` cannot dequantise."
            ) from None
        shape = tuple(int(s) for s in reversed(t.shape))
        out[t.name] = np.asarray(w, dtype=np.float32).reshape(shape)
    return out


def keras_weights(arch: str, config: dict, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The GGUF's tensors under KerasHub names (`layer/...:weight`), reshaped and with norms un-shifted.

    Raises:
        UserError: a tensor is missing, has an unexpected shape, or is one KerasHub's Gemma has no place for.

    Example:
        >>> keras_weights("gemma3", config, tensors)["decoder_block_0/attention/query/kernel"].shape  # doctest: +SKIP
        (4, 640, 256)
    """
    heads, kv, hd, d = (config[k] for k in ("num_query_heads", "num_key_value_heads", "head_dim", "hidden_dim"))
    left = dict(tensors)

    def take(name: str, shape: tuple) -> np.ndarray:
        if name not in left:
            raise UserError(f"The GGUF lacks tensor {name}: it is not a complete {arch} model file.")
        w = left.pop(name)
        if w.shape != shape:
            raise UserError(f"The GGUF's tensor {name} is {w.shape}, expected {shape} from its metadata.")
        # llama.cpp stores Gemma norms as 1 + w (its RMSNorm multiplies by the weight alone).
        return w - np.float32(1.0) if name.endswith("norm.weight") else w

    ffn = config["intermediate_dim"] if arch == "gemma3" else config["intermediate_dim"] // 2
    w = {"token_embedding/embeddings": take("token_embd.weight", (config["vocabulary_size"], d))}
    for i in range(config["num_layers"]):
        b, k = f"blk.{i}.", f"decoder_block_{i}/"
        w[k + "attention/query/kernel"] = (
            take(b + "attn_q.weight", (heads * hd, d)).reshape(heads, hd, d).transpose(0, 2, 1)
        )
        for g, ks in (("attn_k", "key"), ("attn_v", "value")):
            w[k + f"attention/{ks}/kernel"] = (
                take(b + f"{g}.weight", (kv * hd, d)).reshape(kv, hd, d).transpose(0, 2, 1)
            )
        o = take(b + "attn_output.weight", (d, heads * hd))
        w[k + "attention/attention_output/kernel"] = o.reshape(d, heads, hd).transpose(1, 2, 0)
        if arch == "gemma3":
            w[k + "attention/query_norm/scale"] = take(b + "attn_q_norm.weight", (hd,))
            w[k + "attention/key_norm/scale"] = take(b + "attn_k_norm.weight", (hd,))
        w[k + "ffw_gating/kernel"] = take(b + "ffn_gate.weight", (ffn, d)).T
        w[k + "ffw_gating_2/kernel"] = take(b + "ffn_up.weight", (ffn, d)).T
        w[k + "ffw_linear/kernel"] = take(b + "ffn_down.weight", (d, ffn)).T
        for g, ks in (
            ("attn_norm", "pre_attention_norm"),
            ("post_attention_norm", "post_attention_norm"),
            ("ffn_norm", "pre_ffw_norm"),
            ("post_ffw_norm", "post_ffw_norm"),
        ):
            w[k + f"{ks}/scale"] = take(b + f"{g}.weight", (d,))
    w["final_normalization/scale"] = take("output_norm.weight", (d,))
    head = left.pop("output.weight", None)
    if head is not None and not np.array_equal(head, w["token_embedding/embeddings"]):
        raise UserError("The GGUF has an untied output head; KerasHub's Gemma ties it to the embedding.")
    left.pop("rope_freqs.weight", None)  # llama.cpp's own RoPE table, when a converter writes one
    if left:
        raise UserError(f"The GGUF has tensors KerasHub's {arch} has no place for: {', '.join(sorted(left)[:5])}.")
    return {n: np.ascontiguousarray(v) for n, v in w.items()}


def build_model(arch: str, config: dict, proto: bytes, tensors: dict[str, np.ndarray]):
    """The float32 `CausalLM` of the family `arch`, with the GGUF's weights assigned by name.

    Example:
        >>> lm = build_model(arch, config, tokenizer_proto(reader), dequantized(reader))  # doctest: +SKIP
    """
    from kit.families import family_named

    weights = keras_weights(arch, config, tensors)
    family = family_named(arch)
    backbone = family.build_backbone(config, "float32")
    by_path = {}
    for v in backbone.weights:
        # `decoder_block_0/attention/query/kernel` (Keras 3 variable paths), model name dropped
        by_path[v.path.split("/", 1)[1] if v.path.startswith(backbone.name + "/") else v.path] = v
    missing = sorted(set(by_path) - set(weights))
    unknown = sorted(set(weights) - set(by_path))
    if missing or unknown:  # a KerasHub layout the table above does not cover: a kit bug, not bad input
        raise RuntimeError(
            f"GGUF mapping and {type(backbone).__name__} differ: missing {missing[:3]}, unknown {unknown[:3]}"
        )
    for name, v in by_path.items():
        if tuple(v.shape) != weights[name].shape:
            raise RuntimeError(f"{name}: KerasHub {tuple(v.shape)} vs GGUF {weights[name].shape}")
        v.assign(weights[name])
    return family.causal_lm(backbone, family.tokenizer(proto), SEQUENCE_LENGTH)


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file, in hex (read in 1 MiB blocks).

    Example:
        >>> import tempfile
        >>> p = tempfile.mktemp(); _ = open(p, "wb").write(b"abc")
        >>> file_sha256(p)[:12]
        'ba7816bf8f01'
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
