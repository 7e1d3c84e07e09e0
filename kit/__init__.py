"""geo-reviews kit: LoRA fine-tuning of Gemma 2 (KerasHub, JAX) for Russian place reviews.

Importing `kit` makes JAX the Keras backend unless the user already chose one.
This is the one place the backend is set: every entry point (CLI, app,
notebooks, tests) imports `kit` before `keras`.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

__version__ = "0.1.0"
