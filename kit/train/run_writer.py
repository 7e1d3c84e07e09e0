"""What a fine-tune writes as it runs: history.csv, TensorBoard scalars and checkpoints, from process 0 only.

With several processes (`kit.model.multihost`) every one runs these callbacks,
because gathering sharded values for a checkpoint is a collective, but only
process 0 touches files, and everyone waits until a checkpoint is in place.
"""

from __future__ import annotations

import csv
import io

import kit  # noqa: F401
from kit.atomic import write_text
from kit.model import multihost
from kit.runs import RunPaths
from kit.train.checkpoint import LoopState, save_checkpoint
from kit.train.loop import Engine
from kit.train.tensorboard import ScalarWriter

HISTORY_COLUMNS = ("step", "epoch", "lr", "train_loss", "grad_norm", "val_loss", "val_ppl", "tokens", "elapsed_s")
__all__ = ["HISTORY_COLUMNS", "LoopState", "RunWriter", "write_history"]


def write_history(paths: RunPaths, history: list[dict]) -> None:
    """`history.csv` of the logged rows so far, rewritten atomically.

    Example:
        >>> write_history(RunPaths("runs/tiny-lora"), [{"step": 1, "train_loss": 2.5}])  # doctest: +SKIP
    """
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text(paths.history, buf.getvalue())


class RunWriter:
    """The loop's callbacks: history.csv and TensorBoard on each log, checkpoints, the best adapter."""

    def __init__(self, paths: RunPaths, engine: Engine, *, best, keep_last: int, total_steps: int):
        self.paths, self.engine, self.best = paths, engine, best
        self.keep_last, self.total_steps = keep_last, total_steps
        # Process 0 alone writes files; the others run the same callbacks for their collectives.
        self.writer = ScalarWriter(paths.tensorboard) if multihost.is_writer() else None

    def on_log(self, st: LoopState, row: dict) -> None:
        if self.writer is None:
            return
        write_history(self.paths, st.history)
        scalars = {
            f"{'val' if k.startswith('val') else 'train'}/{k}": v
            for k, v in row.items()
            if k not in ("step", "epoch", "elapsed_s")
        }
        self.writer.add_scalars(row["step"], scalars)

    def on_best(self, st: LoopState) -> None:
        self.best = self.engine.trainable_numpy()

    def on_checkpoint(self, st: LoopState) -> None:
        # Every process gathers (a collective when values are sharded over hosts); process 0 writes
        # the one copy; nobody goes on until it is in place, so a --resume on any host finds it.
        trainable, optimizer = self.engine.trainable_numpy(), self.engine.optimizer_numpy()
        if multihost.is_writer():
            save_checkpoint(
                self.paths,
                st,
                trainable,
                optimizer,
                best=self.best,
                keep_last=self.keep_last,
                extra={"total_steps": self.total_steps, "processes": multihost.process_count()},
            )
        multihost.barrier(f"checkpoint-{st.step}")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
