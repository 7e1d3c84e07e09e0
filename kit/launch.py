"""`kit launch`: start N local processes that form one multi-process JAX job, for testing multi-host code here.

Each child is `python -m kit <command...>` with the environment that
`kit.model.multihost.initialize` reads: a coordinator on 127.0.0.1 at a free
port, the process count and its own id, CPU devices only
(`JAX_PLATFORMS=cpu`) and `--devices-per-process` virtual devices each
(`--xla_force_host_platform_device_count`). The processes talk through gloo
CPU collectives, so the same global mesh, batch feeding and write-once rules
run as on a TPU pod slice or several GPU hosts (docs/multihost.md).

A lost process fails the job fast: as soon as one child exits non-zero the
others are stopped (SIGTERM, then SIGKILL after a grace period: JAX's
preemption handler catches SIGTERM and keeps running) and the
launcher says which one failed and how. Exit codes: 0 when every process
succeeded; else the first failed child's own code (2 bad input, 1 failure),
or 128 + N when it was killed by signal N (the shell's convention).

Only this module's standard-library code runs in the launcher: it never
imports JAX, so it cannot take the devices its children need.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from kit.errors import UserError

GRACE_S = 10.0  # how long stopped children get to exit before SIGKILL
POLL_S = 0.2
TAIL_LINES = 5


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (for the coordinator).

    Example:
        >>> 0 < free_port() < 65536
        True
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(base: dict[str, str], *, index: int, processes: int, devices: int, port: int) -> dict[str, str]:
    """The environment of local process `index` of `processes`, each with `devices` virtual CPU devices.

    Example:
        >>> env = child_env({}, index=1, processes=2, devices=4, port=1234)
        >>> env["JAX_PROCESS_ID"], env["JAX_NUM_PROCESSES"], env["JAX_COORDINATOR_ADDRESS"]
        ('1', '2', '127.0.0.1:1234')
        >>> env["XLA_FLAGS"]
        '--xla_force_host_platform_device_count=4'
    """
    flags = [f for f in base.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    return {
        **base,
        "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
        "JAX_NUM_PROCESSES": str(processes),
        "JAX_PROCESS_ID": str(index),
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": " ".join([*flags, f"--xla_force_host_platform_device_count={devices}"]),
    }


def describe_exit(code: int) -> str:
    """`exited with code 2` or `was killed by SIGKILL` for a `Popen.returncode`.

    Example:
        >>> describe_exit(-9)
        'was killed by SIGKILL'
        >>> describe_exit(2)
        'exited with code 2'
    """
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def exit_code(code: int) -> int:
    """The launcher's exit code for a failed child's `returncode` (128 + N for signal N).

    Example:
        >>> exit_code(-9), exit_code(2)
        (137, 2)
    """
    return 128 - code if code < 0 else code


def _tail(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if line.strip() and not line.startswith("[Gloo]")][-TAIL_LINES:]


def _die_with_parent() -> None:
    """In a child: get SIGKILL when the launcher dies, even by SIGKILL, so no process is left behind (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _stop(procs: Sequence[subprocess.Popen]) -> None:
    """SIGTERM every running child, then SIGKILL whoever is left after `GRACE_S`."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    end = time.monotonic() + GRACE_S
    for p in procs:
        try:
            p.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def launch(command: Sequence[str], *, processes: int, devices_per_process: int = 1) -> int:
    """Run `python -m kit <command>` as `processes` local processes of one job; returns the exit code.

    Process 0 prints to this terminal; the others write to temp logs, whose
    last lines are shown when one of them fails.

    Example:
        >>> launch(["finetune", "--config", "configs/tiny.toml"], processes=2, devices_per_process=4)  # doctest: +SKIP
        0
    """
    if processes < 1 or devices_per_process < 1:
        raise UserError(
            f"--processes and --devices-per-process must be at least 1, received {processes} and {devices_per_process}."
        )
    if not command:
        raise UserError("kit launch needs a kit command after --, e.g. `kit launch --processes 2 -- finetune ...`.")
    port = free_port()
    argv = [sys.executable, "-m", "kit", *command]
    with tempfile.TemporaryDirectory(prefix="kit-launch-") as logs:
        procs: list[subprocess.Popen] = []
        log_paths: list[Path | None] = []
        try:
            for i in range(processes):
                env = child_env(dict(os.environ), index=i, processes=processes, devices=devices_per_process, port=port)
                if i == 0:
                    procs.append(subprocess.Popen(argv, env=env, preexec_fn=_die_with_parent))
                    log_paths.append(None)
                    continue
                path = Path(logs) / f"process-{i}.log"
                with path.open("wb") as out:
                    procs.append(
                        subprocess.Popen(
                            argv, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
                        )
                    )
                log_paths.append(path)
            return _watch(procs, log_paths)
        except KeyboardInterrupt:
            _stop(procs)
            print("kit launch: interrupted; stopped every process", file=sys.stderr)
            return 130
        finally:
            _stop(procs)


def _watch(procs: Sequence[subprocess.Popen], log_paths: Sequence[Path | None]) -> int:
    """Wait for every child; on the first failure stop the rest and report it."""
    while True:
        codes = [p.poll() for p in procs]
        # A child killed by a signal is the cause; the others then fail because it went away.
        failed = sorted(((c >= 0, i, c) for i, c in enumerate(codes) if c not in (None, 0)))
        if failed:
            _, i, code = failed[0]
            others = sum(c is None for c in codes)
            if log_paths[i] is not None:
                for line in _tail(log_paths[i]):
                    print(f"[process {i}] {line}", file=sys.stderr)
            print(
                f"error: kit launch: process {i} of {len(procs)} {describe_exit(code)}; "
                f"stopped the other {others} still running.",
                file=sys.stderr,
            )
            _stop(procs)
            return exit_code(code)
        if all(c == 0 for c in codes):
            return 0
        time.sleep(POLL_S)
