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

The rows of every table come from `kit.eval.rows`; the LLM Comparator files
from `kit.eval.comparator`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from kit.atomic import OutputKind, output_dir, write_json, write_text
from kit.eval.comparator import comparator_export
from kit.eval.rows import headline_rows, interval_cell, win_rate_rows
from kit.eval.scoring import HEADLINE, HUMAN

SCHEMA = "kit.report/1"
METRICS_JSON = "metrics.json"
SAMPLES_JSONL = "samples.jsonl"
REPORT_MD = "report.md"
COMPARATOR_DIR = "llm_comparator"
# A report dir; one from before the kit's marker is known by its metrics.json and samples.jsonl.
REPORT = OutputKind("report", "kit evaluate", legacy=(METRICS_JSON, SAMPLES_JSONL))
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
# The win rates report.md lists (the Metrics page shows them all): the control scores and chrF++.
REPORT_WIN_RATES = ("rating_accuracy", "keyword_coverage", "rubric_top3", "chrf")


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


def write_report(out: str | Path, result: Mapping, *, overwrite: bool = False) -> Path:
    """Write the whole report dir atomically: a killed or failed run leaves the old report or none, never half.

    `out` must be new, empty, or (with `overwrite`) an earlier report, which
    is replaced whole, its `votes.json` included (`kit.atomic.output_dir`).
    """
    out = Path(out)
    metrics = {k: v for k, v in result.items() if k != "samples"}
    order = result["columns_order"]
    with output_dir(out, REPORT, overwrite=overwrite) as tmp:
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
