"""The evaluate stage: report files and schema, repeatability, slices/win rates, atomic writes, CLI errors."""

from __future__ import annotations

import json
import shutil

import datasets
import numpy as np
import pytest

from kit.cli import main
from kit.errors import UserError
from kit.eval import EvalOptions, evaluate_models, reference_nll, report, select_requests
from kit.eval.scoring import HUMAN
from kit.generate import SamplerSpec
from kit.testing import train_micro_run

# Small but complete: every model, the human column, slices and the comparator export.
FAST = EvalOptions(limit=10, seed=3, max_new_tokens=12, batch_size=8, n_resamples=200, top_rubrics=2, progress=False)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_preset, tiny_prepared):
    """A copy of the tiny data (the judge cache is written into it), a base run and a LoRA run."""
    root = tmp_path_factory.mktemp("evaluate")
    data = root / "prepared"
    shutil.copytree(tiny_prepared, data)
    runs = [
        str(train_micro_run(root, tiny_preset, data, name, **extra))
        for name, extra in (("micro-base", {"lora.enabled": "false"}), ("micro-lora", {}))
    ]
    result = evaluate_models(runs, data, out=root / "reports" / "a", options=FAST)
    return {"root": root, "data": data, "runs": runs, "result": result, "report": root / "reports" / "a"}


@pytest.mark.slow
def test_report_files_and_schema(setup):
    out = setup["report"]
    assert sorted(p.name for p in out.iterdir()) == [
        ".kit-output.json",  # the kit's marker, written last (kit.atomic.output_dir)
        "llm_comparator",
        "metrics.json",
        "report.md",
        "samples.jsonl",
    ]
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert m["schema"] == report.SCHEMA and m["synthetic"] is False
    assert m["columns_order"] == ["micro-base", "micro-lora", HUMAN]
    assert m["requests"]["n"] == 10 and m["requests"]["mode"] == "balanced"
    cols = m["metrics"]["columns"]
    for name in ("micro-base", "micro-lora"):
        for key in (
            "rating_accuracy",
            "rating_balanced_accuracy",
            "rating_mae",
            "rubric_top3",
            "chrf",
            "bleu",
            "rouge_l",
            "corpus_chrf",
            "corpus_bleu",
            "distinct_1",
            "distinct_2",
            "self_bleu",
            "repeated_4gram",
            "length_ratio",
            "ref_perplexity",
        ):
            ci = cols[name][key]
            assert set(ci) == {"value", "low", "high", "confidence", "n"}, key
            assert ci["confidence"] == 0.95 and ci["low"] <= ci["high"], key
            assert ci["low"] - 1e-9 <= ci["value"] <= ci["high"] + 1e-9, key
    # the human reference is a column: control ceilings yes, reference-based scores no
    assert "rating_accuracy" in cols[HUMAN] and "chrf" not in cols[HUMAN] and "ref_perplexity" not in cols[HUMAN]
    # the model's perplexity of the references is the per-request form of the validation loss
    assert cols["micro-lora"]["ref_perplexity"]["value"] < cols["micro-base"]["ref_perplexity"]["value"]
    t = m["timings"]
    assert {"judges_s", "scoring_s", "total_s"} <= set(t) and t["models"]["micro-lora"]["generate_s"] > 0


@pytest.mark.slow
def test_slices_win_rates_and_differences(setup):
    m = setup["result"]["metrics"]
    ratings = setup["result"]["requests"]["ratings"]
    assert set(m["slices"]["rating"]) == set(ratings)
    assert sum(s["n"] for s in m["slices"]["rating"].values()) == 10
    assert len(m["slices"]["rubric"]) == 2
    one = next(iter(m["slices"]["rating"].values()))
    assert "rating_accuracy" in one["columns"]["micro-lora"] and "rating_accuracy" in one["columns"][HUMAN]
    wr = m["win_rates"]
    assert set(wr) == {"micro-base vs micro-lora", "micro-base vs human", "micro-lora vs human"}
    w = wr["micro-base vs micro-lora"]["chrf"]
    assert w["n"] == 10 and abs(w["wins"] + w["losses"] + w["ties"] - 1) < 1e-9
    assert "chrf" not in wr["micro-lora vs human"] and "keyword_coverage" in wr["micro-lora vs human"]
    assert "keyword_coverage" in m["difference_vs_micro-base"]["micro-lora"]


@pytest.mark.slow
def test_samples_and_comparator_export(setup):
    out = setup["report"]
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 10
    r = rows[0]
    assert set(r["outputs"]) == {"micro-base", "micro-lora"} and r["reference"]
    assert set(r["request"]) == {"rubrics", "rating", "keywords", "name", "address"}
    assert set(r["scores"]) == {"micro-base", "micro-lora", HUMAN}
    assert r["scores"][HUMAN]["chrf"] is None and isinstance(r["scores"]["micro-lora"]["chrf"], float)
    files = sorted(p.name for p in (out / "llm_comparator").iterdir())
    assert files == ["micro-base__vs__human.json", "micro-base__vs__micro-lora.json", "micro-lora__vs__human.json"]
    lc = json.loads((out / "llm_comparator" / "micro-base__vs__micro-lora.json").read_text(encoding="utf-8"))
    assert set(lc) == {"metadata", "models", "examples"}
    assert lc["models"] == [{"name": "micro-base"}, {"name": "micro-lora"}]
    ex = lc["examples"][0]
    assert {
        "input_text",
        "tags",
        "output_text_a",
        "output_text_b",
        "score",
        "individual_rater_scores",
        "custom_fields",
    } <= set(ex)
    assert ex["output_text_a"] == r["outputs"]["micro-base"] and -1.5 <= ex["score"] <= 1.5
    names = {f["name"] for f in lc["metadata"]["custom_fields_schema"]}
    assert names <= set(ex["custom_fields"])
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "| metric | micro-base | micro-lora | human |" in md and "rating acc." in md


@pytest.mark.slow
def test_same_seed_same_samples(setup):
    again = setup["root"] / "reports" / "again"
    evaluate_models(setup["runs"], setup["data"], out=again, options=FAST)
    assert (again / "samples.jsonl").read_bytes() == (setup["report"] / "samples.jsonl").read_bytes()
    first = json.loads((setup["report"] / "metrics.json").read_text())["metrics"]
    assert json.loads((again / "metrics.json").read_text())["metrics"] == first


@pytest.mark.slow
def test_reference_nll_is_the_training_loss(setup):
    """Per-request NLL summed over requests equals the masked training loss on the same examples."""
    from kit.data.batching import Encoder
    from kit.data.prompt import build_target
    from kit.model import load_run
    from kit.train.loop import Engine
    from kit.train.optim import make_optimizer

    rows = datasets.load_from_disk(str(setup["data"]))["validation"].select(range(6))
    lm = load_run(setup["runs"][1])
    nll, tokens = reference_nll(lm, rows["prompt"], rows["text"], buckets=(64, 128), batch_size=4)
    enc = Encoder(lm.preprocessor.tokenizer.proto)
    examples = enc.encode_pairs(rows["prompt"], [build_target(t) for t in rows["text"]])
    engine = Engine(lm, make_optimizer(learning_rate=1e-3, warmup_steps=0, total_steps=1), pad_id=enc.pad_id)
    loss = engine.loss_on(examples, buckets=(64, 128), batch_size=4)
    assert np.all(tokens > 0)
    np.testing.assert_allclose(nll.sum() / tokens.sum(), loss, rtol=1e-5)


@pytest.mark.slow
def test_failed_run_leaves_no_partial_report(setup, monkeypatch):
    out = setup["root"] / "reports" / "broken"

    def boom(result, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "render_markdown", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        report.write_report(out, setup["result"])
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".broken")]
    # an existing report is kept whole when its replacement fails
    with pytest.raises(RuntimeError):
        report.write_report(setup["report"], setup["result"], overwrite=True)
    assert (setup["report"] / "report.md").is_file()


def test_select_requests_balanced_and_random():
    ratings = [5] * 200 + [4] * 20 + [1] * 15 + [2] * 5 + [3] * 8
    rows = select_requests(ratings, limit=50, seed=0)
    counts = {r: sum(ratings[i] == r for i in rows) for r in (1, 2, 3, 4, 5)}
    assert counts == {1: 12, 2: 5, 3: 8, 4: 12, 5: 13} or (sum(counts.values()) == 50 and counts[2] == 5)
    assert len(set(rows)) == 50 and rows == sorted(rows)
    assert select_requests(ratings, limit=None, seed=1) == list(range(len(ratings)))
    natural = select_requests(ratings, limit=50, seed=0, mode="random")
    assert len(natural) == 50 and natural != rows


@pytest.mark.slow
def test_cli_missing_run_exits_2(setup, capsys):
    code = main(
        [
            "evaluate",
            "--models",
            setup["runs"][0],
            str(setup["root"] / "runs" / "nope"),
            "--data",
            str(setup["data"]),
            "--out",
            str(setup["root"] / "reports" / "x"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: Run not found:") and "nope" in err and "\n" not in err
    assert not (setup["root"] / "reports" / "x").exists()


@pytest.mark.slow
def test_cli_empty_or_unknown_split_exits_2(setup, tmp_path, capsys):
    dd = datasets.load_from_disk(str(setup["data"]))
    empty = datasets.DatasetDict({**dd, "test": dd["test"].select([])})
    empty.save_to_disk(str(tmp_path / "empty"))
    args = ["evaluate", "--models", setup["runs"][0], "--out", str(tmp_path / "rep"), "--quiet"]
    assert main([*args, "--data", str(tmp_path / "empty")]) == 2
    assert "Split 'test' of" in capsys.readouterr().err and not (tmp_path / "rep").exists()
    assert main([*args, "--data", str(setup["data"]), "--split", "dev"]) == 2
    assert "has no split 'dev'" in capsys.readouterr().err
    assert main([*args, "--data", str(tmp_path / "none")]) == 2
    assert "Prepared dataset not found" in capsys.readouterr().err


def test_options_are_checked():
    with pytest.raises(UserError, match="--requests"):
        EvalOptions(requests="stratified")
    # The sampler is a SamplerSpec now (kit.generate), which checks its own name.
    with pytest.raises(UserError, match="sampler must be one of"):
        EvalOptions(sampler=SamplerSpec(name="nucleus"))
