"""Shared fixtures: a tiny prepared dataset and a tiny Gemma 2 preset, built in-process.

Both are session-scoped (built once, a few seconds) and treated as read-only
by tests; tests that write runs use their own `tmp_path`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import kit  # noqa: F401  (KERAS_BACKEND=jax before keras)

sys.path.insert(0, str(Path(__file__).parent))

from prepared_data import make_prepared  # noqa: E402


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory) -> Path:
    """A prepared dataset dir (train 48 / validation 16 / test 16 rows)."""
    path = tmp_path_factory.mktemp("data") / "prepared"
    make_prepared(path)
    return path


@pytest.fixture(scope="session")
def tiny_preset(tmp_path_factory, tiny_prepared) -> Path:
    """A micro Gemma 2 preset dir (random weights, tokenizer trained on the tiny data)."""
    from tiny_models import save_micro_preset

    path = tmp_path_factory.mktemp("models") / "micro-base"
    save_micro_preset(path, tiny_prepared)
    return path
