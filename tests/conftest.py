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


# --------------------------------------------------------------------------- test tiers
# `make test` runs everything (CI); `make test-fast` deselects `slow`. A test is slow
# when it trains a model, directly or through one of these fixtures, or runs a whole
# notebook, a browser or several processes: those are the minutes of the suite.
TRAINING_FIXTURES = {"micro_run", "setup", "app_dirs"}  # fixturenames is the closure: gen, cli, ... too
SLOW_MODULES = {"test_train.py", "test_sharding.py", "test_notebooks.py", "test_app_browser.py"}
SLOW_TESTS = {
    "test_make_tiny_base_round_trip",  # pretrains a tiny base
    "test_make_tiny_base_pretrains_on_extra_data_less_the_data_reviews",  # pretrains two tiny bases
    "test_committed_tiny_base_extra_corpus_is_what_make_pretrain_data_writes",  # a 20,000-row corpus, ~30 s
    "test_train_smoke_on_the_micro_model",  # the bench's two training sides
    "test_run_sweep_on_the_micro_model",  # trains two sweep points
    "test_tensorflow_reads_the_scalars",  # imports TensorFlow in a subprocess
    "test_kit_keeps_tensorflow_out_unless_asked",  # imports TensorFlow in a subprocess
    "test_runs_on_one_base_share_its_weights_and_give_their_own_text",  # compiles 3 models x 3 samplers (~2 min)
    "test_a_run_with_unlikelihood_records_it_and_keeps_an_nll_history",  # fine-tunes the micro model
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        name = getattr(item, "originalname", None) or item.name
        if (
            item.path.name in SLOW_MODULES
            or name in SLOW_TESTS
            or TRAINING_FIXTURES & set(getattr(item, "fixturenames", ()))
        ):
            item.add_marker(pytest.mark.slow)
