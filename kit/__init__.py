"""geo-reviews kit: LoRA fine-tuning of Gemma 2 (KerasHub, JAX) for Russian place reviews.

Importing `kit` makes JAX the Keras backend unless the user already chose one,
and keeps TensorFlow out of the process. This is the one place both are set:
every entry point (CLI, app, notebooks, tests) imports `kit` before `keras`.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")

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
