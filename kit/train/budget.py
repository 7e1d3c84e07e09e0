"""The time budget of a fine-tune (`train.max_minutes`): will it fit, and how a stopped run goes on.

Kaggle sessions end after 9–12 hours and Colab's sooner, while the GPU
config trains a whole epoch of the real data. The loop
(`kit.train.loop.Engine.run`) stops before the budget runs out, with a
checkpoint; these helpers word the estimate logged after the first steps and
the `stopped` record of `run.json`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import kit  # noqa: F401
from kit.model import multihost

DEFAULT_RESUME = "finetune(cfg, resume=True) with the same config, or `kit finetune --config CONFIG --resume`"


def budget_estimate(
    *,
    step: int,
    total_steps: int,
    seconds_per_step: float,
    seconds_per_eval: float,
    evals_left: int,
    seconds_left: float,
    max_minutes: float,
    steps_per_epoch: float,
) -> tuple[bool, str]:
    """Whether the rest of the run fits the budget, and one log line saying so (from measured step time).

    Example:
        >>> fits, line = budget_estimate(step=5, total_steps=1000, seconds_per_step=2.0, seconds_per_eval=0.0,
        ...     evals_left=0, seconds_left=600.0, max_minutes=11.0, steps_per_epoch=1000)
        >>> budget_estimate(step=5, total_steps=100, seconds_per_step=2.0, seconds_per_eval=0.0, evals_left=0,
        ...     seconds_left=600.0, max_minutes=11.0, steps_per_epoch=50)
        (True, 'Time budget 11 min: at 2.00 s/step the remaining 95 steps need ~3 min; ~10 min are left, so the configured 100 steps (2.00 epochs) fit.')
        >>> fits, line
        (False, 'Time budget 11 min: at 2.00 s/step the remaining 995 steps need ~33 min but ~10 min are left; the run will stop after about step 305 (0.30 epochs) with a checkpoint. Resume it in a new session to finish.')
    """
    need = (total_steps - step) * seconds_per_step + evals_left * seconds_per_eval
    head = (
        f"Time budget {max_minutes:g} min: at {seconds_per_step:.2f} s/step the remaining "
        f"{total_steps - step:,} steps need ~{_minutes(need)}"
    )
    if need <= seconds_left:
        epochs = total_steps / max(steps_per_epoch, 1e-9)
        return True, (
            f"{head}; ~{_minutes(seconds_left)} are left, so the configured {total_steps:,} steps "
            f"({epochs:.2f} epochs) fit."
        )
    per_step = seconds_per_step + (seconds_per_eval * evals_left / max(total_steps - step, 1))
    reach = step + max(0, math.floor(seconds_left / max(per_step, 1e-9)))
    return False, (
        f"{head} but ~{_minutes(seconds_left)} are left; the run will stop after about step {reach:,} "
        f"({reach / max(steps_per_epoch, 1e-9):.2f} epochs) with a checkpoint. Resume it in a new session to finish."
    )


def stopped_record(
    *, step: int, total_steps: int, max_minutes: float, checkpoint: str, resume: str | None = None
) -> dict:
    """The `stopped` section of `run.json` for a run the budget stopped.

    Example:
        >>> stopped_record(step=40, total_steps=100, max_minutes=30, checkpoint="checkpoints/step_000040")["reason"]
        'time budget: train.max_minutes = 30 ran out after step 40 of 100'
    """
    return {
        "reason": f"time budget: train.max_minutes = {max_minutes:g} ran out after step {step} of {total_steps}",
        "step": step,
        "total_steps": total_steps,
        "checkpoint": checkpoint,
        "resume": resume or DEFAULT_RESUME,
    }


def log_line(line: str) -> None:
    """Print `line` from process 0 without breaking a running progress bar.

    Example:
        >>> log_line("Time budget 60 min: ...")
        Time budget 60 min: ...
    """
    from tqdm.auto import tqdm

    if multihost.is_writer():
        tqdm.write(line)


def estimate_logger(
    train,
    *,
    total_steps: int,
    micro_batches_per_epoch: int,
    evaluates: bool,
    deadline: float,
    timings: dict,
    log: Callable[[str], None] = log_line,
) -> Callable:
    """The loop's `on_estimate`: log whether the budget covers the configured steps, and keep the figures.

    Args:
        train: The run's `TrainConfig` (`max_minutes`, `eval_every`, `grad_accum`).
        total_steps: Optimizer steps the run is configured for.
        micro_batches_per_epoch: Micro-batches in one pass over the train split.
        evaluates: Whether the run evaluates at all (it has validation examples).
        deadline: The `time.perf_counter()` value the run must end by.
        timings: The run's `timings` record: the estimate is kept there as `budget_estimate`.
        log: Where the line goes (`log_line`).

    Example:
        >>> from kit.config import TrainConfig
        >>> timings = {}
        >>> on_estimate = estimate_logger(TrainConfig(max_minutes=60), total_steps=10, micro_batches_per_epoch=10,
        ...     evaluates=False, deadline=time.perf_counter() + 3600, timings=timings, log=lambda line: None)
        >>> on_estimate(type("State", (), {"step": 5})(), 1.0, 0.0)
        >>> timings["budget_estimate"]["fits"]
        True
    """

    def on_estimate(state, seconds_per_step: float, seconds_per_eval: float) -> None:
        every = train.eval_every
        evals_left = ((total_steps // every) - (state.step // every)) if every else 1
        fits, line = budget_estimate(
            step=state.step,
            total_steps=total_steps,
            seconds_per_step=seconds_per_step,
            seconds_per_eval=seconds_per_eval if evaluates else 0.0,
            evals_left=evals_left,
            seconds_left=deadline - time.perf_counter(),
            max_minutes=train.max_minutes,
            steps_per_epoch=micro_batches_per_epoch / train.grad_accum,
        )
        timings["budget_estimate"] = {"seconds_per_step": round(seconds_per_step, 4), "fits": fits, "log": line}
        log(line)

    return on_estimate


def _minutes(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes / 60:.1f} h" if minutes >= 120 else f"{minutes:.0f} min" if minutes >= 1 else f"{seconds:.0f} s"
