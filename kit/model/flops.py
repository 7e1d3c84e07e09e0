"""Model-FLOPs formulas for Gemma 2 LoRA training and generation, and accelerator peak FLOP/s.

Model FLOPs utilisation (MFU) = model FLOPs per second / the device's peak
dense bf16 FLOP/s. "Model FLOPs" count the matrix multiplies the model needs,
not what an implementation happens to execute (no recomputation, no
elementwise ops, norms, soft-caps or softmax).

LoRA training, per token of a sequence of length T (every position, padding
included: it is computed):

    flops/token = 4·N + 6·N_lora + 12·Σ_layers H·d_head·T

- N: parameters that take part in a matmul for every token: the attention and
  feed-forward kernels of every layer plus the tied output projection
  (vocab × hidden). The embedding lookup is not a matmul.
- 4·N: the forward pass is 2·N (a multiply and an add per weight); the
  backward pass of a frozen weight only needs the gradient with respect to
  its input activations (another 2·N) and no weight gradient. Full
  fine-tuning would be 6·N.
- 6·N_lora: the adapters are trained, so they get all three (forward,
  activation gradient, weight gradient). N_lora counts the adapters'
  multiply-adds per token, which differ by library at the same rank: PEFT
  has A (in×r), B (r×out) per matrix; Keras' `EinsumDense` LoRA on the
  per-head q/k/v kernels has one A per head and a shared B (see
  `lora_params`). It is < 1 % of 4·N for Gemma 2 2B at rank 8.
- Attention (PaLM's convention): per layer and token, Q·Kᵀ and the weighted
  sum of V cost 2·H·d_head·T each in the forward pass; their backward pass
  needs gradients for both operands (all activations), twice the forward:
  12·H·d_head·T in all. Counted over the full T (implementations compute the
  masked T×T scores; Gemma 2's 4,096 sliding window is wider than the
  sequences measured here).

Greedy generation, per new token with a context of C positions:
    flops/token = 2·N + 4·Σ_layers H·d_head·C   (forward only; decoding is
    memory-bound, so its MFU is low by nature: tokens/s is the figure to read).

`kit plan` prints these figures beside XLA's cost analysis of the compiled
step; `bench/` reports MFU with them.

Configs are KerasHub backbone config dicts of any family in `kit.families`
(which says how wide each gated FFN projection is: Gemma 2's
`intermediate_dim` counts both, Gemma 3's one).
"""

from __future__ import annotations

import math

# Only kit.families at module level (pure tables, no Keras): bench/flops.py
# loads this file on its own, without kit/model/__init__'s Keras. The
# examples below use Gemma 2 2B's table.
from kit.families import family_of_config


# LoRA target layers (KerasHub names, as in kit.model.LORA_TARGET_LAYERS) ->
# their KerasHub kernel shapes in one layer of `cfg` (`_in_out` flattens them
# to the (in, out) matrix transformers holds).
def _kernel_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    d, h, k, q = cfg["hidden_dim"], cfg["num_query_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    f = family_of_config(cfg).ffw_width(cfg)
    return {
        "query": (h, d, q),  # einsum btd,ndh->btnh
        "key": (k, d, q),
        "value": (k, d, q),
        "attention_output": (h, q, d),  # btnh,nhd->btd
        "ffw_gating": (d, f),
        "ffw_gating_2": (d, f),
        "ffw_linear": (f, d),
    }


def _in_out(name: str, shape: tuple[int, ...]) -> tuple[int, int]:
    """(in, out) of the kernel as one matrix, as transformers' nn.Linear holds it."""
    if name in ("query", "key", "value"):
        heads, d, q = shape
        return d, heads * q
    if name == "attention_output":
        heads, q, d = shape
        return heads * q, d
    return shape


def matmul_params(cfg: dict) -> int:
    """N: the weights every token multiplies (all layer kernels + the tied output projection).

    Example:
        >>> from kit.model.architectures import GEMMA2_2B
        >>> round(matmul_params(GEMMA2_2B) / 1e9, 3)
        2.614
    """
    per_layer = sum(i * o for i, o in (_in_out(n, s) for n, s in _kernel_shapes(cfg).items()))
    return cfg["num_layers"] * per_layer + cfg["vocabulary_size"] * cfg["hidden_dim"]


def _check_targets(cfg: dict, targets) -> dict:
    shapes = _kernel_shapes(cfg)
    unknown = set(targets) - set(shapes)
    if unknown:
        raise ValueError(f"Unknown LoRA target layers {sorted(unknown)}; expected some of {sorted(shapes)}.")
    return shapes


def lora_params(cfg: dict, rank: int, targets: tuple[str, ...], style: str = "peft") -> int:
    """Adapter parameters in every layer, for PEFT (`peft`) or KerasHub/Keras (`keras`) LoRA.

    PEFT's `lora.Linear` holds A (in × r) and B (r × out) for the whole matrix.
    Keras' `EinsumDense.enable_lora` makes A the kernel's shape with the last
    axis replaced by r and B (r × last axis): for the per-head q/k/v kernels
    (heads, hidden, head_dim) that is one A per head and a B shared by the
    heads, more parameters than PEFT at the same rank. The FFW and output
    kernels are the same in both.

    Example:
        >>> from kit.model.architectures import GEMMA2_2B
        >>> lora_params(GEMMA2_2B, 8, ("query", "value"))  # 26 · 8 · ((2304+2048) + (2304+1024))
        1597440
        >>> lora_params(GEMMA2_2B, 8, ("query", "value"), style="keras")  # 26 · ((8·2304·8 + 8·256) + (4·2304·8 + 8·256))
        5857280
    """
    shapes = _check_targets(cfg, targets)
    total = 0
    for t in targets:
        if style == "keras":
            *lead, last = shapes[t]
            total += rank * math.prod(lead) + rank * last
        else:
            i, o = _in_out(t, shapes[t])
            total += rank * (i + o)
    return cfg["num_layers"] * total


def lora_macs(cfg: dict, rank: int, targets: tuple[str, ...], style: str = "peft") -> int:
    """Adapter multiply-adds per token (forward). Equals `lora_params` except for Keras q/k/v,
    whose shared B is applied once per head.

    Example:
        >>> from kit.model.architectures import GEMMA2_2B
        >>> lora_macs(GEMMA2_2B, 8, ("query",), style="keras")  # 26 · (8·2304·8 + 8·8·256)
        4259840
    """
    shapes = _check_targets(cfg, targets)
    total = 0
    for t in targets:
        if style == "keras" and t in ("query", "key", "value"):
            heads, d, q = shapes[t]
            total += heads * d * rank + heads * rank * q
        elif style == "keras":
            *lead, last = shapes[t]
            total += rank * math.prod(lead) + rank * last
        else:
            i, o = _in_out(t, shapes[t])
            total += rank * (i + o)
    return cfg["num_layers"] * total


def attention_flops_per_token(cfg: dict, context: int) -> int:
    """Forward Q·Kᵀ + scores·V FLOPs for one token attending to `context` positions, all layers.

    Example:
        >>> from kit.model.architectures import GEMMA2_2B
        >>> attention_flops_per_token(GEMMA2_2B, 512)  # 26 · 4 · 8 · 256 · 512
        109051904
    """
    return 4 * cfg["num_layers"] * cfg["num_query_heads"] * cfg["head_dim"] * context


def train_flops_per_token(cfg: dict, seq_len: int, rank: int, targets: tuple[str, ...], style: str = "peft") -> int:
    """LoRA training FLOPs per token at sequence length `seq_len`: 4·N + 6·N_lora + 3·attention.

    Example:
        >>> from kit.model.architectures import GEMMA2_2B
        >>> f = train_flops_per_token(GEMMA2_2B, 512, 8, ("query", "value"))
        >>> round(f / 1e9, 2)  # ≈ 10.8 GFLOP per token
        10.79
    """
    return (
        4 * matmul_params(cfg) + 6 * lora_macs(cfg, rank, targets, style) + 3 * attention_flops_per_token(cfg, seq_len)
    )


def generate_flops_per_token(cfg: dict, context: int) -> int:
    """Greedy decoding FLOPs for one new token with `context` cached positions: 2·N + attention.

    Example:
        >>> from kit.model.architectures import GEMMA2_2B
        >>> round(generate_flops_per_token(GEMMA2_2B, 256) / 1e9, 2)
        5.28
    """
    return 2 * matmul_params(cfg) + attention_flops_per_token(cfg, context)


def batch_train_flops(
    cfg: dict, lengths_and_rows: list[tuple[int, int]], rank: int, targets: tuple[str, ...], style: str = "peft"
) -> int:
    """Total training FLOPs of batches given as `(seq_len, rows)` pairs (padding included).

    Example:
        >>> from kit.model.architectures import GEMMA2_2B
        >>> batch_train_flops(GEMMA2_2B, [(512, 8)], 8, ("query",)) == 8 * 512 * train_flops_per_token(GEMMA2_2B, 512, 8, ("query",))
        True
    """
    return sum(
        rows * length * train_flops_per_token(cfg, length, rank, targets, style) for length, rows in lengths_and_rows
    )


# Dense (no sparsity) bf16 peak FLOP/s by device name, most specific first
# (NVIDIA's and Google Cloud's datasheets). T4, P100 and V100 have no bf16
# matrix units: XLA runs bf16 there at the float32 rate, which is listed.
PEAK_BF16 = (
    ("T4", 8.1e12),  # NVIDIA T4 datasheet: 8.1 TFLOPS fp32 (65 fp16 tensor, unused for bf16)
    ("P100", 9.3e12),  # Tesla P100 PCIe datasheet: 9.3 TFLOPS fp32
    ("V100", 15.7e12),  # Tesla V100 SXM2: 15.7 TFLOPS fp32
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989.4e12),  # SXM / HBM3
    ("H200", 989.4e12),
    ("GH200", 989.4e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("A10G", 70e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("TPU v5 lite", 197e12),
    ("TPU v5e", 197e12),
    ("TPU v5p", 459e12),
    ("TPU v4", 275e12),
    ("TPU v3", 61.5e12),  # per core (JAX device); 123 TFLOPS per 2-core chip (Cloud TPU docs)
    ("TPU v6", 918e12),
)


def peak_flops(device_name: str) -> float | None:
    """Dense bf16 peak FLOP/s for a device name (`torch.cuda.get_device_name()`, JAX `device_kind`).

    Returns None for devices not in `PEAK_BF16` (pass `--peak-tflops` instead).

    Example:
        >>> peak_flops("NVIDIA H100 80GB HBM3"), peak_flops("NVIDIA H100 PCIe"), peak_flops("cpu")
        (989400000000000.0, 756000000000000.0, None)
    """
    name = device_name.lower()
    for key, value in PEAK_BF16:
        if key.lower() in name:
            return value
    return None


def mfu(flops: float, seconds: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: achieved FLOP/s over the peak (None without a peak).

    Example:
        >>> mfu(4e14, 1.0, 1e15)
        0.4
    """
    if not peak or seconds <= 0:
        return None
    return flops / seconds / peak


FORMULA = {
    "train_flops_per_token": "4*N + 6*N_lora + 12*L*H*d_head*T",
    "generate_flops_per_token": "2*N + 4*L*H*d_head*C",
    "N": "attention + FFW kernels of all layers + tied output projection (vocab*hidden); embedding lookup excluded",
    "why_4N": "forward 2N + activation gradients 2N; frozen weights need no weight gradients (full fine-tuning: 6N)",
    "N_lora": "adapter multiply-adds per token (PEFT: rank*(in+out) per adapted matrix; Keras EinsumDense: one A per "
    "head for q/k/v, so more); trained, so forward + both backward matmuls (6 per multiply-add)",
    "attention": "PaLM convention over the full sequence T (or cached context C); backward = 2x forward",
    "tokens": "every computed position, padding included",
}
