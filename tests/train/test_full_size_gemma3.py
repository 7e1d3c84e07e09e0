"""Full-size Gemma 3 1B on a CPU: `kit finetune` of its GPU config with random weights, 2 LoRA steps (slow tier).

The whole pipeline at Gemma 3 1B's full width and depth (26 layers, 262,144-token
vocabulary, sliding and global layers), float32 as the config says, in its own
process so its memory goes back when it ends. Run it alone on a shared machine:
measured in docs/plan.md (wall time and the child's peak RSS).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from kit.errors import UserError
from kit.runs import RunInfo

pytestmark = pytest.mark.slow

PUBLISHED_1B = 999_885_952  # keras_hub's preset metadata for gemma3_1b

# A short bucket, one row, two optimizer steps, two validation rows (as tests/train/test_full_size.py).
SHORT = [
    "--set", "model.init=random", "--set", "data.buckets=[64]", "--set", "data.auto_buckets=0",
    "--set", "train.batch_size=1", "--set", "train.grad_accum=1", "--set", "train.steps=2",
    "--set", "train.warmup_steps=0", "--set", "data.max_val_rows=2", "--set", "data.max_train_rows=8",
    "--set", "train.eval_every=0", "--set", "train.patience=0", "--set", "train.checkpoint_every=2",
    "--set", "train.log_every=1",
]  # fmt: skip

# The child's own peak, read by a wrapper as it exits (VmHWM): ru_maxrss of a child started
# with vfork carries the pytest process's peak across exec (tests/train/test_plan.py).
_PEAK = (
    "import atexit, re, runpy, sys\n"
    "def _peak():\n"
    "    kb = re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1)\n"
    "    print(f'PEAK_RSS_KB={kb}', file=sys.stderr, flush=True)\n"
    "atexit.register(_peak)\n"
    "sys.argv = ['kit', *sys.argv[1:]]\n"
    "runpy.run_module('kit', run_name='__main__')\n"
)


def test_finetune_gemma3_1b_gpu_config_random_init(tmp_path, tiny_prepared):
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK, "finetune", "--config", "configs/gemma3_1b_gpu.toml", *SHORT,
         "--set", f"data.dir={tiny_prepared}", "--set", "run.name=gpu-1b", "--runs-dir", str(tmp_path), "--quiet"],
        capture_output=True, text=True, timeout=1800, env={**os.environ, "JAX_PLATFORMS": "cpu"}, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    root = tmp_path / "gpu-1b"
    info = RunInfo.read(root)
    assert info.status == "completed" and info.init == "random"
    assert info.tokenizer.startswith("models/tiny-base")
    assert "single device" in info.distribution
    assert info.parameters["total"] - info.parameters["trainable"] == PUBLISHED_1B  # the base, at full size
    assert info.parameters["trainable"] > 0
    history = (root / "history.csv").read_text().splitlines()
    assert len(history) >= 3  # header, step 0 validation, 2 steps
    assert "initial_val_loss" in info.metrics and info.metrics["val_loss"] > 0
    assert (root / "adapter.lora.h5").is_file() and list((root / "checkpoints").iterdir())
    with pytest.raises(UserError, match="trained on random weights"):
        from kit.model.loader import load_run

        load_run(root)
    peak = re.search(r"PEAK_RSS_KB=(\d+)", proc.stderr)
    assert peak is not None
    # float32 1B weights are 4.0 GB: the run held them (and more), and stayed within a CI machine
    assert 4.0e9 < int(peak.group(1)) * 1024 < 16e9
    print(f"peak RSS {int(peak.group(1)) / 2**20:.2f} GiB")
