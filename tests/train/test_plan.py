"""Known architectures, random init, the layout that follows the devices, and `kit plan` (fast tier).

The full-size (2B) checks are in test_full_size.py (slow); here the 2B model
is only ever built without its weights, in a child process.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kit.cli import main
from kit.config import load_config
from kit.errors import UserError
from kit.model.architectures import ARCHITECTURES, backbone_config, kv_heads
from kit.model.distribution import choose_layout
from kit.model.flops import lora_params
from kit.train.plan import LEVERS, levers_hint
from kit.train.plan_devices import TARGETS
from kit.train.plan_estimate import estimate


@pytest.mark.parametrize(
    "n, platform, heads, expected",
    [
        (1, "cpu", 4, ("single", None)),
        (1, "tpu", 4, ("single", None)),
        (2, "gpu", 4, ("data", None)),
        (8, "cpu", 4, ("data", None)),
        (4, "tpu", 4, ("model", {"batch": 1, "model": 4})),
        (8, "tpu", 4, ("model", {"batch": 2, "model": 4})),
        (8, "tpu", 2, ("model", {"batch": 4, "model": 2})),  # the model axis divides the kv heads
        (8, "tpu", 8, ("model", {"batch": 2, "model": 4})),  # and stays at most 4 wide
    ],
)
def test_auto_layout_follows_the_devices(n, platform, heads, expected):
    assert choose_layout("auto", "", n, platform, heads) == expected


def test_a_pin_the_devices_cannot_satisfy_fails_in_one_line():
    with pytest.raises(UserError, match="needs 8 devices but 1 are visible") as e:
        choose_layout("model", "batch:2,model:4", 1, "tpu", 4)
    assert "\n" not in str(e.value)
    assert choose_layout("data", "", 1, "gpu") == ("data", None)  # a pin the devices can run is kept


def test_both_2b_configs_follow_the_devices():
    for name in ("gemma2_2b_gpu.toml", "gemma2_2b_tpu.toml"):
        cfg = load_config(f"configs/{name}")
        assert cfg.distribution.mode == "auto"
        assert kv_heads(cfg.model.preset) == 4


def test_known_architectures_without_a_download(tiny_preset):
    assert set(ARCHITECTURES) >= {"gemma2_2b_en", "gemma2_instruct_2b_en", "gemma2_9b_en"}
    assert backbone_config("gemma2_instruct_2b_en") == backbone_config("gemma2_2b_en")
    assert backbone_config("kaggle://google/gemma-2/keras/gemma2_2b_en")["hidden_dim"] == 2304
    assert backbone_config(str(tiny_preset))["num_layers"] == 2
    with pytest.raises(UserError, match="does not know the architecture of 'gemma2_27b_en'"):
        backbone_config("gemma2_27b_en")  # a Gemma 2 size the tables leave out


def test_model_init_is_checked():
    assert load_config(None).model.init == "pretrained"
    assert load_config(None, ["model.init=random"]).model.init == "random"
    with pytest.raises(UserError, match="model.init must be one of pretrained, random"):
        load_config(None, ["model.init=zeros"])


def test_2b_from_the_table_has_the_published_count_without_allocating_it():
    """Built without its weights (a child process: the deferred variables must not leak into this one).

    The child's peak is its own VmHWM: `ru_maxrss` of a child that Python starts with vfork
    carries the parent's peak across exec, so it would measure the pytest process.
    """
    code = """
import json, re, keras, kit
from kit.model.architectures import build_random_lm, published_params
from kit.model.lora import enable_lora, parameter_counts
lm = build_random_lm("gemma2_2b_en", dtype="bfloat16", abstract=True)
base = parameter_counts(lm)["total"]
with keras.StatelessScope(initialize_variables=False):
    enable_lora(lm, rank=8, alpha=16.0, targets="qv")
shapes = [tuple(v.shape) for v in lm.trainable_variables]
print(json.dumps({"base": base, "published": published_params("gemma2_2b_en"), "counts": parameter_counts(lm),
                  "shapes": shapes,
                  "rss_mb": int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) / 1024}))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**_env(), "JAX_PLATFORMS": "cpu"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["base"] == out["published"] == 2_614_341_888
    # Keras' q/v adapters: A (heads, hidden, r) per kernel, B (r, head_dim): 26 layers x 4 arrays.
    assert len(out["shapes"]) == 26 * 4
    assert sorted({tuple(s) for s in out["shapes"]}) == [(4, 2304, 8), (8, 256), (8, 2304, 8)]
    from kit.model.architectures import GEMMA2_2B

    assert out["counts"]["trainable"] == lora_params(GEMMA2_2B, 8, ("query", "value"), style="keras") == 5_857_280
    assert out["counts"]["total"] == 2_614_341_888 + 5_857_280
    assert out["rss_mb"] < 3000  # the 2B weights (5 GB in bf16) were never allocated


def _env():
    import os

    return dict(os.environ)


def test_estimate_counts_the_same_parameters_as_the_model():
    from kit.model.architectures import GEMMA2_2B, published_params
    from kit.train.plan_estimate import param_count

    for preset, (arch, _) in ARCHITECTURES.items():  # 2B and 9B: the published counts
        assert param_count(arch) == published_params(preset)

    e = estimate(GEMMA2_2B, dtype="bfloat16", rank=8, targets=("query", "value"), rows=2, length=512)
    assert e["parameters"] == {"trainable": 5_857_280, "total": 2_620_199_168}
    half = estimate(GEMMA2_2B, dtype="bfloat16", rank=8, targets=("query", "value"), rows=1, length=512)
    assert half["resident"] == e["resident"] and 2 * half["activations"] == e["activations"]


def test_lever_hints_name_only_keys_the_config_has():
    hint = levers_hint()
    assert "train.batch_size" in hint and "data.buckets" in hint
    for key, text in LEVERS:
        section, name = key.split(".")
        known = name in load_config(None).to_dict()[section]
        assert (text in hint) == known
        assert text not in levers_hint(frozenset({key}))  # a lever already on is not offered again


def test_plan_compiles_the_tiny_step_on_cpu(tmp_path, tiny_preset, tiny_prepared, capsys):
    argv = ["plan", "--config", "configs/tiny.toml", "--device", "cpu", "--json"]
    argv += [
        "--set",
        f"model.preset={tiny_preset}",
        "--set",
        f"data.dir={tiny_prepared}",
        "--set",
        "data.auto_buckets=0",
    ]
    argv += ["--set", "data.buckets=[128, 256]", "--set", "train.batch_size=4", "--all-buckets"]
    assert main(argv) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["method"] == "compiled" and plan["layout"].startswith("single device")
    assert [b["length"] for b in plan["buckets"]] == [128, 256]
    for b in plan["buckets"]:
        m = b["micro"]
        assert m["arguments"] > 0 and m["temporaries"] > 0 and b["peak"] >= m["total"]
        # XLA's count of the compiled step and the formula agree within a factor of 2
        assert 0.5 < b["xla_flops_per_micro_step"] / b["formula_flops_per_micro_step"] < 2
    assert plan["buckets"][1]["micro"]["temporaries"] > plan["buckets"][0]["micro"]["temporaries"]
    assert plan["data"]["available"] and plan["data"]["train_rows"] == 48
    data = plan["data"]  # 48 rows in batches of 4 per bucket, grad_accum 1
    assert data["optimizer_steps_per_epoch"] == data["micro_batches_per_epoch"] >= 12
    assert sum(data["micro_batches_per_bucket"].values()) == data["micro_batches_per_epoch"]
    assert plan["verdict"]["fits"] is True
    assert plan["time"]["epoch_s"] is None  # no peak FLOP/s for a CPU: no made-up time


def test_plan_estimates_a_gpu_and_says_so(capsys):
    assert (
        main(["plan", "--config", "configs/gemma2_2b_gpu.toml", "--device", "t4x2", "--set", "data.dir=nowhere"]) == 0
    )
    out = capsys.readouterr().out
    assert "estimate (not compiled)" in out and "DataParallel over 2 devices" in out
    assert "no prepared data at nowhere" in out
    assert main(["plan", "--config", "configs/gemma2_2b_gpu.toml", "--device", "t4", "--set", "data.dir=nowhere",
                 "--set", "train.batch_size=16", "--json"]) == 0  # fmt: skip
    plan = json.loads(capsys.readouterr().out)
    assert plan["verdict"]["fits"] is False and "lower train.batch_size" in plan["verdict"]["try"]
    # 16 x 512 tokens: `auto` already rematerialises, so the hint does not offer it; pinned off, it does
    assert "train.remat" not in plan["verdict"]["try"]
    assert main(["plan", "--config", "configs/gemma2_2b_gpu.toml", "--device", "t4", "--set", "data.dir=nowhere",
                 "--set", "train.batch_size=16", "--set", "train.remat=off", "--json"]) == 0  # fmt: skip
    plan = json.loads(capsys.readouterr().out)
    assert 'train.remat = "blocks"' in plan["verdict"]["try"] and "train.loss_chunk" not in plan["verdict"]["try"]


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--device", "v6"], "Unknown --device 'v6': use one of auto, cpu, t4"),
        (["--mfu", "2"], "--mfu must be between 0 and 1"),
        (["--set", "model.preset=gemma2_27b_en"], "does not know the architecture of 'gemma2_27b_en'"),
        (["--set", "train.batch_size=3", "--device", "t4x2"], "train.batch_size=3 must be divisible by the 2 GPUs"),
    ],
)
def test_plan_bad_input_is_one_line_exit_2(argv, needle, capsys):
    assert main(["plan", "--config", "configs/gemma2_2b_gpu.toml", "--set", "data.dir=nowhere", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err


def test_every_target_has_memory_and_a_peak():
    for t in TARGETS.values():
        assert t.memory_bytes > 10 * 2**30 and t.peak_flops and t.devices in (1, 2, 4, 8)
        assert (t.platform == "tpu") == bool(t.topology)
