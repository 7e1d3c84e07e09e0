"""Smoke mode: the smallest inputs that run every stage end to end in seconds on a CPU.

The notebooks' `SMOKE = True` switch (and their tests) use these: the bundled
SYNTHETIC sample prepared on demand, a micro tiny base pretrained for a few
steps, and `--set` overrides that make any fine-tune config a seconds-long
run. Numbers from smoke mode say that the code runs, not how good a model is.

Example:
    >>> "train.steps=4" in smoke_overrides(steps=4)
    True
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from kit.model.tiny import TinySpec
from kit.testing import SMOKE_TINY  # the micro tiny base, defined with the other test doubles


def smoke_overrides(*, steps: int = 4, max_train_rows: int = 256, max_val_rows: int = 32) -> list[str]:
    """`--set` overrides that shrink any fine-tune config to a few steps on a few rows, one bucket."""
    return [
        f"train.steps={steps}",
        f"data.max_train_rows={max_train_rows}",
        f"data.max_val_rows={max_val_rows}",
        "data.buckets=[128]",
        "data.auto_buckets=0",
        "train.batch_size=8",
        "train.grad_accum=1",
        "train.warmup_steps=1",
        "train.eval_every=0",
        "train.patience=0",  # no evaluations to stop early on (kit.config refuses patience without them)
        "train.checkpoint_every=0",
        "train.log_every=1",
        "distribution.mode=auto",
        'distribution.mesh=""',
    ]


def ensure_prepared(
    out: str | Path, input: str | Path | None = None, *, max_rows: int | None = None, progress: bool = False
) -> Path:
    """`out` as a prepared dataset: kept when it already is one, else prepared from `input` (default: the sample).

    Example:
        >>> ensure_prepared("data/prepared")  # doctest: +SKIP
        PosixPath('data/prepared')
    """
    from kit.data import SAMPLE_FILE
    from kit.data.prepare import PrepareOptions, prepare

    out = Path(out)
    if input is None:  # relative when possible, so stats.json and outputs show no machine-specific path
        input = os.path.relpath(SAMPLE_FILE) if SAMPLE_FILE.is_relative_to(Path.cwd()) else SAMPLE_FILE
    if not (out / "dataset_dict.json").is_file():
        prepare(str(input), out, options=PrepareOptions(max_rows=max_rows), progress=progress)
    return out


def ensure_tiny_base(
    out: str | Path, data_dir: str | Path, *, spec: TinySpec = SMOKE_TINY, progress: bool = False
) -> Path:
    """`out` as a KerasHub preset: kept when it exists (e.g. `make demo`'s models/tiny-base), else a
    micro tiny base (`SMOKE_TINY`) is pretrained on `data_dir` into it."""
    from kit.train.pretrain import make_tiny_base

    out = Path(out)
    if not (out / "config.json").is_file():
        make_tiny_base(data_dir, out, dataclasses.replace(spec), progress=progress)
    return out
