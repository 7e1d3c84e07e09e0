"""Sharding on 8 virtual CPU devices: DataParallel and ModelParallel (batch 2 x model 4) match one device."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def test_data_and_model_parallel_match_single_device(tiny_preset, tiny_prepared):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    proc = subprocess.run([sys.executable, str(Path(__file__).parent / "sharding_check.py"), str(tiny_preset),
                           str(tiny_prepared)], capture_output=True, text=True, env=env, timeout=300)
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
