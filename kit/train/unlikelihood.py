"""Unlikelihood training: loss terms against repeating what the review has already said.

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

`train.unlikelihood_sentences = beta` adds a sentence-start form
(`sentence_unlikelihood`): where a sentence begins, the first tokens of the
review's earlier sentences are the candidates, the choice a repeated
sentence starts with. It is taken on the distribution of the next token
given that the review goes on (`continuing`: `<end_of_turn>` and `<eos>`
masked), so it never pushes mass onto stopping. `Unlikelihood` holds both
weights and the tokenizer's ids, and is what the step adds to the NLL.

Measured on the demo (docs/tiny-demo.md, "What limits repetition"): the
token-level form at alpha 2.5, the demo's, lowers the repeated 4-grams from
0.059-0.076 to 0.038-0.045 over three LoRA seeds and costs some keyword
coverage; with k = 1 and alpha 10 they fall to 0.027, with reviews too short.
Adding the sentence-start form at beta 10 takes them to 0.023-0.028 over the
same seeds, but the reviews come out shorter and cover fewer keywords
(0.408-0.425 against 0.467-0.540), so the demo leaves it off.
"""

from __future__ import annotations

import dataclasses

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
    return _penalty(logits, targets, earlier)


def _penalty(logits, targets, earlier):
    """`-sum(log(1 - p(c)))` per position over the tokens marked in `earlier`, less the one that comes next."""
    candidates = earlier & (jax.nn.one_hot(targets, logits.shape[-1]) == 0)
    p = jax.nn.softmax(logits, axis=-1)
    # The floor keeps the log finite when a candidate already has all the mass.
    # Negated inside the sum, so a position with no candidate is +0.0, not -0.0.
    return jnp.sum(jnp.where(candidates, -jnp.log(jnp.clip(1.0 - p, 1e-6, 1.0)), 0.0), axis=-1)


def _after_same_context(targets, written, vocab: int, context: int):
    """`(batch, length, vocab)` bool: token v came at an earlier written position s whose `context` tokens before it equal those before t."""
    length = targets.shape[1]
    t = jnp.arange(length)
    # Position t's prefix ends with targets[t-1], targets[t-2], ...; -1 stands for "before the row".
    same = (t[None, :, None] > t[None, None, :]) & written[:, None, :]
    for j in range(1, context + 1):
        before = jnp.pad(targets, ((0, 0), (j, 0)), constant_values=-1)[:, :length]
        same = same & (before[:, :, None] == before[:, None, :])
    return _scatter(targets, same, vocab)


def _scatter(targets, same, vocab: int):
    """`(batch, t, s)` bool -> `(batch, t, vocab)`: each matching earlier position s marks the id it wrote.

    Length x length updates per row, where a one-hot matmul would cost length x length x vocab.
    """
    batch, length = targets.shape
    rows = jnp.arange(batch)[:, None, None]
    t = jnp.arange(length)[None, :, None]
    columns = jnp.broadcast_to(targets[:, None, :], same.shape)
    hits = jnp.zeros((batch, length, vocab), jnp.int8).at[rows, t, columns].max(same.astype(jnp.int8))
    return hits > 0


def sentence_unlikelihood(logits, targets, weights, sentence_ends, blank_ids=()):
    """Per-position unlikelihood at each sentence start of the openers of the row's earlier sentences, float32 `(batch, length)`.

    A repeated sentence begins with a choice: the first token of a sentence
    the review has already written. At a sentence start `t` (the first
    weighted position of a row, or one whose previous token ends a
    sentence, perhaps with one blank piece between) the candidates are the
    first tokens of the row's earlier sentences, less the token that really
    comes next:

        SUL_t = -sum over c in S_t of log(1 - p(c | x_<t)),   S_t = {y_s : s < t, s a sentence start} - {y_t}

    Every other position is 0. Unlike the token-level form it leaves the
    words inside a sentence alone.

    Args:
        logits: `(batch, length, vocab)` next-token scores.
        targets: `(batch, length)` integer ids of the tokens that came next.
        weights: `(batch, length)`; only positions with a weight > 0 are
            written (the prompt and padding are not).
        sentence_ends: Ids of the pieces after which a new sentence starts
            (`kit.data.batching.Encoder.sentence_end_ids`).
        blank_ids: Ids of whitespace-only pieces (`Encoder.blank_ids`): a
            small vocabulary may write the space after a full stop as its
            own piece, and the sentence then opens with the token after it.

    Example:
        >>> import numpy as np
        >>> logits = np.zeros((1, 5, 6), np.float32)  # uniform over 6 ids: each candidate costs -log(5/6)
        >>> # "4 . 5 . 2": id 1 ends a sentence; the third sentence may not open with 4 or 5 again
        >>> ul = sentence_unlikelihood(logits, np.array([[4, 1, 5, 1, 2]]), np.ones((1, 5)), [1])
        >>> [round(float(v / -np.log(5 / 6)), 4) for v in ul[0]]
        [0.0, 0.0, 1.0, 0.0, 2.0]
    """
    logits = jnp.asarray(logits).astype(jnp.float32)
    targets = jnp.asarray(targets)
    written = jnp.asarray(weights) > 0
    length, vocab = targets.shape[1], logits.shape[-1]
    ends, blank = (
        jnp.zeros((vocab,), bool).at[jnp.asarray(list(ids), jnp.int32)].set(True) for ids in (sentence_ends, blank_ids)
    )
    before = jnp.pad(targets, ((0, 0), (1, 0)))[:, :length]
    before2 = jnp.pad(targets, ((0, 0), (2, 0)))[:, :length]
    written_before = jnp.pad(written, ((0, 0), (1, 0)))[:, :length]
    written_before2 = jnp.pad(written, ((0, 0), (2, 0)))[:, :length]
    after_end = ends[before] | (blank[before] & ends[before2])
    first = ~written_before | (blank[before] & ~written_before2)  # the review's first word
    start = written & ~blank[targets] & (after_end | first)
    t = jnp.arange(length)
    same = (t[None, :, None] > t[None, None, :]) & start[:, :, None] & start[:, None, :]
    return _penalty(logits, targets, _scatter(targets, same, vocab))


def continuing(logits, stop_ids):
    """`logits` with the stop tokens masked out: the scores of the next token given that the review goes on.

    The sentence-start term is taken on this distribution, so pushing a
    repeated opener down never pushes mass onto stopping: when to end is
    left to the NLL. On the full distribution it raised p(`<end_of_turn>`)
    at the demo references' sentence starts from 0.061 to 0.089 and the
    reviews came out shorter (docs/tiny-demo.md, "What limits repetition").

    Example:
        >>> import numpy as np
        >>> [round(float(v), 3) for v in jax.nn.softmax(continuing(np.zeros((1, 1, 4)), [1]))[0, 0]]
        [0.333, 0.0, 0.333, 0.333]
    """
    logits = jnp.asarray(logits).astype(jnp.float32)
    if not stop_ids:
        return logits
    stop = jnp.zeros((logits.shape[-1],), bool).at[jnp.asarray(list(stop_ids), jnp.int32)].set(True)
    return jnp.where(stop, jnp.float32(-1e9), logits)


@dataclasses.dataclass(frozen=True)
class Unlikelihood:
    """The unlikelihood part of the training loss: its weights and the vocabulary facts its forms need.

    Attributes:
        weight: Weight of the token-level form (`token_unlikelihood`; `train.unlikelihood`).
        context: Its context (`train.unlikelihood_context`).
        sentences: Weight of the sentence-start form (`sentence_unlikelihood`;
            `train.unlikelihood_sentences`).
        stop_ids: The tokens that end a review, kept out of the sentence-start
            form (`continuing`): there, stopping is the other choice.
        sentence_ends: The pieces after which a sentence starts.
        blank_ids: The whitespace-only pieces a sentence start skips.

    Example:
        >>> import numpy as np
        >>> ul = Unlikelihood(weight=1.0, sentences=2.0, stop_ids=(3,), sentence_ends=(1,))
        >>> # "2 . 0", uniform over 4 ids: the token form has 1 candidate at t=1 and 2 at t=2, each
        >>> # costing -log(1 - 1/4); the sentence form 1 at t=2 (id 2 opened the first sentence),
        >>> # weighted 2 and costing -log(1 - 1/3), since the stop id 3 is masked there
        >>> z = np.zeros((1, 3, 4))
        >>> total = float(ul(z, np.array([[2, 1, 0]]), np.ones((1, 3))))
        >>> round(total - float(3 * -np.log(3 / 4) + 2 * -np.log(2 / 3)), 6)
        0.0
    """

    weight: float = 0.0
    context: int = 0
    sentences: float = 0.0
    stop_ids: tuple[int, ...] = ()
    sentence_ends: tuple[int, ...] = ()
    blank_ids: tuple[int, ...] = ()

    @classmethod
    def for_encoder(cls, encoder, *, weight: float = 0.0, context: int = 0, sentences: float = 0.0):
        """The terms for a tokenizer (`kit.data.batching.Encoder`), with its stop, sentence-end and blank ids."""
        ends, blanks = (encoder.sentence_end_ids(), encoder.blank_ids()) if sentences else ((), ())
        return cls(float(weight), int(context), float(sentences), tuple(encoder.stop_ids), tuple(ends), tuple(blanks))

    def __call__(self, logits, targets, weights):
        """`sum(w * (weight * UL + sentences * SUL))` over the batch, float32."""
        w = jnp.asarray(weights)
        total = jnp.float32(0.0)
        if self.weight:
            total += self.weight * jnp.sum(token_unlikelihood(logits, targets, weights, self.context) * w)
        if self.sentences:
            # At a sentence start, ending the review is the other choice: on the full
            # distribution the term pushed the reviews shorter (docs/tiny-demo.md).
            go_on = continuing(logits, self.stop_ids)
            sul = sentence_unlikelihood(go_on, targets, weights, self.sentence_ends, self.blank_ids)
            total += self.sentences * jnp.sum(sul * w)
        return total
