"""geo-reviews kit: LoRA fine-tuning of Gemma 2 and Gemma 3 (KerasHub, JAX) for Russian place reviews.

Importing `kit` makes JAX the Keras backend unless the user already chose one,
sets JAX's GPU memory defaults (`GPU_MEMORY_DEFAULTS`) and keeps TensorFlow
out of the process. This is the one place all three are set: every entry
point (CLI, app, notebooks, tests) imports `kit` before `keras` and `jax`,
and JAX reads these variables when its GPU backend starts.
"""

import glob
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")


def cpu_only_default(environ=os.environ, device_files=None) -> bool:
    """Pin JAX to the CPU when libtpu is installed but the machine has no accelerator; True if pinned.

    libtpu comes with the `test` extra (`kit plan` compiles TPU programs with
    it). Installed on a machine without a TPU, JAX would still try to start
    one in every process and log a libtpu error before falling back to the
    CPU. A machine with TPU (`/dev/accel*`, `/dev/vfio/*`) or NVIDIA
    (`/dev/nvidia*`) device files, or a `JAX_PLATFORMS` the user set, is left
    alone.

    Example:
        >>> cpu_only_default({}, device_files=["/dev/accel0"]), cpu_only_default({"JAX_PLATFORMS": ""}, [])
        (False, False)
    """
    if "JAX_PLATFORMS" in environ:
        return False
    if device_files is None:
        device_files = [f for pattern in ("/dev/accel*", "/dev/vfio/*", "/dev/nvidia*") for f in glob.glob(pattern)]
    if device_files:
        return False
    try:
        import importlib.util

        if importlib.util.find_spec("libtpu") is None:
            return False
    except (ImportError, ValueError):
        return False
    environ["JAX_PLATFORMS"] = "cpu"
    return True


cpu_only_default()

# JAX preallocates 75 % of a GPU's memory by default. Gemma 2 2B training on a
# 16 GB card (T4, P100) needs more than that, so the kit lets JAX take 95 %:
# preallocation stays on (one pool, no fragmentation from growing it). Each
# variable the user has set wins, and XLA_PYTHON_CLIENT_PREALLOCATE=false (or
# the `platform` allocator) leaves the fraction unset, as JAX then allocates
# on demand. No effect on CPU or TPU.
GPU_MEMORY_DEFAULTS = {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.95"}


def gpu_memory_defaults(environ=os.environ) -> dict:
    """Set `GPU_MEMORY_DEFAULTS` in `environ` where the user has not chosen; returns what was set.

    Example:
        >>> gpu_memory_defaults({"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.5"})
        {}
        >>> gpu_memory_defaults({})
        {'XLA_PYTHON_CLIENT_MEM_FRACTION': '0.95'}
    """
    on_demand = environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "").lower() in ("false", "0") or (
        environ.get("XLA_PYTHON_CLIENT_ALLOCATOR", "").lower() == "platform"
    )
    set_now = {}
    for key, value in GPU_MEMORY_DEFAULTS.items():
        if key not in environ and not on_demand:
            environ[key] = set_now[key] = value
    return set_now


gpu_memory_defaults()

# keras-hub imports TensorFlow (through tensorflow-text, which it requires on
# Linux) whenever TF is installed, yet the kit never runs a TF op: batches are
# numpy and tokenisation is SentencePiece. A `None` entry in `sys.modules`
# makes `import tensorflow` fail, which keras-hub, datasets and transformers
# all read as "not installed". That saves ~2.5 s per process and TF's log
# noise, and on a TPU VM it keeps TF from claiming the TPU.
# KIT_ALLOW_TENSORFLOW=1 turns it off; a TF imported before `kit` is left alone.
if not os.environ.get("KIT_ALLOW_TENSORFLOW") and "tensorflow" not in sys.modules:
    sys.modules["tensorflow"] = None  # type: ignore[assignment]

__version__ = "0.1.0"
