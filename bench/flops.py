"""The kit's FLOPs formulas and Gemma 2 architectures, for the benchmarks (`kit/model/flops.py`).

One definition: the formulas live in `kit/model/flops.py` and the
architectures in `kit/model/architectures.py`, where `kit plan` uses them.
Both are loaded from their files, not as `kit.model.*`, because importing
`kit.model` runs its `__init__`, which imports Keras, JAX and TensorFlow
(~400 MiB RSS, seconds): in the Hugging Face side's child that would count
against its load time and peak memory.

Example:
    >>> round(matmul_params(GEMMA2_2B) / 1e9, 3)
    2.614
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_MODEL = Path(__file__).resolve().parents[1] / "kit" / "model"


def _load(name: str):
    alias = f"_kit_model_{name}_alone"
    if alias not in sys.modules:
        spec = importlib.util.spec_from_file_location(alias, _MODEL / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[alias] = module
        spec.loader.exec_module(module)
    return sys.modules[alias]


_flops = _load("flops")
GEMMA2_2B = _load("architectures").GEMMA2_2B
FORMULA = _flops.FORMULA
PEAK_BF16 = _flops.PEAK_BF16
attention_flops_per_token = _flops.attention_flops_per_token
batch_train_flops = _flops.batch_train_flops
generate_flops_per_token = _flops.generate_flops_per_token
lora_macs = _flops.lora_macs
lora_params = _flops.lora_params
matmul_params = _flops.matmul_params
mfu = _flops.mfu
peak_flops = _flops.peak_flops
train_flops_per_token = _flops.train_flops_per_token
