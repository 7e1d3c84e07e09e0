"""Model loading (local preset, offline/unauthorised errors, Kaggle attachments and cache) and credentials."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kit.errors import UserError
from kit.model import load_causal_lm, load_credentials, parameter_counts, preset_kind
from kit.model.loader import explain_load_failure
from kit.testing import MICRO_NON_EMBEDDING

ROOT = Path(__file__).resolve().parents[2]


def test_local_preset_loads(tiny_preset):
    lm = load_causal_lm(str(tiny_preset))
    assert lm.backbone.num_layers == 2
    assert lm.backbone.dtype_policy.name == "float32"  # auto = float32 on CPU
    total = MICRO_NON_EMBEDDING + lm.backbone.vocabulary_size * 16  # the micro model, embeddings included
    assert parameter_counts(lm) == {"trainable": total, "total": total, "trainable_share": 1.0}


def test_preset_kind(tiny_preset):
    assert preset_kind(str(tiny_preset)) == "local"
    assert preset_kind("gemma2_2b_en") == "builtin"
    assert preset_kind("hf://google/gemma-2-2b") == "hf"
    assert preset_kind("kaggle://keras/gemma2/keras/gemma2_2b_en/1") == "kaggle"
    assert preset_kind("models/nope") == "unknown"


def test_unknown_preset_suggests_kit_tiny():
    with pytest.raises(UserError, match="kit tiny"):
        load_causal_lm("models/tiny-base-missing")


def test_auth_failures_name_the_variable_and_licence():
    msg = explain_load_failure("gemma2_2b_en", "builtin", RuntimeError("403 Client Error: Forbidden"))
    assert "KAGGLE_USERNAME" in msg and "KAGGLE_KEY" in msg and "kaggle.com/models/google/gemma-2" in msg
    msg = explain_load_failure("hf://google/gemma-2-2b", "hf", OSError("401 Unauthorized: gated repo"))
    assert "HUGGING_FACE_ACCESS_TOKEN" in msg and "huggingface.co/google/gemma-2-2b" in msg
    assert "\n" not in msg


def test_credentials_are_aligned_and_never_printed(monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HUGGING_FACE_ACCESS_TOKEN", "hf_secret_value")
    load_credentials()
    assert os.environ["HF_TOKEN"] == "hf_secret_value"  # the name huggingface_hub reads
    out = capsys.readouterr()
    assert "hf_secret_value" not in out.out + out.err


@pytest.mark.parametrize("preset", ["gemma2_2b_en", "hf://google/gemma-2-2b"])
def test_offline_cli_error_is_one_line_exit_2(tmp_path, preset):
    """No network here: a clear one-line error naming the fix, no traceback, exit code 2."""
    env = {**os.environ, "HUGGING_FACE_ACCESS_TOKEN": "hf_dummy_secret", "KAGGLEHUB_CACHE": str(tmp_path / "kh")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kit",
            "finetune",
            "--config",
            str(ROOT / "configs" / "gemma2_2b_gpu.toml"),
            "--set",
            f"model.preset={preset}",
            "--set",
            f"run.out_dir={tmp_path}",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "hf_dummy_secret" not in proc.stderr + proc.stdout
    assert "configs/tiny.toml" in lines[0]  # offline: points at the tiny demo
    assert preset in lines[0]
    assert not (tmp_path / "gemma2-2b-lora").exists()  # a run that never started leaves no dir


# --------------------------------------------------------------------------- Kaggle models on disk, internet off


@pytest.fixture
def no_network(monkeypatch):
    """Every connection attempt fails, as in a Kaggle session with Internet off; the attempts are counted."""
    import socket

    attempts = []

    def refuse(address, *args, **kwargs):
        attempts.append(address)
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


def _copy_preset(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _vocab(lm) -> int:
    return lm.backbone.vocabulary_size


def test_attached_kaggle_model_loads_with_internet_off(tiny_preset, tmp_path, monkeypatch, no_network, capsys):
    from kit.model.loader import local_preset, preset_source

    inputs = tmp_path / "input"
    monkeypatch.setenv("KAGGLE_CACHE_MOUNT_FOLDER", str(inputs))
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "empty-cache"))
    # Kaggle mounts an attached model as <input>/<model>/<framework>/<variation>/<version>
    attached = _copy_preset(tiny_preset, inputs / "gemma-2" / "keras" / "gemma2_2b_en" / "1")
    with pytest.raises(UserError, match="no network connection"):
        preset_source("kaggle://google/gemma-2/keras/gemma2_2b_en/3", "kaggle")  # not the attached version
    assert no_network  # the pre-check really saw no network
    for preset in (
        "gemma2_2b_en",
        "kaggle://google/gemma-2/keras/gemma2_2b_en",
        "kaggle://google/gemma-2/keras/gemma2_2b_en/1",
    ):
        assert local_preset(preset) == attached
        lm = load_causal_lm(preset, dtype="float32")
        assert _vocab(lm) == _vocab(load_causal_lm(str(tiny_preset)))
    assert f"from the local copy {attached}" in capsys.readouterr().err


def test_kagglehub_cache_copy_loads_only_when_complete(tiny_preset, tmp_path, monkeypatch, no_network):
    from kit.model.loader import local_preset

    monkeypatch.setenv("KAGGLE_CACHE_MOUNT_FOLDER", str(tmp_path / "no-input"))
    cache = tmp_path / "kh"
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(cache))
    variation = cache / "models" / "keras" / "gemma2" / "keras" / "gemma2_2b_en"
    _copy_preset(tiny_preset, variation / "2")
    assert local_preset("gemma2_2b_en") is None  # a download that never finished is not a copy
    (variation / "2.complete").touch()
    assert local_preset("gemma2_2b_en") == variation / "2"
    assert load_causal_lm("gemma2_2b_en", dtype="float32").backbone.num_layers == 2


def test_missing_kaggle_model_offline_names_what_to_attach(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("KAGGLE_CACHE_MOUNT_FOLDER", str(tmp_path / "input"))
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kh"))
    with pytest.raises(UserError) as e:
        load_causal_lm("gemma2_2b_en")
    message = str(e.value)
    assert "\n" not in message and "no network connection to www.kaggle.com" in message
    assert "Add Input → Models → google/gemma-2" in message and "variation gemma2_2b_en" in message
    assert "Internet on" in message and str(tmp_path / "input") in message
