"""Re-weighting the train split by rating before batching.

Real reviews are 78 % five-star, so a fine-tune sees few 1–4-star reviews and
little reason to read the requested rating. `mix_by_rating` redraws the train
examples so that rating r gets a share proportional to count(r) ** power:
power 1 keeps the natural mix, 0.5 is square-root ("temperature") sampling as
used for low-resource languages in multilingual pretraining, 0 balances the
ratings. Rare ratings are drawn with replacement, common ones without, and the
epoch keeps its size, so steps per epoch do not change.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kit.errors import UserError


def rating_shares(ratings: Sequence[int], power: float) -> dict[int, float]:
    """Target share of each rating present in `ratings` under `power`.

    Example:
        >>> rating_shares([5] * 9 + [1], power=1.0)
        {1: 0.1, 5: 0.9}
        >>> rating_shares([5] * 9 + [1], power=0.0)
        {1: 0.5, 5: 0.5}
        >>> {r: round(s, 3) for r, s in rating_shares([5] * 9 + [1], power=0.5).items()}
        {1: 0.25, 5: 0.75}
    """
    if not 0.0 <= power <= 1.0:
        raise UserError(f"The rating mix power must be between 0 (balanced) and 1 (natural). Received: {power}")
    values, counts = np.unique(np.asarray(ratings, dtype=np.int64), return_counts=True)
    weights = counts.astype(np.float64) ** power
    return {int(v): float(w) for v, w in zip(values, weights / weights.sum(), strict=True)}


def mix_by_rating(ratings: Sequence[int], power: float, *, seed: int = 0) -> np.ndarray:
    """Indices into `ratings` (as many as there are ratings) drawn to the shares of `rating_shares`.

    A pure function of its arguments, so a resumed run sees the same epoch.
    Power 1 returns every index once, in order.

    Example:
        >>> r = [5] * 90 + [1] * 10
        >>> idx = mix_by_rating(r, power=0.0, seed=0)
        >>> len(idx), int(sum(r[i] == 1 for i in idx))
        (100, 50)
        >>> mix_by_rating(r, power=1.0).tolist() == list(range(100))
        True
    """
    ratings = np.asarray(ratings, dtype=np.int64)
    n = len(ratings)
    shares = rating_shares(ratings, power) if n else {}
    if power == 1.0 or len(shares) < 2:
        return np.arange(n)
    # Largest-remainder rounding, so the counts add up to exactly n.
    raw = {r: s * n for r, s in shares.items()}
    counts = {r: int(np.floor(x)) for r, x in raw.items()}
    for r in sorted(raw, key=lambda r: (counts[r] - raw[r], r))[: n - sum(counts.values())]:
        counts[r] += 1
    rng = np.random.default_rng(seed)
    picked = []
    for r in sorted(counts):
        pool = np.flatnonzero(ratings == r)
        k = counts[r]
        # Every example of a rare rating appears before any appears twice.
        reps, rest = divmod(k, len(pool))
        picked.extend(np.tile(pool, reps).tolist())
        picked.extend(rng.choice(pool, rest, replace=False).tolist())
    out = np.asarray(picked, dtype=np.int64)
    rng.shuffle(out)
    return out
