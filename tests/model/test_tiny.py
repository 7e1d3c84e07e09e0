"""The tiny base: tokenizer with Gemma's special ids, Gemma 2 architecture, preset round trip, CLI."""

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import keras_hub
import numpy as np
import pytest

from kit.data.prepare import load_stats
from kit.data.prompt import END_OF_TURN, START_OF_TURN
from kit.errors import UserError
from kit.model.loader import load_causal_lm
from kit.model.tiny import TINY_INFO, TinySpec, build_tiny_lm, file_checksums, train_tokenizer, verify_tiny_base
from kit.testing import MICRO, make_prepared
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
    lm = build_tiny_lm(proto, MICRO)
    b = lm.backbone
    assert b.use_post_ffw_norm and b.use_post_attention_norm and b.query_head_dim_normalize
    assert b.use_sliding_window_attention and b.final_logit_soft_cap == 30.0 and b.attention_logit_soft_cap == 50.0
    assert b.vocabulary_size % 64 == 0 and b.vocabulary_size >= lm.preprocessor.tokenizer.vocabulary_size()


@pytest.mark.slow  # pretrains a tiny base
def test_make_tiny_base_round_trip(tmp_path, tiny_prepared):
    data = _with_stats(tmp_path / "prepared", tiny_prepared)
    spec = dataclasses.replace(MICRO, buckets=(64, 128), max_steps=12, learning_rate=1e-2, warmup_steps=2)
    info = make_tiny_base(data, tmp_path / "tiny-base", spec, progress=False, command="kit tiny --seed 0")
    p = info["pretraining"]
    assert p["steps"] == 12 and p["final_val_loss"] < p["initial_val_loss"]
    saved = json.loads((tmp_path / "tiny-base" / TINY_INFO).read_text())
    assert saved["parameters"] == info["parameters"] and saved["command"] == "kit tiny --seed 0"
    assert saved["data_fingerprint"] == load_stats(data)["fingerprint"]
    assert saved["files"] == file_checksums(tmp_path / "tiny-base") and "model.weights.h5" in saved["files"]
    assert verify_tiny_base(tmp_path / "tiny-base", data_fingerprint=saved["data_fingerprint"]) == saved
    lm = keras_hub.models.GemmaCausalLM.from_preset(str(tmp_path / "tiny-base"))
    x = {"token_ids": np.array([[2, 10, 11]], "int32"), "padding_mask": np.ones((1, 3), "int32")}
    assert np.isfinite(np.asarray(lm(x))).all()
    out = lm.generate("Отличное", max_length=16)
    assert isinstance(out, str) and out.startswith("Отличное")


@pytest.mark.slow  # pretrains two tiny bases
def test_make_tiny_base_pretrains_on_extra_data_less_the_data_reviews(tmp_path, tiny_prepared):
    """--extra-data: its rows join pretraining, except any review text of --data (so no test review leaks)."""
    import datasets

    from kit.data.prepare import load_prepared
    from kit.train.pretrain import extra_rows

    data = _with_stats(tmp_path / "prepared", tiny_prepared)
    main_dd = load_prepared(data)
    fresh = make_prepared(tmp_path / "fresh-src", train=24, validation=4, test=4, seed=7)
    # The extra corpus holds 32 new reviews plus 5 of the main data's test reviews.
    leaked = main_dd["test"].select(range(5))
    extra_dd = datasets.DatasetDict(
        {
            "train": datasets.concatenate_datasets([fresh["train"], leaked]),
            "test": fresh["test"],
            "v": fresh["validation"],
        }
    )
    extra = tmp_path / "extra"
    extra_dd.save_to_disk(str(extra))
    held = {t for name in main_dd for t in main_dd[name]["text"]}
    rows, dropped = extra_rows(load_prepared(extra), held)
    # The fixture's phrase bank is small, so a fresh review may also repeat a main one: it is left out too.
    repeats = sum(t in held for name in fresh for t in fresh[name]["text"])
    assert dropped == 5 + repeats and len(rows["text"]) == 32 - repeats and not set(rows["text"]) & held
    spec = dataclasses.replace(MICRO, buckets=(64, 128), max_steps=2, warmup_steps=1, documents="pages+cards")
    base = make_tiny_base(data, tmp_path / "base", spec, progress=False)
    more = make_tiny_base(data, tmp_path / "more", spec, progress=False, extra_data=extra)
    assert base["extra_data"] is None
    x = more["extra_data"]
    assert (x["rows"], x["rows_left_out_as_in_data"], x["dir"]) == (32 - repeats, 5 + repeats, str(extra))
    assert x["documents"] > x["rows"] and x["fingerprint"] is None  # saved without stats.json
    assert more["pretraining"]["documents"]["train"] == base["pretraining"]["documents"]["train"] + x["documents"]
    assert json.loads((tmp_path / "more" / TINY_INFO).read_text())["extra_data"] == x
    with pytest.raises(UserError, match="is the --data dir itself"):
        make_tiny_base(data, tmp_path / "same", spec, progress=False, extra_data=data)
    only_leaked = tmp_path / "only-leaked"
    datasets.DatasetDict({"train": leaked}).save_to_disk(str(only_leaked))
    with pytest.raises(UserError, match="holds no review that is not already in"):
        make_tiny_base(data, tmp_path / "none", spec, progress=False, extra_data=only_leaked)


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

    def fake_make(data, out, spec, progress, command, overwrite, extra_data):  # stands in for the pretraining only
        seen.update(data=data, out=out, spec=spec, progress=progress, command=command, overwrite=overwrite)
        seen.update(extra_data=extra_data)
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
    assert seen["command"] is None  # argv is pytest's here; `python -m kit tiny …` records its own
    assert "val loss 2.000 -> 1.000" in capsys.readouterr().out
    assert main([*argv, "--overwrite"]) == 0 and seen["overwrite"] is True
    assert seen["extra_data"] is None
    assert main([*argv, "--extra-data", "x"]) == 0 and seen["extra_data"] == "x"
    assert main(["tiny", "--quiet"]) == 0 and seen["spec"] == TinySpec()  # no flags: the defaults


def _with_stats(path, prepared, fingerprint="a" * 64):
    """A copy of the fixture's prepared dir with the stats.json `kit data prepare` writes (its fingerprint)."""
    import shutil

    shutil.copytree(prepared, path)
    (path / "stats.json").write_text(json.dumps({"fingerprint": fingerprint}))
    return path


def _recorded_base(path, tiny_preset, fingerprint="f" * 64):
    """A copy of the micro preset with the tiny_base.json `kit tiny` writes (checksums, data fingerprint)."""
    import shutil

    shutil.copytree(tiny_preset, path)
    info = {"files": file_checksums(path), "data_fingerprint": fingerprint, "command": "kit tiny"}
    (path / TINY_INFO).write_text(json.dumps(info))
    return path


def test_verify_tiny_base_catches_changed_or_missing_files(tmp_path, tiny_preset):
    base = _recorded_base(tmp_path / "base", tiny_preset)
    assert verify_tiny_base(base)["command"] == "kit tiny"
    config = base / "config.json"
    config.write_text(config.read_text().replace('"num_layers": 2', '"num_layers": 3'))
    with pytest.raises(UserError, match=r"config.json is changed since `kit tiny` wrote it.*make tiny"):
        verify_tiny_base(base)
    with pytest.raises(UserError, match="changed since"):
        load_causal_lm(str(base))  # the one loader checks before it builds anything
    (base / "config.json").unlink()
    with pytest.raises(UserError, match="config.json is missing"):
        verify_tiny_base(base)
    assert verify_tiny_base(tiny_preset) is None  # not a `kit tiny` base: nothing to check


def test_verify_tiny_base_refuses_other_data(tmp_path, tiny_preset):
    fingerprint = "a" * 64
    base = _recorded_base(tmp_path / "base", tiny_preset, fingerprint="0" * 64)
    assert verify_tiny_base(base, data_fingerprint="0" * 64)
    with pytest.raises(UserError, match=r"pretrained on prepared data 000000000000…, not this data.*make tiny"):
        verify_tiny_base(base, data_fingerprint=fingerprint)


def test_finetune_refuses_a_tiny_base_pretrained_on_other_data(tmp_path, tiny_preset, tiny_prepared, capsys):
    from kit.cli import main

    base = _recorded_base(tmp_path / "base", tiny_preset, fingerprint="0" * 64)
    data = _with_stats(tmp_path / "prepared", tiny_prepared)
    argv = ["finetune", "--config", "configs/tiny.toml", "--set", f"model.preset={base}"]
    argv += ["--set", f"data.dir={data}", "--set", f"run.out_dir={tmp_path / 'runs'}", "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "pretrained on prepared data" in err and "make tiny" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # refused before a run dir is made


ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "models" / "tiny-base"
THRESHOLD_TOP5 = 0.8


def _makefile_value(name: str) -> str:
    """A `NAME ?= value` of the Makefile, with the `$(OTHER)` values in it expanded."""
    line = next(x for x in (ROOT / "Makefile").read_text().splitlines() if x.startswith(f"{name} "))
    return re.sub(r"\$\((\w+)\)", lambda m: _makefile_value(m.group(1)), line.split("?=", 1)[1].strip())


@pytest.fixture(scope="module")
def demo_prepared(tmp_path_factory):
    """The bundled sample, prepared exactly as `make data` prepares it."""
    from kit.cli import main

    out = tmp_path_factory.mktemp("demo") / "prepared"
    argv = ["data", "prepare", "--input", str(ROOT / _makefile_value("SAMPLE")), "--out", str(out), "--quiet"]
    assert main([*argv, *_makefile_value("PREPARE_ARGS").split()]) == 0
    return out


def test_committed_tiny_base_is_the_one_its_recipe_makes(demo_prepared):
    """models/tiny-base (what `make demo` fine-tunes): intact, made by `make tiny`, on `make data`'s data."""
    info = verify_tiny_base(COMMITTED)  # every file matches its sha256
    assert info and info["files"] and "model.weights.h5" in info["files"]
    assert info["command"] == f"kit tiny --data data/prepared --out models/tiny-base {_makefile_value('TINY_ARGS')}"
    assert info["spec"]["seed"] == 0 and info["spec"]["documents"] == "pages+cards"
    fingerprint = load_stats(demo_prepared)["fingerprint"]
    assert verify_tiny_base(COMMITTED, data_fingerprint=fingerprint) == info


@pytest.mark.slow  # a 20,000-row corpus, ~30 s
def test_committed_tiny_base_extra_corpus_is_what_make_pretrain_data_writes(tmp_path):
    """The extra pretraining corpus recorded in models/tiny-base is the one `make pretrain-data` rebuilds."""
    from kit.cli import main

    info = verify_tiny_base(COMMITTED)
    assert info["extra_data"]["dir"] == _makefile_value("PRETRAIN_DATA")
    sample, prepared = tmp_path / "extra.tskv", tmp_path / "prepared"
    rows, seed = _makefile_value("PRETRAIN_ROWS"), _makefile_value("PRETRAIN_SEED")
    assert main(["data", "synth", "--out", str(sample), "--rows", rows, "--seed", seed]) == 0
    assert main(["data", "prepare", "--input", str(sample), "--out", str(prepared), "--quiet"]) == 0
    assert load_stats(prepared)["fingerprint"] == info["extra_data"]["fingerprint"]
    assert 0 < info["extra_data"]["rows_left_out_as_in_data"] < 100 < info["extra_data"]["rows"]


def test_committed_tiny_base_ends_a_review_with_end_of_turn(demo_prepared):
    """The cause of fine-tuned reviews running to the token limit, guarded: the base must rank
    `<end_of_turn>` high where a review ends, or LoRA (embeddings frozen) cannot make top-k 5 pick it."""
    from kit.data.batching import Encoder, make_batch
    from kit.data.pages import RATING_LINE
    from kit.data.prepare import load_prepared

    lm = load_causal_lm(str(COMMITTED))
    enc = Encoder(lm.preprocessor.tokenizer.proto)
    eot = enc.sp.piece_to_id(END_OF_TURN)
    val = load_prepared(demo_prepared)["validation"].select(range(64))
    docs = [RATING_LINE.format(rating=r) + "\n" + t for r, t in zip(val["rating"], val["text"], strict=True)]
    examples = [enc.encode("", d + END_OF_TURN) for d in docs]
    length = -(-max(len(e.ids) - 1 for e in examples) // 64) * 64
    batch = make_batch(examples, length, len(examples))
    logits = np.asarray(lm(batch.x), dtype=np.float32)
    ends = [len(e.ids) - 2 for e in examples]  # the position whose next token is the end marker
    at_end = logits[np.arange(len(examples)), ends]
    rank = (at_end > at_end[:, [eot]]).sum(axis=1) + 1
    assert np.mean(rank <= 5) >= THRESHOLD_TOP5, np.bincount(rank)[:10]
