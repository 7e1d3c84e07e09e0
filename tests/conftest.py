"""Shared fixtures (built from `kit.testing`) and the tier check.

`tiny_prepared` and `tiny_preset` are session-scoped (built once, a few
seconds) and treated as read-only by tests; tests that write runs use their
own `tmp_path`. `micro_run` fine-tunes the micro model once per module.

Tiers: `make test` runs everything (CI); `make test-fast` deselects `slow`. A
test says its tier itself (`@pytest.mark.slow`, or a module's `pytestmark`):
it is slow when it trains a model, directly or through a fixture such as
`micro_run`, or runs a whole notebook, a browser or several processes. A test
that trains and is not marked slow fails (tests/training_guard.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import kit  # noqa: F401  (KERAS_BACKEND=jax before keras)
from tests.training_guard import register

# The fixtures import `kit.testing` when they run: it loads Keras (~7 s of CPU), which tests without a model skip.


def pytest_configure(config):
    register(config)


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory) -> Path:
    """A prepared dataset dir (train 48 / validation 16 / test 16 rows)."""
    from kit.testing import make_prepared

    path = tmp_path_factory.mktemp("data") / "prepared"
    make_prepared(path)
    return path


@pytest.fixture(scope="session")
def tiny_preset(tmp_path_factory, tiny_prepared) -> Path:
    """A micro Gemma 2 preset dir (random weights, tokenizer trained on the tiny data)."""
    from kit.testing import save_micro_preset

    return save_micro_preset(tmp_path_factory.mktemp("models") / "micro-base", tiny_prepared)


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory, tiny_preset, tiny_prepared) -> Path:
    """A micro LoRA run (8 steps, non-zero adapters), `<tmp>/runs/micro`, shared by the tests of one module.

    Its tests are slow: it trains.
    """
    from kit.testing import train_micro_run

    return train_micro_run(tmp_path_factory.mktemp("micro-run"), tiny_preset, tiny_prepared)
