"""Sharding on 8 virtual CPU devices: DataParallel and ModelParallel (batch 2 x model 4) match one device."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # subprocesses on 8 virtual devices; trains single-device, data- and model-parallel


def test_data_and_model_parallel_match_single_device(tiny_preset, tiny_prepared):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "sharding_check.py"), str(tiny_preset), str(tiny_prepared)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == 8
    single = out["single"]
    assert len(single["train"]) == 4 and len(single["val"]) == 3
    for mode in ("data", "model"):
        assert out[mode]["train"] == pytest.approx(single["train"], rel=1e-4), mode
        assert out[mode]["val"] == pytest.approx(single["val"], rel=1e-4), mode
    assert "DataParallel over 8" in out["data"]["description"]
    # the model-parallel run really shards the frozen weights over the model axis
    assert out["model"]["query_shards"] > 1 and "model" in out["model"]["query_sharding"]


def test_mesh_that_cannot_split_the_heads_is_one_clear_line(tmp_path, tiny_preset, tiny_prepared):
    """The micro model has 4 key/value heads: a model axis of 8 cannot split them."""
    from kit.testing import micro_overrides

    overrides = micro_overrides(tmp_path, tiny_preset, tiny_prepared, name="mesh8") + [
        "distribution.mode=model",
        "distribution.mesh=batch:1,model:8",
    ]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    config = Path(__file__).resolve().parents[2] / "configs" / "tiny.toml"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kit",
            "finetune",
            "--config",
            str(config),
            "--quiet",
            *sum((["--set", o] for o in overrides), []),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr
    assert "The distribution.mesh cannot shard" in err and "batch:2,model:4" in err
