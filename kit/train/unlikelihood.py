"""Token-level unlikelihood: a training loss against repeating what the review has already said.

Welleck et al. 2019 ("Neural Text Generation with Unlikelihood Training",
arXiv:1908.04319), the token-level form. At each target position `t` the
candidates are the target tokens written earlier in the same row, less the
token that really comes next; the loss pushes their probability down:

    UL_t = -sum over c in C_t of log(1 - p(c | x_<t)),   C_t = {y_s : s < t, w_s > 0} - {y_t}

The step minimises `sum(w * NLL) + alpha * sum(w * UL)` (`train.unlikelihood`
= alpha; 0 = off). The validation loss stays the plain NLL, so runs with and
without it compare on the same number.

It needs the full `(batch, length, vocab)` probabilities and a mask of the
same shape, so it is for small vocabularies (the tiny demo model's 4,096);
with `train.loss_chunk` in use (Gemma's 256,000) `kit.train.lean.step_levers`
refuses it rather than build a mask of a gigabyte or more.

`train.unlikelihood_context = k` narrows `C_t` to the tokens written after
the same k tokens as those before t: the ones that would repeat an earlier
(k+1)-gram of the review (0 = the token-level form above).

Measured on the demo (docs/tiny-demo.md, "What limits repetition"): the
token-level form at alpha 2.5, the demo's, lowers the repeated 4-grams from
0.059-0.076 to 0.038-0.045 over three LoRA seeds and costs some keyword
coverage; with k = 1 and alpha 10 they fall to 0.027, with reviews too short.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def token_unlikelihood(logits, targets, weights, context: int = 0):
    """Per-position unlikelihood of the earlier target tokens of each row, float32 `(batch, length)`.

    Args:
        logits: `(batch, length, vocab)` next-token scores.
        targets: `(batch, length)` integer ids of the tokens that came next.
        weights: `(batch, length)`; only positions with a weight > 0 count as
            written before (the prompt and padding do not).
        context: 0: every earlier review token is a candidate. k > 0: only
            the tokens that came after the same k tokens as here, the ones
            that would repeat an earlier (k+1)-gram of the review.

    Returns:
        `-sum(log(1 - p(c)))` over each position's candidates `c` (>= 0;
        0 where there are none). Multiply by the weights to sum it as a loss.

    Example:
        >>> import numpy as np
        >>> logits = np.log(np.array([[[0.1, 0.8, 0.1], [0.5, 0.25, 0.25]]]))
        >>> ul = token_unlikelihood(logits, np.array([[1, 2]]), np.array([[1.0, 1.0]]))
        >>> [round(float(v), 4) for v in ul[0]]  # position 1 penalises token 1 (written at 0): -log(0.75)
        [0.0, 0.2877]
        >>> # With one token of context, token 1 came after "the row's start", position 1 comes after 1: no match
        >>> [float(v) for v in token_unlikelihood(logits, np.array([[1, 2]]), np.array([[1.0, 1.0]]), context=1)[0]]
        [0.0, 0.0]
    """
    logits = jnp.asarray(logits).astype(jnp.float32)
    targets = jnp.asarray(targets)
    vocab = logits.shape[-1]
    if context:
        earlier = _after_same_context(targets, jnp.asarray(weights) > 0, vocab, int(context))
    else:
        written = jax.nn.one_hot(targets, vocab, dtype=jnp.float32) * (jnp.asarray(weights) > 0)[..., None]
        # Exclusive running count: a token is a candidate once it was a target earlier in the row.
        earlier = (jnp.cumsum(written, axis=1) - written) > 0
    candidates = earlier & (jax.nn.one_hot(targets, vocab) == 0)
    p = jax.nn.softmax(logits, axis=-1)
    # The floor keeps the log finite when a candidate already has all the mass.
    # Negated inside the sum, so a position with no candidate is +0.0, not -0.0.
    return jnp.sum(jnp.where(candidates, -jnp.log(jnp.clip(1.0 - p, 1e-6, 1.0)), 0.0), axis=-1)


def _after_same_context(targets, written, vocab: int, context: int):
    """`(batch, length, vocab)` bool: token v came at an earlier written position s whose `context` tokens before it equal those before t."""
    batch, length = targets.shape
    t = jnp.arange(length)
    # Position t's prefix ends with targets[t-1], targets[t-2], ...; -1 stands for "before the row".
    same = (t[None, :, None] > t[None, None, :]) & written[:, None, :]
    for j in range(1, context + 1):
        before = jnp.pad(targets, ((0, 0), (j, 0)), constant_values=-1)[:, :length]
        same = same & (before[:, :, None] == before[:, None, :])
    # Scatter each matching s onto the vocabulary id it wrote: (batch, t, s) -> (batch, t, vocab).
    # Length x length updates per row, where a one-hot matmul would cost length x length x vocab.
    rows = jnp.arange(batch)[:, None, None]
    columns = jnp.broadcast_to(targets[:, None, :], same.shape)
    hits = jnp.zeros((batch, length, vocab), jnp.int8).at[rows, t[None, :, None], columns].max(same.astype(jnp.int8))
    return hits > 0
