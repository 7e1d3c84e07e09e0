"""The tier check (tests/training_guard.py): what a test runs decides, not what it is called."""

from __future__ import annotations

from pathlib import Path

from tests.training_guard import verdict

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
RUN = "kit.train.loop.Engine.run in process 7 (python -m kit finetune)"

# A stand-in `kit` whose training loop returns at once: the real one loads Keras (~7 s of CPU) per process.
FAKE_LOOP = """
class Engine:
    def run(self, *args, **kwargs):
        return "trained"
"""
TESTS = """
import subprocess
import sys

import pytest


def train():
    from kit.train.loop import Engine

    return Engine().run()


@pytest.fixture(scope="module")
def trained_once():
    return train()


def test_formats_a_date():  # a harmless name on a test that trains
    assert train() == "trained"


def test_reads_a_file(trained_once):  # trains through its fixture
    assert trained_once == "trained"


def test_prints_help():  # trains in a child process
    code = "from kit.train.loop import Engine; Engine().run()"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_marked_slow_may_train():
    assert train() == "trained"


def test_make_tiny_base_round_trip():  # a name the old list of slow tests held, on a test that trains nothing
    assert True
"""


def test_only_what_ran_decides():
    assert verdict(False, []) is None
    assert verdict(True, [RUN]) is None
    message = verdict(False, [RUN])
    assert "not marked slow" in message and RUN in message and "@pytest.mark.slow" in message
    assert "1 more" in verdict(False, [RUN] * 4)


def test_this_session_watches_the_real_training_loop():
    import kit.train.loop

    assert getattr(kit.train.loop.Engine.run, "watched", False)


def test_an_unmarked_test_that_trains_fails_whatever_its_name(pytester, monkeypatch):
    pytester.makeconftest(
        "from tests.training_guard import register\n\n\ndef pytest_configure(config):\n    register(config)\n"
    )
    pytester.makeini("[pytest]\nmarkers =\n    slow: trains a model\n")
    pytester.mkpydir("kit")
    pytester.mkpydir("kit/train")
    (pytester.path / "kit" / "train" / "loop.py").write_text(FAKE_LOOP, encoding="utf-8")
    pytester.makepyfile(test_renamed=TESTS)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # `tests.training_guard`; the stand-in `kit` comes first
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rf")
    result.assert_outcomes(passed=2, failed=3)
    out = result.stdout.str()
    failed = {line.split("::")[1].split()[0] for line in out.splitlines() if line.startswith("FAILED")}
    assert failed == {"test_formats_a_date", "test_reads_a_file", "test_prints_help"}, out
    assert "This test trains a model but is not marked slow" in out
    assert "kit.train.loop.Engine.run in process" in out and "(-c)" in out  # the child process's run too
