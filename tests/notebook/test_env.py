"""kit.notebook.env: host detection, the install command and extras, secrets, setup, the runs dir."""

from __future__ import annotations

import sys
import types

import pytest

from kit.config import load_config
from kit.notebook.env import (
    Environment,
    default_config,
    detect_environment,
    install_command,
    load_secrets,
)


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
