"""AdamW with warm-up + decay and global-norm clipping, shared by `kit tiny` and `kit finetune`.

Weight decay is decoupled (AdamW) and never applied to norm scales or biases:
shrinking an RMSNorm scale towards 0 is not regularisation, it changes the
function. (LoRA runs only train adapter kernels, so this matters for `kit tiny`.)
"""

from __future__ import annotations

import math

import keras
from keras import ops

import kit  # noqa: F401


@keras.saving.register_keras_serializable(package="kit")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak`, then cosine/linear decay to `peak * min_ratio`, or constant.

    Args:
        peak: Learning rate at the end of warm-up.
        warmup_steps: Warm-up length in optimizer steps.
        total_steps: Step at which the decay reaches its floor.
        decay: `cosine`, `linear` or `constant`.
        min_ratio: Floor as a share of `peak`.

    Example:
        >>> s = WarmupDecay(peak=1.0, warmup_steps=2, total_steps=10, decay="linear", min_ratio=0.0)
        >>> [round(float(s(i)), 3) for i in (0, 1, 2, 6, 10)]
        [0.5, 1.0, 1.0, 0.5, 0.0]
    """

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, decay: str = "cosine", min_ratio: float = 0.1):
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(max(total_steps, warmup_steps + 1))
        self.decay = decay
        self.min_ratio = float(min_ratio)

    def __call__(self, step):
        # `step` is the optimizer's iteration count before this update: the
        # first update uses step 0, so warm-up starts at peak / warmup_steps.
        step = ops.cast(step, "float32")
        warm = self.peak * ops.minimum((step + 1.0) / max(self.warmup_steps, 1), 1.0)
        if self.decay == "constant":
            after = ops.convert_to_tensor(self.peak, "float32")
        else:
            span = float(self.total_steps - self.warmup_steps)
            t = ops.clip((step - self.warmup_steps) / span, 0.0, 1.0)
            shape = 0.5 * (1.0 + ops.cos(math.pi * t)) if self.decay == "cosine" else 1.0 - t
            after = self.peak * (self.min_ratio + (1.0 - self.min_ratio) * shape)
        return ops.where(step < self.warmup_steps, warm, after)

    def get_config(self):
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "decay": self.decay,
            "min_ratio": self.min_ratio,
        }


def make_optimizer(
    *,
    learning_rate: float,
    warmup_steps: int,
    total_steps: int,
    decay: str = "cosine",
    min_ratio: float = 0.1,
    weight_decay: float = 0.01,
    clip_norm: float = 1.0,
) -> keras.optimizers.AdamW:
    """AdamW with `WarmupDecay`, global-norm clipping and no decay on norms/biases.

    Example:
        >>> opt = make_optimizer(learning_rate=1e-3, warmup_steps=5, total_steps=100)
        >>> type(opt).__name__
        'AdamW'
    """
    schedule = WarmupDecay(learning_rate, warmup_steps, total_steps, decay, min_ratio)
    opt = keras.optimizers.AdamW(
        learning_rate=schedule,
        weight_decay=weight_decay,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        global_clipnorm=clip_norm or None,
    )
    # Matched against variable names: RMSNorm weights are called `scale`.
    opt.exclude_from_weight_decay(var_names=["scale", "bias", "gamma", "beta"])
    opt.kit_schedule = schedule  # for logging the learning rate without touching optimizer state
    return opt


def run_optimizer(train, steps: int) -> keras.optimizers.AdamW:
    """The optimizer a run of `steps` optimizer steps trains with, from its `TrainConfig` (`kit plan` builds the same).

    Example:
        >>> from kit.config import TrainConfig
        >>> run_optimizer(TrainConfig(), 100).kit_schedule.total_steps
        100
    """
    return make_optimizer(
        learning_rate=train.learning_rate,
        warmup_steps=train.warmup_steps,
        total_steps=steps,
        decay=train.decay,
        min_ratio=train.min_lr_ratio,
        weight_decay=train.weight_decay,
        clip_norm=train.clip_norm,
    )
