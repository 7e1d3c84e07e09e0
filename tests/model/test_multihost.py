"""Several processes, one JAX job: real local processes (gloo CPU collectives) against one process.

The slow tests start `kit launch` / `kit finetune --processes 2` the way a user
does, with 2 processes x 4 virtual CPU devices, and compare with one process
holding 8: same losses, one run dir, one set of checkpoints, a resumed job
ending on the same adapter, and a lost process stopping the job in bounded time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kit.data.batching import Example, make_batch
from kit.launch import child_env, describe_exit, exit_code, free_port, launch
from kit.model.multihost import batch_rows, to_numpy

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "tiny.toml"
TIMEOUT_S = 600  # one job on a busy 2-core machine takes 1-3 minutes; a hang fails instead of blocking CI
# One bucket (one compile per function) and 4 steps: model parallelism over gloo is slow on a busy CPU.
# No accumulation: 4 batches of 8 read 32 of the 48 train rows, so a process that tokenised
# only its share plus its rows of those batches (4 each) stays below the whole split.
STEPS = {
    "data.buckets": "[128]",
    "train.grad_accum": 1,
    "train.steps": 4,
    "train.eval_every": 2,
    "train.checkpoint_every": 2,
    "train.keep_last": 3,
}


# --------------------------------------------------------------------------- fast: the pieces


def test_child_env_describes_one_process_of_the_job():
    base = {"XLA_FLAGS": "--xla_dump_to=/x --xla_force_host_platform_device_count=8", "KEEP": "1"}
    env = child_env(base, index=1, processes=3, devices=2, port=4321)
    assert env["JAX_COORDINATOR_ADDRESS"] == "127.0.0.1:4321"
    assert (env["JAX_NUM_PROCESSES"], env["JAX_PROCESS_ID"], env["JAX_PLATFORMS"]) == ("3", "1", "cpu")
    # the caller's device count is replaced, its other flags kept
    assert env["XLA_FLAGS"] == "--xla_dump_to=/x --xla_force_host_platform_device_count=2"
    assert env["KEEP"] == "1"


def test_exit_codes_say_what_happened():
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"
    assert describe_exit(1) == "exited with code 1"
    assert exit_code(-signal.SIGKILL) == 137 and exit_code(2) == 2
    assert 0 < free_port() < 65536


def test_local_rows_build_only_their_part_of_the_global_batch():
    exs = [Example(np.arange(2, 2 + n, dtype=np.int32), 1) for n in (4, 5, 6)]
    whole = make_batch(exs, 6, 4)
    for rows in (range(0, 2), range(2, 4), range(1, 3)):
        part = make_batch(exs, 6, 4, rows=rows)
        assert np.array_equal(part.x["token_ids"], whole.x["token_ids"][rows.start : rows.stop])
        assert np.array_equal(part.sample_weight, whole.sample_weight[rows.start : rows.stop])
    # row 3 is padding (3 examples in a batch of 4): weightless, also when built alone
    assert make_batch(exs, 6, 4, rows=range(3, 4)).sample_weight.sum() == 0


def test_one_process_feeds_every_row_and_reads_arrays_whole():
    assert batch_rows(None, 8) == range(8)
    assert to_numpy(np.arange(3)).tolist() == [0, 1, 2]


def test_launch_stops_the_job_and_returns_the_failed_process_code(capsys):
    # Every child rejects the unknown command (exit 2): the launcher reports one of them and returns 2.
    assert launch(["no-such-command"], processes=2) == 2
    err = capsys.readouterr().err
    assert "kit launch: process" in err and "exited with code 2" in err


def test_launch_usage_errors_are_one_line(capsys):
    from kit.cli import main

    assert main(["launch", "--processes", "2"]) == 2
    assert "needs a kit command after --" in capsys.readouterr().err
    assert main(["launch", "--processes", "0", "--", "finetune"]) == 2


# --------------------------------------------------------------------------- slow: real jobs


def _overrides(tmp: Path, preset, data, name: str, **extra) -> list[str]:
    from kit.testing import micro_overrides

    args = micro_overrides(tmp, preset, data, name=name, **{**STEPS, **extra})
    return sum((["--set", o] for o in args), [])


def _env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "KIT_TEST_"))}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def _slow_env(delay_s: float, **extra) -> dict[str, str]:
    """`_env` whose processes (launched ones too) wait `delay_s` before each batch (`tests/slow_batches`)."""
    path = os.pathsep.join((str(ROOT / "tests" / "slow_batches"), str(ROOT)))
    return _env(PYTHONPATH=path, KIT_TEST_BATCH_DELAY=str(delay_s), **extra)


def _kit(args, *, env, cwd, timeout=TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kit", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout
    )


def _finetune(tmp, preset, data, name, *, processes, devices, extra=(), **sets):
    """`kit finetune` as `processes` x `devices`: one process gets its devices from XLA_FLAGS, several from launch.

    Each process of a job logs how many rows it tokenised to `tmp/tokenised/` (outside the run dir).
    """
    args = ["finetune", "--config", str(CONFIG), "--quiet", *_overrides(tmp, preset, data, name, **sets), *extra]
    if processes == 1:
        env = _env(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    else:
        env = _env(KIT_TOKENISE_LOG=str(tmp / "tokenised"))
        args += ["--processes", str(processes), "--devices-per-process", str(devices)]
    proc = _kit(args, env=env, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "runs" / name


def _history(run: Path) -> dict[str, list[float]]:
    import csv

    rows = list(csv.DictReader((run / "history.csv").open(encoding="utf-8")))
    return {k: [float(r[k]) for r in rows if r[k]] for k in ("train_loss", "val_loss", "grad_norm")}


def _adapter(run: Path) -> list[np.ndarray]:
    import h5py

    out: list[np.ndarray] = []
    with h5py.File(run / "adapter.lora.h5", "r") as f:
        f.visititems(lambda name, obj: out.append(np.asarray(obj)) if isinstance(obj, h5py.Dataset) else None)
    assert out
    return out


def _one_writer(run: Path, reference: Path, *, sessions: int = 1) -> None:
    """The run holds exactly what one process writes: the same checkpoints, one event file per session."""
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == sorted(p.name for p in (reference / "checkpoints").iterdir()) == ["step_000002", "step_000004"]
    assert len(list((run / "tensorboard").iterdir())) == sessions
    assert sorted(p.name for p in run.parent.iterdir()) == [run.name]  # no per-process run dirs


@pytest.fixture(scope="module")
def jobs(tmp_path_factory, tiny_preset, tiny_prepared):
    """One process x 8 devices (the reference) and 2 processes x 4 with DataParallel, uninterrupted."""
    out = {}
    for key, procs, devs in (("one", 1, 8), ("data", 2, 4)):
        tmp = tmp_path_factory.mktemp(f"mh-{key}")
        t0 = time.perf_counter()
        out[key] = _finetune(
            tmp, tiny_preset, tiny_prepared, key, processes=procs, devices=devs, **{"distribution.mode": "data"}
        )
        print(f"{key}: {procs} x {devs} devices took {time.perf_counter() - t0:.0f} s")
    return out


def _matches_one_process(run: Path, one: Path) -> None:
    """Same losses, gradient norms and adapter as one process with all the devices, and one writer's files."""
    want, got = _history(one), _history(run)
    assert len(want["train_loss"]) == 4 and len(want["val_loss"]) == 3
    for key in ("train_loss", "val_loss", "grad_norm"):
        assert got[key] == pytest.approx(want[key], rel=1e-4), key
    for a, b in zip(_adapter(run), _adapter(one), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    _one_writer(run, one)


def _tokenised_only_their_share(run: Path, processes: int = 2) -> None:
    """Each process tokenised at most its 1/N of the train rows plus its rows of the batches it fed, not all."""
    import json

    config = _run_json(run)["config"]
    batches = config["train"]["steps"] * config["train"]["grad_accum"]
    rows_fed = config["train"]["batch_size"] // processes  # DataParallel and batch:2 meshes: 4 rows each
    logs = sorted((run.parent.parent / "tokenised").glob("process-*.json"))
    assert [p.name for p in logs] == [f"process-{i}.json" for i in range(processes)]
    for path in logs:
        record = json.loads(path.read_text(encoding="utf-8"))
        train = record["train"]
        print(f"{run.name} process {record['process']}: tokenised {record}")
        bound = -(-train["rows"] // processes) + batches * rows_fed
        assert bound < train["rows"], "the run reads too much for the check to mean anything"
        assert train["rows"] // processes <= train["tokenised"] <= bound, record
        val = record["validation"]
        assert val["rows"] // processes <= val["tokenised"] <= val["rows"], record


@pytest.mark.slow
def test_two_processes_train_like_one_with_data_parallel(jobs):
    _matches_one_process(jobs["data"], jobs["one"])
    assert _run_json(jobs["data"])["distribution"] == "DataParallel over 8 devices"
    _tokenised_only_their_share(jobs["data"])


@pytest.mark.slow
def test_two_processes_train_like_one_with_model_parallel(jobs, tmp_path, tiny_preset, tiny_prepared):
    sets = {"distribution.mode": "model", "distribution.mesh": "batch:2,model:4"}
    model = _finetune(tmp_path, tiny_preset, tiny_prepared, "model", processes=2, devices=4, **sets)
    _matches_one_process(model, jobs["one"])
    assert _run_json(model)["distribution"] == "ModelParallel mesh batch:2,model:4"
    _tokenised_only_their_share(model)


@pytest.mark.slow
def test_a_gemma3_shards_over_two_processes_like_one(tmp_path, tiny_prepared):
    """Gemma 3's layout map (kit.families: KerasHub has none for Gemma 3) on a multi-process mesh.

    The micro Gemma 3 has 4 key/value heads, so `model:4` splits its heads; two
    processes of 4 devices must train exactly as one process with all 8.
    """
    from kit.testing import save_micro_preset

    preset = save_micro_preset(tmp_path / "micro-gemma3", tiny_prepared, family="gemma3")
    sets = {"distribution.mode": "model", "distribution.mesh": "batch:2,model:4"}
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = _finetune(tmp_path / "one", preset, tiny_prepared, "one", processes=1, devices=8, **sets)
    two = _finetune(tmp_path / "two", preset, tiny_prepared, "two", processes=2, devices=4, **sets)
    _matches_one_process(two, one)
    assert _run_json(two)["distribution"] == "ModelParallel mesh batch:2,model:4"
    assert _run_json(two)["config"]["model"]["preset"] == str(preset)


def _run_json(run: Path) -> dict:
    import json

    return json.loads((run / "run.json").read_text(encoding="utf-8"))


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _wait_for(path: Path, proc: subprocess.Popen, limit_s: float = TIMEOUT_S) -> None:
    end = time.monotonic() + limit_s
    while not path.exists():
        assert proc.poll() is None, f"the job ended (rc {proc.returncode}) before {path.name} appeared"
        assert time.monotonic() < end, f"no {path} after {limit_s} s"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def killed(tmp_path_factory, tiny_preset, tiny_prepared):
    """A 2-process `kit launch` job whose process 1 is SIGKILLed after the step-2 checkpoint."""
    tmp = tmp_path_factory.mktemp("mh-killed")
    name = "data"
    args = ["finetune", "--config", str(CONFIG), "--quiet", *_overrides(tmp, tiny_preset, tiny_prepared, name)]
    args += ["--set", "distribution.mode=data"]
    # A sleep before each batch (the numbers do not change) makes the kill land mid-run.
    launcher = subprocess.Popen(
        [sys.executable, "-m", "kit", "launch", "--processes", "2", "--devices-per-process", "4", "--", *args],
        env=_slow_env(3),
        cwd=tmp,
        stderr=subprocess.PIPE,
        text=True,
    )
    run = tmp / "runs" / name
    try:
        _wait_for(run / "checkpoints" / "step_000002", launcher)
        children = _children(launcher.pid)
        assert len(children) == 2, children
        os.kill(children[1], signal.SIGKILL)
        t0 = time.monotonic()
        _, err = launcher.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if launcher.poll() is None:
            launcher.kill()
    return {"tmp": tmp, "run": run, "rc": launcher.returncode, "err": err, "took": took}


@pytest.mark.slow
def test_killing_a_process_stops_the_launched_job_with_one_line(killed):
    assert killed["rc"] == 128 + signal.SIGKILL, killed["err"][-2000:]
    assert "kit launch: process 1 of 2 was killed by SIGKILL; stopped the other" in killed["err"]
    assert killed["took"] < 30, killed["took"]  # the launcher stops the rest at once (GRACE_S at most)
    run = killed["run"]
    assert not (run / "adapter.lora.h5").exists()
    assert "step_000004" not in {p.name for p in (run / "checkpoints").iterdir()}


@pytest.mark.slow
def test_resuming_on_two_processes_gives_the_uninterrupted_adapter(killed, jobs, tiny_preset, tiny_prepared):
    sets = {"distribution.mode": "data"}
    tmp = killed["tmp"]
    resumed = _finetune(tmp, tiny_preset, tiny_prepared, "data", processes=2, devices=4, extra=["--resume"], **sets)
    for a, b in zip(_adapter(resumed), _adapter(jobs["data"]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    whole = _history(jobs["data"])
    for key, values in _history(resumed).items():
        assert values == pytest.approx(whole[key], rel=1e-5), key
    _one_writer(resumed, jobs["one"], sessions=2)  # the killed session's event file and the resumed one's


@pytest.mark.slow
def test_without_a_launcher_a_lost_process_stops_the_other_within_the_heartbeat(tmp_path, tiny_preset, tiny_prepared):
    """Hosts of a pod have no common parent: JAX's heartbeat is what notices a dead peer."""
    heartbeat = 5
    port = free_port()
    args = ["finetune", "--config", str(CONFIG), "--quiet", *_overrides(tmp_path, tiny_preset, tiny_prepared, "hb")]
    args += ["--set", "distribution.mode=data", "--set", "train.steps=40"]
    procs = []
    for i in range(2):
        env = child_env(_slow_env(1, KIT_HEARTBEAT_S=str(heartbeat)), index=i, processes=2, devices=2, port=port)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "kit", *args],
                env=env,
                cwd=tmp_path,
                stderr=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                text=True,
            )
        )
    try:
        _wait_for(tmp_path / "runs" / "hb" / "checkpoints" / "step_000002", procs[0])
        procs[1].kill()
        t0 = time.monotonic()
        _, err = procs[0].communicate(timeout=heartbeat + 60)
        took = time.monotonic() - t0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert procs[0].returncode != 0
    assert took < heartbeat + 30, took
    assert "another task died" in err, err[-2000:]


@pytest.mark.slow
def test_a_process_failing_alone_stops_the_job_with_one_line_each(tmp_path, tiny_preset, tiny_prepared):
    """Process 1 writes to other storage than process 0 (not shared): it says so, and process 0 stops too."""
    port = free_port()
    procs = []
    for i in range(2):
        out = tmp_path / f"host{i}"
        args = ["finetune", "--config", str(CONFIG), "--quiet", *_overrides(out, tiny_preset, tiny_prepared, "alone")]
        env = child_env(_env(KIT_HEARTBEAT_S="10"), index=i, processes=2, devices=2, port=port)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "kit", *args, "--set", "distribution.mode=data"],
                env=env,
                cwd=tmp_path,
                stderr=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                text=True,
            )
        )
    try:
        errs = [p.communicate(timeout=TIMEOUT_S)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    lines = [[line for line in e.splitlines() if line.startswith("error: ")] for e in errs]
    assert procs[1].returncode == 2 and "cannot see the run dir" in lines[1][-1], errs[1][-2000:]
    assert procs[0].returncode == 1 and "another process of this job stopped" in lines[0][-1], errs[0][-2000:]
    assert "Traceback" not in errs[0] + errs[1]
    assert not (tmp_path / "host0" / "runs" / "alone" / "adapter.lora.h5").exists()
