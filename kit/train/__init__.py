"""The training stage: `finetune` (LoRA into a run dir), the jitted loop, optimizer, checkpoints, TensorBoard.

Nothing under `kit.generate` or `kit.eval` imports this package: serving a
model never loads the training stack.

Example:
    >>> from kit.train import finetune  # doctest: +SKIP
    >>> info = finetune(load_config("configs/tiny.toml"))  # doctest: +SKIP
"""

from kit.train.checkpoint import LoopState, load_checkpoint, save_checkpoint
from kit.train.finetune import finetune
from kit.train.job_data import load_splits
from kit.train.loop import Engine, LoopOptions, TrainingDiverged
from kit.train.optim import WarmupDecay, make_optimizer

# `pretrain` (the function) stays in its module: re-exported, it would hide `kit.train.pretrain`.
from kit.train.pretrain import make_tiny_base, pretraining_texts
from kit.train.run_writer import HISTORY_COLUMNS
from kit.train.tensorboard import ScalarWriter

__all__ = [
    "HISTORY_COLUMNS",
    "Engine",
    "LoopOptions",
    "LoopState",
    "ScalarWriter",
    "TrainingDiverged",
    "WarmupDecay",
    "finetune",
    "load_checkpoint",
    "load_splits",
    "make_optimizer",
    "make_tiny_base",
    "pretraining_texts",
    "save_checkpoint",
]
