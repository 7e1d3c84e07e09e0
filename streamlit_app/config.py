"""The app's settings: where runs, reports and prepared data live, and the model cache size.

The command line wins over the environment:

    streamlit run streamlit_app/app.py -- --runs runs --reports reports --data data/prepared --max-models 2
    KIT_RUNS_DIR=runs KIT_REPORTS_DIR=reports KIT_DATA_DIR=data/prepared KIT_MAX_MODELS=2 streamlit run ...

`--max-models` bounds the model cache: how many base models stay loaded. The
runs on one base (the base itself and its fine-tunes) share one copy of it
(`kit.generate.ModelPool`), so comparing a base with its LoRA runs needs one.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from kit.errors import UserError

DEMO_HINT = "Run `make demo` (it writes runs/tiny-base, runs/tiny-lora, reports/demo and data/prepared)."


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the app was started with.

    Attributes:
        runs: The runs dir; the app generates only from runs inside it.
        reports: The reports dir (`kit evaluate --out` targets) the Metrics and Samples pages read.
        data: The prepared data dir (rubric vocabulary, stats, the test split, the judges' cache).
        max_models: How many base models the model cache keeps loaded.
    """

    runs: Path
    reports: Path
    data: Path
    max_models: int = 2


def settings(argv: list[str] | None = None) -> Settings:
    """The settings from `-- --runs ... --max-models N` (default: `sys.argv`) or the KIT_* env vars.

    Raises:
        UserError: `--max-models` is not a positive integer.

    Example:
        >>> s = settings(["--runs", "my-runs", "--max-models", "3"])
        >>> str(s.runs), s.max_models
        ('my-runs', 3)
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--runs", default=os.environ.get("KIT_RUNS_DIR", "runs"))
    parser.add_argument("--reports", default=os.environ.get("KIT_REPORTS_DIR", "reports"))
    parser.add_argument("--data", default=os.environ.get("KIT_DATA_DIR", "data/prepared"))
    parser.add_argument("--max-models", default=os.environ.get("KIT_MAX_MODELS", "2"))
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        max_models = int(args.max_models)
    except ValueError:
        max_models = 0
    if max_models < 1:
        # Shown by the app as one error line (every page calls settings()).
        raise UserError(f"--max-models (or KIT_MAX_MODELS) must be a positive integer. Received: {args.max_models!r}")
    return Settings(Path(args.runs), Path(args.reports), Path(args.data), max_models)
