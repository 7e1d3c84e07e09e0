"""Data: the TSKV format, the synthetic sample, cleaning, splitting, keywords, prompts."""

from __future__ import annotations

import os
from pathlib import Path

# The committed sample (SYNTHETIC, made by `kit data synth`), relative to the repo.
SAMPLE_DIR = Path(__file__).resolve().parents[2] / "data" / "sample"
SAMPLE_FILE = SAMPLE_DIR / "geo-reviews-sample.tskv"


def is_synthetic_sample(path: str | os.PathLike) -> bool:
    """True for files in the repo's `data/sample/` directory, the bundled synthetic data.

    `prepare` records this in `stats.json` so every later stage (runs,
    reports, the app) can label results that come from synthetic reviews.

    Example:
        >>> is_synthetic_sample(SAMPLE_FILE), is_synthetic_sample("data/raw/geo-reviews-dataset-2023.tskv")
        (True, False)
    """
    return Path(path).resolve().parent == SAMPLE_DIR
