"""Spread the model and batches over devices: single, DataParallel, ModelParallel, multi-host.

Call `setup_distribution` *before* loading the model: Keras creates (and
shards) variables according to the distribution active at creation time.

- `single`: everything on the default device.
- `data`: `keras.distribution.DataParallel` over all local devices (weights
  replicated, batch split) - a multi-GPU box or a TPU v3-8 with a 2B model.
- `model`: `keras.distribution.ModelParallel` over a `batch:B,model:M` mesh
  with the model family's layout map (weights sharded on `model`).
- `auto` (`choose_layout`): `single` on one device, `data` on several GPUs
  (or CPU devices), and on a TPU slice a `model` mesh sized to its devices
  (4: `batch:1,model:4`; 8: `batch:2,model:4`), the model axis the widest
  that divides both the device count and the key/value heads (4 for 2B).

Multi-host (TPU pods, `kit launch`, or `JAX_COORDINATOR_ADDRESS` set) first
joins the job (`kit.model.multihost`); the device list then spans every
process and each one feeds only its rows of the global batch (`feed_rows`).
"""

from __future__ import annotations

import keras
import numpy as np

import kit  # noqa: F401
from kit.errors import UserError
from kit.families import common
from kit.model import multihost


def parse_mesh(text: str) -> dict[str, int]:
    """Parse `batch:1,model:8` into `{"batch": 1, "model": 8}`.

    Example:
        >>> parse_mesh("batch:2, model:4")
        {'batch': 2, 'model': 4}
    """
    out: dict[str, int] = {}
    for part in text.split(","):
        name, sep, size = part.strip().partition(":")
        if not sep or name not in ("batch", "model") or not size.strip().isdigit() or int(size) < 1:
            raise UserError(f"distribution.mesh must look like 'batch:1,model:8', received {text!r}.")
        out[name] = int(size)
    if set(out) != {"batch", "model"}:
        raise UserError(f"distribution.mesh needs both 'batch' and 'model' axes, received {text!r}.")
    return out


def multihost_requested() -> bool:
    """True when the environment describes a multi-process JAX job (see `kit.model.multihost`).

    Example:
        >>> isinstance(multihost_requested(), bool)
        True
    """
    return multihost.requested()


def maybe_initialize_multihost() -> None:
    """Join the multi-process job once when `multihost_requested()` (`kit.model.multihost.initialize`)."""
    multihost.initialize()


def choose_layout(mode: str, mesh: str, n_devices: int, platform: str, kv_heads: int | None = None):
    """The layout for `n_devices` of `platform`: `(mode, {"batch": B, "model": M} or None)`.

    `auto` picks `single` for one device, `data` for several GPUs/CPU
    devices, and for a TPU slice a `model` mesh whose model axis is the
    widest M ≤ 4 dividing both `n_devices` and `kv_heads` (sharded weights
    must split evenly; 4 is Gemma 2 2B's key/value heads). A pin the devices
    cannot satisfy fails in one line.

    Example:
        >>> choose_layout("auto", "", 1, "tpu"), choose_layout("auto", "", 2, "gpu")
        (('single', None), ('data', None))
        >>> choose_layout("auto", "", 4, "tpu", kv_heads=4), choose_layout("auto", "", 8, "tpu", kv_heads=4)
        (('model', {'batch': 1, 'model': 4}), ('model', {'batch': 2, 'model': 4}))
        >>> choose_layout("model", "batch:2,model:4", 1, "tpu")
        Traceback (most recent call last):
        ...
        kit.errors.UserError: distribution.mesh 'batch:2,model:4' needs 8 devices but 1 are visible. Make batch × model equal the device count, or set distribution.mode = "auto".
    """
    if mode == "auto":
        if n_devices == 1:
            return "single", None
        if platform != "tpu":
            return "data", None
        heads = kv_heads or 4
        width = max(m for m in range(1, min(4, heads) + 1) if n_devices % m == 0 and heads % m == 0)
        return "model", {"batch": n_devices // width, "model": width}
    if mode in ("single", "data"):
        return mode, None
    if mode == "model":
        axes = parse_mesh(mesh)
        if axes["batch"] * axes["model"] != n_devices:
            raise UserError(
                f"distribution.mesh {mesh!r} needs {axes['batch'] * axes['model']} devices but "
                f'{n_devices} are visible. Make batch × model equal the device count, or set distribution.mode = "auto".'
            )
        return mode, axes
    raise UserError(f"distribution.mode must be auto, single, data or model, received {mode!r}.")


def make_distribution(mode: str, axes: dict | None, devices, *, batch_size: int | None = None, layout=None):
    """The `keras.distribution` for a `choose_layout` result over `devices` (not activated).

    `devices` may be Keras device names or JAX devices (`kit plan` passes a
    TPU topology's compile-only devices). `layout(device_mesh)` gives the
    ModelParallel layout map: the model family's `layout_map` (default: the
    Gemma rules every family shares, `kit.families.common.layout_map`).
    Returns `(distribution or None, description)`.

    Example:
        >>> make_distribution("single", None, ["cpu:0"])
        (None, 'single device (cpu:0)')
    """
    if mode == "single":
        return None, f"single device ({devices[0]})"
    if mode == "data":
        dist = keras.distribution.DataParallel(devices=list(devices))
        width = len(devices)
        text = f"DataParallel over {width} devices"
    else:
        device_mesh = keras.distribution.DeviceMesh(
            shape=(axes["batch"], axes["model"]), axis_names=("batch", "model"), devices=list(devices)
        )
        layout_map = (layout or common.layout_map)(device_mesh)
        dist = keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")
        width = axes["batch"]
        text = f"ModelParallel mesh batch:{axes['batch']},model:{axes['model']}"
    if batch_size is not None and batch_size % width:
        raise UserError(f"train.batch_size={batch_size} must be divisible by the data-parallel width {width} ({text}).")
    return dist, text


def setup_distribution(
    mode: str = "auto", mesh: str = "", *, batch_size: int | None = None, kv_heads: int | None = None, layout=None
):
    """Choose and activate a `keras.distribution` (or none for a single device).

    Args:
        mode: `auto`, `single`, `data` or `model`.
        mesh: For `model`, e.g. `batch:2,model:4`.
        batch_size: Global batch size, checked against the data-parallel width.
        kv_heads: The model's key/value heads (bounds an `auto` model axis).
        layout: The model family's `layout_map` (see `make_distribution`).

    Returns:
        `(distribution or None, description)`.

    Example:
        >>> dist, text = setup_distribution("single")
        >>> dist is None
        True
    """
    import jax

    maybe_initialize_multihost()
    devices = keras.distribution.list_devices()
    mode, axes = choose_layout(mode, mesh, len(devices), jax.default_backend(), kv_heads)
    if mode == "single" and multihost.process_count() > 1:
        raise UserError(
            f"distribution.mode='single' cannot span {multihost.process_count()} processes; "
            "use 'data' or 'model' (or 'auto')."
        )
    dist, text = make_distribution(mode, axes, devices, batch_size=batch_size, layout=layout)
    keras.distribution.set_distribution(dist)
    return dist, text


def data_sharding(distribution, shape):
    """The JAX sharding of a `shape` batch under `distribution` (None: a single device)."""
    return None if distribution is None else distribution.get_data_layout(tuple(shape)).backend_layout


def feed_rows(distribution, batch_size: int) -> range:
    """The rows of each global batch this process builds and feeds (all of them on one process).

    Example:
        >>> feed_rows(None, 8)
        range(0, 8)
    """
    return multihost.batch_rows(data_sharding(distribution, (batch_size,)), batch_size)


def place_batch(tree, distribution, *, batch_size: int | None = None):
    """Put a numpy batch (dict/array tree) on devices, split along the batch axis.

    With several processes each one passes only its `feed_rows(distribution,
    batch_size)` of the global batch; the global array is assembled from those
    process-local rows (`batch_size` is the global row count, required then).

    Example:
        >>> place_batch({"x": np.ones((2, 3))}, None)["x"].shape
        (2, 3)
    """
    import jax

    if distribution is None:
        return jax.tree.map(jax.numpy.asarray, tree)

    def put(a: np.ndarray):
        if jax.process_count() == 1:
            return jax.device_put(a, data_sharding(distribution, a.shape))
        if batch_size is None:
            raise ValueError("place_batch needs the global batch_size when several processes feed one batch")
        shape = (batch_size, *a.shape[1:])
        rows = feed_rows(distribution, batch_size)
        if a.shape[0] != len(rows):
            raise ValueError(f"this process feeds rows {rows} of the batch, received {a.shape[0]} rows")

        # Each local device asks for its block of the global batch; shift it to the local rows.
        def block(index):
            start = (index[0].start or 0) - rows.start
            stop = (batch_size if index[0].stop is None else index[0].stop) - rows.start
            return a[(slice(start, stop), *index[1:])]

        return jax.make_array_from_callback(shape, data_sharding(distribution, shape), block)

    return jax.tree.map(put, tree)
