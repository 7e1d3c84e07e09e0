"""An int8 base for 16 GB GPUs (`model.quantize = "int8"`), and its float weights back for exports.

`quantize_base` quantizes the frozen decoder blocks with Keras' own int8
mode before the adapters are added: every `EinsumDense` kernel becomes
int8 with a float scale per output channel (Gemma 2 2B: 2.0 B of its 2.6 B
parameters, 3.2 GB in place of 5.2 GB in bfloat16). The token embedding
stays in float (see `quantize_base`). Keras' int8 `EinsumDense` computes LoRA as its own
low-rank product, so training, generation and adapter files work unchanged.

An export of such a run needs float weights: `dequantized_kernel` and
`dequantized_embeddings` undo the quantization (`q / scale`), and
`merged_kernel` adds the adapter on top (`W + alpha/rank · A·B`), the same
arithmetic Keras' `EinsumDense._get_kernel_with_merged_lora` does before it
re-quantizes. `float_copy` writes them into a float model of the same
architecture, which then exports like any float run.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np

import kit  # noqa: F401
from kit.errors import UserError

QUANTIZE_MODES = ("none", "int8")


def run_quantize(config: dict | None) -> str:
    """The `model.quantize` of a run's saved config (`none` for runs from before the key existed).

    Example:
        >>> run_quantize({"model": {"quantize": "int8"}}), run_quantize({})
        ('int8', 'none')
    """
    return ((config or {}).get("model") or {}).get("quantize", "none")


def quantize_base(lm, mode: str) -> list[str]:
    """Quantize the decoder blocks' `EinsumDense` kernels of `lm` in place (`int8`), or nothing (`none`).

    Call it before adding adapters. The token embedding stays in float: its
    int8 reverse call (the logits) quantizes its inputs with no
    straight-through gradient, so the loss's gradient through it is wrong
    and LoRA training diverges (measured on the tiny model: train loss 12
    after 100 steps, against 1.07 on the float base). The kernels hold
    2.0 of Gemma 2 2B's 2.6 B parameters, so int8 still saves most of it.

    Returns:
        The paths of the quantized layers.

    Example:
        >>> quantize_base(lm, "int8")[:1]  # doctest: +SKIP
        ['decoder_block_0/attention/query']
    """
    if mode not in QUANTIZE_MODES:
        raise UserError(f"model.quantize must be one of {', '.join(QUANTIZE_MODES)}, received {mode!r}.")
    if mode == "none":
        return []
    done = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for block in lm.backbone.transformer_layers:
            for layer in block._flatten_layers(include_self=False):
                if isinstance(layer, keras.layers.EinsumDense) and layer.quantization_mode is None:
                    layer.quantize(mode)  # Keras' int8: per-channel absmax kernel, straight-through input gradient
                    done.append(layer.path)
    return done


def _np(x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float32)


def dequantized_kernel(layer) -> np.ndarray:
    """The float32 base kernel of an `EinsumDense`/`Dense` (int8: `q / scale`), without LoRA.

    Example:
        >>> layer = keras.layers.Dense(3); layer.build((2, 4))
        >>> dequantized_kernel(layer).shape
        (4, 3)
    """
    mode = getattr(layer, "quantization_mode", None)
    if mode is None:
        (base,) = [w for w in layer.weights if w.name == "kernel"]
        return _np(base)
    if mode != "int8":
        raise UserError(f"Layer {layer.name} is quantized as {mode}; the kit exports int8 or float bases only.")
    (q,) = [w for w in layer.weights if w.name == "kernel"]
    # The scale is stored in the layout the int8 einsum needs; Keras' own
    # dequantization (`_get_kernel_with_merged_lora`) brings it back to the
    # kernel's layout this way. No public API does this in Keras 3.15.
    scale = layer._adjust_scale_for_dequant(layer.kernel_scale) if hasattr(layer, "_adjust_scale_for_dequant") else None
    if scale is None:  # keras.layers.Dense: one scale per output unit
        scale = layer.kernel_scale
    return _np(q) / _np(scale)


def merged_kernel(layer) -> np.ndarray:
    """`dequantized_kernel(layer) + alpha/rank · A·B` when LoRA is on, float32.

    Example:
        >>> layer = keras.layers.EinsumDense("ab,bc->ac", output_shape=3); layer.build((2, 4))
        >>> np.allclose(merged_kernel(layer), layer.kernel.numpy())
        True
    """
    w = dequantized_kernel(layer)
    if getattr(layer, "lora_enabled", False):
        w = w + (float(layer.lora_alpha) / float(layer.lora_rank)) * (
            _np(layer.lora_kernel_a) @ _np(layer.lora_kernel_b)
        )
    return w


def dequantized_embeddings(embedding) -> np.ndarray:
    """The float32 `(vocabulary, hidden)` table of a (possibly int8) `Embedding`/`ReversibleEmbedding`.

    Example:
        >>> emb = keras.layers.Embedding(10, 4); emb.build((None,))
        >>> dequantized_embeddings(emb).shape
        (10, 4)
    """
    mode = getattr(embedding, "quantization_mode", None)
    if mode is None:
        return _np(embedding.embeddings)
    if mode != "int8":
        raise UserError(f"Layer {embedding.name} is quantized as {mode}; the kit exports int8 or float bases only.")
    (q,) = [w for w in embedding.weights if w.name == "embeddings"]
    return _np(q) / _np(embedding.embeddings_scale)[:, None]  # one scale per token row


def float_copy(lm, float_lm):
    """Write `lm`'s dequantised weights, adapters merged, into `float_lm` (same architecture, float, no LoRA).

    Returns `float_lm`, ready for `kit export --to hf/keras`.

    Example:
        >>> merged = float_copy(load_run("runs/int8-lora"), load_causal_lm("models/tiny-base"))  # doctest: +SKIP
    """
    src = dict(_leaf_layers(lm.backbone))
    for path, layer in _leaf_layers(float_lm.backbone):
        if path not in src:
            raise UserError(f"Cannot export: the float base has a layer {path} that the trained model lacks.")
        other = src[path]
        if isinstance(layer, keras.layers.Embedding):
            layer.embeddings.assign(dequantized_embeddings(other).astype(layer.embeddings.dtype))
        elif isinstance(layer, keras.layers.EinsumDense | keras.layers.Dense):
            layer.kernel.assign(merged_kernel(other).astype(layer.kernel.dtype))
            if layer.bias is not None:
                layer.bias.assign(_np(other.bias))
        else:  # norms: never quantized
            for mine, theirs in zip(layer.weights, other.weights, strict=True):
                mine.assign(_np(theirs).astype(mine.dtype))
    return float_lm


def _leaf_layers(backbone):
    """`(path, layer)` of the layers that own weights themselves (not through sublayers)."""
    for layer in backbone._flatten_layers(include_self=False):
        children = [c for c in layer._flatten_layers(include_self=False) if c.weights]
        if layer.weights and not children:
            yield layer.path, layer
