"""Training checkpoints: trainable weights + optimizer state + loop position, written atomically.

A checkpoint is a directory `checkpoints/step_000050/` holding `state.npz`
(arrays) and `meta.json` (step, epoch, data position, best validation loss,
history so far). It is built in a temp dir and renamed into place, so a run
killed mid-write (even by SIGKILL) leaves only complete checkpoints; only the
last K are kept. For LoRA runs the arrays are the adapters alone (small).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kit.atomic import atomic_dir, write_json
from kit.errors import UserError
from kit.runs import RunPaths


@dataclasses.dataclass
class LoopState:
    """Everything besides weights that a resumed run needs to continue exactly.

    Attributes:
        step: Optimizer steps done.
        epoch: Current pass over the train split.
        position: Next micro-batch index in the current epoch's plan.
        tokens: Target tokens trained on so far.
        best_val: Best validation loss so far (None before any evaluation).
        bad_evals: Evaluations since the best one (early stopping).
        history: Logged rows (dicts) so far.
        elapsed_s: Training wall time so far, across resumes.
    """

    step: int = 0
    epoch: int = 0
    position: int = 0
    tokens: int = 0
    best_val: float | None = None
    bad_evals: int = 0
    history: list[dict] = dataclasses.field(default_factory=list)
    elapsed_s: float = 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def save_checkpoint(
    paths: RunPaths,
    state: LoopState,
    trainable: Sequence[np.ndarray],
    optimizer: Sequence[np.ndarray],
    *,
    best: Sequence[np.ndarray] | None = None,
    keep_last: int = 3,
    extra: dict | None = None,
) -> Path:
    """Write `checkpoints/step_<step>/` atomically and prune all but the last `keep_last`.

    Example:
        >>> save_checkpoint(RunPaths(d), LoopState(step=5), [np.ones(2)], [np.zeros(1)])  # doctest: +SKIP
    """
    target = paths.checkpoint(state.step)
    arrays = {f"t{i}": np.asarray(a) for i, a in enumerate(trainable)}
    arrays.update({f"o{i}": np.asarray(a) for i, a in enumerate(optimizer)})
    if best is not None:
        arrays.update({f"b{i}": np.asarray(a) for i, a in enumerate(best)})
    meta = {
        "format": 1,
        "state": state.to_dict(),
        "n_trainable": len(trainable),
        "n_optimizer": len(optimizer),
        "has_best": best is not None,
        **(extra or {}),
    }
    with atomic_dir(target) as tmp:
        np.savez(tmp / "state.npz", **arrays)
        write_json(tmp / "meta.json", meta)
    for _, old in paths.list_checkpoints()[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def load_checkpoint(
    path: str | Path,
) -> tuple[LoopState, list[np.ndarray], list[np.ndarray], list[np.ndarray] | None, dict]:
    """Read a checkpoint dir: `(state, trainable, optimizer, best or None, meta)`.

    Example:
        >>> load_checkpoint("no/such/ckpt")
        Traceback (most recent call last):
        ...
        kit.errors.UserError: Checkpoint not found or incomplete: no/such/ckpt. Start without --resume.
    """
    path = Path(path)
    if not (path / "meta.json").is_file() or not (path / "state.npz").is_file():
        raise UserError(f"Checkpoint not found or incomplete: {path}. Start without --resume.")
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    with np.load(path / "state.npz") as z:
        trainable = [z[f"t{i}"] for i in range(meta["n_trainable"])]
        optimizer = [z[f"o{i}"] for i in range(meta["n_optimizer"])]
        best = [z[f"b{i}"] for i in range(meta["n_trainable"])] if meta.get("has_best") else None
    return LoopState(**meta["state"]), trainable, optimizer, best, meta
