"""kit.eval.tables: a report's metrics and samples as tables (the notebooks show them)."""

from __future__ import annotations


def test_metrics_and_samples_tables():
    from kit.eval import tables

    result = {
        "columns_order": ["base", "lora", "human"],
        "metrics": {
            "columns": {
                n: {"chrf": {"value": v, "low": v - 1, "high": v + 1}}
                for n, v in (("base", 10.0), ("lora", 20.0), ("human", 100.0))
            }
        },
        "samples": [
            {
                "request": {"rubrics": ["Кафе"], "rating": 5, "keywords": []},
                "reference": "a\nb",
                "outputs": {"base": "x", "lora": "y" * 500},
            }
        ],
    }
    t = tables.metrics_table(result)
    assert t.columns.tolist() == ["base", "lora", "human"] and t.index.tolist() == ["chrf"]
    s = tables.samples_table(result, chars=50)
    assert s.loc[0, "human"] == "a ⏎ b" and len(s.loc[0, "lora"]) == 50
