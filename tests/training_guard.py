"""The test tier cannot drift: a test that trains a model and is not marked slow fails.

A test's tier is its own `@pytest.mark.slow` (or its module's `pytestmark`).
What makes a test slow is what it runs, so the check looks at that, not at
names: every call of the training loop (`kit.train.loop.Engine.run`: fine-tuning,
pretraining the tiny base, the benchmarks' kit side) is noted in a session log,
by the pytest process itself and by every process a test starts
(tests/training_probe: each `subprocess.Popen` gets that dir first on its
PYTHONPATH). A test during whose setup (its fixtures) or call the log grew is
failed unless it is marked slow. A process that ignores PYTHONPATH (`python
-I`) or outlives its test is not seen.

`register(config)` (tests/conftest.py) turns it on for a session.
"""

from __future__ import annotations

import functools
import inspect
import os
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.training_probe import sitecustomize as probe

PROBE_DIR = Path(probe.__file__).resolve().parent


def verdict(marked_slow: bool, runs: list[str]) -> str | None:
    """Why a test fails the tier check, or None: it trained (`runs`, the log lines) and is not marked slow.

    Only what ran counts, never the test's name or file.

    Example:
        >>> verdict(False, []) is None and verdict(True, ["kit.train.loop.Engine.run in process 1"]) is None
        True
        >>> verdict(False, ["kit.train.loop.Engine.run in process 1"]).startswith("This test trains a model")
        True
    """
    if marked_slow or not runs:
        return None
    shown = "\n  ".join(runs[:3]) + (f"\n  ... {len(runs) - 3} more" if len(runs) > 3 else "")
    return (
        f"This test trains a model but is not marked slow; it ran:\n  {shown}\n"
        "Mark it `@pytest.mark.slow` (or its module `pytestmark = pytest.mark.slow`), "
        "so the fast tier (`make test-fast`) leaves it out."
    )


def with_probe(env: Mapping[str, str] | None) -> dict[str, str]:
    """`env` (None: this process's environment) for a child process the probe watches.

    The probe dir goes first on PYTHONPATH; the log is this session's unless `env` names one.

    Example:
        >>> env = with_probe({"PYTHONPATH": "src", probe.LOG_ENV: "t.log"})
        >>> env["PYTHONPATH"] == os.pathsep.join([str(PROBE_DIR), "src"]), env[probe.LOG_ENV]
        (True, 't.log')
    """
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join([str(PROBE_DIR), *filter(None, [env.get("PYTHONPATH")])])
    if os.environ.get(probe.LOG_ENV):
        env.setdefault(probe.LOG_ENV, os.environ[probe.LOG_ENV])
    return env


class TrainingGuard:
    """The pytest plugin: a session log of training runs, the child processes' probe, the per-test check."""

    def __init__(self) -> None:
        fd, path = tempfile.mkstemp(prefix="kit-training-runs-", suffix=".log")
        os.close(fd)
        self.log = Path(path)
        self.start = 0
        self.log_before = os.environ.get(probe.LOG_ENV)
        os.environ[probe.LOG_ENV] = path  # read at each call, in this process and in forked ones
        probe.watch_training()
        self.popen_init = subprocess.Popen.__init__
        signature = inspect.signature(self.popen_init)

        @functools.wraps(self.popen_init)
        def popen_init_with_probe(popen, *args, **kwargs):
            bound = signature.bind(popen, *args, **kwargs)
            bound.arguments["env"] = with_probe(bound.arguments.get("env"))
            self.popen_init(*bound.args, **bound.kwargs)

        subprocess.Popen.__init__ = popen_init_with_probe

    def close(self) -> None:
        """Undo what `__init__` did: Popen as it was, the environment variable, the log file."""
        subprocess.Popen.__init__ = self.popen_init
        if self.log_before is None:
            os.environ.pop(probe.LOG_ENV, None)
        else:
            os.environ[probe.LOG_ENV] = self.log_before
        self.log.unlink(missing_ok=True)

    def runs_since(self, offset: int) -> list[str]:
        """The log lines written after byte `offset`."""
        with self.log.open(encoding="utf-8") as f:
            f.seek(offset)
            return f.read().splitlines()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(self, item):
        self.start = self.log.stat().st_size  # from here on, this test's fixtures and call
        yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = (yield).get_result()
        # Checked once per test: after its call, or after a setup that ended it (failed or skipped).
        if report.when == "call" or (report.when == "setup" and not report.passed):
            message = verdict(item.get_closest_marker("slow") is not None, self.runs_since(self.start))
            if message:
                report.outcome = "failed"
                report.longrepr = message


def register(config: pytest.Config) -> TrainingGuard:
    """Turn the guard on for this pytest session (from a `pytest_configure` hook); off at the session's end."""
    guard = TrainingGuard()
    config.pluginmanager.register(guard, "kit-training-guard")
    config.add_cleanup(guard.close)
    return guard
