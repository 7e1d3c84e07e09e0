"""kit.notebook.env (host detection, extras, secrets), kit.notebook.eda, kit.eval.tables and kit.notebook.sweep on the tiny fixtures."""

from __future__ import annotations

import json
import sys
import tomllib
import types

import pytest

from kit.config import from_dict, load_config
from kit.notebook.env import (
    Environment,
    default_config,
    detect_environment,
    install_command,
    load_secrets,
)

NOTHING = lambda path: False  # noqa: E731


def _clean_environ(monkeypatch):
    """A private copy of os.environ without credentials: what load_secrets sets is undone after the test."""
    import os

    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HUGGING_FACE_ACCESS_TOKEN", "HF_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY")
    }
    monkeypatch.setattr(os, "environ", env)


@pytest.mark.parametrize(
    "environ, paths, expected",
    [
        ({"KAGGLE_KERNEL_RUN_TYPE": "Interactive", "TPU_NAME": "local"}, (), ("kaggle", "tpu", "tpu")),
        ({"KAGGLE_KERNEL_RUN_TYPE": "Batch"}, ("/dev/nvidia0",), ("kaggle", "gpu", "cuda")),
        ({"KAGGLE_KERNEL_RUN_TYPE": "Batch"}, (), ("kaggle", "cpu", None)),
        ({"COLAB_RELEASE_TAG": "r", "COLAB_GPU": "1"}, (), ("colab", "gpu", "cuda")),
        ({"COLAB_RELEASE_TAG": "r", "COLAB_TPU_ADDR": "10.0.0.2:8470"}, (), ("colab", "tpu", "tpu")),
        ({"COLAB_RELEASE_TAG": "r"}, ("/dev/accel0",), ("colab", "tpu", "tpu")),
        ({}, ("/kaggle/input",), ("kaggle", "cpu", None)),
        ({}, (), ("local", "cpu", None)),
    ],
)
def test_detect_environment(environ, paths, expected):
    env = detect_environment(environ=environ, exists=lambda p: p in paths)
    assert (env.platform, env.accelerator, env.extra) == expected
    assert env.hosted == (expected[0] != "local")


def test_install_command_and_default_config():
    kaggle_tpu = Environment(platform="kaggle", accelerator="tpu", extra="tpu", hosted=True)
    colab_gpu = Environment(platform="colab", accelerator="gpu", extra="cuda", hosted=True)
    colab_cpu = Environment(platform="colab", accelerator="cpu", extra=None, hosted=True)
    local_gpu = Environment(platform="local", accelerator="gpu", extra="cuda", hosted=False)
    assert install_command(kaggle_tpu)[-1] == ".[tpu]"
    assert install_command(colab_gpu)[-1] == ".[cuda]"
    assert install_command(colab_cpu)[-1] == "."
    assert install_command(local_gpu) is None
    assert default_config(kaggle_tpu) == "configs/gemma2_2b_tpu.toml"
    assert default_config(colab_gpu) == "configs/gemma2_2b_gpu.toml"
    assert default_config(colab_cpu) == default_config(colab_gpu, smoke=True) == "configs/tiny.toml"
    for env in (kaggle_tpu, colab_gpu):
        load_config(default_config(env))  # the configs exist and are valid


def test_load_secrets_reads_kaggle_secrets_without_printing(monkeypatch, tmp_path, capsys):
    class Client:
        def get_secret(self, name):
            if name == "KAGGLE_KEY":
                return "s3cr3t-value"
            raise RuntimeError(f"secret {name} not attached")

    monkeypatch.setitem(sys.modules, "kaggle_secrets", types.SimpleNamespace(UserSecretsClient=Client))
    _clean_environ(monkeypatch)
    monkeypatch.chdir(tmp_path)  # no .env here
    names = load_secrets(Environment(platform="kaggle", accelerator="tpu", extra="tpu", hosted=True))
    assert names == ["KAGGLE_KEY"]
    import os

    assert os.environ["KAGGLE_KEY"] == "s3cr3t-value"
    captured = capsys.readouterr()
    assert "s3cr3t" not in captured.out + captured.err


def test_load_secrets_colab_and_dotenv(monkeypatch, tmp_path):
    userdata = types.SimpleNamespace(get=lambda name: "hf_abc" if name == "HF_TOKEN" else None)
    colab = types.ModuleType("google.colab")
    colab.userdata = userdata
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    _clean_environ(monkeypatch)
    (tmp_path / ".env").write_text("KAGGLE_USERNAME=someone\n")
    monkeypatch.chdir(tmp_path)
    names = load_secrets(Environment(platform="colab", accelerator="gpu", extra="cuda", hosted=True))
    assert set(names) == {"HF_TOKEN", "HUGGING_FACE_ACCESS_TOKEN", "KAGGLE_USERNAME"}


def test_eda_tables(tiny_prepared):
    from kit.data.prepare import load_prepared
    from kit.notebook import eda

    dd = load_prepared(tiny_prepared)
    stats = {
        "synthetic": True,
        "input": "x.tskv",
        "ratings": {"train": {"5": 3, "1": 1}, "all": {"5": 6, "1": 2}},
        "rubrics_top": [{"rubric": "Кафе", "reviews": 5}, {"rubric": "Музей", "reviews": 3}],
        "counts": {"lines": 10, "skipped_lines": 0, "dropped": {"rating_0": 1, "duplicate_text": 1}, "final": 8},
    }
    assert eda.data_label(stats).startswith("SYNTHETIC")
    assert eda.rating_table(stats)["share_%"].tolist() == [25.0, 75.0]
    lengths = eda.review_lengths(dd, "train")
    assert len(lengths) == dd["train"].num_rows
    by = eda.length_by_rating(lengths)
    assert by["reviews"].sum() == dd["train"].num_rows
    assert eda.top_rubrics(stats, 1).index.tolist() == ["Кафе"]
    chains = eda.top_chains(dd, 3)
    assert len(chains) == 3 and (chains["reviews"] >= chains["organisations"]).all()
    q = eda.quality_counts(stats, dd)["count"]
    assert q["dropped: duplicate text"] == 1 and q["reviews kept"] == 8
    assert q["kept, no name"] == sum(1 for s in dd for n in dd[s]["name_ru"] if not n)
    ex = eda.keyword_examples(dd, "train", n=3)
    assert 1 <= len(ex) <= 3 and all(ex["keywords"])
    assert eda.prompt_example(dd, "test", 0).startswith("<start_of_turn>user")


def test_sweep_points_and_toml_round_trip(tmp_path):
    from kit.notebook import sweep

    assert len(sweep.one_at_a_time(sweep.DEFAULT_AXES)) == 6
    assert len(sweep.one_at_a_time(sweep.SMOKE_AXES)) == 4
    assert len(sweep.grid(sweep.DEFAULT_AXES)) == 18
    cfg = load_config("configs/gemma2_2b_tpu.toml", ["lora.rank=16", 'run.name="x y"'])
    path = sweep.write_config(cfg, tmp_path / "c" / "best.toml", header="line one\nline two")
    assert path.read_text().startswith("# line one\n# line two\n")
    assert load_config(path) == cfg
    assert from_dict(tomllib.loads(sweep.config_toml(cfg))) == cfg


@pytest.mark.slow  # trains two sweep points
def test_run_sweep_on_the_micro_model(tmp_path, tiny_prepared, tiny_preset):
    import sys as _sys
    from pathlib import Path

    _sys.path.insert(0, str(Path(__file__).parent))
    from kit.testing import micro_overrides

    from kit.notebook import sweep

    overrides = [
        o
        for o in micro_overrides(tmp_path, tiny_preset, tiny_prepared)
        if not o.startswith(("run.", "lora.rank", "train.steps"))
    ] + ["train.steps=2", "train.eval_every=0", "train.checkpoint_every=0"]
    points = sweep.one_at_a_time({"lora.rank": [2, 4]})
    results = sweep.run_sweep("configs/tiny.toml", points, overrides=overrides, out_dir=tmp_path / "sweep")
    assert results["lora.rank"].tolist() == [2, 4]
    assert results["val_loss"].notna().all()
    run = json.loads((tmp_path / "sweep" / "sweep-01-rank4" / "run.json").read_text())
    assert run["config"]["lora"]["rank"] == 4 and run["config"]["train"]["steps"] == 2
    best = sweep.best_point(results)
    assert set(best) == {"lora.rank"}
    cfg = sweep.best_config("configs/gemma2_2b_gpu.toml", best, [f"data.dir={tiny_prepared}"])
    assert cfg.lora.rank == best["lora.rank"] and cfg.model.preset == "gemma2_2b_en"
    with pytest.raises(Exception, match="rating_accuracy"):
        sweep.best_point(results, "rating_accuracy")


def test_metrics_and_samples_tables():
    from kit.eval import tables

    result = {
        "columns_order": ["base", "lora", "human"],
        "metrics": {
            "columns": {
                n: {"chrf": {"value": v, "low": v - 1, "high": v + 1}}
                for n, v in (("base", 10.0), ("lora", 20.0), ("human", 100.0))
            }
        },
        "samples": [
            {
                "request": {"rubrics": ["Кафе"], "rating": 5, "keywords": []},
                "reference": "a\nb",
                "outputs": {"base": "x", "lora": "y" * 500},
            }
        ],
    }
    t = tables.metrics_table(result)
    assert t.columns.tolist() == ["base", "lora", "human"] and t.index.tolist() == ["chrf"]
    s = tables.samples_table(result, chars=50)
    assert s.loc[0, "human"] == "a ⏎ b" and len(s.loc[0, "lora"]) == 50


def test_setup_installs_only_what_is_missing_and_shows_the_hardware(monkeypatch, tmp_path, capsys):
    from kit.notebook import env as envmod

    kaggle_gpu = Environment(platform="kaggle", accelerator="gpu", extra="cuda", hosted=True)
    local = Environment(platform="local", accelerator="cpu", extra=None, hosted=False)
    ran = []
    monkeypatch.setattr(envmod, "missing_requirements", lambda project: ["keras-hub", "matplotlib"])
    assert envmod.setup(kaggle_gpu, "/kit", run=ran.append) is kaggle_gpu
    assert ran == [[sys.executable, "-m", "pip", "install", "-q", "-e", "/kit[cuda]", "matplotlib"]]
    out = capsys.readouterr().out
    assert "environment: kaggle / gpu" in out and "installing (missing: keras-hub, matplotlib)" in out
    assert "JAX " in out and "host: " in out
    # JAX here sees only the CPU: a GPU host is told which extra to install
    assert "warning: this host has a GPU but JAX sees only the CPU" in out

    ran.clear()
    envmod.setup(local, "/kit", run=ran.append)  # locally too, when something is missing: no extra
    assert ran == [[sys.executable, "-m", "pip", "install", "-q", "-e", "/kit", "matplotlib"]]
    monkeypatch.setattr(envmod, "missing_requirements", lambda project: [])
    ran.clear()
    envmod.setup(kaggle_gpu, "/kit", run=ran.append)
    assert ran == [] and "packages: all installed" in capsys.readouterr().out


def test_missing_requirements_reads_pyproject(tmp_path):
    from kit.notebook.env import missing_requirements

    (tmp_path / "pyproject.toml").write_text(
        '[project]\ndependencies = ["numpy>=1", "no-such-dist-xyz[extra]>=2; python_version > \'3\'"]\n'
    )
    assert missing_requirements(tmp_path) == ["no-such-dist-xyz"]
    from pathlib import Path

    assert missing_requirements(Path(__file__).resolve().parents[2]) == []  # this environment has the kit


def test_default_runs_dir_keeps_runs_past_the_session(monkeypatch, tmp_path):
    from kit.notebook import env as envmod

    colab = Environment(platform="colab", accelerator="gpu", extra="cuda", hosted=True)
    kaggle = Environment(platform="kaggle", accelerator="tpu", extra="tpu", hosted=True)
    assert envmod.default_runs_dir(kaggle, "runs/nb") == ("/kaggle/working/runs", None)
    monkeypatch.setattr(envmod, "DRIVE", tmp_path / "MyDrive")
    runs, note = envmod.default_runs_dir(colab, "runs/nb")
    assert runs == "runs/nb" and "drive.mount('/content/drive')" in note and "RUNS = " in note
    (tmp_path / "MyDrive").mkdir()
    assert envmod.default_runs_dir(colab, "runs/nb") == (str(tmp_path / "MyDrive" / "geo-reviews-kit" / "runs"), None)


def test_kit_notebook_env_imports_with_the_standard_library_only():
    import subprocess
    from pathlib import Path

    code = (
        "import sys; import kit.notebook.env; from kit.notebook import detect_environment; "
        "print(sorted(m for m in ('numpy', 'pandas', 'keras', 'jax', 'keras_hub') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # a fresh Colab can import it before anything is installed
