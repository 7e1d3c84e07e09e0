"""Which rows of a split become evaluation requests: seeded, rating-balanced by default."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

REQUEST_MODES = ("balanced", "random")


def select_requests(ratings: Sequence[int], *, limit: int | None, seed: int, mode: str = "balanced") -> list[int]:
    """Row indices of the requests to evaluate, sorted; the same inputs give the same rows.

    `balanced` water-fills: each rating gets an equal share of `limit`; a
    rating with fewer rows gives all it has and the rest is shared among the
    others. Rows within a rating are a seeded random choice.

    Example:
        >>> ratings = [5] * 80 + [1] * 10 + [3] * 10
        >>> rows = select_requests(ratings, limit=30, seed=0)
        >>> sorted(ratings[i] for i in rows).count(5), len(rows)
        (10, 30)
        >>> select_requests(ratings, limit=30, seed=0) == rows
        True
    """
    n = len(ratings)
    limit = n if limit is None else min(limit, n)
    rng = np.random.default_rng(seed)
    if mode == "random":
        return sorted(rng.choice(n, size=limit, replace=False).tolist())
    by_rating = {r: [i for i, x in enumerate(ratings) if x == r] for r in sorted(set(ratings))}
    quota = dict.fromkeys(by_rating, 0)
    left = limit
    while left > 0:
        open_ = [r for r in by_rating if quota[r] < len(by_rating[r])]
        share = max(left // len(open_), 1)
        for r in open_:
            take = min(share, len(by_rating[r]) - quota[r], left)
            quota[r] += take
            left -= take
            if left == 0:
                break
    rows = [i for r, idx in by_rating.items() for i in rng.permutation(idx)[: quota[r]].tolist()]
    return sorted(rows)
