"""Every `--help` works: each `kit` subcommand (found by walking the parser) and each bench/ script.

Nothing here is a hard-coded list, so a new subcommand or benchmark is covered
the day it is added. argparse formats help lazily, so a bad help string (a bare
`%`) only fails when `--help` runs: which is what these tests do.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from kit.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def _subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for action in parser._actions:  # argparse exposes subparsers only through its actions
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _subcommands(sub, (*prefix, name))
    return found


COMMANDS = _subcommands(build_parser())


def _bench_scripts() -> list[Path]:
    """bench/*.py files that run as scripts (they have an `if __name__ == "__main__"` block)."""
    scripts = []
    for path in sorted((ROOT / "bench").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(n, ast.If) and "__main__" in ast.unparse(n.test) for n in tree.body):
            scripts.append(path)
    return scripts


def test_the_walk_finds_the_commands():
    # The discovery itself must see nested subcommands, or the tests below would cover nothing.
    assert {("data", "prepare"), ("data", "synth"), ("tiny",), ("finetune",), ("export",), ("evaluate",)} <= set(
        COMMANDS
    )
    assert len(_bench_scripts()) >= 4


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a) or "kit")
def test_every_kit_subcommand_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*argv, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: kit") and "--help" in out


@pytest.mark.parametrize("script", _bench_scripts(), ids=lambda p: p.name)
def test_every_bench_script_help(script):
    proc = subprocess.run(
        [sys.executable, str(script), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage:") and "Traceback" not in proc.stderr


def test_notebook_runner_help():
    from kit.notebook.runner import main

    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
