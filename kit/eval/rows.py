"""The rows of every side-by-side table: headline metrics with 95 % intervals, and pairwise win rates.

One source for report.md, `kit evaluate`'s printed table, the notebooks'
`kit.eval.tables` and the app's Metrics page.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from kit.eval.scoring import BY_KEY, HEADLINE

ARROWS = {True: " ↑", False: " ↓", None: ""}


@dataclasses.dataclass(frozen=True)
class MetricRow:
    """One metric across the columns of a result, as every side-by-side table shows it.

    Attributes:
        key: Metric key (`kit.eval.scoring.METRICS`).
        label: The metric's label (`rating acc.`).
        arrow: ` ↑` (higher is better), ` ↓` (lower is better) or "".
        values: Per column (in `columns_order`), the estimate; None where the column has none.
        cells: Per column, `value [low, high]` (95 % interval) in the metric's format; "—" where none.
    """

    key: str
    label: str
    arrow: str
    values: dict[str, float | None]
    cells: dict[str, str]

    @property
    def title(self) -> str:
        """The row's title in a table: label and direction arrow (`rating acc. ↑`)."""
        return self.label + self.arrow


@dataclasses.dataclass(frozen=True)
class WinRateRow:
    """One pair's win rate on one metric (`scoring.pairwise_win_rates`); ties count half.

    Attributes:
        pair: `A vs B`.
        key: Metric key.
        label: The metric's label (no arrow: the wins already follow its direction).
        wins: Share of requests A wins.
        losses: Share of requests B wins.
        ties: Share of ties.
        win_rate: `wins + ties / 2`.
        n: Requests compared.
    """

    pair: str
    key: str
    label: str
    wins: float | None
    losses: float | None
    ties: float | None
    win_rate: float | None
    n: int | None


def interval_cell(metric: str, ci) -> str:
    """One estimate with its 95 % interval, `value [low, high]`, in the metric's format ("—" if none).

    Example:
        >>> interval_cell("chrf", {"value": 20.0, "low": 18.0, "high": 22.25}), interval_cell("chrf", None)
        ('20.0 [18.0, 22.2]', '—')
    """
    if not isinstance(ci, Mapping) or ci.get("value") is None:
        return "—"
    f = BY_KEY[metric].fmt if metric in BY_KEY else "{:.3f}"
    return f"{f.format(ci['value'])} [{f.format(ci['low'])}, {f.format(ci['high'])}]"


def headline_rows(result: Mapping, metrics: Sequence[str] = HEADLINE) -> list[MetricRow]:
    """The side-by-side rows of a result: one per metric that some column has, in `metrics` order.

    The one source of report.md's table, `kit evaluate`'s printed table,
    `kit.eval.tables.metrics_table` (the notebooks) and the app's Metrics page
    (which passes every metric key, not just the headline ones).

    Args:
        result: What `evaluate_models` returns, or a `metrics.json` loaded.
        metrics: Metric keys, in row order (default `HEADLINE`).

    Example:
        >>> r = {"columns_order": ["m", "human"], "metrics": {"columns": {"m": {"ref_perplexity":
        ...     {"value": 12.5, "low": 11.0, "high": 14.0}}, "human": {}}}}
        >>> row, = headline_rows(r)
        >>> row.title, row.values, row.cells
        ('ref. perplexity ↓', {'m': 12.5, 'human': None}, {'m': '12.50 [11.00, 14.00]', 'human': '—'})
    """
    order = result["columns_order"]
    cols = result["metrics"]["columns"]
    rows = []
    for key in metrics:
        if not any(key in (cols.get(c) or {}) for c in order):
            continue
        cis = {c: (cols.get(c) or {}).get(key) for c in order}
        m = BY_KEY.get(key)
        rows.append(
            MetricRow(
                key=key,
                label=m.label if m else key,
                arrow=ARROWS[m.higher_is_better] if m else "",
                values={c: _value(ci) for c, ci in cis.items()},
                cells={c: interval_cell(key, ci) for c, ci in cis.items()},
            )
        )
    return rows


def _value(ci) -> float | None:
    return float(ci["value"]) if isinstance(ci, Mapping) and ci.get("value") is not None else None


def win_rate_rows(result: Mapping, metrics: Sequence[str] | None = None) -> list[WinRateRow]:
    """The pairwise win rates of a result, per pair and then per metric (report.md, the Metrics page).

    Args:
        result: What `evaluate_models` returns, or a `metrics.json` loaded.
        metrics: Metric keys to keep, in this order; None keeps every stored one in stored order.

    Example:
        >>> r = {"metrics": {"win_rates": {"a vs b": {"chrf": {"wins": 0.5, "losses": 0.25, "ties": 0.25,
        ...     "win_rate": 0.625, "n": 4}}}}}
        >>> [(w.pair, w.label, w.win_rate) for w in win_rate_rows(r)], win_rate_rows(r, ["rating_accuracy"])
        ([('a vs b', 'chrF++', 0.625)], [])
    """
    rows = []
    for pair, by_metric in result["metrics"].get("win_rates", {}).items():
        for key in by_metric if metrics is None else [k for k in metrics if k in by_metric]:
            w = by_metric[key]
            if not w or not isinstance(w, Mapping):
                continue
            rows.append(
                WinRateRow(
                    pair=pair,
                    key=key,
                    label=BY_KEY[key].label if key in BY_KEY else key,
                    wins=w.get("wins"),
                    losses=w.get("losses"),
                    ties=w.get("ties"),
                    win_rate=w.get("win_rate"),
                    n=w.get("n"),
                )
            )
    return rows
