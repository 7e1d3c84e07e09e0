"""Micro Gemma 2 models for tests (built in seconds, a few thousand parameters)."""

from __future__ import annotations

from pathlib import Path

from kit.model.tiny import TinySpec, build_tiny_lm, train_tokenizer

# 4 query and 4 key/value heads and an even hidden size, so the same model
# shards on a batch:2,model:4 mesh (sharded dims must divide evenly).
MICRO = TinySpec(
    vocab_size=400,
    num_layers=2,
    hidden_dim=16,
    intermediate_dim=32,
    num_query_heads=4,
    num_key_value_heads=4,
    head_dim=4,
    sliding_window_size=8,
    buckets=(32, 64),
    batch_size=8,
)


def micro_lm(prepared: Path, spec: TinySpec = MICRO):
    """A random-weight micro `GemmaCausalLM` with a tokenizer trained on `prepared`'s texts."""
    import datasets

    dd = datasets.load_from_disk(str(prepared))
    proto = train_tokenizer(list(dd["train"]["text"]) + list(dd["train"]["prompt"]), vocab_size=spec.vocab_size)
    return build_tiny_lm(proto, spec)


def save_micro_preset(path: Path, prepared: Path) -> Path:
    lm = micro_lm(prepared)
    lm.save_to_preset(str(path))
    return path


def micro_overrides(tmp_path, preset, data, name="micro", **extra):
    """`--set` overrides that turn configs/tiny.toml into a seconds-long run of the micro model."""
    values = {
        "run.name": name,
        "run.out_dir": str(tmp_path / "runs"),
        "model.preset": str(preset),
        "data.dir": str(data),
        "data.buckets": "[64, 128]",
        "data.auto_buckets": 0,
        "data.rating_power": 1.0,
        "lora.rank": 4,
        "lora.targets": "all",
        "train.batch_size": 8,
        "train.grad_accum": 2,
        "train.steps": 8,
        "train.learning_rate": 1e-2,
        "train.warmup_steps": 2,
        "train.eval_every": 4,
        "train.checkpoint_every": 3,
        "train.keep_last": 2,
        "train.log_every": 1,
        **extra,
    }
    return [f"{k}={v}" for k, v in values.items()]


def adapter_arrays(lm) -> list:
    """The LoRA kernels of `lm` as numpy arrays, in variable order (for comparisons)."""
    import numpy as np

    return [np.asarray(v.numpy()) for v in lm.backbone.weights if "lora_kernel" in v.path]
