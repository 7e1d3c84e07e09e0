"""The Hugging Face side of the benchmarks: `Gemma2ForCausalLM` (+ PEFT LoRA) built to match a Keras backbone.

torch, transformers and peft are imported inside the functions, so this
module (and its doctests) import without them; they come with the `test`
extra (`pip install -e '.[test]'`, torch pinned to the 2.13.0 CPU wheel here).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

# KerasHub LoRA target layer -> PEFT module name in transformers' Gemma 2.
PEFT_MODULE = {
    "query": "q_proj",
    "key": "k_proj",
    "value": "v_proj",
    "attention_output": "o_proj",
    "ffw_gating": "gate_proj",
    "ffw_gating_2": "up_proj",
    "ffw_linear": "down_proj",
}


def hf_config_from(cfg: dict, *, dtype: str = "float32") -> dict:
    """The kit's Hugging Face Gemma 2 config (`kit.model.hf_checkpoint.hf_config_from`) for a `GemmaBackbone` config dict.

    One mapping for both: the random-init HF model here is configured exactly
    as a `kit export --to hf` checkpoint would be. hf_checkpoint.py is loaded
    from its file because `import kit.model.hf_checkpoint` runs `kit/model/__init__`,
    which imports Keras, JAX and TensorFlow (~400 MiB RSS, seconds): in the HF
    side's child that would count against its load time and peak memory.

    Example:
        >>> from flops import GEMMA2_2B
        >>> c = hf_config_from(GEMMA2_2B)
        >>> c["intermediate_size"], c["query_pre_attn_scalar"], c["layer_types"][:2]
        (9216, 256, ['sliding_attention', 'full_attention'])
    """
    return kit_hf_checkpoint().hf_config_from(cfg, torch_dtype=dtype)


def kit_hf_checkpoint():
    """`kit/model/hf_checkpoint.py` loaded from its file alone, without `kit.model` (and so without Keras/JAX).

    Example:
        >>> kit_hf_checkpoint().__name__
        '_kit_model_hf_checkpoint_alone'
    """
    import importlib.util
    import sys

    import kit

    name = "_kit_model_hf_checkpoint_alone"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(kit.__file__).parent / "model" / "hf_checkpoint.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def set_threads(threads: int) -> None:
    """The same CPU thread count as the Keras side (intra-op; inter-op left at torch's default)."""
    import torch

    torch.set_num_threads(threads)


def build_model(
    cfg: dict, *, dtype: str, device: str, attn: str = "eager", weights_dir: str | None = None, seed: int = 0
):
    """A `Gemma2ForCausalLM` matching `cfg`: loaded from `weights_dir` (an HF export) or randomly initialised.

    transformers' Gemma 2 does not support SDPA (it cannot soft-cap attention
    logits), so `eager` is its default and the exact same maths as KerasHub.
    """
    import torch
    import transformers

    td = torch_dtype(dtype)
    if weights_dir:
        model = transformers.Gemma2ForCausalLM.from_pretrained(weights_dir, dtype=td, attn_implementation=attn)
        model.to(device)
    else:
        torch.manual_seed(seed)
        config = transformers.Gemma2Config(**hf_config_from(cfg, dtype=dtype))
        with torch.device(device):
            model = transformers.Gemma2ForCausalLM._from_config(config, dtype=td, attn_implementation=attn)
    return model


def add_lora(model, *, rank: int, alpha: float, targets: tuple[str, ...]):
    """PEFT LoRA on the same layers as `kit.model.enable_lora` (scale alpha/rank, no dropout)."""
    import peft

    config = peft.LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
        target_modules=[PEFT_MODULE[t] for t in targets],
    )
    return peft.get_peft_model(model, config)


def warmup_decay(peak: float, warmup_steps: int, total_steps: int, min_ratio: float = 0.1):
    """A `LambdaLR` factor equal to `kit.train.optim.WarmupDecay` (cosine) divided by `peak`.

    Example:
        >>> f = warmup_decay(1.0, 2, 10)
        >>> [round(f(i), 3) for i in (0, 1, 2, 10)]
        [0.5, 1.0, 1.0, 0.1]
    """
    total = max(total_steps, warmup_steps + 1)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return min((step + 1) / max(warmup_steps, 1), 1.0)
        t = min(max((step - warmup_steps) / (total - warmup_steps), 0.0), 1.0)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return factor


def cuda_sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def device_name(device: str) -> str:
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name()
    return "cpu"


def peak_device_bytes(device: str) -> int | None:
    if device == "cuda":
        import torch

        return int(torch.cuda.max_memory_allocated())
    return None


def versions() -> dict:
    """torch / transformers / peft versions (None where missing)."""
    from importlib import metadata

    out = {}
    for name in ("torch", "transformers", "peft", "accelerate"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["torch_num_threads_env"] = os.environ.get("OMP_NUM_THREADS")
    return out
