"""The fine-tuning stage: run dir, adapter round trip, base runs, exact resume after SIGKILL, divergence."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from kit.config import load_config
from kit.errors import UserError
from kit.model import enable_lora, load_causal_lm, load_run, save_adapter
from kit.runs import RunInfo, RunPaths, list_runs
from kit.testing import adapter_arrays, micro_overrides
from kit.train import finetune

pytestmark = pytest.mark.slow  # fine-tunes the micro model, in-process and in killed and resumed subprocesses

ROOT = Path(__file__).resolve().parents[2]
# On PYTHONPATH with KIT_TEST_BATCH_DELAY set, it makes a subprocess's training loop slow enough to kill.
SLOW_BATCHES = ROOT / "tests" / "slow_batches"


def _x():
    return {"token_ids": np.array([[2, 5, 9, 11, 4, 7]], "int32"), "padding_mask": np.ones((1, 6), "int32")}


def test_finetune_writes_the_run_dir(tmp_path, tiny_preset, tiny_prepared):
    cfg = load_config(ROOT / "configs" / "tiny.toml", micro_overrides(tmp_path, tiny_preset, tiny_prepared))
    info = finetune(cfg, progress=False)
    paths = RunPaths(tmp_path / "runs" / "micro")
    assert paths.adapter.is_file() and paths.history.is_file() and paths.run_json.is_file()
    assert [s for s, _ in paths.list_checkpoints()] == [3, 6]  # keep_last = 2
    assert list(paths.tensorboard.glob("events.out.tfevents.*"))
    saved = json.loads(paths.run_json.read_text(encoding="utf-8"))
    assert saved == json.loads(json.dumps(info.to_dict())) and RunInfo.read(paths.root) == info
    assert saved["lora"]["rank"] == 4 and len(saved["lora"]["layers"]) == 14
    assert saved["parameters"]["trainable"] == 4 * 2 * (3 * 68 + 32 + 3 * 32)
    assert 0 < saved["batching"]["padding_share"] < 1
    assert saved["data"]["train_rows"] == 48 and len(saved["data"]["rows_sha256"]) == 64
    m = saved["metrics"]
    assert m["steps"] == 8 and m["val_loss"] < m["initial_val_loss"]
    header = paths.history.read_text().splitlines()[0]
    assert header.startswith("step,epoch,lr,train_loss,grad_norm,val_loss,val_ppl")
    assert list_runs(tmp_path / "runs")[0]["has_adapter"] is True

    # the saved run loads as base + adapter and differs from the base model
    lm = load_run(paths.root)
    base = load_causal_lm(str(tiny_preset))
    assert not np.allclose(np.asarray(lm(_x())), np.asarray(base(_x())))

    # a second run of the same name is refused unless --overwrite
    with pytest.raises(UserError, match="--resume"):
        finetune(cfg, progress=False)


def test_adapter_round_trip_identical_logits(tmp_path, tiny_preset):
    lm = load_causal_lm(str(tiny_preset))
    layers = enable_lora(lm, rank=3, alpha=6.0, targets="all")
    rng = np.random.default_rng(0)
    for v in lm.backbone.weights:
        if "lora_kernel" in v.path:
            v.assign(rng.normal(size=v.shape).astype("float32") * 0.1)
    expected = np.asarray(lm(_x()))
    run = tmp_path / "run"
    save_adapter(lm, run / "adapter.lora.h5")
    (run / "run.json").write_text(
        json.dumps(
            {
                "preset": str(tiny_preset),
                "dtype": "float32",
                "adapter": "adapter.lora.h5",
                "lora": {"rank": 3, "alpha": 6.0, "targets": "all", "layers": layers},
            }
        )
    )
    fresh = load_run(run)
    np.testing.assert_array_equal(np.asarray(fresh(_x())), expected)
    for a, b in zip(adapter_arrays(fresh), adapter_arrays(lm), strict=True):
        np.testing.assert_array_equal(a, b)


def test_base_model_registers_as_a_run(tmp_path, tiny_preset, tiny_prepared):
    cfg = load_config(
        ROOT / "configs" / "tiny_base.toml",
        micro_overrides(tmp_path, tiny_preset, tiny_prepared, name="base", **{"lora.enabled": "false"}),
    )
    info = finetune(cfg, progress=False)
    assert info.adapter is None and info.status == "base"
    assert info.metrics["val_loss"] > 0
    lm = load_run(tmp_path / "runs" / "base")
    base = load_causal_lm(str(tiny_preset))
    np.testing.assert_array_equal(np.asarray(lm(_x())), np.asarray(base(_x())))


def _cli(args, cwd, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "kit", "finetune", "--config", str(ROOT / "configs" / "tiny.toml"), *args, "--quiet"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _adapter(path):
    with h5py.File(path) as f:
        out = {}
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path, tiny_preset, tiny_prepared):
    full = _cli(
        sum((["--set", o] for o in micro_overrides(tmp_path, tiny_preset, tiny_prepared, name="full")), []), tmp_path
    )
    args = sum((["--set", o] for o in micro_overrides(tmp_path, tiny_preset, tiny_prepared, name="killed")), [])
    # Slow the killed run down so the kill lands between its first checkpoint and the end.
    path = os.pathsep.join(p for p in (str(SLOW_BATCHES), os.environ.get("PYTHONPATH", "")) if p)
    killed = _cli(args, tmp_path, {"PYTHONPATH": path, "KIT_TEST_BATCH_DELAY": "0.5"})
    paths = RunPaths(tmp_path / "runs" / "killed")
    deadline = time.time() + 120
    while not paths.list_checkpoints() and time.time() < deadline and killed.poll() is None:
        time.sleep(0.05)
    assert paths.list_checkpoints(), killed.communicate()[1][-2000:]
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not paths.adapter.exists()  # really interrupted
    assert full.wait(timeout=120) == 0, full.communicate()[1][-2000:]

    resumed = _cli([*args, "--resume"], tmp_path)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err[-2000:]
    assert "Resuming" in out

    a = _adapter(tmp_path / "runs" / "full" / "adapter.lora.h5")
    b = _adapter(paths.adapter)
    assert a.keys() == b.keys() and len(a) > 2
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)
    ra, rb = RunInfo.read(tmp_path / "runs" / "full").to_dict(), RunInfo.read(paths.root).to_dict()
    assert rb["metrics"]["val_loss"] == pytest.approx(ra["metrics"]["val_loss"], rel=1e-5)
    hist_a = (tmp_path / "runs" / "full" / "history.csv").read_text().splitlines()
    hist_b = paths.history.read_text().splitlines()
    assert len(hist_a) == len(hist_b) == 1 + 1 + 8  # header, step-0 evaluation, 8 steps


def test_resume_without_checkpoint_is_a_user_error(tmp_path, tiny_preset, tiny_prepared):
    cfg = load_config(None, micro_overrides(tmp_path, tiny_preset, tiny_prepared, name="none"))
    with pytest.raises(UserError, match="no checkpoint"):
        finetune(cfg, resume=True, progress=False)


def test_auto_buckets_are_chosen_from_the_data_and_recorded(tmp_path, tiny_preset, tiny_prepared):
    from kit.data.batching import Encoder, choose_buckets
    from kit.data.prepare import load_prepared

    overrides = micro_overrides(
        tmp_path,
        tiny_preset,
        tiny_prepared,
        name="auto",
        **{
            "data.auto_buckets": 3,
            "train.steps": 2,
            "train.eval_every": 0,
            "train.checkpoint_every": 0,
        },
    )
    info = finetune(load_config(None, overrides), progress=False)
    encoder = Encoder((tiny_preset / "assets" / "tokenizer" / "vocabulary.spm").read_bytes())
    train = load_prepared(tiny_prepared)["train"]
    lengths = [len(e.ids) - 1 for e in encoder.encode_pairs(train["prompt"], train["target"])]
    expected = choose_buckets(lengths, 3, 128)
    assert info.batching["buckets"] == list(expected)
    assert expected[-1] == 128 and len(expected) == 3
    assert RunInfo.read(tmp_path / "runs" / "auto").batching["buckets"] == list(expected)


def test_rating_power_redraws_the_train_examples_and_records_the_shares(
    tmp_path, tiny_preset, tiny_prepared, monkeypatch
):
    import kit.train.job_data as train_mod
    from kit.data.batching import Encoder
    from kit.data.prepare import load_prepared
    from kit.data.rating_mix import mix_by_rating, rating_shares

    seen = []
    real_plan = train_mod.plan_batches

    def spy(examples, *args, **kwargs):
        seen.append(list(examples))
        return real_plan(examples, *args, **kwargs)

    monkeypatch.setattr(train_mod, "plan_batches", spy)
    overrides = micro_overrides(
        tmp_path,
        tiny_preset,
        tiny_prepared,
        name="mix",
        **{
            "data.rating_power": 0.0,
            "train.steps": 1,
            "train.eval_every": 0,
            "train.checkpoint_every": 0,
        },
    )
    info = finetune(load_config(None, overrides), progress=False)
    train = load_prepared(tiny_prepared)["train"]
    encoder = Encoder((tiny_preset / "assets" / "tokenizer" / "vocabulary.spm").read_bytes())
    examples = encoder.encode_pairs(train["prompt"], train["target"])
    ratings = [int(r) for r in train["rating"]]
    expected = [examples[i].ids.tolist() for i in mix_by_rating(ratings, 0.0, seed=0)]
    assert [e.ids.tolist() for e in seen[0]] == expected
    assert len(set(ratings)) > 1
    assert info.batching["rating_shares"] == {str(r): round(s, 4) for r, s in rating_shares(ratings, 0.0).items()}
    # The natural mix (the default) leaves the split alone and records no shares.
    seen.clear()
    overrides = micro_overrides(
        tmp_path,
        tiny_preset,
        tiny_prepared,
        name="natural",
        **{
            "train.steps": 1,
            "train.eval_every": 0,
            "train.checkpoint_every": 0,
        },
    )
    info = finetune(load_config(None, overrides), progress=False)
    assert [e.ids.tolist() for e in seen[0]] == [e.ids.tolist() for e in examples]
    assert info.batching["rating_shares"] is None


def test_rating_power_without_a_rating_column_is_a_user_error(tmp_path, tiny_preset, tiny_prepared):
    from kit.data.prepare import load_prepared

    dd = load_prepared(tiny_prepared)
    bare = {split: dd[split].remove_columns("rating") for split in ("train", "validation")}
    overrides = micro_overrides(
        tmp_path,
        tiny_preset,
        tiny_prepared,
        name="norating",
        **{
            "data.rating_power": 0.5,
            "train.steps": 1,
        },
    )
    with pytest.raises(UserError, match="data.rating_power needs a 'rating' column"):
        finetune(load_config(None, overrides), progress=False, dataset=bare)


# --------------------------------------------------------------------------- time budget and auto-resume


def _micro_cfg(tmp_path, tiny_preset, tiny_prepared, name, **extra):
    return load_config(
        ROOT / "configs" / "tiny.toml", micro_overrides(tmp_path, tiny_preset, tiny_prepared, name=name, **extra)
    )


def test_time_budget_stops_with_a_checkpoint_and_a_resume_matches_an_uninterrupted_run(
    tmp_path, tiny_preset, tiny_prepared, capsys
):
    full = finetune(_micro_cfg(tmp_path, tiny_preset, tiny_prepared, "full"), progress=False)
    # A budget shorter than loading the model: the run still trains its one step, then stops cleanly.
    stopped = finetune(
        _micro_cfg(tmp_path, tiny_preset, tiny_prepared, "budget", **{"train.max_minutes": 1e-6}), progress=False
    )
    paths = RunPaths(tmp_path / "runs" / "budget")
    assert stopped.status == "stopped_on_budget" and stopped.metrics["steps"] == 1
    saved = json.loads(paths.run_json.read_text())
    assert saved["status"] == "stopped_on_budget"
    assert saved["stopped"]["checkpoint"] == "checkpoints/step_000001" and saved["stopped"]["step"] == 1
    assert "max_minutes" in saved["stopped"]["reason"] and "resume=True" in saved["stopped"]["resume"]
    assert [s for s, _ in paths.list_checkpoints()] == [1]  # written although checkpoint_every (3) was not due
    assert paths.adapter.is_file()  # what it learnt so far can already be evaluated
    assert "Stopped on the time budget after step 1/8" in capsys.readouterr().out

    # a new session with a budget that covers the rest: it says so after its first steps, then finishes
    resumed = finetune(
        _micro_cfg(tmp_path, tiny_preset, tiny_prepared, "budget", **{"train.max_minutes": 600}),
        resume=True,
        progress=False,
    )
    out = capsys.readouterr().out
    assert "Resuming" in out and "step_000001" in out
    assert "Time budget 600 min" in out and "the configured 8 steps" in out and "fit." in out
    assert resumed.status == "completed" and resumed.stopped is None and resumed.metrics["steps"] == 8
    assert resumed.timings["budget_estimate"]["fits"] is True
    assert "stopped" not in json.loads(paths.run_json.read_text())
    a, b = _adapter(tmp_path / "runs" / "full" / "adapter.lora.h5"), _adapter(paths.adapter)
    assert a.keys() == b.keys() and len(a) > 2
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)
    assert resumed.metrics["val_loss"] == pytest.approx(full.metrics["val_loss"], rel=1e-5)
    assert len(paths.history.read_text().splitlines()) == 1 + 1 + 8


def test_cli_budget_stop_records_a_resume_command_that_works(tmp_path, tiny_preset, tiny_prepared, capsys):
    import shlex

    from kit.cli import main

    sets = micro_overrides(tmp_path, tiny_preset, tiny_prepared, name="cli", **{"train.max_minutes": 1e-6})
    sets = [s for s in sets if not s.startswith("run.out_dir=")]
    args = ["finetune", "--config", str(ROOT / "configs" / "tiny.toml"), "--quiet", "--runs-dir", str(tmp_path / "kw")]
    args += sum((["--set", o] for o in sets), [])
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Stopped" in out and "at step 1/8 on the time budget" in out
    info = RunInfo.read(tmp_path / "kw" / "cli")
    command = shlex.split(info.stopped["resume"])
    assert (
        command[:2] == ["kit", "finetune"] and command[-1] == "--resume" and f"run.out_dir={tmp_path / 'kw'}" in command
    )
    assert main(command[1:]) == 0  # the recorded command resumes; the same budget gives this session one step
    assert RunInfo.read(tmp_path / "kw" / "cli").metrics["steps"] == 2


def test_auto_resume_continues_or_leaves_a_finished_run_and_starting_over_needs_overwrite(
    tmp_path, tiny_preset, tiny_prepared, capsys
):
    cfg = _micro_cfg(tmp_path, tiny_preset, tiny_prepared, "auto", **{"train.max_minutes": 1e-6})
    assert finetune(cfg, resume="auto", progress=False).metrics["steps"] == 1  # no run dir yet: a new run
    assert finetune(cfg, resume="auto", progress=False).metrics["steps"] == 2  # a checkpoint: resumed
    done = _micro_cfg(tmp_path, tiny_preset, tiny_prepared, "auto")
    assert finetune(done, resume="auto", progress=False).status == "completed"
    paths = RunPaths(tmp_path / "runs" / "auto")
    mtime = paths.adapter.stat().st_mtime_ns
    for ckpt in paths.list_checkpoints():
        __import__("shutil").rmtree(ckpt[1])
    again = finetune(done, resume="auto", progress=False)  # finished: nothing to train, nothing replaced
    assert again.status == "completed" and paths.adapter.stat().st_mtime_ns == mtime
    assert "is already finished (completed): nothing to resume" in capsys.readouterr().out
    (paths.root / "run.json").write_text(json.dumps({**json.loads(paths.run_json.read_text()), "status": "running"}))
    # No checkpoint left and not finished: the kit's output rule names --overwrite and --resume.
    with pytest.raises(UserError, match="already holds a run .* pass --overwrite to replace it"):
        finetune(done, resume="auto", progress=False)
    assert finetune(done, resume="auto", overwrite=True, progress=False).metrics["steps"] == 8


def test_time_budget_ends_the_call_before_it_runs_out(tmp_path, tiny_preset, tiny_prepared, monkeypatch, capsys):
    """A run far longer than its budget: the estimate says so after 5 steps, and the call returns in time."""
    import kit.train.loop

    make_batch = kit.train.loop.make_batch

    def slow_make_batch(*args, **kwargs):
        time.sleep(0.4)  # each step (one batch: no accumulation) takes at least 0.4 s
        return make_batch(*args, **kwargs)

    monkeypatch.setattr(kit.train.loop, "make_batch", slow_make_batch)
    budget_s = 45.0
    # one bucket, no accumulation, no evaluation until the end: one compilation, so the estimate
    # is not dominated by it (on a real run, compiling is seconds of a budget of hours)
    fast = {"data.buckets": "[64]", "train.grad_accum": 1, "train.eval_every": 0}
    cfg = _micro_cfg(
        tmp_path,
        tiny_preset,
        tiny_prepared,
        "long",
        **{**fast, "train.steps": 500, "train.max_minutes": budget_s / 60},
    )
    t0 = time.perf_counter()
    info = finetune(cfg, progress=False)
    elapsed = time.perf_counter() - t0
    assert info.status == "stopped_on_budget" and 5 < info.metrics["steps"] < 500, info.timings
    assert elapsed < budget_s, elapsed  # the checkpoint, adapter and run.json are all written within the budget
    out = capsys.readouterr().out
    assert "the remaining 495 steps need" in out and "the run will stop after about step" in out
    assert info.timings["budget_estimate"]["fits"] is False
    assert RunPaths(tmp_path / "runs" / "long").latest_checkpoint().name == f"step_{info.metrics['steps']:06d}"
