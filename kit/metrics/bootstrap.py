"""Uncertainty of a metric on a finite sample: bootstrap intervals and paired win rates.

A report over 200 requests is a sample; "0.61 vs 0.58" means nothing without
an interval. The percentile bootstrap needs no distributional assumption
(scores like coverage are bounded and lumpy) and is seeded, so a report is
reproducible to the digit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True, kw_only=True)
class Interval:
    """A point estimate with its bootstrap confidence interval.

    Attributes:
        value: The statistic on the full sample.
        low: Lower bound of the interval.
        high: Upper bound of the interval.
        confidence: Coverage of the interval (0.95 for a 95 % interval).
        n: Number of samples.
    """

    value: float
    low: float
    high: float
    confidence: float
    n: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def bootstrap_ci(
    scores: Sequence[float],
    *,
    statistic: Callable[[np.ndarray], float] | None = None,
    confidence: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap confidence interval of a statistic of per-sample scores.

    Resamples the scores with replacement `n_resamples` times and takes the
    `(1 - confidence) / 2` and `(1 + confidence) / 2` quantiles of the
    statistic. NaN scores (a sample the metric does not apply to) are dropped first.

    For a corpus-level metric (corpus BLEU, distinct-n), pass
    `scores=np.arange(n)` and a `statistic` that computes the metric on the
    resampled indices.

    Args:
        scores: One score per sample.
        statistic: Function of a 1-D array of scores; the mean by default
            (vectorised, fast).
        confidence: Interval coverage in (0, 1).
        n_resamples: Bootstrap resamples.
        seed: Seed of the resampling: the same seed gives the same interval.

    Example:
        >>> ci = bootstrap_ci([0, 1, 1, 1, 0, 1, 1, 0, 1, 1], seed=0)
        >>> ci.value, ci.low <= ci.value <= ci.high, ci.n
        (0.7, True, 10)
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1). Received: confidence={confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer. Received: {n_resamples}")
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"scores must be one number per sample. Received shape: {values.shape}")
    values = values[~np.isnan(values)]
    n = len(values)
    if n == 0:
        nan = float("nan")
        return Interval(value=nan, low=nan, high=nan, confidence=confidence, n=0)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    if statistic is None:
        value = float(values.mean())
        stats = values[idx].mean(axis=1)
    else:
        value = float(statistic(values))
        stats = np.array([statistic(values[row]) for row in idx], dtype=np.float64)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return Interval(value=value, low=float(low), high=float(high), confidence=confidence, n=n)


@dataclasses.dataclass(frozen=True, kw_only=True)
class WinRate:
    """How often model A scored better than model B on the same samples.

    Attributes:
        wins: Share of samples where A scored higher.
        losses: Share of samples where B scored higher.
        ties: Share of samples where the scores differ by at most the tolerance.
        n: Number of paired samples compared.
    """

    wins: float
    losses: float
    ties: float
    n: int

    @property
    def win_rate(self) -> float:
        """Wins plus half the ties: 0.5 means no difference."""
        return self.wins + self.ties / 2

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "win_rate": self.win_rate}


def win_rate(
    scores_a: Sequence[float],
    scores_b: Sequence[float],
    *,
    higher_is_better: bool = True,
    tolerance: float = 0.0,
) -> WinRate:
    """Paired comparison of two models' per-sample scores on the same requests.

    Samples where either score is NaN are skipped.

    Args:
        scores_a: Per-sample scores of model A.
        scores_b: Per-sample scores of model B, same order.
        higher_is_better: False for metrics like perplexity or repeated n-grams.
        tolerance: Differences up to this are ties.

    Example:
        >>> w = win_rate([0.9, 0.5, 0.3, 0.7], [0.1, 0.5, 0.6, 0.2])
        >>> w.wins, w.losses, w.ties, w.win_rate
        (0.5, 0.25, 0.25, 0.625)
    """
    a = np.asarray(scores_a, dtype=np.float64)
    b = np.asarray(scores_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"Need two equally long lists of per-sample scores. Received shapes: {a.shape} and {b.shape}")
    keep = ~(np.isnan(a) | np.isnan(b))
    diff = a[keep] - b[keep]
    if not higher_is_better:
        diff = -diff
    n = int(keep.sum())
    if n == 0:
        nan = float("nan")
        return WinRate(wins=nan, losses=nan, ties=nan, n=0)
    wins = float((diff > tolerance).sum() / n)
    losses = float((diff < -tolerance).sum() / n)
    ties = float((np.abs(diff) <= tolerance).sum() / n)
    return WinRate(wins=wins, losses=losses, ties=ties, n=n)
