"""LoRA adapters on a Gemma causal LM: which layers, how to add them, how to save and load them.

Keras wraps each targeted `EinsumDense` with rank-r `lora_kernel_a/b`
(`backbone.enable_lora`); the kit adds the alpha scale, names the wrapped
layers for `run.json`, and writes the adapter file atomically.

Factored LoRA (`lora.factored`, on by default): Keras' float `EinsumDense`
merges `W + s·A·B` into a full-size kernel on every call, so the backward
pass builds a full-size kernel gradient for every adapted layer. The kit
replaces the call of each wrapped float layer with `x·W + s·(x·A)·B`, the
form Keras' own int8 path already uses (`EinsumDense._int8_call`). The
variables, their names and paths, the adapter file and the `kernel` property
(the merged kernel, which exports read) are untouched; only the forward pass
changes. It is done per instance (the bound `call` replaced) rather than by a
subclass, so the layer keeps its type and config and nothing about saving
or loading depends on a kit class.
"""

from __future__ import annotations

import types
from pathlib import Path

import keras
import keras_hub
import numpy as np

import kit  # noqa: F401  (sets KERAS_BACKEND before keras is imported)
from kit.atomic import atomic_path
from kit.errors import UserError
from kit.families import family_of
from kit.families.common import LORA_TARGET_LAYERS  # noqa: F401  (what every Gemma family's targets name)


def enable_lora(
    lm: keras_hub.models.CausalLM, *, rank: int, alpha: float, targets: str, factored: bool = True
) -> list[str]:
    """Freeze the backbone and add rank-`rank` adapters to the `targets` layers.

    keras-hub's `enable_lora` does not take alpha, so it is set on each
    wrapped layer afterwards (EinsumDense scales by `lora_alpha / lora_rank`).

    Args:
        lm: The causal LM.
        rank: Adapter rank (> 0).
        alpha: Scale numerator.
        targets: `qv` or `all` (the family's `LORA_TARGET_LAYERS`).
        factored: Compute each adapted layer as `x·W + s·(x·A)·B` (see the
            module docstring) instead of Keras' merged kernel. Same outputs
            within float rounding, same adapter file.

    Returns:
        The paths of the LoRA-wrapped layers, for `run.json`.

    Example:
        >>> enable_lora(lm, rank=4, alpha=8.0, targets="qv")[:1]  # doctest: +SKIP
        ['decoder_block_0/attention/query']
    """
    names = family_of(lm).LORA_TARGET_LAYERS
    if targets not in names:
        raise UserError(f"lora.targets must be 'qv' or 'all', received {targets!r}.")
    backbone = lm.backbone
    backbone.enable_lora(rank, target_layer_names=list(names[targets]))
    wrapped = []
    # Same layer walk keras-hub's own enable_lora uses (no public recursive API).
    for layer in backbone._flatten_layers(include_self=False):
        if getattr(layer, "lora_enabled", False):
            layer.lora_alpha = float(alpha)
            wrapped.append(layer.lora_kernel_a.path.rsplit("/", 1)[0])
            if factored:
                factor_lora(layer)
    return wrapped


def factor_lora(layer) -> bool:
    """Make a LoRA-wrapped float `EinsumDense` compute `x·W + s·(x·A)·B` instead of merging `W + s·A·B`.

    A quantized layer is left alone (Keras' int8 call is factored already),
    and so is any other layer type. Returns whether the call was replaced.

    Example:
        >>> layer = keras.layers.EinsumDense("ab,bc->ac", output_shape=3)
        >>> layer.build((2, 4)); layer.enable_lora(2)
        >>> factor_lora(layer)
        True
    """
    if not isinstance(layer, keras.layers.EinsumDense) or not getattr(layer, "lora_enabled", False):
        return False
    if layer.quantization_mode is not None:
        return False
    # The frozen base kernel variable itself (the `kernel` property returns the merged one).
    (base,) = [w for w in layer.weights if w.name == "kernel"]
    layer.call = types.MethodType(_factored_call(base), layer)
    return True


def _factored_call(base):
    def call(self, inputs, training=None):
        x = keras.ops.einsum(self.equation, inputs, base)
        low = keras.ops.einsum(self.equation, inputs, self.lora_kernel_a)  # (..., rank)
        x = keras.ops.add(x, (self.lora_alpha / self.lora_rank) * keras.ops.matmul(low, self.lora_kernel_b))
        x = keras.ops.cast(x, self.compute_dtype)
        if self.bias is not None:
            x = keras.ops.add(x, self.bias)
        if self.activation is not None:
            x = self.activation(x)
        return x

    return call


def parameter_counts(model: keras.Model) -> dict[str, int]:
    """Trainable and total parameter counts (LoRA adapters included).

    Example:
        >>> parameter_counts(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
        {'trainable': 8, 'total': 8, 'trainable_share': 1.0}
    """
    trainable = sum(_size(v) for v in model.trainable_weights)
    total = sum(_size(v) for v in model.weights)
    return {"trainable": trainable, "total": total, "trainable_share": round(trainable / max(total, 1), 6)}


def _size(variable) -> int:
    n = 1
    for d in variable.shape:
        n *= int(d)
    return n


def save_adapter(lm, path: str | Path) -> None:
    """`backbone.save_lora_weights` through a temp file, so the adapter is never half-written.

    Example:
        >>> save_adapter(lm, "runs/tiny-lora/adapter.lora.h5")  # doctest: +SKIP
    """
    with atomic_path(path, suffix=".lora.h5") as tmp:
        lm.backbone.save_lora_weights(str(tmp))


def load_adapter(
    lm: keras_hub.models.CausalLM,
    path: str | Path,
    *,
    rank: int,
    alpha: float,
    targets: str,
    factored: bool = True,
) -> None:
    """Add adapters of the recorded shape to `lm` and read their weights from `path`.

    Example:
        >>> load_adapter(lm, "runs/tiny-lora/adapter.lora.h5", rank=16, alpha=32.0, targets="qv")  # doctest: +SKIP
    """
    enable_lora(lm, rank=rank, alpha=alpha, targets=targets, factored=factored)
    lm.backbone.load_lora_weights(str(path))


def weighted_layers(backbone) -> list:
    """The backbone's layers that hold weights, in the order adapter files index them.

    `save_lora_weights` keys each adapter by its layer's position in this list
    (names are not unique), so reading a file back needs the same walk.
    """
    return [layer for layer in backbone._flatten_layers(include_self=False) if layer.weights]


def read_adapter(path: str | Path) -> tuple[int, dict[int, tuple]]:
    """The rank and the `(lora_kernel_a, lora_kernel_b)` arrays per layer index of an adapter file.

    Reads what `save_adapter` wrote without a model to load it into, so one
    base in memory can serve several adapters (`kit.generate.pool`).

    Raises:
        UserError: the file is missing or not an adapter file.

    Example:
        >>> rank, layers = read_adapter("runs/tiny-lora/adapter.lora.h5")  # doctest: +SKIP
        >>> rank, sorted(layers)[:2]  # doctest: +SKIP
        (16, [9, 10])
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} is missing; re-run `kit finetune` for {path.parent.name}.")
    try:
        with h5py.File(path, "r") as f:
            # Layout of Keras' H5IOStore: lora/vars/rank, lora/<layer index>/vars/lora_kernel_{a,b}.
            root = f["lora"]
            rank = int(root["vars"]["rank"][()])
            layers = {
                int(name): (np.asarray(g["vars"]["lora_kernel_a"]), np.asarray(g["vars"]["lora_kernel_b"]))
                for name, g in root.items()
                if name.isdigit()
            }
    except (OSError, KeyError, ValueError) as e:
        raise UserError(f"{path} is not a LoRA adapter file ({e}); re-run `kit finetune`.") from None
    return rank, layers
