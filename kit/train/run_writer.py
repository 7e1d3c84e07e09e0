"""What a fine-tune writes: history.csv, TensorBoard scalars and checkpoints as it runs, then its final metrics.

With several processes (`kit.model.multihost`) every one runs these callbacks,
because gathering sharded values for a checkpoint is a collective, but only
process 0 touches files, and everyone waits until a checkpoint is in place.
"""

from __future__ import annotations

import csv
import io

import jax

import kit  # noqa: F401
from kit.atomic import write_text
from kit.metrics.perplexity import perplexity_from_loss
from kit.model import multihost
from kit.runs import RunInfo, RunPaths
from kit.train.checkpoint import LoopState, save_checkpoint
from kit.train.loop import Engine, LoopOptions, TrainingDiverged
from kit.train.tensorboard import ScalarWriter

HISTORY_COLUMNS = ("step", "epoch", "lr", "train_loss", "grad_norm", "val_loss", "val_ppl", "tokens", "elapsed_s")
__all__ = ["HISTORY_COLUMNS", "LoopState", "RunWriter", "final_metrics", "write_history"]


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


def final_metrics(state: LoopState) -> dict:
    """The `metrics` section of `run.json` from the loop's final state: first and best validation loss, steps, tokens.

    Example:
        >>> state = LoopState(step=2, tokens=90, best_val=1.0, history=[{"val_loss": 2.0}, {"train_loss": 1.5}])
        >>> m = final_metrics(state)
        >>> m["initial_val_loss"], round(m["val_ppl"], 4), m["final_train_loss"], m["steps"]
        (2.0, 2.7183, 1.5, 2)
    """
    history = state.history
    return {
        "initial_val_loss": history[0].get("val_loss") if history else None,
        "val_loss": state.best_val,
        "val_ppl": perplexity_from_loss(state.best_val) if state.best_val is not None else None,
        "final_train_loss": next((r["train_loss"] for r in reversed(history) if "train_loss" in r), None),
        "steps": state.step,
        "tokens": state.tokens,
    }


class RunWriter:
    """The loop's callbacks: history.csv and TensorBoard on each log, checkpoints, the best adapter.

    Example:
        >>> writer = RunWriter(paths, engine, best=None, keep_last=2, total_steps=8)  # doctest: +SKIP
        >>> state, status = writer.run(train, val, options, None, info=info)  # doctest: +SKIP
    """

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

    def run(self, train, val, options: LoopOptions, state: LoopState | None, *, info: RunInfo, on_estimate=None):
        """`engine.run` with these callbacks, closed after: `(state, status)`.

        A divergence is written to `run.json` (`info`) before it is raised; with
        several processes a failed collective (a peer process died) is raised
        as `kit.errors.ProcessLost`.
        """
        try:
            return self.engine.run(
                train,
                val,
                options,
                state,
                on_log=self.on_log,
                on_checkpoint=self.on_checkpoint,
                on_best=self.on_best,
                on_estimate=on_estimate,
            )
        except TrainingDiverged as e:
            info.status, info.error = "diverged", str(e)
            if multihost.is_writer():
                info.write(self.paths.root)
            raise
        except jax.errors.JaxRuntimeError as e:
            if multihost.process_count() > 1:  # a collective failed: a peer process died
                raise multihost.lost(e) from None
            raise
        finally:
            self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
