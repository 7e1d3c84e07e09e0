"""The tiny base: tokenizer with Gemma's special ids, Gemma 2 architecture, preset round trip, CLI."""

import json
import subprocess
import sys

import keras_hub
import numpy as np

from kit.data.prompt import END_OF_TURN, START_OF_TURN
from kit.model.tiny import TINY_INFO, TinySpec, build_tiny_lm, train_tokenizer
from kit.train.pretrain import make_tiny_base


def test_tokenizer_special_ids_and_turn_markers():
    texts = ["Отличное место, очень вкусный кофе!\nПридём ещё.", "Ужасное обслуживание."] * 30
    proto = train_tokenizer(texts, vocab_size=500)
    tok = keras_hub.models.GemmaTokenizer(proto=proto)
    assert (tok.pad_token_id, tok.end_token_id, tok.start_token_id) == (0, 1, 2)
    assert tok.token_to_id("<unk>") == 3
    for marker in (START_OF_TURN, END_OF_TURN):
        assert len(tok(marker)) == 1  # one piece each, like the real Gemma vocabulary
    text = "Кофе вкусный.\nЗавтрак 10/10 ✓"  # unseen characters go through byte fallback
    assert tok.detokenize(tok(text)) == text


def test_tiny_architecture_is_gemma2():
    proto = train_tokenizer(["Хорошее место."] * 20, vocab_size=300)
    lm = build_tiny_lm(proto, TinySpec(num_layers=2, hidden_dim=16, intermediate_dim=32, head_dim=8))
    b = lm.backbone
    assert b.use_post_ffw_norm and b.use_post_attention_norm and b.query_head_dim_normalize
    assert b.use_sliding_window_attention and b.final_logit_soft_cap == 30.0 and b.attention_logit_soft_cap == 50.0
    assert b.vocabulary_size % 64 == 0 and b.vocabulary_size >= lm.preprocessor.tokenizer.vocabulary_size()


def test_make_tiny_base_round_trip(tmp_path, tiny_prepared):
    spec = TinySpec(
        num_layers=2,
        hidden_dim=32,
        intermediate_dim=64,
        head_dim=8,
        vocab_size=400,
        buckets=(64, 128),
        batch_size=8,
        max_steps=12,
        learning_rate=1e-2,
        warmup_steps=2,
    )
    info = make_tiny_base(tiny_prepared, tmp_path / "tiny-base", spec, progress=False)
    p = info["pretraining"]
    assert p["steps"] == 12 and p["final_val_loss"] < p["initial_val_loss"]
    assert json.loads((tmp_path / "tiny-base" / TINY_INFO).read_text())["parameters"] == info["parameters"]
    lm = keras_hub.models.GemmaCausalLM.from_preset(str(tmp_path / "tiny-base"))
    x = {"token_ids": np.array([[2, 10, 11]], "int32"), "padding_mask": np.ones((1, 3), "int32")}
    assert np.isfinite(np.asarray(lm(x))).all()
    out = lm.generate("Отличное", max_length=16)
    assert isinstance(out, str) and out.startswith("Отличное")


def test_kit_tiny_cli_bad_data_dir(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kit",
            "tiny",
            "--data",
            str(tmp_path / "missing"),
            "--out",
            str(tmp_path / "m"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "kit data prepare" in proc.stderr and "Traceback" not in proc.stderr


def test_kit_tiny_cli_passes_its_options_to_the_spec(monkeypatch, capsys):
    import kit.train.pretrain
    from kit.cli import main

    seen = {}

    def fake_make(data, out, spec, progress, overwrite):  # stands in for the minutes-long pretraining only
        seen.update(data=data, out=out, spec=spec, progress=progress, overwrite=overwrite)
        return {
            "parameters": 1,
            "vocabulary_size": 64,
            "total_seconds": 0.0,
            "pretraining": {"initial_val_loss": 2.0, "final_val_loss": 1.0},
        }

    monkeypatch.setattr(kit.train.pretrain, "make_tiny_base", fake_make)
    argv = [
        "tiny",
        "--data",
        "d",
        "--out",
        "m",
        "--documents",
        "pages",
        "--batch-size",
        "4",
        "--epochs",
        "1.5",
        "--seed",
        "3",
        "--quiet",
    ]
    assert main(argv) == 0
    spec = seen["spec"]
    assert (spec.documents, spec.batch_size, spec.epochs, spec.seed) == ("pages", 4, 1.5, 3)
    assert (seen["data"], seen["out"], seen["progress"], seen["overwrite"]) == ("d", "m", False, False)
    assert "val loss 2.000 -> 1.000" in capsys.readouterr().out
    assert main([*argv, "--overwrite"]) == 0 and seen["overwrite"] is True
    assert main(["tiny", "--quiet"]) == 0 and seen["spec"] == TinySpec()  # no flags: the defaults
