"""The model stage: load a Gemma causal LM (presets, hubs, run dirs), LoRA, devices, the tiny base, export.

Example:
    >>> from kit.model import load_model, enable_lora  # doctest: +SKIP
    >>> lm = load_model("runs/tiny-lora")  # doctest: +SKIP
"""

from kit.model.distribution import parse_mesh, place_batch, setup_distribution
from kit.model.export import export_run, push
from kit.model.hf_checkpoint import hf_config, write_hf_checkpoint
from kit.model.loader import (
    default_dtype,
    load_causal_lm,
    load_credentials,
    load_model,
    load_run,
    preset_kind,
    resolve_dtype,
)
from kit.model.lora import (
    LORA_TARGET_LAYERS,
    enable_lora,
    load_adapter,
    parameter_counts,
    save_adapter,
)
from kit.model.tiny import TINY_INFO, TinySpec, build_tiny_lm, train_tokenizer

__all__ = [
    "LORA_TARGET_LAYERS",
    "TINY_INFO",
    "TinySpec",
    "build_tiny_lm",
    "default_dtype",
    "enable_lora",
    "export_run",
    "hf_config",
    "load_adapter",
    "load_causal_lm",
    "load_credentials",
    "load_model",
    "load_run",
    "parameter_counts",
    "parse_mesh",
    "place_batch",
    "preset_kind",
    "push",
    "resolve_dtype",
    "save_adapter",
    "setup_distribution",
    "train_tokenizer",
    "write_hf_checkpoint",
]
