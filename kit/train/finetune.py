"""`kit finetune`: LoRA fine-tuning of a Gemma causal LM on the prepared prompts, into a run dir.

The stage: pick a distribution, load the base preset, add LoRA adapters,
tokenise `prompt` + `target` (loss on the review tokens only), bucket by
length, train with `kit.train.loop.Engine`, and leave `runs/<name>/` (see
`kit.runs`). With LoRA disabled (`lora.enabled = false` or `lora.rank = 0`)
it only registers the base model as a run (`kit.train.base_run`). This module
is the outline; the run dir's lifecycle is in `kit.runs`, the data in
`kit.train.job_data`, the loop in `kit.train.loop`.
"""

from __future__ import annotations

import time

import keras

import kit  # noqa: F401
from kit.config import Config, ModelConfig
from kit.data.batching import Encoder
from kit.model import multihost
from kit.model.architectures import build_random_lm, kv_heads, layout_of, tokenizer_note
from kit.model.distribution import setup_distribution
from kit.model.loader import load_causal_lm, resolve_dtype
from kit.model.lora import enable_lora, parameter_counts, save_adapter
from kit.model.quantize import quantize_base
from kit.model.tiny import verify_tiny_base
from kit.runs import (
    DataInfo,
    LoraInfo,
    RunInfo,
    RunPaths,
    check_same_config,
    check_shared,
    prepare_run_dir,
    run_dir,
    start_run_dir,
)
from kit.train.base_run import register_base
from kit.train.budget import estimate_logger, log_line, stopped_record
from kit.train.checkpoint import load_checkpoint
from kit.train.job_data import (
    dataset_fingerprint,
    log_tokenised,
    rows_digest,
    splits_or_none,
    tokenise,
    train_examples,
    with_target,
)
from kit.train.lean import step_levers
from kit.train.loop import STOPPED_ON_BUDGET, Engine, LoopOptions
from kit.train.optim import run_optimizer
from kit.train.run_writer import RunWriter, final_metrics, write_history

__all__ = ["finetune", "run_optimizer"]


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
    fingerprint = dataset_fingerprint(cfg.data.dir) if dataset is None else None
    if dataset is None and cfg.data.dir:
        # A `kit tiny` base read its data's train split: other data may hold its
        # pretraining reviews in the test split, which would flatter every score.
        verify_tiny_base(cfg.model.preset, data_fingerprint=fingerprint)
    paths = run_dir(cfg.run.out_dir, cfg.run.name)
    mode, replace = prepare_run_dir(paths, resume=resume, overwrite=overwrite)
    config = cfg.to_dict()
    if mode == "finished":
        return _finished(paths, config)
    distribution, dist_text = setup_distribution(
        cfg.distribution.mode,
        cfg.distribution.mesh,
        batch_size=cfg.train.batch_size,
        kv_heads=kv_heads(cfg.model.preset),
        layout=layout_of(cfg.model.preset),
    )
    dtype = resolve_dtype(cfg.model.dtype)
    lm = _load_base(cfg.model, dtype, seed=cfg.run.seed, sequence_length=cfg.data.buckets[-1])
    if mode == "new":
        multihost.barrier("run-dir-checked")  # nobody is still checking when process 0 replaces it
        if multihost.is_writer():
            start_run_dir(paths, replace=replace)
        multihost.barrier("run-dir-made")
        check_shared(paths, multihost.process_index())
    info = RunInfo(
        name=cfg.run.name,
        preset=cfg.model.preset,
        dtype=dtype,
        distribution=dist_text,
        config=config,
        timings={"load_s": round(time.perf_counter() - t0, 2)},
        init=cfg.model.init,
        tokenizer=tokenizer_note(cfg.model.preset) if cfg.model.init == "random" else None,
    )
    train_ds, val_ds = splits_or_none(cfg.data, dataset, required=cfg.lora_active)
    encoder = Encoder(lm.preprocessor.tokenizer.proto)
    longest = cfg.data.buckets[-1]
    val = with_target(tokenise(encoder, val_ds), longest) if val_ds is not None else []
    if val_ds is not None:
        info.data = DataInfo(
            dir=cfg.data.dir,
            dataset_fingerprint=fingerprint,
            rows_sha256=rows_digest(train_ds, val_ds),
            train_rows=train_ds.num_rows,
            val_rows=val_ds.num_rows,
        )
    if not cfg.lora_active:
        register_base(
            lm, val, info, train=cfg.train, buckets=cfg.data.buckets, pad_id=encoder.pad_id, distribution=distribution
        )
        info.timings["total_s"] = round(time.perf_counter() - t0, 2)
        return _written(info, paths)

    keras.utils.set_random_seed(cfg.run.seed)  # LoRA A-matrix initialisation
    c = cfg.lora
    layers = enable_lora(lm, rank=c.rank, alpha=c.alpha, targets=c.targets, factored=c.factored)
    info.lora = LoraInfo(rank=c.rank, alpha=c.alpha, targets=c.targets, layers=layers)
    info.parameters = parameter_counts(lm)
    t1 = time.perf_counter()
    ex = train_examples(encoder, train_ds, cfg.data, cfg.train, seed=cfg.run.seed)
    levers = step_levers(cfg.train, lm, longest)  # the resolved levers (config "auto" made concrete)
    info.batching = {**ex.batching, "step": levers}
    info.timings["tokenize_s"] = round(time.perf_counter() - t1, 2)
    engine = Engine(lm, run_optimizer(cfg.train, ex.steps), distribution=distribution, pad_id=encoder.pad_id, **levers)
    state, best = _resume_state(paths, config, engine, ex.steps) if mode == "resume" else (None, None)
    if multihost.is_writer():
        info.write(paths.root)
        write_history(paths, state.history if state else [])
    t = cfg.train
    deadline = t0 + 60 * t.max_minutes if t.max_minutes else None
    options = LoopOptions.from_train(
        t,
        total_steps=ex.steps,
        buckets=ex.buckets,
        seed=cfg.run.seed,
        progress=progress,
        desc=cfg.run.name,
        deadline=deadline,
    )
    on_estimate = None
    if deadline:  # log after the first steps whether the budget covers the run
        per_epoch = ex.batching["micro_batches_per_epoch"]
        on_estimate = estimate_logger(
            t,
            total_steps=ex.steps,
            micro_batches_per_epoch=per_epoch,
            evaluates=bool(val),
            deadline=deadline,
            timings=info.timings,
        )
    callbacks = RunWriter(paths, engine, best=best, keep_last=t.keep_last, total_steps=ex.steps)
    t2 = time.perf_counter()
    state, status = callbacks.run(ex.train, val, options, state, info=info, on_estimate=on_estimate)
    train_s = time.perf_counter() - t2
    log_tokenised(train=ex.train, validation=val)

    if callbacks.best is not None:  # early stopping semantics: keep the best evaluated adapter
        engine.load_values(callbacks.best)
    if multihost.is_writer():
        save_adapter(lm, paths.adapter)
        write_history(paths, state.history)
    info.status, info.adapter, info.stopped = status, paths.adapter.name, None
    if status == STOPPED_ON_BUDGET:
        ckpt = paths.latest_checkpoint()
        where = str(ckpt.relative_to(paths.root)) if ckpt else ""
        info.stopped = stopped_record(
            step=state.step, total_steps=ex.steps, max_minutes=t.max_minutes, checkpoint=where, resume=resume_command
        )
        log_line(f"Stopped on the time budget after step {state.step}/{ex.steps}; resume: {info.stopped['resume']}")
    info.metrics = final_metrics(state)
    info.timings.update(
        train_s=round(train_s, 2),
        train_s_all_sessions=round(state.elapsed_s, 2),
        total_s=round(time.perf_counter() - t0, 2),
    )
    return _written(info, paths)


def _finished(paths: RunPaths, config: dict) -> RunInfo:
    """The record of a run with nothing left to train (`resume="auto"`), once its `config` is the saved one."""
    check_same_config(paths, config, Config().to_dict())
    done = RunInfo.read(paths.root)
    what = "registered (a base model)" if done.status == "base" else f"finished ({done.status})"
    if multihost.is_writer():
        print(f"{paths.root} is already {what}: nothing to resume. Pass --overwrite to start it over.")
    return done


def _load_base(model: ModelConfig, dtype: str, *, seed: int, sequence_length: int):
    """The base preset (quantized when `model.quantize` says). It loads before the run dir is made, so a run
    that never started (offline, no licence, a typo in model.preset) leaves nothing behind and an earlier run
    it would replace is kept. `model.init = "random"` builds the preset's architecture with random weights
    instead (never a fallback)."""
    if model.init == "random":
        lm = build_random_lm(model.preset, dtype=dtype, seed=seed, sequence_length=sequence_length)
    else:
        lm = load_causal_lm(model.preset, dtype=dtype)
    quantize_base(lm, model.quantize)
    return lm


def _resume_state(paths: RunPaths, config: dict, engine: Engine, steps: int):
    """Load the latest checkpoint into `engine` once `config` is the saved one: `(loop state, best weights or None)`."""
    check_same_config(paths, config, Config().to_dict())  # a key added since counts as its default
    ckpt = paths.latest_checkpoint()
    state, tv, ov, best, _ = load_checkpoint(ckpt)
    engine.load_values(tv, ov)
    if multihost.is_writer():
        print(f"Resuming {paths.root} from {ckpt.name} (step {state.step}/{steps})")
    return state, best


def _written(info: RunInfo, paths: RunPaths) -> RunInfo:
    """Write `run.json` (process 0) and wait for every process: the job ends when its files are there."""
    if multihost.is_writer():
        info.write(paths.root)
    multihost.barrier("run-written")
    return info
