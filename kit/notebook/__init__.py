"""What the notebooks call: the host they run on, smoke-mode settings, EDA tables, sweeps, the runner.

Example:
    >>> from kit.notebook import detect_environment  # doctest: +SKIP
    >>> detect_environment().kind  # doctest: +SKIP
    'local'
"""

from kit.notebook.eda import (
    data_label,
    keyword_examples,
    length_by_rating,
    prompt_example,
    quality_counts,
    rating_table,
    review_lengths,
    top_chains,
    top_rubrics,
)
from kit.notebook.env import (
    Environment,
    default_config,
    detect_environment,
    install_command,
    load_secrets,
)
from kit.notebook.runner import execute_notebook
from kit.notebook.smoke import ensure_prepared, ensure_tiny_base, smoke_overrides
from kit.notebook.sweep import best_config, best_point, grid, one_at_a_time, run_sweep, write_config

__all__ = [
    "Environment",
    "best_config",
    "best_point",
    "data_label",
    "default_config",
    "detect_environment",
    "ensure_prepared",
    "ensure_tiny_base",
    "execute_notebook",
    "grid",
    "install_command",
    "keyword_examples",
    "length_by_rating",
    "load_secrets",
    "one_at_a_time",
    "prompt_example",
    "quality_counts",
    "rating_table",
    "review_lengths",
    "run_sweep",
    "smoke_overrides",
    "top_chains",
    "top_rubrics",
    "write_config",
]
