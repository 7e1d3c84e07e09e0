"""`kit evaluate` on a Gemma 2 and a Gemma 3 micro run side by side: one report with both; Gemma 3's reference NLL."""

from __future__ import annotations

import dataclasses
import json
import shutil

import datasets
import numpy as np
import pytest

from kit.cli import main
from kit.eval import reference_nll
from kit.eval.scoring import HUMAN
from kit.model import load_run
from kit.testing import MICRO, micro_lm, train_micro_run

pytestmark = pytest.mark.slow  # fine-tunes a Gemma 2 and a Gemma 3 micro run (~1.5 min)

# Six layers: five sliding-window layers (window 8) and one global one.
GEMMA3_MICRO = dataclasses.replace(MICRO, num_layers=6, num_key_value_heads=2, sliding_window_size=8)
RUNS = ("micro-g2", "micro-g3")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_preset, tiny_prepared):
    """A copy of the tiny data (the judge cache is written into it), a Gemma 2 and a Gemma 3 LoRA run, one report."""
    root = tmp_path_factory.mktemp("evaluate-gemma3")
    data = root / "prepared"
    shutil.copytree(tiny_prepared, data)
    gemma3 = root / "models" / "micro-gemma3"
    micro_lm(data, GEMMA3_MICRO, family="gemma3").save_to_preset(str(gemma3))
    runs = [
        str(train_micro_run(root, preset, data, name)) for name, preset in zip(RUNS, (tiny_preset, gemma3), strict=True)
    ]
    out = root / "reports" / "both"
    flags = ["--limit", "8", "--seed", "3", "--max-new-tokens", "12", "--batch-size", "8", "--bootstrap", "200"]
    code = main(["evaluate", "--models", *runs, "--data", str(data), "--out", str(out), *flags, "--quiet"])
    return {"code": code, "data": data, "runs": runs, "report": out}


def test_one_report_holds_both_families(setup):
    assert setup["code"] == 0
    assert [type(load_run(r)).__name__ for r in setup["runs"]] == ["GemmaCausalLM", "Gemma3CausalLM"]
    m = json.loads((setup["report"] / "metrics.json").read_text(encoding="utf-8"))
    assert m["columns_order"] == [*RUNS, HUMAN] and m["requests"]["n"] == 8
    cols = m["metrics"]["columns"]
    for name in RUNS:
        for key in ("rating_accuracy", "chrf", "distinct_1", "length_ratio", "ref_perplexity"):
            ci = cols[name][key]
            assert ci["low"] - 1e-9 <= ci["value"] <= ci["high"] + 1e-9, (name, key)
        assert 1 < cols[name]["ref_perplexity"]["value"] < 1e4  # scored by its own model and tokenizer
        assert m["timings"]["models"][name]["generate_s"] > 0
    assert set(m["metrics"]["win_rates"]) == {"micro-g2 vs micro-g3", "micro-g2 vs human", "micro-g3 vs human"}
    rows = [json.loads(line) for line in (setup["report"] / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 8 and all(set(r["outputs"]) == set(RUNS) for r in rows)
    assert any(r["outputs"]["micro-g2"] != r["outputs"]["micro-g3"] for r in rows)  # two models, not one twice
    md = (setup["report"] / "report.md").read_text(encoding="utf-8")
    assert "| metric | micro-g2 | micro-g3 | human |" in md
    assert (setup["report"] / "llm_comparator" / "micro-g2__vs__micro-g3.json").is_file()


def test_gemma3_reference_nll_is_the_training_loss(setup):
    """Per-request NLL summed over requests equals the Engine's masked loss on the same examples (Gemma 3 run)."""
    from kit.data.batching import Encoder
    from kit.data.prompt import build_target
    from kit.train.loop import Engine
    from kit.train.optim import make_optimizer

    rows = datasets.load_from_disk(str(setup["data"]))["validation"].select(range(6))
    lm = load_run(setup["runs"][1])
    nll, tokens = reference_nll(lm, rows["prompt"], rows["text"], buckets=(64, 128), batch_size=4)
    enc = Encoder(lm.preprocessor.tokenizer.proto)
    examples = enc.encode_pairs(rows["prompt"], [build_target(t) for t in rows["text"]])
    assert max(len(e.ids) for e in examples) > 4 * GEMMA3_MICRO.sliding_window_size
    engine = Engine(lm, make_optimizer(learning_rate=1e-3, warmup_steps=0, total_steps=1), pad_id=enc.pad_id)
    loss = engine.loss_on(examples, buckets=(64, 128), batch_size=4)
    assert np.all(tokens > 0)
    np.testing.assert_allclose(nll.sum() / tokens.sum(), loss, rtol=1e-5)
