"""What the notebooks call: the host they run on, smoke-mode settings, EDA tables, sweeps, the runner.

The names below load on first use: a notebook's setup cell imports
`kit.notebook.env` (standard library only) before the kit's dependencies
are installed, so this package must not import pandas or keras up front.

Example:
    >>> from kit.notebook import detect_environment
    >>> detect_environment(environ={}, exists=lambda path: False).platform
    'local'
"""

from __future__ import annotations

import importlib

_WHERE = {
    "data_label": "eda",
    "keyword_examples": "eda",
    "length_by_rating": "eda",
    "prompt_example": "eda",
    "quality_counts": "eda",
    "rating_table": "eda",
    "review_lengths": "eda",
    "top_chains": "eda",
    "top_rubrics": "eda",
    "Environment": "env",
    "default_config": "env",
    "default_runs_dir": "env",
    "detect_environment": "env",
    "hardware_report": "env",
    "install_command": "env",
    "load_secrets": "env",
    "missing_requirements": "env",
    "setup": "env",
    "execute_notebook": "runner",
    "ensure_prepared": "smoke",
    "ensure_tiny_base": "smoke",
    "smoke_overrides": "smoke",
    "best_config": "sweep",
    "best_point": "sweep",
    "grid": "sweep",
    "one_at_a_time": "sweep",
    "run_sweep": "sweep",
    "write_config": "sweep",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'kit.notebook' has no attribute {name!r}")
    return getattr(importlib.import_module(f"kit.notebook.{_WHERE[name]}"), name)
