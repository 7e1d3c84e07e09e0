"""The `kit` command line: entry points, usage errors as one line with exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kit.cli import main


@pytest.mark.parametrize(
    "argv, needle",
    [
        ([], "kit: the following arguments are required: command"),
        (["nonsense"], "invalid choice: 'nonsense'"),
        (["data"], "required: data_command"),
        (["data", "synth", "--out", "x.tskv", "--rows", "-5"], "--rows: expected a positive integer, received '-5'"),
        (["data", "synth", "--out", "x.tskv", "--seed", "abc"], "--seed: expected an integer ≥ 0, received 'abc'"),
        (["data", "prepare", "--input", "a.tskv"], "required: --out"),
        (["data", "prepare", "--input", "a.tskv", "--out", "o", "--on-error", "ignore"], "--on-error: invalid choice"),
    ],
)
def test_usage_errors_are_one_line_exit_2(argv, needle, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert needle in err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert "--help" in err


def test_python_dash_m_kit_and_help():
    proc = subprocess.run([sys.executable, "-m", "kit", "data", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "synth" in proc.stdout and "prepare" in proc.stdout and "download" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "kit", "data", "prepare", "--input", "missing.tskv", "--out", "o"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: Input file not found: missing.tskv. Run `kit data synth` or `kit data download` first."
    )


def test_keras_backend_defaults_to_jax(monkeypatch):
    code = "import os; os.environ.pop('KERAS_BACKEND', None); import kit, keras; print(keras.backend.backend())"
    env = {k: v for k, v in __import__("os").environ.items() if k != "KERAS_BACKEND"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.stdout.strip() == "jax", proc.stderr


@pytest.mark.slow  # imports TensorFlow in a subprocess
def test_kit_keeps_tensorflow_out_unless_asked():
    code = "import sys, kit, keras_hub; print(sys.modules.get('tensorflow') is None)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "True", proc.stderr[-2000:]
    assert "cuInit" not in proc.stderr and "oneDNN" not in proc.stderr
    env = {**__import__("os").environ, "KIT_ALLOW_TENSORFLOW": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.stdout.strip() == "False", proc.stderr[-2000:]
