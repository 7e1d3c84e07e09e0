"""The evaluation stage: requests, judges, reference NLL, scoring, table rows, the report dir, votes, tables.

Example:
    >>> from kit.eval import EvalOptions, evaluate_models  # doctest: +SKIP
    >>> result = evaluate_models(["runs/tiny-base", "runs/tiny-lora"], "data/prepared",
    ...                          out="reports/demo", options=EvalOptions(limit=150))  # doctest: +SKIP
"""

from kit.eval.evaluate import evaluate_models
from kit.eval.judges import JUDGES_DIR, load_judges
from kit.eval.nll import reference_nll
from kit.eval.options import EvalOptions
from kit.eval.report import headline_table, list_reports, read_metrics, read_samples, render_markdown, write_report
from kit.eval.requests import REQUEST_MODES, select_requests
from kit.eval.rows import headline_rows, win_rate_rows
from kit.eval.scoring import BY_KEY, HEADLINE, HUMAN, METRICS
from kit.eval.tables import metrics_table, samples_table
from kit.eval.votes import VOTE_CHOICES, read_votes, save_vote, vote_key

__all__ = [
    "BY_KEY",
    "HEADLINE",
    "HUMAN",
    "JUDGES_DIR",
    "METRICS",
    "REQUEST_MODES",
    "VOTE_CHOICES",
    "EvalOptions",
    "evaluate_models",
    "headline_rows",
    "headline_table",
    "list_reports",
    "load_judges",
    "metrics_table",
    "read_metrics",
    "read_samples",
    "read_votes",
    "reference_nll",
    "render_markdown",
    "samples_table",
    "save_vote",
    "select_requests",
    "vote_key",
    "win_rate_rows",
    "write_report",
]
