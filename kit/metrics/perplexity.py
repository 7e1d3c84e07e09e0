"""Perplexity from per-token log-probabilities, counting only masked-in tokens.

The model part (run a causal LM over prompt + human review and take the
log-probability of each review token) lives with the model code; this is the
pure arithmetic after it, so it can be tested without a model. The mask is
the same `sample_weight` the training loss uses: 1 on review tokens, 0 on the
prompt and padding, so the perplexity is "of the references given the request".
"""

from __future__ import annotations

import numpy as np


def _as_arrays(log_probs, mask) -> tuple[np.ndarray, np.ndarray]:
    log_probs = np.asarray(log_probs, dtype=np.float64)
    mask = np.asarray(mask, dtype=np.float64)
    if log_probs.shape != mask.shape:
        raise ValueError(
            "log_probs and mask must have the same shape. "
            f"Received: {log_probs.shape} and {mask.shape}"
        )
    if np.any(log_probs[mask > 0] > 1e-6):
        raise ValueError(
            "log_probs must be log-probabilities (<= 0); did you pass probabilities or logits?"
        )
    return log_probs, mask


def token_log_probs(logits, targets) -> np.ndarray:
    """Log-probability of each target token under `logits` (a stable log-softmax).

    Args:
        logits: `(..., vocab)` scores of the next token at each position.
        targets: `(...)` integer ids of the token that actually came next.

    Example:
        >>> lp = token_log_probs([[[0.0, 0.0], [0.0, 10.0]]], [[1, 1]])
        >>> lp.round(4).tolist()
        [[-0.6931, -0.0]]
    """
    logits = np.asarray(logits, dtype=np.float64)
    targets = np.asarray(targets)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(axis=-1))
    picked = np.take_along_axis(shifted, targets[..., None].astype(np.int64), axis=-1)[..., 0]
    return picked - log_z


def perplexity(log_probs, mask) -> float:
    """Token-weighted perplexity over all masked-in tokens: `exp(-sum(lp * m) / sum(m))`.

    Long references weigh more, as in the usual corpus perplexity.

    Args:
        log_probs: `(batch, length)` natural-log probabilities of each token.
        mask: `(batch, length)` 1 for tokens that count (the review), 0 otherwise.

    Example:
        >>> import math
        >>> round(perplexity([[math.log(0.5), math.log(0.25), 0.0]], [[1, 1, 0]]), 4)
        2.8284
    """
    log_probs, mask = _as_arrays(log_probs, mask)
    count = mask.sum()
    if count <= 0:
        raise ValueError("The mask selects no tokens; perplexity is undefined.")
    return float(np.exp(-(log_probs * mask).sum() / count))


def sequence_perplexities(log_probs, mask) -> np.ndarray:
    """Perplexity of each row separately (per-sample scores for intervals and win rates).

    A row whose mask selects no token gets NaN.

    Example:
        >>> import math
        >>> log_probs = [[math.log(0.5)] * 2, [math.log(0.25), 0.0]]
        >>> sequence_perplexities(log_probs, [[1, 1], [1, 0]]).tolist()
        [2.0, 4.0]
    """
    log_probs, mask = _as_arrays(log_probs, mask)
    if log_probs.ndim != 2:
        raise ValueError(f"Expected (batch, length) arrays. Received shape: {log_probs.shape}")
    count = mask.sum(axis=1)
    total = (log_probs * mask).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.exp(-total / np.where(count > 0, count, 1)), np.nan)
