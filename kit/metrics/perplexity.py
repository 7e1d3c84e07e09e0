"""Per-token NLL from logits, and perplexity from per-token log-probabilities (masked-in tokens only).

The model part (run a causal LM over prompt + human review) lives with the
model code; this is the arithmetic after it, so it can be tested without a
model. `token_nll` is the one per-token loss that training and evaluation
share. The mask is the same `sample_weight` the training loss uses: 1 on
review tokens, 0 on the prompt and padding, so the perplexity is "of the
references given the request".
"""

from __future__ import annotations

import math

import numpy as np

# exp(50) ~ 5e21: a perplexity past it says only "diverged", and the cap keeps it a finite float.
MAX_LOSS = 50.0


def perplexity_from_loss(loss: float) -> float:
    """The perplexity of a mean per-token loss (nats): `exp(loss)`, the loss capped at `MAX_LOSS`.

    The one definition the training loop's history, a run's final metrics and a base run's record share.

    Example:
        >>> round(perplexity_from_loss(1.0), 4), perplexity_from_loss(1e9) == math.exp(MAX_LOSS)
        (2.7183, True)
    """
    return math.exp(min(loss, MAX_LOSS))


def _as_arrays(log_probs, mask) -> tuple[np.ndarray, np.ndarray]:
    log_probs = np.asarray(log_probs, dtype=np.float64)
    mask = np.asarray(mask, dtype=np.float64)
    if log_probs.shape != mask.shape:
        raise ValueError(f"log_probs and mask must have the same shape. Received: {log_probs.shape} and {mask.shape}")
    if np.any(log_probs[mask > 0] > 1e-6):
        raise ValueError("log_probs must be log-probabilities (<= 0); did you pass probabilities or logits?")
    return log_probs, mask


def token_nll(logits, targets):
    """Negative log-likelihood of each target token: `logsumexp(logits) - logits[target]`, float32.

    The one definition of the per-token loss: the training loss
    (`kit.train.loop.Engine`), the references' NLL in `kit evaluate`
    (`kit.eval.nll.reference_nll`) and `token_log_probs` all call it, so the
    validation loss and the report's perplexity cannot drift apart. Written in
    `jax.numpy`, so it traces inside `jax.jit` and `jax.grad`. The logits are
    cast to float32 first: under mixed precision they arrive as bfloat16, whose
    8-bit mantissa is too coarse for a loss summed over many tokens.

    Args:
        logits: `(..., vocab)` scores of the next token at each position.
        targets: `(...)` integer ids of the token that actually came next.

    Returns:
        A `(...)` float32 JAX array, >= 0.

    Example:
        >>> nll = token_nll([[[0.0, 0.0], [0.0, 10.0]]], [[1, 1]])
        >>> nll.dtype.name, [round(float(v), 4) for v in nll[0]]
        ('float32', [0.6931, 0.0])
    """
    # Imported here: `import kit.metrics` stays cheap (no JAX) for the pure-numpy metrics.
    import jax
    import jax.numpy as jnp

    logits = jnp.asarray(logits).astype(jnp.float32)
    targets = jnp.asarray(targets)
    picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    return jax.nn.logsumexp(logits, axis=-1) - picked


def token_log_probs(logits, targets) -> np.ndarray:
    """Log-probability of each target token under `logits`: `-token_nll(logits, targets)` as numpy.

    Args:
        logits: `(..., vocab)` scores of the next token at each position.
        targets: `(...)` integer ids of the token that actually came next.

    Returns:
        A float64 numpy array holding float32-precision values (`token_nll` computes in float32).

    Example:
        >>> lp = token_log_probs([[[0.0, 0.0], [0.0, 10.0]]], [[1, 1]])
        >>> lp.round(4).tolist()
        [[-0.6931, -0.0]]
    """
    return -np.asarray(token_nll(logits, targets), dtype=np.float64)


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
