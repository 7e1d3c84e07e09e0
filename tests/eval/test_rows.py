"""The one source of headline and win-rate rows: report.md, `kit evaluate`'s table and the notebooks agree."""

from __future__ import annotations

import pytest

from kit.eval import report, tables
from kit.eval.report import (
    REPORT_WIN_RATES,
    headline_rows,
    headline_table,
    interval_cell,
    render_markdown,
    win_rate_rows,
)
from kit.eval.scoring import HEADLINE, HUMAN


def ci(value, low, high):
    return {"value": value, "low": low, "high": high, "confidence": 0.95, "n": 4}


def win(rate):
    return {"wins": rate, "losses": 1 - rate, "ties": 0.0, "win_rate": rate, "n": 4}


@pytest.fixture
def result() -> dict:
    """A small but complete `evaluate_models` result: two models, the human column, perplexity."""
    model = {
        "rating_accuracy": ci(0.5, 0.25, 0.75),
        "chrf": ci(20.0, 18.0, 22.0),
        "ref_perplexity": ci(12.345, 11.0, 14.0),
    }
    return {
        "synthetic": True,
        "data": {"dir": "data/prepared", "split": "test"},
        "requests": {"n": 4, "mode": "balanced", "seed": 0, "ratings": {"5": 4}},
        "sampler": {"name": "top_k", "temperature": 1.0, "k": 5, "p": 0.9, "seed": 0},
        "columns_order": ["base", "lora", HUMAN],
        "metrics": {
            "columns": {
                "base": model,
                "lora": {**model, "ref_perplexity": ci(9.5, 9.0, 10.0)},
                HUMAN: {"rating_accuracy": ci(1.0, 1.0, 1.0)},
            },
            "slices": {"rating": {"5": {"n": 4, "columns": {"base": model}}}, "rubric": {}},
            "win_rates": {
                "base vs lora": {"chrf": win(0.25), "rouge_l": win(0.5), "rating_accuracy": win(0.75)},
                "base vs human": {"rating_accuracy": win(0.0)},
            },
        },
        "timings": {
            "judges_s": 1.0,
            "scoring_s": 1.0,
            "total_s": 3.0,
            "models": {"base": {"load_s": 1.0, "generate_s": 1.0, "tokens_per_s": 10.0, "cut_at_limit": 0}},
        },
        "samples": [],
    }


def test_a_perplexity_row_everywhere_the_headline_is_shown(result):
    # The old notebook list asked for a `perplexity` key that no result has: no row at all.
    assert "ref_perplexity" in HEADLINE and "perplexity" not in HEADLINE
    line = "| ref. perplexity ↓ | 12.35 [11.00, 14.00] | 9.50 [9.00, 10.00] | — |"
    assert line in headline_table(result).splitlines()  # `kit evaluate`'s printed table
    assert line in render_markdown(result).splitlines()  # report.md
    numbers = tables.metrics_table(result)  # the notebooks
    assert numbers.loc["ref_perplexity"].tolist()[:2] == [12.345, 9.5]
    cells = tables.metrics_table(result, intervals=True)
    assert cells.loc["ref_perplexity", "lora"] == "9.50 [9.00, 10.00]"


def test_every_table_has_the_same_rows_and_cells(result):
    rows = headline_rows(result)
    assert [r.key for r in rows] == ["rating_accuracy", "chrf", "ref_perplexity"]  # HEADLINE order, present only
    md = headline_table(result).splitlines()
    assert md[2:] == [f"| {r.title} | " + " | ".join(r.cells.values()) + " |" for r in rows]
    cells = tables.metrics_table(result, intervals=True)
    assert cells.index.tolist() == [r.key for r in rows]
    for r in rows:
        # a cell the column lacks is "—" in markdown and empty in the notebook's frame
        assert [cells.loc[r.key, c] if r.values[c] is not None else "—" for c in result["columns_order"]] == list(
            r.cells.values()
        )
    assert rows[0].title == "rating acc. ↑" and rows[0].cells[HUMAN] == "1.000 [1.000, 1.000]"
    assert rows[1].values == {"base": 20.0, "lora": 20.0, HUMAN: None} and rows[1].cells["base"] == "20.0 [18.0, 22.0]"


def test_rows_only_for_metrics_some_column_has(result):
    assert headline_rows(result, ["rouge_l", "chrf"])[0].key == "chrf"
    assert len(headline_rows(result, ["rouge_l"])) == 0
    assert headline_table(result, ["rouge_l"]).count("\n") == 1  # header only
    assert interval_cell("chrf", None) == interval_cell("chrf", 3.0) == interval_cell("chrf", {"value": None}) == "—"


def test_win_rate_rows_for_the_report_and_for_the_page(result):
    page = win_rate_rows(result)
    assert [(w.pair, w.key) for w in page] == [
        ("base vs lora", "chrf"),
        ("base vs lora", "rouge_l"),
        ("base vs lora", "rating_accuracy"),
        ("base vs human", "rating_accuracy"),
    ]
    md = win_rate_rows(result, REPORT_WIN_RATES)
    assert [(w.pair, w.label) for w in md] == [
        ("base vs lora", "rating acc."),
        ("base vs lora", "chrF++"),
        ("base vs human", "rating acc."),
    ]
    text = render_markdown(result)
    assert "| base vs lora | chrF++ | 0.25 | 0.75 | 0.00 | 0.25 |" in text
    assert "ROUGE-L" not in text.split("## Win rates")[1]  # report.md keeps to REPORT_WIN_RATES
    assert win_rate_rows({"metrics": {}}) == []


def test_the_report_module_exports_the_rows():
    import kit.eval

    assert kit.eval.headline_rows is report.headline_rows and kit.eval.win_rate_rows is report.win_rate_rows
