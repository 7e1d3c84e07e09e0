"""A base model registered as a run: no adapter, its parameter counts and validation loss.

With LoRA disabled (`lora.enabled = false` or `lora.rank = 0`) `kit finetune`
trains nothing and records the base preset this way, so base and fine-tuned
models are evaluated and compared the same way downstream.
"""

from __future__ import annotations

from collections.abc import Sequence

import kit  # noqa: F401
from kit.metrics.perplexity import perplexity_from_loss
from kit.model.lora import parameter_counts
from kit.runs import RunInfo
from kit.train.lean import step_levers
from kit.train.loop import Engine
from kit.train.optim import make_optimizer


def register_base(
    lm, val: Sequence, info: RunInfo, *, train, buckets: Sequence[int], pad_id: int, distribution=None
) -> RunInfo:
    """Fill `info` as a base-model run: parameter counts, the validation loss on `val` (when there is one), status.

    Args:
        lm: The base causal LM.
        val: The tokenised validation examples (empty: registered without data, no loss).
        info: The run record to fill (returned).
        train: The run's `TrainConfig` (batch size and the step levers).
        buckets: The sequence lengths the loss is computed at.
        pad_id: The tokenizer's padding id.
        distribution: The Keras distribution the model lives under (None: one device).

    Example:
        >>> info = register_base(lm, val, info, train=cfg.train, buckets=cfg.data.buckets, pad_id=0)  # doctest: +SKIP
        >>> info.status, info.adapter  # doctest: +SKIP
        ('base', None)
    """
    info.parameters = parameter_counts(lm)
    if val:
        # An Engine only for its loss: the optimizer is never applied.
        engine = Engine(
            lm,
            make_optimizer(learning_rate=1e-3, warmup_steps=0, total_steps=1),
            distribution=distribution,
            pad_id=pad_id,
            **step_levers(train, lm, buckets[-1]),
        )
        loss = engine.loss_on(val, buckets=buckets, batch_size=train.batch_size)
        info.metrics = {"val_loss": loss, "val_ppl": perplexity_from_loss(loss)}
    info.status = "base"
    return info
