"""The training loop: jitted masked-loss steps, gradient accumulation, evaluation, resumable state.

Written against Keras' stateless API on the JAX backend (`model.stateless_call`,
`optimizer.stateless_apply`) rather than `model.fit`, because the kit needs
things `fit` does not give exactly: a checkpoint that holds the data position
as well as the optimizer state (so `--resume` replays the very same batches),
token-weighted gradient accumulation across differently shaped buckets, and a
NaN check before a bad update can reach a checkpoint. Each bucket length is
compiled once by `jax.jit` (one trace per input shape).

Used by `kit tiny` (all weights trainable, plain LM) and `kit finetune`
(LoRA adapters only, prompt masked).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import kit  # noqa: F401
from kit.data.batching import Encoder, Example, make_batch, plan_batches, select
from kit.errors import UserError
from kit.metrics.perplexity import perplexity_from_loss, token_nll
from kit.model import multihost
from kit.model.distribution import feed_rows, place_batch
from kit.train.checkpoint import LoopState
from kit.train.lean import lean_loss
from kit.train.unlikelihood import Unlikelihood


class TrainingDiverged(UserError):
    """The loss or gradient norm became NaN/inf; the last good checkpoint is kept."""


@dataclasses.dataclass(frozen=True)
class LoopOptions:
    """Loop settings (a subset of `TrainConfig`, so `kit tiny` can use the loop without a Config).

    Attributes:
        total_steps: Optimizer steps to run.
        batch_size: Rows per micro-batch.
        grad_accum: Micro-batches per optimizer step.
        buckets: Sequence lengths.
        seed: Data-order seed.
        eval_every: Evaluate every N steps (0: only at start and end).
        checkpoint_every: Call `on_checkpoint` every N steps (0: never).
        patience: Early-stopping patience in evaluations (0: off).
        log_every: Call `on_log` every N steps.
        progress: Show a tqdm bar.
        desc: Progress-bar label.
        deadline: `time.perf_counter()` value the run must end by (None: no
            budget). After each step the loop stops, with a checkpoint, when
            the next step (and its evaluation) and a checkpoint would not fit.
            At least one step runs, so every session makes progress.
        estimate_after: Steps of this session after which `on_estimate` gets
            the measured seconds per step (the first, compiling, step left out).
    """

    total_steps: int
    batch_size: int
    grad_accum: int = 1
    buckets: tuple[int, ...] = (128,)
    seed: int = 0
    eval_every: int = 0
    checkpoint_every: int = 0
    patience: int = 0
    log_every: int = 1
    progress: bool = True
    desc: str = "train"
    deadline: float | None = None
    estimate_after: int = 5

    @classmethod
    def from_train(cls, train, **given) -> LoopOptions:
        """The options a `TrainConfig` sets (batch, accumulation, evaluation, checkpoints, logging), plus `given`.

        Example:
            >>> from kit.config import TrainConfig
            >>> o = LoopOptions.from_train(TrainConfig(grad_accum=4), total_steps=8, seed=3)
            >>> o.grad_accum, o.total_steps, o.seed
            (4, 8, 3)
        """
        keys = ("batch_size", "grad_accum", "eval_every", "checkpoint_every", "patience", "log_every")
        return cls(**{key: getattr(train, key) for key in keys}, **given)


def _put(value, old, variable):
    """`value` (numpy) as a device array of `old`'s dtype, laid out like `variable` (one step at a time)."""
    out = jax.device_put(np.asarray(value, dtype=old.dtype), variable.value.sharding)
    return jax.block_until_ready(out) if multihost.process_count() > 1 else out


STOPPED_ON_BUDGET = "stopped_on_budget"
BUDGET_MARGIN = 1.5  # the next step may be this much slower than the typical one


def typical_step_s(times: Sequence[float]) -> float:
    """Seconds per step from measured step times: the median of the last 20, the first left out
    when there are more (it includes compilation).

    Example:
        >>> typical_step_s([30.0, 1.0, 1.2, 0.9])
        1.0
        >>> typical_step_s([4.0])
        4.0
    """
    recent = list(times[1:] if len(times) > 1 else times)[-20:]
    return float(np.median(recent)) if recent else 0.0


def accumulator_dtype(dtype):
    """The dtype gradients of a `dtype` variable are summed in: float32 for bfloat16 (no lost small updates).

    Example:
        >>> accumulator_dtype(jnp.bfloat16), accumulator_dtype(jnp.float32)
        (dtype('float32'), dtype('float32'))
    """
    return jnp.dtype(jnp.float32) if dtype == jnp.bfloat16 else jnp.dtype(dtype)


class Engine:
    """Holds the model's variable values as JAX arrays and runs jitted steps on them.

    Args:
        lm: A Keras causal LM whose call maps `{"token_ids", "padding_mask"}` to logits.
        optimizer: A Keras optimizer (built here on the trainable variables).
        distribution: The active `keras.distribution`, or None.
        pad_id: Padding token id.
        loss_chunk: Compute the loss over chunks of this many positions, so the
            full logits never exist (0: off; `kit.train.lean`).
        remat: Rematerialise the decoder blocks in the backward pass (`kit.train.lean`).
        unlikelihood: Weight of the token-level unlikelihood term in the
            training loss (`kit.train.unlikelihood`; 0: off). The validation
            loss and the logged train loss stay the plain NLL.
        unlikelihood_context: Its candidates: 0, every earlier review token;
            k, those that came after the same k tokens as now.
        unlikelihood_sentences: Weight of the sentence-start form (the
            openers of the review's earlier sentences; 0: off). It leaves
            the stop tokens to the NLL (`kit.train.unlikelihood`).
        values: `(trainable, non_trainable, optimizer)` values to start from
            instead of the variables' own; `kit plan` passes abstract ones
            (`jax.ShapeDtypeStruct`) for a model built without its weights,
            to lower the steps (`lower_steps`) without allocating them.

    Example:
        >>> engine = Engine(lm, make_optimizer(...))  # doctest: +SKIP
        >>> engine.loss_on(val_examples, buckets=(128,), batch_size=8)  # doctest: +SKIP
    """

    def __init__(
        self,
        lm,
        optimizer,
        *,
        distribution=None,
        pad_id: int = 0,
        loss_chunk: int = 0,
        remat: bool = False,
        unlikelihood: float = 0.0,
        unlikelihood_context: int = 0,
        unlikelihood_sentences: float = 0.0,
        values=None,
    ):
        self.lm = lm
        self.loss_chunk, self.remat = int(loss_chunk), bool(remat)
        # The unlikelihood terms (None: off); they read the tokenizer's stop and sentence-end ids.
        self.ul = (
            Unlikelihood.for_encoder(
                Encoder(lm.preprocessor.tokenizer.proto),
                weight=unlikelihood,
                context=unlikelihood_context,
                sentences=unlikelihood_sentences,
            )
            if unlikelihood or unlikelihood_sentences
            else None
        )
        if self.ul is not None and self.loss_chunk:
            raise ValueError("unlikelihood needs the full logits: it cannot be combined with loss_chunk")
        self.optimizer = optimizer
        self.distribution = distribution
        self.pad_id = pad_id
        self.trainable = list(lm.trainable_variables)
        self.non_trainable = list(lm.non_trainable_variables)
        if self.trainable:
            optimizer.build(self.trainable)
        if values is None:
            values = [[v.value for v in vs] for vs in (self.trainable, self.non_trainable, optimizer.variables)]
        self.tv, self.ntv, self.ov = (list(vs) for vs in values)
        self._micro = jax.jit(self._micro_fn)
        self._apply = jax.jit(self._apply_fn)
        self._eval = jax.jit(self._loss_fn)

    # ------------------------------------------------------------------ pure functions

    def _loss_fn(self, tv, ntv, x, y, w):
        """Sum of token cross-entropies weighted by `w`, and the sum of `w` (float32)."""
        nll, _, weight = self._losses(tv, ntv, x, y, w, unlikelihood=False)
        return nll, weight

    def _losses(self, tv, ntv, x, y, w, *, unlikelihood: bool):
        """`(weighted NLL sum, weighted unlikelihood sum or 0, weight sum)`."""
        if self.loss_chunk or self.remat:
            return lean_loss(
                self.lm,
                self.trainable,
                self.non_trainable,
                tv,
                ntv,
                x,
                y,
                w,
                loss_chunk=self.loss_chunk,
                remat=self.remat,
                unlikelihood=self.ul if unlikelihood else None,
            )
        logits, _ = self.lm.stateless_call(tv, ntv, x)
        ul = self.ul(logits, y, w) if unlikelihood and self.ul is not None else jnp.float32(0.0)
        return jnp.sum(token_nll(logits, y) * w), ul, jnp.sum(w)

    def _train_loss_fn(self, tv, ntv, x, y, w):
        """With unlikelihood on, what the step differentiates: NLL sum + the weighted unlikelihood sums; aux `(nll, weight)`."""
        nll, ul, weight = self._losses(tv, ntv, x, y, w, unlikelihood=True)
        return nll + ul, (nll, weight)

    def _micro_fn(self, tv, ntv, acc, x, y, w):
        if self.ul is None:
            (loss, weight), grads = jax.value_and_grad(self._loss_fn, has_aux=True)(tv, ntv, x, y, w)
        else:  # the logged loss is the NLL part, comparable with the validation loss
            (_, (loss, weight)), grads = jax.value_and_grad(self._train_loss_fn, has_aux=True)(tv, ntv, x, y, w)
        return [a + g for a, g in zip(acc, grads, strict=True)], loss, weight

    def _apply_fn(self, tv, ov, acc, weight):
        # Token-weighted mean over the whole accumulation group: every target
        # token counts the same whatever bucket or micro-batch it sat in.
        grads = [g / jnp.maximum(weight, 1.0) for g in acc]
        norm = jnp.sqrt(sum(jnp.sum(jnp.square(g.astype(jnp.float32))) for g in grads))
        new_tv, new_ov = self.optimizer.stateless_apply(ov, grads, tv)
        return new_tv, new_ov, norm

    # ------------------------------------------------------------------ helpers

    def _batch(self, examples: Sequence[Example], idx, length: int, batch_size: int):
        """One global batch on devices; with several processes each builds and feeds only its rows."""
        rows = feed_rows(self.distribution, batch_size)
        # `select` is a view for lazily tokenised examples: only the rows built here get tokenised.
        batch = make_batch(select(examples, idx), length, batch_size, self.pad_id, rows=rows)
        return place_batch((batch.x, batch.y, batch.sample_weight), self.distribution, batch_size=batch_size)

    def sync_to_model(self) -> None:
        """Write the current values back into the Keras variables (before saving)."""
        for v, val in zip([*self.trainable, *self.optimizer.variables], [*self.tv, *self.ov], strict=True):
            v.assign(val)
            if multihost.process_count() > 1:
                # A value laid out over other devices than the variable is resharded by a
                # collective; with several in flight, gloo can pair one process's transfer with
                # another's and deadlock, so each one finishes before the next starts.
                jax.block_until_ready(v.value)

    def trainable_numpy(self) -> list[np.ndarray]:
        """The trainable values as numpy (every process of a multi-host job calls it: a gather)."""
        return [multihost.to_numpy(v) for v in self.tv]

    def optimizer_numpy(self) -> list[np.ndarray]:
        """The optimizer's values as numpy (every process of a multi-host job calls it: a gather)."""
        return [multihost.to_numpy(v) for v in self.ov]

    def load_values(self, trainable: Sequence[np.ndarray], optimizer: Sequence[np.ndarray] | None = None) -> None:
        """Restore trainable (and optimizer) values, keeping each variable's sharding."""
        if len(trainable) != len(self.tv):
            raise UserError(
                f"Checkpoint holds {len(trainable)} trainable arrays but the model has {len(self.tv)}; "
                "it was written with different LoRA settings. Start a new run instead of --resume."
            )
        # Each value goes straight to its Keras variable's layout, so syncing needs no reshard.
        self.tv = [_put(a, old, v) for a, old, v in zip(trainable, self.tv, self.trainable, strict=True)]
        if optimizer is not None:
            self.ov = [_put(a, old, v) for a, old, v in zip(optimizer, self.ov, self.optimizer.variables, strict=True)]
        self.sync_to_model()

    def loss_on(self, examples: Sequence[Example], *, buckets: Sequence[int], batch_size: int) -> float:
        """Mean loss per weighted (target) token over `examples`, in a fixed order."""
        if not examples:
            return float("nan")
        plan = plan_batches(examples, buckets, batch_size)
        total, weight = 0.0, 0.0
        for length, idx in plan.batches:
            loss, w = self._eval(self.tv, self.ntv, *self._batch(examples, idx, length, batch_size))
            total += float(loss)
            weight += float(w)
        return total / weight if weight else float("nan")

    def lower_steps(self, length: int, batch_size: int, *, sharding=None):
        """Lower (trace, not run) the jitted micro-step and apply step for `[batch_size, length]` batches.

        The inputs are abstract (`jax.ShapeDtypeStruct`) with the shapes and
        dtypes `make_batch` produces, split as `place_batch` would split them
        (`sharding` places them when there is no distribution), so
        `.compile()` on the results gives XLA's memory and cost analyses of
        exactly the steps `run` executes.

        Returns:
            `(micro, apply)`: `jax.stages.Lowered` of the micro-step and the apply step.

        Example:
            >>> micro, apply = engine.lower_steps(512, 2)  # doctest: +SKIP
            >>> micro.compile().memory_analysis().temp_size_in_bytes  # doctest: +SKIP
        """
        dummy = Example(np.zeros(2, np.int32), 1)
        batch = make_batch([dummy], length, batch_size, self.pad_id)

        def spec(a):
            where = self.distribution.get_data_layout(a.shape).backend_layout if self.distribution else sharding
            return jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=where)

        x, y, w = jax.tree.map(spec, (batch.x, batch.y, batch.sample_weight))
        acc = [
            jax.ShapeDtypeStruct(v.shape, accumulator_dtype(v.dtype), sharding=getattr(v, "sharding", None))
            for v in self.tv
        ]
        scalar = getattr(self.tv[0], "sharding", None) if self.tv else sharding
        if scalar is not None and hasattr(scalar, "mesh"):  # a replicated scalar on the same devices
            scalar = jax.sharding.NamedSharding(scalar.mesh, jax.sharding.PartitionSpec())
        weight = jax.ShapeDtypeStruct((), jnp.float32, sharding=scalar)
        return (
            self._micro.lower(self.tv, self.ntv, acc, x, y, w),
            self._apply.lower(self.tv, self.ov, acc, weight),
        )

    # ------------------------------------------------------------------ the loop

    def run(
        self,
        train: Sequence[Example],
        val: Sequence[Example],
        options: LoopOptions,
        state: LoopState | None = None,
        *,
        on_log: Callable[[LoopState, dict], None] | None = None,
        on_checkpoint: Callable[[LoopState], None] | None = None,
        on_best: Callable[[LoopState], None] | None = None,
        on_estimate: Callable[[LoopState, float, float], None] | None = None,
    ) -> tuple[LoopState, str]:
        """Train until `options.total_steps` (or early stop, or the deadline); returns `(state, status)`.

        `status` is `completed`, `early_stopped` or `stopped_on_budget` (a
        checkpoint of the last step was written first); a NaN/inf loss raises
        `TrainingDiverged` before the bad update can be checkpointed.
        `on_estimate(state, seconds_per_step, seconds_per_evaluation)` is
        called once, after `options.estimate_after` steps of this session.
        """
        state = state or LoopState()
        o = options
        bar = None
        if o.progress and multihost.is_writer():  # one bar per job, not one per host
            from tqdm.auto import tqdm

            bar = tqdm(total=o.total_steps, initial=state.step, desc=o.desc, unit="step", dynamic_ncols=True)
        plan = plan_batches(train, o.buckets, o.batch_size, seed=o.seed, epoch=state.epoch)
        if not len(plan):
            raise UserError("The train split is empty: nothing to train on. Check data.dir and data.max_train_rows.")
        step_times: list[float] = []
        eval_s = checkpoint_s = 0.0
        if state.step == 0 and not state.history and val:
            t_eval = time.perf_counter()
            self._evaluate(state, val, o, on_log, on_best)  # step 0 = the base model's loss
            eval_s = time.perf_counter() - t_eval
        status = "completed"
        started = time.perf_counter() - state.elapsed_s
        while state.step < o.total_steps:
            t_step = time.perf_counter()
            acc = [jnp.zeros(v.shape, accumulator_dtype(v.dtype)) for v in self.tv]
            loss_sum = weight_sum = 0.0
            for _ in range(o.grad_accum):
                if state.position >= len(plan):
                    state.epoch += 1
                    state.position = 0
                    plan = plan_batches(train, o.buckets, o.batch_size, seed=o.seed, epoch=state.epoch)
                length, idx = plan.batches[state.position]
                acc, loss, weight = self._micro(self.tv, self.ntv, acc, *self._batch(train, idx, length, o.batch_size))
                loss_sum = loss_sum + loss
                weight_sum = weight_sum + weight
                state.position += 1
            new_tv, new_ov, norm = self._apply(self.tv, self.ov, acc, weight_sum)
            loss = float(loss_sum) / max(float(weight_sum), 1.0)
            norm = float(norm)
            if not (math.isfinite(loss) and math.isfinite(norm)):
                if bar is not None:
                    bar.close()
                raise TrainingDiverged(
                    f"Training diverged at step {state.step + 1}: loss={loss}, grad norm={norm}. "
                    "The last good checkpoint is kept; lower train.learning_rate or set train.clip_norm."
                )
            self.tv, self.ov = new_tv, new_ov
            state.step += 1
            state.tokens += int(float(weight_sum))
            state.elapsed_s = time.perf_counter() - started
            step_times.append(time.perf_counter() - t_step)
            row = None
            if state.step % o.log_every == 0 or state.step == o.total_steps:
                row = {
                    "step": state.step,
                    "epoch": state.epoch + state.position / len(plan),
                    "lr": self._lr(state.step - 1),
                    "train_loss": loss,
                    "grad_norm": norm,
                    "tokens": state.tokens,
                    "elapsed_s": round(state.elapsed_s, 3),
                }
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}")
            if val and self._evaluates(state.step, o):
                row = row if row is not None else {"step": state.step, "tokens": state.tokens}
                t_eval = time.perf_counter()
                if self._evaluate(state, val, o, None, on_best, row=row):
                    status = "early_stopped"
                eval_s = time.perf_counter() - t_eval
            if row is not None:
                state.history.append(row)
                if on_log:
                    on_log(state, row)
            checkpointed = bool(on_checkpoint and o.checkpoint_every and state.step % o.checkpoint_every == 0)
            if checkpointed:
                t_ckpt = time.perf_counter()
                on_checkpoint(state)
                checkpoint_s = time.perf_counter() - t_ckpt
            if on_estimate and len(step_times) == o.estimate_after:
                on_estimate(state, typical_step_s(step_times), eval_s)
            if status == "early_stopped":
                break
            if o.deadline is not None and state.step < o.total_steps:
                # What the next step costs, its evaluation if it has one, and a checkpoint
                # (measured, else guessed as half a step) must all fit before the deadline.
                typical = typical_step_s(step_times)
                need = BUDGET_MARGIN * typical + (checkpoint_s or typical / 2)
                if val and self._evaluates(state.step + 1, o):
                    need += BUDGET_MARGIN * eval_s
                if time.perf_counter() + need > o.deadline:
                    if on_checkpoint and not checkpointed:
                        on_checkpoint(state)
                    status = STOPPED_ON_BUDGET
                    break
        if bar is not None:
            bar.close()
        self.sync_to_model()
        return state, status

    @staticmethod
    def _evaluates(step: int, o: LoopOptions) -> bool:
        return bool(o.eval_every and step % o.eval_every == 0) or step == o.total_steps

    def _lr(self, step: int) -> float:
        schedule = getattr(self.optimizer, "kit_schedule", None)
        return float(schedule(step)) if schedule is not None else float(self.optimizer.learning_rate)

    def _evaluate(self, state, val, o, on_log, on_best, row=None) -> bool:
        """Validation loss/perplexity into `row`; returns True when patience ran out."""
        val_loss = self.loss_on(val, buckets=o.buckets, batch_size=o.batch_size)
        own_row = row is None
        row = row if row is not None else {"step": state.step, "tokens": state.tokens}
        row["val_loss"] = val_loss
        row["val_ppl"] = perplexity_from_loss(val_loss)
        if own_row:
            state.history.append(row)
            if on_log:
                on_log(state, row)
        if state.best_val is None or val_loss < state.best_val - 1e-6:
            state.best_val = val_loss
            state.bad_evals = 0
            if on_best:
                on_best(state)
            return False
        state.bad_evals += 1
        return bool(o.patience) and state.bad_evals >= o.patience
