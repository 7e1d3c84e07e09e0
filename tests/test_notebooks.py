"""Every notebook runs top to bottom in SMOKE mode (synthetic sample, micro tiny base), headlessly.

Each notebook builds what it lacks (prepared sample, micro base) in a shared
temporary WORK dir, so the tests start from a clean clone. Measured on a busy
2-core CPU: 1_eda ~10 s, 2_finetune_sweep ~75 s, 3_finetune_full ~30-45 s.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from kit.config import load_config  # noqa: E402
from kit.notebook.runner import INJECTED_TAG, execute_notebook, inject_parameters  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("nb")


def _text(nb) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")))
    return "\n".join(out)


def _run(name: str, work: Path, **params):
    return execute_notebook(NOTEBOOKS / name, parameters={"SMOKE": True, "WORK": str(work), **params}, timeout=600)


def test_every_notebook_has_one_parameters_cell_with_smoke():
    import nbformat

    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == ["1_eda.ipynb", "2_finetune_sweep.ipynb", "3_finetune_full.ipynb"]
    for name in names:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, name
        assert "SMOKE = True" in tagged[0].source, name
        assert not [c for c in nb.cells if INJECTED_TAG in c.metadata.get("tags", [])], name


def test_inject_parameters_replaces_an_earlier_injection():
    import nbformat

    nb = nbformat.read(NOTEBOOKS / "1_eda.ipynb", as_version=4)
    n = len(nb.cells)
    inject_parameters(nb, {"SMOKE": False})
    inject_parameters(nb, {"WORK": "x"})
    assert len(nb.cells) == n + 1
    injected = [c for c in nb.cells if INJECTED_TAG in c.metadata.get("tags", [])]
    assert injected[0].source.endswith("WORK = 'x'")


def test_eda_notebook(work):
    nb = _run("1_eda.ipynb", work)
    text = _text(nb)
    assert "SYNTHETIC sample" in text
    assert "<start_of_turn>user" in text
    assert any(
        o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
        for c in nb.cells
        for o in c.get("outputs", [])
    )


@pytest.mark.slow
def test_sweep_notebook(work):
    nb = _run("2_finetune_sweep.ipynb", work)
    assert "SMOKE mode" in _text(nb)
    cfg = load_config(work / "best.toml")
    assert cfg.data.dir == str(work / "prepared-sample")
    assert cfg.lora.rank in (4, 8)
    assert len(list((work / "sweep").iterdir())) == 4


def test_full_notebook(work):
    nb = _run("3_finetune_full.ipynb", work)
    text = _text(nb)
    assert "SYNTHETIC data" in text and "No push" in text
    assert (work / "full-lora" / "adapter.lora.h5").is_file()
    assert (work / "report" / "metrics.json").is_file()
    assert (work / "export" / "hf" / "config.json").is_file()
    assert (work / "export" / "keras" / "config.json").is_file()


def test_saved_notebooks_carry_no_path_of_the_machine_that_ran_them():
    root = str(Path(__file__).resolve().parents[1])
    for nb in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb")):
        assert root not in nb.read_text(encoding="utf-8"), nb.name


def test_missing_notebook_is_one_line_exit_2(capsys):
    from kit.notebook.runner import main

    assert main(["no/such.ipynb"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: notebook not found: no/such.ipynb. Give paths like notebooks/1_eda.ipynb."
