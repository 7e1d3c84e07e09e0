"""The data stage: TSKV, the synthetic sample, cleaning, splitting, keywords, THE prompt, batches.

`prepare` turns a raw `.tskv`/parquet file into the prepared dataset dir every
later stage reads; `prompt` is the one prompt template; `batching` tokenises
prompt + review exactly as training, generation and evaluation all need it.

Example:
    >>> from kit.data import build_prompt, load_prepared  # doctest: +SKIP
    >>> load_prepared("data/prepared")["train"].num_rows  # doctest: +SKIP
"""

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


# Re-exports for short notebook imports (after SAMPLE_FILE: `prepare` reads it). The
# `prepare` and `download` functions are not re-exported: they would hide their own
# modules (`from kit.data import download` is the module); import them from there.
from kit.data.batching import Encoder, Example, choose_buckets, make_batch, plan_batches  # noqa: E402
from kit.data.prepare import PrepareOptions, load_prepared, load_rubrics, load_stats  # noqa: E402
from kit.data.prompt import END_OF_TURN, START_OF_TURN, build_prompt, build_target, extract_response  # noqa: E402
from kit.data.rating_mix import mix_by_rating, rating_shares  # noqa: E402
from kit.data.tskv import Record, read_records, write_tskv  # noqa: E402

__all__ = [
    "END_OF_TURN",
    "SAMPLE_DIR",
    "SAMPLE_FILE",
    "START_OF_TURN",
    "Encoder",
    "Example",
    "PrepareOptions",
    "Record",
    "build_prompt",
    "build_target",
    "choose_buckets",
    "extract_response",
    "is_synthetic_sample",
    "load_prepared",
    "load_rubrics",
    "load_stats",
    "make_batch",
    "mix_by_rating",
    "plan_batches",
    "rating_shares",
    "read_records",
    "write_tskv",
]
