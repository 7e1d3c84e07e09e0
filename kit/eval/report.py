"""The report dir of `kit evaluate`, written atomically as a whole.

    reports/<name>/
      metrics.json        per column (each model + human): every metric with its
                          95 % bootstrap interval; slices per requested rating and
                          top rubrics; pairwise win rates; paired differences vs the
                          first model; requests, sampler, judges, timings
      samples.jsonl       one line per request: the request, the human reference,
                          each model's output and every per-sample score
      report.md           the side-by-side table (what `make demo` prints)
      llm_comparator/     `<A>__vs__<B>.json` for every pair of columns, in the
                          LLM Comparator format (PAIR-code/llm-comparator), so the
                          same samples open in its app

LLM Comparator format (from the app's `client/lib/types.ts` and
`docs/data/example_tiny.json`): `{"metadata": {"source_path",
"custom_fields_schema": [{"name", "type"}]}, "models": [{"name"}, {"name"}],
"examples": [{"input_text", "tags", "output_text_a", "output_text_b", "score",
"individual_rater_scores", "custom_fields"}]}`. `score` > 0 means A is better
(the app's judge scale is -1.5..1.5); we have no LLM judge, so `score` is
1.5 × the difference of the two outputs' *control score* (the mean of
rating hit, rubric top-3 hit and keyword coverage, each 0–1), and
`individual_rater_scores` is empty. Per-output numbers are `per_model_number`
custom fields (`[value_a, value_b]`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from kit.atomic import atomic_dir, write_json, write_text
from kit.eval.scoring import BY_KEY, HEADLINE, HUMAN

SCHEMA = "kit.report/1"
METRICS_JSON = "metrics.json"
SAMPLES_JSONL = "samples.jsonl"
REPORT_MD = "report.md"
COMPARATOR_DIR = "llm_comparator"
# Per-sample scores kept in samples.jsonl (the rest are in metrics.json only).
SAMPLE_KEYS = (
    "rating_predicted",
    "rating_accuracy",
    "rating_mae",
    "rubric_top3",
    "keyword_coverage",
    "chrf",
    "bleu",
    "rouge_l",
    "self_bleu",
    "repeated_4gram",
    "length_ratio",
    "words",
    "ref_perplexity",
)
COMPARATOR_FIELDS = ("rating_predicted", "rating_accuracy", "rubric_top3", "keyword_coverage", "chrf", "words")
# The win rates report.md lists (the Metrics page shows them all): the control scores and chrF++.
REPORT_WIN_RATES = ("rating_accuracy", "keyword_coverage", "rubric_top3", "chrf")
ARROWS = {True: " ↑", False: " ↓", None: ""}


def _clean(value):
    """JSON-safe: numpy scalars to Python, NaN/inf to None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_clean(v) for v in value.tolist()]
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    if isinstance(value, float | np.floating):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def sample_rows(
    requests: Sequence[Mapping],
    texts: Mapping[str, Sequence[str]],
    columns: Mapping[str, Mapping[str, np.ndarray]],
    extra: Mapping[str, Mapping],
    names: Sequence[str],
) -> list[dict]:
    """The `samples.jsonl` rows: request, reference, each model's output and scores.

    Example:
        >>> rows = sample_rows([{"row": 3, "rating": 5, "rubrics": ["Кафе"], "keywords": [], "name_ru": None,
        ...     "address": None, "prompt": "p", "text": "Чисто"}], {"m": ["Грязно"], "human": ["Чисто"]},
        ...     {"m": {"chrf": np.array([1.0])}, "human": {"chrf": np.array([np.nan])}}, {}, ["m"])
        >>> rows[0]["outputs"]["m"], rows[0]["scores"]["human"]["chrf"]
        ('Грязно', None)
    """
    out = []
    for i, r in enumerate(requests):
        row = {
            "id": i,
            "split_row": r.get("row"),
            "request": {
                "rubrics": list(r["rubrics"]),
                "rating": int(r["rating"]),
                "keywords": list(r["keywords"]),
                "name": r.get("name_ru"),
                "address": r.get("address"),
            },
            "prompt": r["prompt"],
            "reference": r["text"],
            "outputs": {n: texts[n][i] for n in names},
            "scores": {c: {k: _clean(float(col[k][i])) for k in SAMPLE_KEYS if k in col} for c, col in columns.items()},
        }
        gen = {
            n: {k: _clean(v[i]) for k, v in extra.get(n, {}).items() if k in ("new_tokens", "stopped")}
            for n in names
            if n in extra
        }
        if gen:
            row["generation"] = gen
        out.append(row)
    return out


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


def headline_table(result: Mapping, metrics: Sequence[str] = HEADLINE) -> str:
    """The side-by-side markdown table: a row per metric, a column per model plus human.

    Example:
        >>> r = {"columns_order": ["m", "human"], "metrics": {"columns": {"m": {"rating_accuracy":
        ...     {"value": 0.5, "low": 0.4, "high": 0.6}}, "human": {}}}}
        >>> print(headline_table(r, ["rating_accuracy"]))
        | metric | m | human |
        |---|---|---|
        | rating acc. ↑ | 0.500 [0.400, 0.600] | — |
    """
    order = result["columns_order"]
    lines = ["| metric | " + " | ".join(order) + " |", "|---" * (len(order) + 1) + "|"]
    for row in headline_rows(result, metrics):
        lines.append(f"| {row.title} | " + " | ".join(row.cells[c] for c in order) + " |")
    return "\n".join(lines)


def _slice_table(result: Mapping, kind: str, metric: str) -> str:
    order = result["columns_order"]
    slices = result["metrics"]["slices"].get(kind, {})
    lines = [f"| {kind} | n | " + " | ".join(order) + " |", "|---" * (len(order) + 2) + "|"]
    for value, s in slices.items():
        lines.append(
            f"| {value} | {s['n']} | "
            + " | ".join(interval_cell(metric, s["columns"].get(c, {}).get(metric)) for c in order)
            + " |"
        )
    return "\n".join(lines)


def render_markdown(result: Mapping, *, examples: int = 5) -> str:
    """`report.md`: headline table, slices, win rates, timings and a few side-by-side samples."""
    label = "SYNTHETIC sample data" if result.get("synthetic") else "data"
    req = result["requests"]
    sampler = result["sampler"]
    parts = [
        f"# Evaluation report ({label})",
        "",
        f"{req['n']} requests from `{result['data']['dir']}` split `{result['data']['split']}` "
        f"({req['mode']} by requested rating: {req['ratings']}; seed {req['seed']}). "
        f"Sampler `{sampler['name']}` (temperature {sampler['temperature']}, k {sampler['k']}, p {sampler['p']}, "
        f"seed {sampler['seed']}), the same for every model. Values: estimate [95 % bootstrap interval]. "
        "The `human` column is the reference review itself: its rating accuracy and rubric top-3 are the "
        "judges' ceiling.",
        "",
        headline_table(result),
        "",
        "## Rating accuracy per requested rating",
        "",
        _slice_table(result, "rating", "rating_accuracy"),
        "",
        "## Keyword coverage per requested rubric (most requested)",
        "",
        _slice_table(result, "rubric", "keyword_coverage"),
        "",
        "## Win rates (per request; ties count half)",
        "",
        "| pair | metric | A wins | B wins | ties | win rate of A |",
        "|---|---|---|---|---|---|",
    ]
    for w in win_rate_rows(result, REPORT_WIN_RATES):
        parts.append(f"| {w.pair} | {w.label} | {w.wins:.2f} | {w.losses:.2f} | {w.ties:.2f} | {w.win_rate:.2f} |")
    t = result["timings"]
    parts += [
        "",
        "## Timings",
        "",
        "| model | load s | generate s | new tokens/s | cut at limit | perplexity s |",
        "|---|---|---|---|---|---|",
    ]
    for name, mt in t["models"].items():
        parts.append(
            f"| {name} | {mt['load_s']:.1f} | {mt['generate_s']:.1f} | {mt['tokens_per_s']:.0f} | "
            f"{mt['cut_at_limit']} | {mt.get('perplexity_s', float('nan')):.1f} |"
        )
    parts += ["", f"Judges {t['judges_s']:.1f} s, scoring {t['scoring_s']:.1f} s, total {t['total_s']:.1f} s.", ""]
    parts += ["## Samples", ""]
    for row in result["samples"][:examples]:
        q = row["request"]
        parts.append(
            f"**#{row['id']}** {'; '.join(q['rubrics'])} · {q['rating']}★ · keywords: {', '.join(q['keywords']) or '—'}"
        )
        parts.append("")
        for name, text in [*row["outputs"].items(), (HUMAN, row["reference"])]:
            parts.append(f"- *{name}*: {text.replace(chr(10), ' ')}")
        parts.append("")
    return "\n".join(parts)


def _control_score(scores: Mapping) -> float | None:
    values = [scores.get(k) for k in ("rating_accuracy", "rubric_top3", "keyword_coverage")]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def comparator_export(result: Mapping, a: str, b: str) -> dict:
    """One LLM Comparator file comparing column `a` with column `b` (see the module docstring).

    Example:
        >>> r = {"data": {"dir": "d", "split": "test"}, "samples": [{"prompt": "p", "request": {"rubrics": ["Кафе"],
        ...      "rating": 5}, "outputs": {"m": "x"}, "reference": "y", "scores": {"m": {"rating_accuracy": 1.0},
        ...      "human": {"rating_accuracy": 0.0}}}]}
        >>> ex = comparator_export(r, "m", "human")["examples"][0]
        >>> ex["output_text_b"], ex["score"], ex["tags"]
        ('y', 1.5, ['Кафе', '5★'])
    """

    def text(row, name):
        return row["reference"] if name == HUMAN else row["outputs"][name]

    examples = []
    for row in result["samples"]:
        sa, sb = row["scores"].get(a, {}), row["scores"].get(b, {})
        ca, cb = _control_score(sa), _control_score(sb)
        fields = {k: [sa.get(k), sb.get(k)] for k in COMPARATOR_FIELDS}
        fields["requested_rating"] = str(row["request"]["rating"])
        examples.append(
            {
                "input_text": row["prompt"],
                "tags": [*row["request"]["rubrics"], f"{row['request']['rating']}★"],
                "output_text_a": text(row, a),
                "output_text_b": text(row, b),
                "score": None if ca is None or cb is None else round(1.5 * (ca - cb), 6),
                "individual_rater_scores": [],
                "custom_fields": fields,
            }
        )
    schema = [{"name": k, "type": "per_model_number"} for k in COMPARATOR_FIELDS]
    schema.append({"name": "requested_rating", "type": "category"})
    return {
        "metadata": {
            "source_path": f"kit evaluate: {result['data']['dir']} split {result['data']['split']}",
            "custom_fields_schema": schema,
        },
        "models": [{"name": a}, {"name": b}],
        "examples": examples,
    }


def write_report(out: str | Path, result: Mapping) -> Path:
    """Write the whole report dir atomically: a killed run leaves the old report or none, never half."""
    out = Path(out)
    metrics = {k: v for k, v in result.items() if k != "samples"}
    order = result["columns_order"]
    with atomic_dir(out) as tmp:
        write_json(tmp / METRICS_JSON, _clean(metrics))
        lines = (json.dumps(_clean(r), ensure_ascii=False, sort_keys=False) for r in result["samples"])
        write_text(tmp / SAMPLES_JSONL, "\n".join(lines) + "\n")
        write_text(tmp / REPORT_MD, render_markdown(result))
        for i, a in enumerate(order):
            for b in order[i + 1 :]:
                write_json(tmp / COMPARATOR_DIR / f"{a}__vs__{b}.json", _clean(comparator_export(result, a, b)))
    return out


def read_metrics(report_dir: str | Path) -> dict:
    """The `metrics.json` of a report dir (for the app and `make demo`'s table).

    Raises:
        UserError: the file is missing, not JSON, or not a `kit evaluate` report.
    """
    from kit.errors import UserError

    file = Path(report_dir) / METRICS_JSON
    if not file.is_file():
        raise UserError(f"Report not found: {file}. Run `kit evaluate --models ... --out {report_dir}` first.")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{file} is not valid JSON ({e}); re-run `kit evaluate --out {report_dir}`.") from None
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict) or "columns_order" not in data:
        raise UserError(
            f"{file} is not a `kit evaluate` report (no metrics / columns_order); "
            f"re-run `kit evaluate --out {report_dir}`."
        )
    return data


def list_reports(root: str | Path = "reports") -> list[Path]:
    """Report dirs directly under `root` (those with a `metrics.json`), sorted by name.

    Example:
        >>> list_reports("no/such/dir")
        []
    """
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / METRICS_JSON).is_file()
    )


def read_samples(report_dir: str | Path) -> list[dict]:
    """The `samples.jsonl` rows of a report dir.

    Raises:
        UserError: the file is missing or a line is not a sample row (the message names the line).

    Example:
        >>> read_samples("no/such/report")
        Traceback (most recent call last):
        ...
        kit.errors.UserError: Samples not found: no/such/report/samples.jsonl. Run `kit evaluate --models ... --out no/such/report` first.
    """
    from kit.errors import UserError

    file = Path(report_dir) / SAMPLES_JSONL
    if not file.is_file():
        raise UserError(f"Samples not found: {file}. Run `kit evaluate --models ... --out {report_dir}` first.")
    rows = []
    with open(file, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(
                    f"{file}:{n} is not valid JSON ({e.msg}); re-run `kit evaluate --out {report_dir}`."
                ) from None
            if not isinstance(row, dict) or not {"id", "request", "reference", "outputs", "scores"} <= set(row):
                raise UserError(
                    f"{file}:{n} is not a sample row (needs id, request, reference, outputs, scores); "
                    f"re-run `kit evaluate --out {report_dir}`."
                )
            rows.append(row)
    return rows
