"""geo-reviews kit: LoRA fine-tuning of Gemma 2 (KerasHub, JAX) for Russian place reviews.

Importing `kit` makes JAX the Keras backend unless the user already chose one,
sets JAX's GPU memory defaults (`GPU_MEMORY_DEFAULTS`) and keeps TensorFlow
out of the process. This is the one place all three are set: every entry
point (CLI, app, notebooks, tests) imports `kit` before `keras` and `jax`,
and JAX reads these variables when its GPU backend starts.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")

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
