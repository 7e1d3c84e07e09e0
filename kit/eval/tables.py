"""Evaluation results as small pandas tables (for notebooks; the report dir holds the full detail).

Example:
    >>> result = {"columns_order": ["base", "human"], "metrics": {"columns": {
    ...     "base": {"chrf": {"value": 20.0, "low": 18.0, "high": 22.0}},
    ...     "human": {"chrf": {"value": 100.0, "low": 100.0, "high": 100.0}}}}}
    >>> metrics_table(result, ["chrf"]).loc["chrf"].tolist()
    [20.0, 100.0]
    >>> metrics_table(result, ["chrf"], intervals=True).loc["chrf", "base"]
    '20.0 [18.0, 22.0]'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from kit.eval.rows import headline_rows
from kit.eval.scoring import HEADLINE


def metrics_table(result: Mapping, metrics: Sequence[str] = HEADLINE, *, intervals: bool = False) -> pd.DataFrame:
    """Metric (rows, by key) x model column (columns) from an `evaluate_models` result or a `metrics.json`.

    The rows are report.md's (`kit.eval.rows.headline_rows`), indexed by metric key.

    Args:
        result: What `kit.eval.evaluate.evaluate_models` returns (or `metrics.json` loaded).
        metrics: Metrics to show, in order; those a column lacks are left empty.
        intervals: Cells as report.md's `"value [low, high]"` strings (95 % bootstrap) instead of numbers.
    """
    rows = headline_rows(result, metrics)
    table = {
        name: {
            r.key: None if r.values[name] is None else r.cells[name] if intervals else round(r.values[name], 4)
            for r in rows
        }
        for name in result["columns_order"]
    }
    frame = pd.DataFrame(table).reindex(list(metrics)).dropna(how="all")
    frame.index.name, frame.columns.name = "metric", "column"
    return frame


def samples_table(result: Mapping, n: int = 3, *, chars: int = 200) -> pd.DataFrame:
    """The first `n` requests side by side: request fields, the human review and each model's output.

    Example:
        >>> samples_table({"samples": [{"request": {"rubrics": ["Кафе"], "rating": 5, "keywords": ["кофе"]},
        ...                              "reference": "Вкусно.", "outputs": {"lora": "Отлично!"}}]}).columns.tolist()
        ['rubrics', 'rating', 'keywords', 'human', 'lora']
    """
    rows = []
    for sample in result["samples"][:n]:
        req = sample["request"]
        row = {
            "rubrics": "; ".join(req["rubrics"]),
            "rating": req["rating"],
            "keywords": ", ".join(req["keywords"]),
            "human": _clip(sample["reference"], chars),
        }
        row.update({name: _clip(text, chars) for name, text in sample["outputs"].items()})
        rows.append(row)
    return pd.DataFrame(rows)


def _clip(text: str, chars: int) -> str:
    text = text.replace("\n", " ⏎ ")
    return text if len(text) <= chars else text[: chars - 1] + "…"
