"""Numpy batches for causal-LM training: tokenise, mask the prompt, bucket by length.

Every example is `<bos> + prompt + target` (target = review + `<end_of_turn>`,
from `kit.data.prompt.build_target`). Inputs are the tokens shifted by one;
`sample_weight` is 1 only where the *label* is a target token, so the loss
(and its gradient) never rewards predicting the prompt.

Examples are grouped into a few fixed sequence lengths (buckets): each batch
is padded to its bucket's length only, so little compute goes to padding, and
each bucket shape is compiled once by XLA. No TensorFlow is involved: prompts
are tokenised with SentencePiece directly from the tokenizer's proto.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from kit.data.prompt import END_OF_TURN

# What ends a sentence, for `Encoder.sentence_end_ids`: a piece ending in one of these,
# perhaps followed by closing quotes or brackets ("нельзя.»").
_SENTENCE_END = (".", "!", "?", "…")
_CLOSERS = "»\"')] "


@dataclasses.dataclass(frozen=True)
class Example:
    """One tokenised example.

    Attributes:
        ids: `<bos>` + prompt + target token ids (int32).
        n_prompt: How many leading ids (bos included) are prompt, i.e. masked.
    """

    ids: np.ndarray
    n_prompt: int


@dataclasses.dataclass(frozen=True)
class Batch:
    """A padded batch for one bucket (`x` holds `token_ids` and `padding_mask`).

    Attributes:
        x: `{"token_ids", "padding_mask"}`, int32 `[batch, length]`.
        y: Next-token labels, int32 `[batch, length]`.
        sample_weight: float32 `[batch, length]`, 1 on target labels.
        real_tokens: Non-padding input positions (for the padding share).
    """

    x: dict[str, np.ndarray]
    y: np.ndarray
    sample_weight: np.ndarray
    real_tokens: int

    @property
    def length(self) -> int:
        return int(self.y.shape[1])


class Encoder:
    """Tokenise prompt/target pairs with a Gemma SentencePiece proto.

    Args:
        proto: The serialized SentencePiece model (`lm.preprocessor.tokenizer.proto`).

    Example:
        >>> enc = Encoder(lm.preprocessor.tokenizer.proto)  # doctest: +SKIP
        >>> enc.encode("<start_of_turn>user\\n...", "Хорошо.<end_of_turn>")  # doctest: +SKIP
    """

    def __init__(self, proto: bytes):
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor(model_proto=proto)
        self.bos_id = self.sp.bos_id()
        self.eos_id = self.sp.eos_id()
        self.pad_id = max(self.sp.pad_id(), 0)

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """The ids that end a review: `<eos>`, and `<end_of_turn>` where the vocabulary has it.

        The one list for generation (where decoding stops) and training (the
        sentence-start unlikelihood term leaves these to the NLL).
        """
        ids = [self.eos_id]
        eot = self.sp.piece_to_id(END_OF_TURN)
        if eot != self.sp.unk_id():  # a tokenizer without turn markers maps it to <unk>
            ids.append(eot)
        return tuple(ids)

    def sentence_end_ids(self) -> tuple[int, ...]:
        """Ids of the pieces after which a new sentence starts: those ending in `.`, `!`, `?` or `…`
        (closing quotes and brackets after them included) and those holding a newline.

        Example:
            >>> enc = Encoder(lm.preprocessor.tokenizer.proto)  # doctest: +SKIP
            >>> [enc.sp.id_to_piece(i) for i in enc.sentence_end_ids()]  # doctest: +SKIP
            ['\\n', '<0x0A>', '».', '.', '!']
        """
        return tuple(
            i
            for i, piece in self._text_pieces()
            if "\n" in piece or piece == "<0x0A>" or piece.rstrip(_CLOSERS).endswith(_SENTENCE_END)
        )

    def blank_ids(self) -> tuple[int, ...]:
        """Ids of the whitespace-only pieces (`▁`, `▁▁`, ...), newlines aside (those end a sentence).

        Example:
            >>> Encoder(lm.preprocessor.tokenizer.proto).blank_ids()  # doctest: +SKIP
            (263,)
        """
        return tuple(i for i, piece in self._text_pieces() if piece.replace("▁", " ").isspace() and "\n" not in piece)

    def _text_pieces(self):
        """`(id, piece)` for every vocabulary piece but the control ones and `<unk>`."""
        for i in range(self.sp.get_piece_size()):
            if not (self.sp.is_control(i) or self.sp.is_unknown(i)):
                yield i, self.sp.id_to_piece(i)

    def encode(self, prompt: str, target: str) -> Example:
        """`<bos>` + prompt + target; prompt and target are tokenised separately,
        exactly as generation sees them (prompt first, then the continuation)."""
        p = self.sp.encode(prompt) if prompt else []
        t = self.sp.encode(target)
        return Example(np.asarray([self.bos_id, *p, *t], dtype=np.int32), 1 + len(p))

    def encode_text(self, text: str) -> Example:
        """A plain LM example: `<bos>` + text + `<eos>`, every label weighted."""
        t = self.sp.encode(text)
        return Example(np.asarray([self.bos_id, *t, self.eos_id], dtype=np.int32), 1)

    def encode_pairs(self, prompts: Sequence[str], targets: Sequence[str]) -> list[Example]:
        """Vectorised `encode` over two equally long lists."""
        ps = self.sp.encode(list(prompts))
        ts = self.sp.encode(list(targets))
        return [
            Example(np.asarray([self.bos_id, *p, *t], dtype=np.int32), 1 + len(p)) for p, t in zip(ps, ts, strict=True)
        ]


class LazyExamples(Sequence[Example]):
    """Examples known by their sizes up front and tokenised on first use, then kept.

    A process of a multi-host job plans every global batch from every
    example's length but builds only its own rows, so it tokenises only what
    it reads (`kit.train.job_data`). Planning, bucketing and the reports read
    the sizes alone; indexing tokenises (and caches) one example.

    Args:
        sizes: int `[rows, 2]`: `len(ids)` and `n_prompt` of each source row.
        encode: Source row -> its `Example` (the tokeniser the sizes came from).
        cache: Examples already tokenised, by source row.

    Example:
        >>> exs = LazyExamples([[3, 1], [5, 2]], lambda r: Example(np.zeros(3 + 2 * r, np.int32), 1 + r))
        >>> example_sizes(exs.take([1, 1, 0])).tolist(), exs.tokenised
        ([[5, 2], [5, 2], [3, 1]], 0)
        >>> exs[1].n_prompt, exs.tokenised
        (2, 1)
    """

    def __init__(self, sizes, encode: Callable[[int], Example], cache: dict[int, Example] | None = None, rows=None):
        self._sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
        self.rows = np.arange(len(self._sizes)) if rows is None else np.asarray(rows, dtype=np.int64)
        self._encode = encode
        self._cache = {} if cache is None else cache  # shared by every view: a row is tokenised once

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Example:
        row = int(self.rows[i])
        ex = self._cache.get(row)
        if ex is None:
            ex = self._cache[row] = self._encode(row)
        return ex

    @property
    def sizes(self) -> np.ndarray:
        """int `[len(self), 2]`: `len(ids)` and `n_prompt` of each example, without tokenising."""
        return self._sizes[self.rows]

    def take(self, indices: Sequence[int]) -> LazyExamples:
        """The examples at `indices` (repeats allowed), sharing this one's cache; tokenises nothing."""
        return LazyExamples(self._sizes, self._encode, self._cache, rows=self.rows[np.asarray(indices, dtype=np.int64)])

    @property
    def source_rows(self) -> int:
        """How many rows the examples are drawn from (the split's size, whatever this view selects)."""
        return len(self._sizes)

    @property
    def tokenised(self) -> int:
        """How many distinct source rows have been tokenised so far (by this and every view)."""
        return len(self._cache)


def example_sizes(examples: Sequence[Example]) -> np.ndarray:
    """int `[n, 2]`: `len(ids)` and `n_prompt` of each example (a `LazyExamples` tokenises nothing for it).

    Example:
        >>> example_sizes([Example(np.zeros(4, np.int32), 2)]).tolist()
        [[4, 2]]
    """
    if isinstance(examples, LazyExamples):
        return examples.sizes
    return np.asarray([(len(e.ids), e.n_prompt) for e in examples], dtype=np.int64).reshape(-1, 2)


def example_lengths(examples: Sequence[Example]) -> np.ndarray:
    """`len(ids)` of each example (int64).

    Example:
        >>> example_lengths([Example(np.zeros(4, np.int32), 2)]).tolist()
        [4]
    """
    return example_sizes(examples)[:, 0]


def select(examples: Sequence[Example], indices: Sequence[int]) -> Sequence[Example]:
    """The examples at `indices`: a list from a list, a view (nothing tokenised) from a `LazyExamples`.

    Example:
        >>> [e.n_prompt for e in select([Example(np.zeros(2, np.int32), k) for k in (1, 2)], [1, 0])]
        [2, 1]
    """
    if isinstance(examples, LazyExamples):
        return examples.take(indices)
    return [examples[i] for i in indices]


def bucket_for(n_inputs: int, buckets: Sequence[int]) -> int:
    """The smallest bucket holding `n_inputs` positions, else the largest (truncate).

    Example:
        >>> bucket_for(100, [128, 256]), bucket_for(129, [128, 256]), bucket_for(999, [128, 256])
        (128, 256, 256)
    """
    for b in buckets:
        if n_inputs <= b:
            return b
    return buckets[-1]


def choose_buckets(lengths: Sequence[int], n: int, max_length: int, *, multiple: int = 8) -> tuple[int, ...]:
    """At most `n` bucket lengths that minimise the padded positions of `lengths`.

    Lengths are rounded up to a multiple of `multiple` (friendlier shapes for
    XLA) and capped at `max_length`, which is always the last bucket (longer
    examples are truncated to it). The boundaries come from a dynamic program
    over the distinct rounded lengths — exact, and cheap since there are at
    most `max_length / multiple` of them.

    Example:
        >>> choose_buckets([50, 60, 70, 100, 120, 200, 400], n=3, max_length=256)
        (72, 120, 256)
    """
    if n < 1:
        raise ValueError(f"n must be ≥ 1, received {n}")
    capped = np.minimum(np.asarray(lengths, dtype=np.int64), max_length)
    rounded = np.minimum(-(-capped // multiple) * multiple, max_length)
    values, counts = np.unique(rounded, return_counts=True)
    if values.size == 0 or values[-1] != max_length:
        values, counts = np.append(values, max_length), np.append(counts, 0)
    size = len(values)
    cum = np.concatenate([[0], np.cumsum(counts)])
    k = min(n, size)
    # cost[b, j]: fewest padded positions for the j smallest values in b buckets.
    cost = np.full((k + 1, size + 1), np.inf)
    cost[0, 0] = 0.0
    back = np.zeros((k + 1, size + 1), dtype=np.int64)
    for b in range(1, k + 1):
        for j in range(b, size + 1):
            i = np.arange(b - 1, j)
            total = cost[b - 1, i] + (cum[j] - cum[i]) * values[j - 1]
            best = int(np.argmin(total))
            cost[b, j], back[b, j] = total[best], i[best]
    out, j = [], size
    for b in range(k, 0, -1):
        out.append(int(values[j - 1]))
        j = int(back[b, j])
    return tuple(sorted(set(out)))


def make_batch(
    examples: Sequence[Example], length: int, batch_size: int, pad_id: int = 0, *, rows: range | None = None
) -> Batch:
    """Pad `examples` (at most `batch_size`) into one `[batch_size, length]` batch.

    Examples longer than `length + 1` tokens are truncated at the end. Missing
    rows (a last, partial batch) repeat the first example with zero weight, so
    every batch of a bucket has the same shape and compiles once. `rows`
    builds only those rows of the batch (a process of a multi-host job feeds
    its own share; the padding rule is the global batch's).

    Example:
        >>> b = make_batch([Example(np.array([2, 5, 6, 7], np.int32), 2)], length=4, batch_size=2)
        >>> b.x["token_ids"][0].tolist(), b.y[0].tolist(), b.sample_weight[0].tolist()
        ([2, 5, 6, 0], [5, 6, 7, 0], [0.0, 1.0, 1.0, 0.0])
        >>> b.sample_weight[1].sum()
        np.float32(0.0)
        >>> make_batch([Example(np.array([2, 5, 6, 7], np.int32), 2)], 4, 2, rows=range(1, 2)).y.shape
        (1, 4)
    """
    rows = range(batch_size) if rows is None else rows
    tokens = np.full((len(rows), length), pad_id, dtype=np.int32)
    labels = np.full((len(rows), length), pad_id, dtype=np.int32)
    mask = np.zeros((len(rows), length), dtype=np.int32)
    weight = np.zeros((len(rows), length), dtype=np.float32)
    real = 0
    for out, row in enumerate(rows):
        ex = examples[row] if row < len(examples) else examples[0]
        ids = ex.ids[: length + 1]
        n = len(ids) - 1
        tokens[out, :n] = ids[:-1]
        labels[out, :n] = ids[1:]
        mask[out, :n] = 1
        if row < len(examples):
            real += n
            # Label j is token j+1: weighted when token j+1 is past the prompt.
            weight[out, max(ex.n_prompt - 1, 0) : n] = 1.0
    return Batch({"token_ids": tokens, "padding_mask": mask}, labels, weight, real)


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    """A deterministic list of batches: which example indices go together, at which length.

    Attributes:
        batches: `(length, indices)` per batch, in training order.
    """

    batches: tuple[tuple[int, tuple[int, ...]], ...]

    def __len__(self) -> int:
        return len(self.batches)

    def padding_share(self, examples: Sequence[Example], batch_size: int) -> float:
        """Share of computed positions that are padding (incl. filler rows)."""
        slots = sum(length * batch_size for length, _ in self.batches)
        lengths = example_lengths(examples)
        real = sum(min(int(lengths[i]) - 1, length) for length, idx in self.batches for i in idx)
        return 1.0 - real / max(slots, 1)


def plan_batches(
    examples: Sequence[Example],
    buckets: Sequence[int],
    batch_size: int,
    *,
    seed: int | None = None,
    epoch: int = 0,
) -> BatchPlan:
    """Group examples by bucket into batches; shuffled by `(seed, epoch)` or kept in order.

    The order depends only on `(seed, epoch)`, so a resumed run that knows its
    epoch and batch position sees exactly the batches it would have seen.

    Example:
        >>> exs = [Example(np.zeros(n, np.int32), 1) for n in (3, 10, 4, 9)]
        >>> [(l, list(i)) for l, i in plan_batches(exs, [4, 16], 2).batches]
        [(4, [0, 2]), (16, [1, 3])]
    """
    by_bucket: dict[int, list[int]] = {b: [] for b in buckets}
    for i, n in enumerate(example_lengths(examples).tolist()):  # lengths only: the same plan on every host
        by_bucket[bucket_for(n - 1, buckets)].append(i)
    rng = np.random.default_rng([seed, epoch]) if seed is not None else None
    batches = []
    for length, idx in by_bucket.items():
        idx = np.asarray(idx, dtype=np.int64)
        if rng is not None:
            idx = rng.permutation(idx)
        for start in range(0, len(idx), batch_size):
            batches.append((length, tuple(int(i) for i in idx[start : start + batch_size])))
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return BatchPlan(tuple(batches))


def has_target(example: Example, max_length: int) -> bool:
    """Whether at least one target label fits in `max_length` inputs (else the example trains nothing).

    Example:
        >>> has_target(Example(np.arange(10, dtype=np.int32), 4), 8), has_target(Example(np.arange(10, dtype=np.int32), 9), 8)
        (True, False)
    """
    return target_fits(len(example.ids), example.n_prompt, max_length)


def target_fits(n_ids: int, n_prompt: int, max_length: int) -> bool:
    """`has_target` from an example's sizes (`len(ids)`, `n_prompt`) alone.

    Example:
        >>> target_fits(10, 4, 8), target_fits(10, 9, 8)
        (True, False)
    """
    return n_prompt - 1 < min(n_ids - 1, max_length)


def length_report(examples: Sequence[Example], buckets: Sequence[int]) -> dict[str, float | int]:
    """How many examples fall in each bucket and how many get truncated.

    Example:
        >>> length_report([Example(np.zeros(6, np.int32), 1)], [4, 8])
        {'bucket_4': 0, 'bucket_8': 1, 'truncated': 0}
    """
    out: dict[str, float | int] = {f"bucket_{b}": 0 for b in buckets}
    truncated = 0
    for n in (example_lengths(examples) - 1).tolist():
        out[f"bucket_{bucket_for(n, buckets)}"] += 1
        truncated += n > buckets[-1]
    out["truncated"] = truncated
    return out
