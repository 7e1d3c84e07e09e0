"""Analytic memory of the train step, for targets `kit plan` cannot compile for (NVIDIA GPUs).

Labelled "estimate (not compiled)" wherever it is shown. Per device:

- resident: every weight in its dtype, the LoRA adapters, their float32
  gradient accumulators (the Engine sums bfloat16 gradients in float32) and
  the AdamW moments (two per trainable weight);
- activations of one micro-batch of `rows` × `length` tokens kept for the
  backward pass, per token: the logits three times over the whole
  vocabulary (the dtype's logits, their float32 upcast for the loss, and its
  gradient), and in each decoder layer the residual stream and its norms
  (6·hidden), q/k/v/attention output ((2·H + 2·K)·head_dim), the gated
  feed-forward's four intermediates (4 × each gated projection's width, as
  the family counts it) and the attention scores and probabilities
  (2·H·length), in the dtype.
- the step's memory levers, as the Engine resolves them: with
  `train.loss_chunk` only one chunk of `rows` × `loss_chunk` positions has
  logits at a time (Gemma 3's 262,144-token vocabulary makes that the
  largest term otherwise), and with `train.remat` each layer keeps only its
  input (hidden per token) while one layer at a time is recomputed whole.

Every size comes from the backbone config, and the parameter count and FFN
width from its family (`kit.families`), so Gemma 2 and Gemma 3 (and any
family added) are estimated alike.

No fusion or rematerialisation is assumed, so it errs high: for the 2B step
at 2 × 512 (q,v rank 8, bf16) it says 5.7 GiB of activations where XLA's
TPU compile of that very step needs 3.7 GiB of temporaries.
"""

from __future__ import annotations

from kit.families import family_of_config
from kit.model.flops import lora_params

_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def param_count(arch: dict) -> int:
    """All weights of a backbone config of any family (tied embedding once, norms included).

    Example:
        >>> from kit.model.architectures import GEMMA2_2B, GEMMA3_1B
        >>> param_count(GEMMA2_2B), param_count(GEMMA3_1B)
        (2614341888, 999885952)
    """
    return family_of_config(arch).param_count(arch)


def activation_bytes(
    arch: dict, rows: int, length: int, dtype: str, *, loss_chunk: int = 0, remat: bool = False
) -> int:
    """Activations of one micro-batch kept for the backward pass (see the module doc).

    Example:
        >>> from kit.model.architectures import GEMMA2_2B, GEMMA3_1B
        >>> round(activation_bytes(GEMMA2_2B, 2, 512, "bfloat16") / 2**30, 2)
        5.67
        >>> plain = activation_bytes(GEMMA3_1B, 2, 512, "float32")
        >>> chunked = activation_bytes(GEMMA3_1B, 2, 512, "float32", loss_chunk=256)
        >>> round((plain - chunked) / 2**30, 2)  # the logits of the other 256 positions of each row
        1.5
    """
    b = _BYTES[dtype]
    d, h, k, q = arch["hidden_dim"], arch["num_query_heads"], arch["num_key_value_heads"], arch["head_dim"]
    tokens = rows * length
    logit_positions = rows * min(loss_chunk, length) if loss_chunk else tokens
    logits = logit_positions * int(arch["vocabulary_size"]) * (b + 4 + 4)
    ffw = family_of_config(arch).ffw_width(arch)  # each gated projection's width
    per_token_layer = (6 * d + (2 * h + 2 * k) * q + 4 * ffw + 2 * h * length) * b
    if remat:  # every layer keeps its input; one layer's activations exist at a time, recomputed
        layers = arch["num_layers"] * tokens * d * b + tokens * per_token_layer
    else:
        layers = arch["num_layers"] * tokens * per_token_layer
    return logits + layers


def estimate(
    arch: dict,
    *,
    dtype: str,
    rank: int,
    targets: tuple[str, ...],
    rows: int,
    length: int,
    loss_chunk: int = 0,
    remat: bool = False,
) -> dict:
    """Bytes per device of one micro-step: `{"resident", "activations", "total", "parameters"}`.

    `rows` is the micro-batch on one device (the global batch over the
    data-parallel width); `loss_chunk` and `remat` are the Engine's resolved
    levers (`kit.train.lean.step_levers`: 0 and False when off).
    `parameters` holds `trainable` (the LoRA adapters) and `total` (with the
    backbone's weights, the family's count).

    Example:
        >>> from kit.model.architectures import GEMMA2_2B
        >>> e = estimate(GEMMA2_2B, dtype="bfloat16", rank=8, targets=("query", "value"), rows=2, length=512)
        >>> round(e["total"] / 2**30, 1), e["parameters"]["trainable"]
        (10.6, 5857280)
    """
    b = _BYTES[dtype]
    frozen = param_count(arch)
    trainable = lora_params(arch, rank, targets, style="keras")
    # weights and adapters in dtype; float32 accumulators; AdamW's two moments in the adapters' dtype
    resident = (frozen + trainable) * b + trainable * 4 + 2 * trainable * b
    activations = activation_bytes(arch, rows, length, dtype, loss_chunk=loss_chunk, remat=remat)
    return {
        "resident": resident,
        "activations": activations,
        "total": resident + activations,
        "parameters": {"trainable": trainable, "total": frozen + trainable},
    }
