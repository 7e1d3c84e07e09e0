"""Imports point one way: data <- model <- train; model <- generate <- eval <- app.

Serving a model (generate, eval, the app) must never load the training stack,
and a lower stage never reaches up. Checked twice: statically over every
import statement (function-level ones included), and by importing the
generation and evaluation packages in a fresh interpreter.

A module's private names (`_name`) are its own business: no other module, test
or benchmark imports one (`from kit.x import _name`) or reads one off an
imported module (`x._name`). A name used across modules is public.
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
    # Pure tables and family rules under every stage: they import no stage.
    "kit/families": ("kit.data", "kit.model", "kit.train", "kit.generate", "kit.eval", "kit.notebook", "kit.metrics"),
    "kit/data": ("kit.model", "kit.train", "kit.generate", "kit.eval", "kit.notebook"),
    "kit/metrics": ("kit.model", "kit.train", "kit.generate", "kit.eval", "kit.notebook"),
    "kit/model": ("kit.train", "kit.generate", "kit.eval", "kit.notebook"),
    "kit/train": ("kit.generate", "kit.eval", "kit.notebook"),
    "kit/generate": ("kit.train", "kit.eval", "kit.notebook"),
    "kit/eval": ("kit.train", "kit.notebook"),
    "streamlit_app": ("kit.train", "kit.notebook"),
}
TOP_LEVEL = ("kit/atomic.py", "kit/errors.py", "kit/runs.py", "kit/config.py", "kit/options.py", "kit/launch.py")
# The repo's own packages: where private names are looked for, and whose private names no other module uses.
FIRST_PARTY = ("kit", "streamlit_app", "bench", "tests")
# bench/ scripts import each other by bare name (`from sides import ...`): bench is their sys.path entry.
BENCH_MODULES = {path.stem for path in (ROOT / "bench").glob("*.py")}


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


def test_only_smoke_mode_imports_the_test_doubles():
    # kit/testing.py may import any stage (it trains micro runs), so no stage and not the app may import it;
    # the notebooks' smoke mode is made of test doubles and is the one exception.
    allowed = {ROOT / "kit" / "testing.py", ROOT / "kit" / "notebook" / "smoke.py"}
    files = sorted((ROOT / "kit").rglob("*.py")) + sorted((ROOT / "streamlit_app").rglob("*.py"))
    assert _violations([p for p in files if p not in allowed], ("kit.testing",)) == []
    assert _violations([ROOT / "kit" / "notebook" / "smoke.py"], ("kit.testing",))  # the check sees it


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


def _module_name(path: Path) -> str:
    """`kit/data/hub.py` -> `kit.data.hub`; a package's `__init__.py` -> the package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))  # `__version__` is public


def _first_party(module: str) -> bool:
    return module.split(".")[0] in FIRST_PARTY or module in BENCH_MODULES


def _reach_ins(path: Path, module: str) -> list[str]:
    """Private names of other first-party modules that `path` (the module `module`) imports or reads."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    bound: set[str] = set()  # local names of imported first-party modules, classes and functions
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:  # `from .x import y`: relative to this module's package
                source = ".".join([*package[: len(package) - node.level + 1], *([source] if source else [])])
            if not _first_party(source) or source == module:
                continue
            for alias in node.names:
                if _is_private(alias.name):
                    found.append(f"{alias.lineno}: from {source} import {alias.name}")  # its own line
                bound.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _first_party(alias.name):
                    if any(_is_private(part) for part in alias.name.split(".")):
                        found.append(f"{node.lineno}: import {alias.name}")
                    bound.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
            continue
        base, chain = node.value, []
        while isinstance(base, ast.Attribute):
            chain.append(base.attr)
            base = base.value
        # Reported once, at its first private step (`m._a._b` is one reach-in).
        if isinstance(base, ast.Name) and base.id in bound and not any(_is_private(a) for a in chain):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def _all_reach_ins() -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{hit}"
        for top in FIRST_PARTY
        for path in sorted((ROOT / top).rglob("*.py"))
        for hit in _reach_ins(path, _module_name(path))
    ]


def test_no_module_uses_another_modules_private_names():
    # Names used across modules are public (with a docstring); `_name` is free to change inside its module.
    assert _all_reach_ins() == []


def test_the_check_catches_every_form_of_reach_in(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import kit.data.hub as hub\n"
        "import kit.metrics.overlap\n"
        "from kit import __version__\n"
        "from kit.data import download as dl, prompt\n"
        "from kit.data.download import SAMPLE_HINT, _say\n"
        "from kit.metrics.overlap import (\n"
        "    corpus_bleu,\n"
        "    _bleu,\n"
        ")\n"
        "import json\n"
        "from sides import ROOT, _peak\n"
        "\n"
        "def f(text):\n"
        "    from streamlit_app.markup import _escape\n"
        "    json._default_decoder, text._private  # not first-party: not a reach-in\n"
        "    return hub._scrub(text, []), dl._chain._x, prompt.__name__, kit.metrics.overlap._chrf()\n",
        encoding="utf-8",
    )
    assert sorted(_reach_ins(bad, "bad")) == sorted(
        [
            "5: from kit.data.download import _say",
            "8: from kit.metrics.overlap import _bleu",  # the line of the name, inside the parentheses
            "11: from sides import _peak",  # a bench/ script's sibling
            "14: from streamlit_app.markup import _escape",
            "16: hub._scrub",
            "16: dl._chain",
            "16: kit.metrics.overlap._chrf",
        ]
    )
    # A module's own names, and a relative import of another module's private name.
    (tmp_path / "kit" / "data").mkdir(parents=True)
    own = tmp_path / "kit" / "data" / "hub.py"
    own.write_text("from kit.data.hub import _say\nfrom .download import _chain\n", encoding="utf-8")
    assert _reach_ins(own, "kit.data.hub") == ["2: from kit.data.download import _chain"]
