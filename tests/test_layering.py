"""Imports point one way: data <- model <- train; model <- generate <- eval <- app.

Serving a model (generate, eval, the app) must never load the training stack,
and a lower stage never reaches up. Checked twice: statically over every
import statement (function-level ones included), and by importing the
generation and evaluation packages in a fresh interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What each stage may not import (prefix match on the module path).
FORBIDDEN = {
    "kit/data": ("kit.model", "kit.train", "kit.generate", "kit.eval", "kit.notebook"),
    "kit/metrics": ("kit.model", "kit.train", "kit.generate", "kit.eval", "kit.notebook"),
    "kit/model": ("kit.train", "kit.generate", "kit.eval", "kit.notebook"),
    "kit/train": ("kit.generate", "kit.eval", "kit.notebook"),
    "kit/generate": ("kit.train", "kit.eval", "kit.notebook"),
    "kit/eval": ("kit.train", "kit.notebook"),
    "streamlit_app": ("kit.train", "kit.notebook"),
}
TOP_LEVEL = ("kit/atomic.py", "kit/errors.py", "kit/runs.py", "kit/config.py", "kit/options.py", "kit/launch.py")


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from kit import train` names a package too.
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _violations_in(path: Path, forbidden) -> list[str]:
    return [
        f"{path.name}:{line} imports {module}"
        for line, module in _imports(path)
        if any(module == f or module.startswith(f + ".") for f in forbidden)
    ]


def _violations(files, forbidden) -> list[str]:
    return [f"{path.relative_to(ROOT).parent}/{v}" for path in files for v in _violations_in(path, forbidden)]


@pytest.mark.parametrize("stage", sorted(FORBIDDEN))
def test_stage_imports_point_one_way(stage):
    files = sorted((ROOT / stage).rglob("*.py"))
    assert files, stage
    assert _violations(files, FORBIDDEN[stage]) == []


def test_top_level_modules_import_no_stage():
    stages = ("kit.data", "kit.model", "kit.train", "kit.generate", "kit.eval", "kit.notebook", "kit.metrics")
    assert _violations([ROOT / f for f in TOP_LEVEL], stages) == []


def test_kit_never_imports_the_app():
    # The app is a thin layer over kit: what the app needs from below lives in kit, never the other way.
    assert _violations(sorted((ROOT / "kit").rglob("*.py")), ("streamlit_app", "streamlit")) == []


def test_the_check_catches_a_function_level_import(tmp_path):
    # The static check must see imports inside functions, where the lazy ones live.
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from kit.train import finetune\n    return finetune\n", encoding="utf-8")
    assert _imports(bad) == [(2, "kit.train"), (2, "kit.train.finetune")]
    assert len(_violations_in(bad, ("kit.train",))) == 2


def test_generation_and_evaluation_load_no_training_module():
    code = (
        "import sys\n"
        "import kit.generate, kit.eval, kit.model\n"
        "from kit.eval import evaluate, judges, nll, report, scoring, tables, votes\n"
        "from kit.generate import generator, io, request, sampler\n"
        "print(sorted(m for m in sys.modules if m == 'kit.train' or m.startswith('kit.train.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_training_does_load_training_modules():
    # The same probe on kit.train sees it: the check above can fail.
    code = "import sys, kit.train\nprint(sum(m.startswith('kit.train.') for m in sys.modules) > 0)\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "True"
