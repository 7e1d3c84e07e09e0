"""`kit plan` on the Gemma 3 configs: the T4 estimate (fast tier) and the libtpu compile for a v5e-1 (slow).

The parameter counts are the published ones (keras_hub's preset metadata, in
`kit.families.gemma3.ARCHITECTURES`), computed two independent ways: the
family's formula (the estimate) and the built model's variables (the compile).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from kit.cli import main
from kit.config import load_config
from kit.families import family_of_preset
from kit.model.flops import lora_params
from kit.model.lora import LORA_TARGET_LAYERS
from kit.train.plan import make_plan
from kit.train.plan_devices import GIB

# keras_hub's published counts (its preset metadata); not read from the kit's tables.
PUBLISHED = {"gemma3_270m": 268_098_176, "gemma3_1b": 999_885_952, "gemma3_4b_text": 3_880_099_328}


def _plan(config: str, device: str, *overrides: str, capsys) -> dict:
    argv = ["plan", "--config", config, "--device", device, "--set", "data.dir=nowhere", "--json"]
    for o in overrides:
        argv += ["--set", o]
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_gemma3_1b_gpu_config_fits_a_t4(capsys):
    plan = _plan("configs/gemma3_1b_gpu.toml", "t4", capsys=capsys)
    assert plan["method"] == "estimate (not compiled)" and plan["family"] == "Gemma 3"
    assert plan["verdict"]["fits"] is True
    # The float32 1B weights alone are 3.7 GiB; the peak leaves the card room for XLA's own buffers.
    assert 4e9 < plan["verdict"]["peak_bytes"] < 0.8 * plan["verdict"]["usable_bytes"]
    cfg = load_config("configs/gemma3_1b_gpu.toml")
    arch = family_of_preset("gemma3_1b").ARCHITECTURES["gemma3_1b"][0]
    trainable = lora_params(arch, cfg.lora.rank, LORA_TARGET_LAYERS[cfg.lora.targets], style="keras")
    assert plan["parameters"] == {
        "base": PUBLISHED["gemma3_1b"],
        "trainable": trainable,
        "total": PUBLISHED["gemma3_1b"] + trainable,
        "published": PUBLISHED["gemma3_1b"],
    }
    assert plan["levers"] == {"loss_chunk": 256, "remat": False}  # 262,144-token vocabulary: chunked


@pytest.mark.parametrize("preset", sorted(PUBLISHED))
def test_plan_counts_the_published_parameters(preset, capsys):
    plan = _plan("configs/gemma3_1b_gpu.toml", "t4", f"model.preset={preset}", capsys=capsys)
    assert plan["parameters"]["base"] == plan["parameters"]["published"] == PUBLISHED[preset]


def test_the_chunked_loss_is_what_makes_room(capsys):
    """Gemma 3's 262,144-token vocabulary: without the chunked loss the logits take gigabytes more."""
    chunked = _plan("configs/gemma3_1b_gpu.toml", "t4", capsys=capsys)
    whole = _plan("configs/gemma3_1b_gpu.toml", "t4", "train.loss_chunk=0", capsys=capsys)
    assert whole["levers"]["loss_chunk"] == 0
    # 2 rows x (512 - 256) positions x 262,144 logits x (4 + 4 + 4) bytes (float32 logits, upcast, gradient)
    saved = whole["verdict"]["peak_bytes"] - chunked["verdict"]["peak_bytes"]
    assert saved == 2 * 256 * 262_144 * 12


def test_text_output_names_the_family_and_published_count(capsys):
    cfg = load_config("configs/gemma3_1b_gpu.toml", ["data.dir=nowhere"])
    from kit.train.plan import format_plan

    text = format_plan(make_plan(cfg, "t4"))
    assert "gemma3_1b architecture (Gemma 3), float32" in text
    assert "999,885,952 in the base (as published)" in text
    assert "levers      loss in chunks of 256 positions, remat off" in text
    assert "verdict     fits" in text


@pytest.mark.slow
def test_gemma3_1b_tpu_config_compiles_for_a_v5e_1_and_fits():
    """libtpu's ahead-of-time compile of the real Gemma 3 1B train step (8 x 512, remat, chunked loss)."""
    proc = subprocess.run(
        [sys.executable, "-m", "kit", "plan", "--config", "configs/gemma3_1b_tpu.toml", "--device", "v5e-1",
         "--set", "data.dir=nowhere", "--json"],
        capture_output=True, text=True, timeout=1800, env={**os.environ, "JAX_PLATFORMS": "cpu"}, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = json.loads(proc.stdout)
    assert plan["method"] == "compiled" and plan["layout"].startswith("single device")
    assert plan["parameters"]["base"] == PUBLISHED["gemma3_1b"]
    assert plan["levers"] == {"loss_chunk": 256, "remat": True}
    (row,) = plan["buckets"]
    assert row["length"] == 512
    # the bf16 1B weights (1.86 GiB) are arguments of the micro-step, with the adapters and accumulators
    assert row["micro"]["arguments"] > 2 * PUBLISHED["gemma3_1b"]
    # remat recomputes the blocks: XLA counts more than the formula's FLOPs, not wildly more
    assert 0.9 < row["xla_flops_per_micro_step"] / row["formula_flops_per_micro_step"] < 2
    assert plan["verdict"]["fits"] is True and plan["verdict"]["peak_bytes"] < 16 * GIB
