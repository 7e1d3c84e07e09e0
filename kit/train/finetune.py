"""`kit finetune`: LoRA fine-tuning of a Gemma causal LM on the prepared prompts, into a run dir.

The stage: pick a distribution, load the base preset, add LoRA adapters,
tokenise `prompt` + `target` (loss on the review tokens only), bucket by
length, train with `kit.train.loop.Engine`, and leave `runs/<name>/` (see
`kit.runs`). With LoRA disabled (`lora.enabled = false` or `lora.rank = 0`)
it only registers the base model as a run (validation loss included), so
base and fine-tuned models are evaluated the same way downstream.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import shutil
import time

import jax
import keras

import kit  # noqa: F401
from kit.atomic import check_output_dir, mark_output
from kit.config import Config
from kit.data.batching import Encoder, choose_buckets, example_lengths, length_report, plan_batches, select
from kit.data.rating_mix import mix_by_rating, rating_shares
from kit.errors import UserError
from kit.model import multihost
from kit.model.architectures import build_random_lm, kv_heads, tokenizer_note
from kit.model.distribution import setup_distribution
from kit.model.loader import load_causal_lm, resolve_dtype
from kit.model.lora import enable_lora, parameter_counts, save_adapter
from kit.model.quantize import quantize_base
from kit.model.tiny import verify_tiny_base
from kit.runs import RUN, DataInfo, LoraInfo, RunInfo, RunPaths, run_dir
from kit.train.budget import budget_estimate, stopped_record
from kit.train.checkpoint import LoopState, load_checkpoint
from kit.train.job_data import keep_with_target, log_tokenised, tokenise, with_target
from kit.train.lean import step_levers
from kit.train.loop import STOPPED_ON_BUDGET, Engine, LoopOptions, TrainingDiverged
from kit.train.optim import make_optimizer
from kit.train.run_writer import RunWriter, write_history

# Keys a resumed run may change: they decide when this session stops, not what it computes.
RESUME_MAY_CHANGE = ("train.max_minutes",)


def load_splits(cfg: Config, dataset=None):
    """The train and validation splits (row-limited), from `dataset` or `cfg.data.dir`.

    Example:
        >>> train, val = load_splits(load_config("configs/tiny.toml"))  # doctest: +SKIP
    """
    if dataset is None:
        from kit.data.prepare import load_prepared

        dataset = load_prepared(cfg.data.dir)
    for split in ("train", "validation"):
        if split not in dataset:
            raise UserError(f"{cfg.data.dir} has no {split!r} split; re-run `kit data prepare`.")
    train, val = dataset["train"], dataset["validation"]
    if cfg.data.max_train_rows:
        train = train.select(range(min(cfg.data.max_train_rows, train.num_rows)))
    if cfg.data.max_val_rows:
        val = val.select(range(min(cfg.data.max_val_rows, val.num_rows)))
    for split, ds in (("train", train), ("validation", val)):
        missing = {"prompt", "target"} - set(ds.column_names)
        if missing:
            raise UserError(
                f"{cfg.data.dir} split {split!r} lacks columns {sorted(missing)}; re-run `kit data prepare`."
            )
    return train, val


def _rows_digest(*splits) -> str:
    digest = hashlib.sha256()
    for ds in splits:
        for p, t in zip(ds["prompt"], ds["target"], strict=True):
            digest.update(p.encode())
            digest.update(b"\0")
            digest.update(t.encode())
            digest.update(b"\1")
    return digest.hexdigest()


def _dataset_fingerprint(cfg: Config) -> str | None:
    try:
        from kit.data.prepare import load_stats

        return load_stats(cfg.data.dir).get("fingerprint")
    except (UserError, ImportError, OSError, ValueError):
        return None


FINISHED = ("completed", "early_stopped")


def _prepare_run_dir(paths: RunPaths, *, resume: bool | str, overwrite: bool) -> tuple[str, bool]:
    """Check the run dir before anything loads; returns (what to do, whether an earlier run will be replaced).

    What to do is `new`, `resume` or `finished` (nothing left to train).
    `resume="auto"` (the notebooks) resumes when a checkpoint exists, starts a
    new run when there is no run dir, and leaves a finished run as it is;
    starting over always takes `overwrite`, and even then only a run of the
    kit's own is replaced (the kit's one output rule, `kit.atomic`).
    """

    def check() -> bool:
        return check_output_dir(
            paths.root,
            RUN,
            overwrite=overwrite,
            option="run name (--set run.name=<new name>)",
            also="--resume to continue it, ",
        )

    if overwrite and resume is not True:
        return "new", check()
    if resume == "auto":
        if paths.latest_checkpoint() is not None:
            return "resume", False
        if paths.run_json.is_file():
            status = RunInfo.read(paths.root).status
            if status == "base" or (status in FINISHED and paths.adapter.is_file()):
                return "finished", False
        return "new", check()
    if resume:
        if paths.latest_checkpoint() is None:
            raise UserError(f"--resume: no checkpoint in {paths.checkpoints}. Start without --resume.")
        return "resume", False
    return "new", check()


def _start_run_dir(paths: RunPaths, *, replace: bool) -> None:
    """Make the (marked) run dir once the base model has loaded, so a preset typo never costs an earlier run."""
    if replace:
        shutil.rmtree(paths.root)
    paths.root.mkdir(parents=True, exist_ok=True)
    mark_output(paths.root, RUN)


def _check_shared(paths: RunPaths) -> None:
    """Every process reads the checkpoints process 0 writes, so the run dir must be one they all see."""
    if not paths.root.is_dir():
        raise UserError(
            f"Process {multihost.process_index()} cannot see the run dir {paths.root} that process 0 made: "
            "put run.out_dir (--runs-dir) on storage every host mounts (NFS, a gcsfuse bucket)."
        )


def _check_same_config(paths: RunPaths, cfg: Config) -> None:
    """A resumed run must use the config it started with, or it would not continue "exactly"."""
    saved = RunInfo.read(paths.root).config
    now = cfg.to_dict()
    defaults = Config().to_dict()  # a key added after the run started counts as its default
    diff = [
        f"{section}.{key}"
        for section in now
        for key in now[section]
        if saved.get(section, {}).get(key, defaults[section][key]) != now[section][key]
        and f"{section}.{key}" not in RESUME_MAY_CHANGE
    ]
    if diff:
        raise UserError(
            f"--resume: config differs from the run's saved config at {', '.join(diff)}. "
            "Resume with the original config, or start a new run (--set run.name=...)."
        )


@dataclasses.dataclass
class _Examples:
    """The tokenised train/validation examples and the batching that feeds them."""

    train: list
    val: list
    buckets: tuple[int, ...] = ()
    steps: int = 0


def finetune(
    cfg: Config,
    *,
    resume: bool | str = False,
    overwrite: bool = False,
    progress: bool = True,
    dataset=None,
    resume_command: str | None = None,
) -> RunInfo:
    """Run (or resume) the fine-tune described by `cfg`; returns the final `run.json` record.

    Args:
        cfg: The resolved config.
        resume: True: continue from the latest checkpoint of `runs/<name>`
            (there must be one). `"auto"`: resume when a checkpoint exists,
            else start; a finished run is returned as it is.
        overwrite: Replace an existing run dir (never together with `resume=True`).
        progress: Show a progress bar.
        dataset: A `datasets.DatasetDict` to use instead of `cfg.data.dir` (tests, notebooks).
        resume_command: How to resume this run, for `run.json` when the time
            budget (`train.max_minutes`) stops it (the CLI passes its command line).

    Raises:
        UserError: bad config/data, an existing run dir, load failures, divergence.

    Example:
        >>> info = finetune(load_config("configs/tiny.toml"))  # doctest: +SKIP
        >>> info.metrics["val_loss"] < info.metrics["initial_val_loss"]  # doctest: +SKIP
        True
    """
    t0 = time.perf_counter()
    if dataset is None and cfg.data.dir:
        # A `kit tiny` base read its data's train split: other data may hold its
        # pretraining reviews in the test split, which would flatter every score.
        verify_tiny_base(cfg.model.preset, data_fingerprint=_dataset_fingerprint(cfg))
    paths = run_dir(cfg.run.out_dir, cfg.run.name)
    mode, replace = _prepare_run_dir(paths, resume=resume, overwrite=overwrite)
    if mode == "finished":
        _check_same_config(paths, cfg)
        done = RunInfo.read(paths.root)
        what = "registered (a base model)" if done.status == "base" else f"finished ({done.status})"
        if multihost.is_writer():
            print(f"{paths.root} is already {what}: nothing to resume. Pass --overwrite to start it over.")
        return done
    resume = mode == "resume"
    distribution, dist_text = setup_distribution(
        cfg.distribution.mode, cfg.distribution.mesh, batch_size=cfg.train.batch_size, kv_heads=kv_heads(cfg)
    )
    dtype = resolve_dtype(cfg.model.dtype)
    lm = _load_base(cfg, paths, dtype)
    if not resume:
        multihost.barrier("run-dir-checked")  # nobody is still checking when process 0 replaces it
        if multihost.is_writer():
            _start_run_dir(paths, replace=replace)
        multihost.barrier("run-dir-made")
        _check_shared(paths)
    info = RunInfo(
        name=cfg.run.name,
        preset=cfg.model.preset,
        dtype=dtype,
        distribution=dist_text,
        config=cfg.to_dict(),
        timings={"load_s": round(time.perf_counter() - t0, 2)},
        init=cfg.model.init,
        tokenizer=tokenizer_note(cfg.model.preset) if cfg.model.init == "random" else None,
    )
    train_ds, val_ds = _splits_or_none(cfg, dataset)
    encoder = Encoder(lm.preprocessor.tokenizer.proto)
    longest = cfg.data.buckets[-1]
    val = with_target(tokenise(encoder, val_ds), longest) if val_ds is not None else []
    if val_ds is not None:
        info.data = DataInfo(
            dir=cfg.data.dir,
            dataset_fingerprint=_dataset_fingerprint(cfg) if dataset is None else None,
            rows_sha256=_rows_digest(train_ds, val_ds),
            train_rows=train_ds.num_rows,
            val_rows=val_ds.num_rows,
        )
    if not cfg.lora_active:
        return _register_base(cfg, paths, lm, encoder, val, info, t0, distribution)

    keras.utils.set_random_seed(cfg.run.seed)  # LoRA A-matrix initialisation
    layers = enable_lora(
        lm, rank=cfg.lora.rank, alpha=cfg.lora.alpha, targets=cfg.lora.targets, factored=cfg.lora.factored
    )
    info.lora = LoraInfo(rank=cfg.lora.rank, alpha=cfg.lora.alpha, targets=cfg.lora.targets, layers=layers)
    info.parameters = parameter_counts(lm)
    t1 = time.perf_counter()
    examples = _train_examples(cfg, encoder, train_ds, info)
    examples.val = val
    info.batching["step"] = step_levers(cfg.train, lm, longest)  # the resolved levers (config "auto" made concrete)
    info.timings["tokenize_s"] = round(time.perf_counter() - t1, 2)
    return _train(
        cfg,
        paths,
        lm,
        encoder,
        examples,
        info,
        t0,
        distribution,
        resume=resume,
        progress=progress,
        resume_command=resume_command,
    )


def _load_base(cfg: Config, paths: RunPaths, dtype: str):
    """The base preset (quantized when `model.quantize` says). It loads before the run dir is made, so a run
    that never started (offline, no licence, a typo in model.preset) leaves nothing behind and an earlier run
    it would replace is kept. `model.init = "random"` builds the preset's architecture with random weights
    instead (never a fallback)."""
    if cfg.model.init == "random":
        lm = build_random_lm(cfg.model.preset, dtype=dtype, seed=cfg.run.seed, sequence_length=cfg.data.buckets[-1])
    else:
        lm = load_causal_lm(cfg.model.preset, dtype=dtype)
    quantize_base(lm, cfg.model.quantize)
    return lm


def _splits_or_none(cfg: Config, dataset):
    """The train and validation splits; (None, None) when a base model is registered without data."""
    try:
        return load_splits(cfg, dataset)
    except UserError:
        if cfg.lora_active:
            raise
        return None, None


def _train_examples(cfg: Config, encoder: Encoder, train_ds, info: RunInfo) -> _Examples:
    """Tokenise the train split, drop prompts with no room for a review, redraw by rating, plan buckets."""
    longest = cfg.data.buckets[-1]
    train = tokenise(encoder, train_ds)
    n_all = len(train)
    keep = keep_with_target(train, longest)
    train = select(train, keep)
    if not train:
        raise UserError(
            f"No train example has review tokens within data.buckets max {longest}: prompts are "
            "longer. Raise the largest value in data.buckets."
        )
    mix = None
    if cfg.data.rating_power != 1.0:
        if "rating" not in train_ds.column_names:
            raise UserError(f"data.rating_power needs a 'rating' column in {cfg.data.dir}; re-run `kit data prepare`.")
        all_ratings = train_ds["rating"]
        ratings = [int(all_ratings[i]) for i in keep]
        train = select(train, mix_by_rating(ratings, cfg.data.rating_power, seed=cfg.run.seed))
        mix = {str(r): round(s, 4) for r, s in rating_shares(ratings, cfg.data.rating_power).items()}
    buckets, bs = cfg.data.buckets, cfg.train.batch_size
    if cfg.data.auto_buckets:
        # A pure function of the train split, so a resumed run gets the same shapes.
        buckets = choose_buckets(example_lengths(train) - 1, cfg.data.auto_buckets, longest)
    plan = plan_batches(train, buckets, bs, seed=cfg.run.seed)
    steps = cfg.train.steps or max(1, math.ceil(cfg.train.epochs * len(plan) / cfg.train.grad_accum))
    info.batching = {
        "buckets": list(buckets),
        "padding_share": round(plan.padding_share(train, bs), 4),
        "micro_batches_per_epoch": len(plan),
        "optimizer_steps": steps,
        "dropped_prompt_too_long": n_all - len(keep),
        "rating_shares": mix,
        **length_report(train, buckets),
    }
    return _Examples(train=train, val=[], buckets=tuple(buckets), steps=steps)


def _train(
    cfg: Config,
    paths: RunPaths,
    lm,
    encoder: Encoder,
    ex: _Examples,
    info: RunInfo,
    t0: float,
    distribution,
    *,
    resume: bool,
    progress: bool,
    resume_command: str | None = None,
) -> RunInfo:
    """Run the loop, writing history, TensorBoard and checkpoints as it goes; then save the adapter."""
    engine = Engine(
        lm,
        run_optimizer(cfg.train, ex.steps),
        distribution=distribution,
        pad_id=encoder.pad_id,
        **step_levers(cfg.train, lm, cfg.data.buckets[-1]),
    )
    state, best = _resume_state(cfg, paths, engine, ex.steps) if resume else (None, None)
    if multihost.is_writer():
        info.write(paths.root)
        write_history(paths, state.history if state else [])
    callbacks = RunWriter(paths, engine, best=best, keep_last=cfg.train.keep_last, total_steps=ex.steps)
    deadline = t0 + 60 * cfg.train.max_minutes if cfg.train.max_minutes else None
    options = dataclasses.replace(_loop_options(cfg, ex, progress), deadline=deadline)
    t2 = time.perf_counter()
    try:
        state, status = engine.run(
            ex.train,
            ex.val,
            options,
            state,
            on_log=callbacks.on_log,
            on_checkpoint=callbacks.on_checkpoint,
            on_best=callbacks.on_best,
            on_estimate=_estimate_logger(cfg, ex, info, deadline) if deadline else None,
        )
    except TrainingDiverged as e:
        info.status, info.error = "diverged", str(e)
        if multihost.is_writer():
            info.write(paths.root)
        raise
    except jax.errors.JaxRuntimeError as e:
        if multihost.process_count() > 1:  # a collective failed: a peer process died
            raise multihost.lost(e) from None
        raise
    finally:
        callbacks.close()
    train_s = time.perf_counter() - t2
    log_tokenised(train=ex.train, validation=ex.val)

    if callbacks.best is not None:  # early stopping semantics: keep the best evaluated adapter
        engine.load_values(callbacks.best)
    if multihost.is_writer():
        save_adapter(lm, paths.adapter)
        write_history(paths, state.history)
    info.status, info.adapter = status, paths.adapter.name
    info.stopped = None
    if status == STOPPED_ON_BUDGET:
        ckpt = paths.latest_checkpoint()
        info.stopped = stopped_record(
            step=state.step,
            total_steps=ex.steps,
            max_minutes=cfg.train.max_minutes,
            checkpoint=str(ckpt.relative_to(paths.root)) if ckpt else "",
            resume=resume_command,
        )
        _log(f"Stopped on the time budget after step {state.step}/{ex.steps}; resume: {info.stopped['resume']}")
    info.metrics = _final_metrics(state)
    info.timings.update(
        train_s=round(train_s, 2),
        train_s_all_sessions=round(state.elapsed_s, 2),
        total_s=round(time.perf_counter() - t0, 2),
    )
    if multihost.is_writer():
        info.write(paths.root)
    multihost.barrier("run-written")  # the job ends when its files are there
    return info


def _estimate_logger(cfg: Config, ex: _Examples, info: RunInfo, deadline: float):
    """The loop's `on_estimate`: log whether the budget covers the configured steps, and keep the figures."""

    def on_estimate(st: LoopState, seconds_per_step: float, seconds_per_eval: float) -> None:
        every = cfg.train.eval_every
        evals_left = ((ex.steps // every) - (st.step // every)) if every else 1
        fits, line = budget_estimate(
            step=st.step,
            total_steps=ex.steps,
            seconds_per_step=seconds_per_step,
            seconds_per_eval=seconds_per_eval if ex.val else 0.0,
            evals_left=evals_left,
            seconds_left=deadline - time.perf_counter(),
            max_minutes=cfg.train.max_minutes,
            steps_per_epoch=info.batching["micro_batches_per_epoch"] / cfg.train.grad_accum,
        )
        info.timings["budget_estimate"] = {"seconds_per_step": round(seconds_per_step, 4), "fits": fits, "log": line}
        _log(line)

    return on_estimate


def _log(line: str) -> None:
    """A line that does not break a running progress bar."""
    from tqdm.auto import tqdm

    if multihost.is_writer():
        tqdm.write(line)


def run_optimizer(t, steps: int):
    """The optimizer a run of `steps` optimizer steps trains with, from `[train]` (`kit plan` compiles the same).

    Example:
        >>> run_optimizer(TrainConfig(), 100).name  # doctest: +SKIP
        'adamw'
    """
    return make_optimizer(
        learning_rate=t.learning_rate,
        warmup_steps=t.warmup_steps,
        total_steps=steps,
        decay=t.decay,
        min_ratio=t.min_lr_ratio,
        weight_decay=t.weight_decay,
        clip_norm=t.clip_norm,
    )


def _loop_options(cfg: Config, ex: _Examples, progress: bool) -> LoopOptions:
    t = cfg.train
    return LoopOptions(
        total_steps=ex.steps,
        batch_size=t.batch_size,
        grad_accum=t.grad_accum,
        buckets=ex.buckets,
        seed=cfg.run.seed,
        eval_every=t.eval_every,
        checkpoint_every=t.checkpoint_every,
        patience=t.patience,
        log_every=t.log_every,
        progress=progress,
        desc=cfg.run.name,
    )


def _resume_state(cfg: Config, paths: RunPaths, engine: Engine, steps: int):
    """Load the latest checkpoint into `engine`: `(loop state, best weights or None)`."""
    _check_same_config(paths, cfg)
    ckpt = paths.latest_checkpoint()
    state, tv, ov, best, _ = load_checkpoint(ckpt)
    engine.load_values(tv, ov)
    if multihost.is_writer():
        print(f"Resuming {paths.root} from {ckpt.name} (step {state.step}/{steps})")
    return state, best


def _final_metrics(state: LoopState) -> dict:
    history = state.history
    return {
        "initial_val_loss": history[0].get("val_loss") if history else None,
        "val_loss": state.best_val,
        "val_ppl": math.exp(min(state.best_val, 50.0)) if state.best_val is not None else None,
        "final_train_loss": next((r["train_loss"] for r in reversed(history) if "train_loss" in r), None),
        "steps": state.step,
        "tokens": state.tokens,
    }


def _register_base(
    cfg: Config, paths: RunPaths, lm, encoder: Encoder, val: list, info: RunInfo, t0: float, distribution
) -> RunInfo:
    """A run with no adapter: the base preset plus its validation loss, for side-by-side comparison."""
    info.parameters = parameter_counts(lm)
    if val:
        engine = Engine(
            lm,
            make_optimizer(learning_rate=1e-3, warmup_steps=0, total_steps=1),
            distribution=distribution,
            pad_id=encoder.pad_id,
            **step_levers(cfg.train, lm, cfg.data.buckets[-1]),
        )
        loss = engine.loss_on(val, buckets=cfg.data.buckets, batch_size=cfg.train.batch_size)
        info.metrics = {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0))}
    info.status = "base"
    info.timings["total_s"] = round(time.perf_counter() - t0, 2)
    if multihost.is_writer():
        info.write(paths.root)
    multihost.barrier("run-written")
    return info
