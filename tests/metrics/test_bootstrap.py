"""kit.metrics.bootstrap: seeded bootstrap intervals and win rates."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kit.metrics import bootstrap_ci, distinct_n, win_rate


def test_bootstrap_interval_contains_mean_and_is_seeded():
    rng = np.random.default_rng(1)
    scores = (rng.random(400) < 0.7).astype(float)
    ci = bootstrap_ci(scores, seed=3)
    assert ci.value == pytest.approx(scores.mean())
    assert ci.low < ci.value < ci.high
    assert ci == bootstrap_ci(scores, seed=3)
    assert ci != bootstrap_ci(scores, seed=4)
    # Width ~ 2 * 1.96 * standard error of a proportion.
    se = math.sqrt(scores.mean() * (1 - scores.mean()) / len(scores))
    assert ci.high - ci.low == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert ci.to_dict()["n"] == 400 and ci.confidence == 0.95


def test_bootstrap_edge_cases_and_custom_statistic():
    const = bootstrap_ci([0.5] * 10)
    assert (const.low, const.value, const.high) == (0.5, 0.5, 0.5)
    assert bootstrap_ci([1.0, float("nan"), 0.0]).n == 2  # NaN = metric not applicable
    assert math.isnan(bootstrap_ci([]).value)
    med = bootstrap_ci([1, 2, 3, 4, 100], statistic=np.median, n_resamples=200)
    assert med.value == 3 and med.low <= 3 <= med.high
    # A corpus-level metric: resample indices, recompute the metric on them.
    texts = ["очень вкусно", "очень вкусно", "грязно и шумно", "дорого"]
    ci = bootstrap_ci(
        np.arange(4),
        statistic=lambda idx: distinct_n([texts[int(i)] for i in idx], 1),
        n_resamples=50,
    )
    assert ci.value == distinct_n(texts, 1)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([1.0], confidence=95)


def test_win_rate():
    w = win_rate([0.9, 0.5, 0.3, 0.7], [0.1, 0.5, 0.6, 0.2])
    assert (w.wins, w.losses, w.ties, w.n) == (0.5, 0.25, 0.25, 4)
    assert w.win_rate == 0.625 and w.to_dict()["win_rate"] == 0.625
    lower = win_rate([10.0, 20.0], [15.0, 15.0], higher_is_better=False)  # e.g. perplexity
    assert (lower.wins, lower.losses) == (0.5, 0.5)
    tol = win_rate([1.0, 1.05, 2.0], [1.0, 1.0, 1.0], tolerance=0.1)
    assert (tol.wins, tol.ties) == (pytest.approx(1 / 3), pytest.approx(2 / 3))
    assert win_rate([1.0, float("nan")], [0.0, 1.0]).n == 1
    with pytest.raises(ValueError, match="equally long"):
        win_rate([1.0], [1.0, 2.0])
