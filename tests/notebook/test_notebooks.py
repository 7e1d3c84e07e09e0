"""Every notebook runs top to bottom in SMOKE mode (synthetic sample, micro tiny base), headlessly.

Each notebook builds what it lacks (prepared sample, micro base) in a shared
temporary WORK dir, so the tests start from a clean clone. Measured on a busy
2-core CPU: 1_eda ~10 s, 2_finetune_sweep ~75 s, 3_finetune_full ~30-45 s.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from kit.config import load_config  # noqa: E402
from kit.notebook.runner import INJECTED_TAG, execute_notebook, inject_parameters  # noqa: E402

pytestmark = pytest.mark.slow  # runs whole notebooks in a kernel, pretraining and fine-tuning in smoke mode

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


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
    assert "JAX " in text and "host: " in text  # the hardware it found
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


def test_full_notebook_run_twice_resumes_from_the_first_runs_checkpoint(work, tmp_path, monkeypatch):
    # A stand-in for the `tensorboard` package (Kaggle and Colab ship the real one): its IPython
    # extension records what `%tensorboard` was asked to show.
    fake = tmp_path / "fake" / "tensorboard"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "def load_ipython_extension(ipython):\n"
        "    ipython.register_magic_function(lambda line: print('tensorboard magic:', line), 'line', 'tensorboard')\n"
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")]))

    # 1st session: a time budget shorter than loading the model stops the fine-tune after its first step
    nb = _run("3_finetune_full.ipynb", work, MAX_MINUTES=1e-6)
    text = _text(nb)
    assert "SYNTHETIC data" in text and "No push" in text and "stopped_on_budget" in text
    assert "JAX " in text and "host: " in text  # the hardware it found
    run = work / "full-lora"
    assert json.loads((run / "run.json").read_text())["stopped"]["checkpoint"] == "checkpoints/step_000001"
    assert "TensorBoard logs:" in text and "events.out.tfevents." in text
    assert f"tensorboard magic: --logdir {run / 'tensorboard'}" in text

    # 2nd session, same parameters but no budget: it resumes from that checkpoint, not from step 0
    nb = _run("3_finetune_full.ipynb", work)
    text = _text(nb)
    assert "Resuming" in text and "step_000001 (step 1/8)" in text
    assert "full-base is already registered" in text  # the base run is kept, not replaced
    saved = json.loads((run / "run.json").read_text())
    assert saved["status"] == "completed" and saved["metrics"]["steps"] == 8 and "stopped" not in saved
    steps = [line.split(",")[0] for line in (run / "history.csv").read_text().splitlines()[1:]]
    assert steps == [str(s) for s in range(9)]  # step 0 (base loss) and 1 from the first session, 2..8 from this one

    assert (run / "adapter.lora.h5").is_file()
    assert (work / "report" / "metrics.json").is_file()
    hf, peft = work / "export" / "hf", work / "export" / "peft"
    assert (work / "export" / "keras" / "config.json").is_file() and (hf / "config.json").is_file()
    assert "chat_template" in json.loads((hf / "tokenizer_config.json").read_text())
    assert (peft / "adapter_config.json").is_file() and (peft / "adapter_model.safetensors").is_file()
    for card in (hf / "README.md", peft / "README.md"):
        assert "license: gemma" in card.read_text() and "## Evaluation" in card.read_text()


def _setup_source() -> str:
    import nbformat

    sources = {
        name: nbformat.read(NOTEBOOKS / name, as_version=4).cells[2].source
        for name in ("1_eda.ipynb", "2_finetune_sweep.ipynb", "3_finetune_full.ipynb")
    }
    assert len(set(sources.values())) == 1, "the setup cell must be the same in every notebook"
    return next(iter(sources.values()))


def test_every_notebook_sets_itself_up_with_one_repo_url_parameter():
    import nbformat

    source = _setup_source()
    assert "REPO_URL" in source and "setup()" in source and "/kaggle/input" in source
    for name in ("1_eda.ipynb", "2_finetune_sweep.ipynb", "3_finetune_full.ipynb"):
        text = (NOTEBOOKS / name).read_text(encoding="utf-8")
        assert "OWNER/geo-reviews-kit" not in text, name  # no placeholder repo in URLs or badges
        params = nbformat.read(NOTEBOOKS / name, as_version=4).cells[1].source
        assert params.count("REPO_URL = ") == 1, name


def test_outside_a_clone_without_a_url_the_notebook_stops_with_one_line(tmp_path):
    import shutil

    from nbclient.exceptions import CellExecutionError

    shutil.copy(NOTEBOOKS / "1_eda.ipynb", tmp_path / "1_eda.ipynb")  # a notebook downloaded on its own
    with pytest.raises(CellExecutionError) as e:
        execute_notebook(tmp_path / "1_eda.ipynb", parameters={"SMOKE": True, "WORK": str(tmp_path)}, timeout=120)
    assert e.value.ename == "SetupStop"
    # nbclient shows the cell's source, then what the notebook showed: our one line, no traceback
    shown = e.value.traceback.rsplit("------------------", 1)[1].strip().splitlines()
    assert shown == [
        "Setup stopped: this notebook is not in a clone of the kit and REPO_URL is empty. Set REPO_URL in the "
        "parameters cell to the kit's git URL (or, on Kaggle, attach the repo as a dataset) and run again."
    ]


def _kit_copy(dest: Path) -> Path:
    """The kit's package and pyproject.toml in `dest`: what a clone or a Kaggle dataset of the repo holds."""
    import shutil

    root = NOTEBOOKS.parent
    shutil.copytree(root / "kit", dest / "kit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(root / "pyproject.toml", dest / "pyproject.toml")
    return dest


def _run_setup_cell(cwd: Path, repo_url: str, **env_extra) -> str:
    """Run the notebooks' setup cell in a fresh interpreter whose only `kit` is the one the cell finds."""
    import os
    import subprocess
    import sys

    code = f"REPO_URL = {repo_url!r}\n" + _setup_source() + "\nprint('ENV', ENV.platform, kit.notebook.env.__file__)"
    code = code.replace("ENV = setup()", "ENV = setup()\nimport kit.notebook.env")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300, env={**env, **env_extra}
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "JAX " in proc.stdout and "host: " in proc.stdout  # the hardware it found
    assert "packages: all installed" in proc.stdout  # nothing missing here: nothing installed
    return proc.stdout


def test_setup_cell_clones_repo_url_and_reports_the_hardware(tmp_path):
    """Outside a clone with REPO_URL set (Colab), the setup cell clones the kit, imports it and shows the hardware."""
    import subprocess

    origin = _kit_copy(tmp_path / "origin")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "kit"]):
        subprocess.run([*git, *cmd], cwd=origin, check=True)
    work = tmp_path / "content"
    work.mkdir()
    out = _run_setup_cell(work, f"file://{origin}", KAGGLE_CACHE_MOUNT_FOLDER=str(tmp_path / "no-input"))
    assert (work / "geo-reviews-kit" / "kit" / "__init__.py").is_file()
    assert "kit checkout: geo-reviews-kit" in out
    assert f"ENV local {work / 'geo-reviews-kit' / 'kit'}" in out


def test_setup_cell_uses_a_copy_of_the_repo_attached_as_a_kaggle_dataset(tmp_path):
    """On Kaggle the repo may be a (read-only) dataset under /kaggle/input: the cell works on a copy of it."""
    inputs = tmp_path / "input"
    _kit_copy(inputs / "geo-reviews-kit-repo")
    work = tmp_path / "working"
    work.mkdir()
    out = _run_setup_cell(work, "", KAGGLE_CACHE_MOUNT_FOLDER=str(inputs), KAGGLE_KERNEL_RUN_TYPE="Interactive")
    assert (work / "geo-reviews-kit" / "kit" / "__init__.py").is_file()
    assert "environment: kaggle / cpu" in out
    assert f"ENV kaggle {work / 'geo-reviews-kit' / 'kit'}" in out  # the copy, not the read-only dataset


def test_saved_notebooks_carry_no_path_of_the_machine_that_ran_them():
    root = str(Path(__file__).resolve().parents[2])
    for nb in sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb")):
        assert root not in nb.read_text(encoding="utf-8"), nb.name


def test_missing_notebook_is_one_line_exit_2(capsys):
    from kit.notebook.runner import main

    assert main(["no/such.ipynb"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: notebook not found: no/such.ipynb. Give paths like notebooks/1_eda.ipynb."
