"""The full-run notebook's PRESET picks its config: kit.notebook.env.default_config by family and size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kit.config import load_config
from kit.errors import UserError
from kit.families import family_of_preset
from kit.notebook.env import Environment, default_config, preset_configs, preset_size

ROOT = Path(__file__).resolve().parents[2]
TPU = Environment(platform="kaggle", accelerator="tpu", extra="tpu", hosted=True)
GPU = Environment(platform="colab", accelerator="gpu", extra="cuda", hosted=True)
CPU = Environment(platform="colab", accelerator="cpu", extra=None, hosted=True)


@pytest.mark.parametrize(
    "preset, expected",
    [
        ("gemma2_2b_en", ("gemma2", "2b")),
        ("gemma2_instruct_9b_en", ("gemma2", "9b")),
        ("gemma3_270m", ("gemma3", "270m")),
        ("gemma3_instruct_1b", ("gemma3", "1b")),
        ("gemma3_4b_text", ("gemma3", "4b")),
        ("kaggle://keras/gemma3/keras/gemma3_instruct_4b_text/3", ("gemma3", "4b")),
        ("hf://google/gemma-3-1b-it", ("gemma3", "1b")),
        ("/kaggle/input/gemma-2/keras/gemma2_2b_en/1", ("gemma2", "2b")),
        ("runs/my-base", None),
        ("gemma3n_e2b", None),
    ],
)
def test_preset_size(preset, expected):
    assert preset_size(preset) == expected


@pytest.mark.parametrize(
    "preset, env, expected",
    [
        ("gemma2_2b_en", GPU, "configs/gemma2_2b_gpu.toml"),
        ("gemma2_2b_en", TPU, "configs/gemma2_2b_tpu.toml"),
        ("gemma3_1b", GPU, "configs/gemma3_1b_gpu.toml"),
        ("gemma3_1b", TPU, "configs/gemma3_1b_tpu.toml"),
        ("gemma3_instruct_1b", TPU, "configs/gemma3_1b_tpu.toml"),  # the base's config
        ("hf://google/gemma-3-1b-it", GPU, "configs/gemma3_1b_gpu.toml"),
    ],
)
def test_a_preset_picks_the_config_of_its_family_and_size(preset, env, expected):
    path = default_config(env, preset=preset)
    assert path == expected
    cfg = load_config(ROOT / path)
    # the config trains the same family and size as the preset asked for
    assert preset_size(cfg.model.preset) == preset_size(preset)
    assert family_of_preset(cfg.model.preset) is family_of_preset(preset)


def test_smoke_and_cpu_take_the_tiny_config_whatever_the_preset():
    assert default_config(CPU, preset="gemma3_4b_text") == "configs/tiny.toml"
    assert default_config(TPU, smoke=True, preset="gemma3_4b_text") == "configs/tiny.toml"


def test_every_shipped_accelerator_config_is_found_by_its_own_preset():
    """A config added to configs/ is picked for its preset without code changes."""
    for accelerator in ("gpu", "tpu"):
        found = preset_configs(accelerator)
        files = sorted(p.name for p in (ROOT / "configs").glob(f"*_{accelerator}.toml"))
        assert sorted(Path(f).name for f in found.values()) == files
        for path in found.values():
            env = GPU if accelerator == "gpu" else TPU
            assert default_config(env, preset=load_config(ROOT / path).model.preset) == path


def test_a_preset_without_a_config_is_one_line_that_says_how_to_make_one():
    with pytest.raises(UserError) as e:
        default_config(TPU, preset="gemma3_4b_text")
    msg = str(e.value)
    assert "\n" not in msg
    assert "No TPU config for 'gemma3_4b_text' (gemma3 4b)" in msg
    assert "configs/gemma3_4b_tpu.toml" in msg and "kit plan --config" in msg and "CONFIG" in msg
    assert "configs/gemma3_1b_tpu.toml" in msg  # names the configs there are
    with pytest.raises(UserError, match="cannot tell the family and size of PRESET 'runs/my-base'.*set CONFIG"):
        default_config(GPU, preset="runs/my-base")


def test_a_new_config_dir_is_read_by_its_presets(tmp_path):
    (tmp_path / "gemma3_4b_tpu.toml").write_text('[model]\npreset = "gemma3_instruct_4b_text"\n')
    (tmp_path / "other_tpu.toml").write_text("[run]\nname = 'x'\n")  # no preset: ignored
    assert default_config(TPU, preset="gemma3_4b_text", configs=tmp_path) == str(tmp_path / "gemma3_4b_tpu.toml")
    with pytest.raises(UserError, match="No GPU config"):
        default_config(GPU, preset="gemma3_4b_text", configs=tmp_path)


def test_the_full_run_notebook_passes_its_preset():
    nb = json.loads((ROOT / "notebooks" / "3_finetune_full.ipynb").read_text(encoding="utf-8"))
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    calls = [line for src in code for line in src.splitlines() if "default_config(" in line and "import" not in line]
    assert calls and all("preset=PRESET" in line for line in calls)
    assert any(line.startswith("PRESET = ") for line in code[0].splitlines())
