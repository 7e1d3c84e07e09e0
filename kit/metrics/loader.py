"""Load the kit's `evaluate` modules offline, from the package directory.

`evaluate.load("rouge")` fetches the module from the Hugging Face Hub, which
fails without internet (and the Hub's `rouge` scores Russian 0.0 anyway).
The kit ships its own modules under `kit/metrics/hf/<name>/<name>.py`;
`evaluate.load` of a local directory copies the script into its module cache
and imports it without touching the network (checked in evaluate 0.4.6 with
datasets 5: `LocalEvaluationModuleFactory` never calls the Hub). We still
set `HF_EVALUATE_OFFLINE=1` so that a mistyped path fails fast instead of
trying the Hub.
"""

from __future__ import annotations

import os
from pathlib import Path

from kit.errors import UserError

HF_DIR = Path(__file__).parent / "hf"


def metric_names() -> list[str]:
    """Names of the `evaluate` modules the kit ships.

    Example:
        >>> "rouge_l_ru" in metric_names()
        True
    """
    return sorted(p.name for p in HF_DIR.iterdir() if (p / f"{p.name}.py").is_file())


def metric_path(name: str) -> Path:
    """The directory `evaluate.load` takes for metric `name`.

    Example:
        >>> metric_path("chrf").name
        'chrf'
    """
    names = metric_names()
    if name not in names:
        raise UserError(f"Unknown metric {name!r}. Available: {', '.join(names)}")
    return HF_DIR / name


def load_metric(name: str, **kwargs):
    """`evaluate.load` one of the kit's metric modules, offline.

    Results are kept in memory (`keep_in_memory=True`): no Arrow cache files
    or file locks under `~/.cache`, which a single-process evaluation does
    not need and which parallel test workers would contend for.

    Args:
        name: One of `metric_names()`.
        **kwargs: Passed to `evaluate.load`.

    Example:
        >>> m = load_metric("chrf")
        >>> round(m.compute(predictions=["Чистые номера"], references=["Чистые номера"])["chrf"], 1)
        100.0
    """
    path = metric_path(name)
    # Read by evaluate.config at import; set before the first `import evaluate`.
    os.environ["HF_EVALUATE_OFFLINE"] = "1"
    import evaluate

    kwargs.setdefault("keep_in_memory", True)
    return evaluate.load(str(path), **kwargs)
