"""Diversity and degeneration of generated texts: distinct-n, self-BLEU,
repeated n-grams, length relative to the human review.

A fine-tuned model can win on overlap with references by writing the same
safe review every time; these numbers catch that. Tokens are
`kit.metrics.tokens.words` (lower-case, Cyrillic kept).

- distinct-n (Li et al., 2016): unique n-grams / all n-grams over all outputs.
  Higher is more diverse.
- self-BLEU (Zhu et al., 2018): mean BLEU of each output against all the others.
  Lower is more diverse.
- repeated n-gram share: within one output, the share of n-grams that repeat an
  earlier one ("очень вкусно очень вкусно очень вкусно" loops). Lower is better.
- length ratio: output words / reference words. 1.0 is "as long as a human".
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from kit.metrics.overlap import bleu_metric, check_pairs
from kit.metrics.tokens import ngrams, words


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique n-grams over all n-grams, pooled over `texts` (0.0 when there are none).

    Example:
        >>> distinct_n(["очень вкусно очень вкусно"], 1)
        0.5
        >>> distinct_n(["очень вкусно", "очень дорого"], 2)
        1.0
    """
    if isinstance(texts, str):
        raise TypeError("Pass a list of texts, not a single string.")
    grams = [g for text in texts for g in ngrams(words(text), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repeated_ngram_share(text: str, n: int = 4) -> float:
    """Share of the n-grams of `text` that repeat an earlier n-gram of the same text.

    0.0 for a text with no repeats or with fewer than `n` words.

    Example:
        >>> repeated_ngram_share("очень вкусно и дёшево очень вкусно и дёшево")  # 1 of 5 repeats
        0.2
        >>> repeated_ngram_share("чисто и уютно")
        0.0
    """
    grams = ngrams(words(text), n)
    return (len(grams) - len(set(grams))) / len(grams) if grams else 0.0


def self_bleu(texts: Sequence[str], *, max_hypotheses: int | None = None, seed: int = 0) -> float:
    """Mean sentence BLEU (0–100) of each text against all the other texts as references.

    It costs one BLEU against n-1 references per text (quadratic); for large
    sets, `max_hypotheses` scores a seeded random subset of the texts (each
    still against all the others).

    Args:
        texts: The generated texts of one model (at least 2).
        max_hypotheses: Score at most this many texts as hypotheses.
        seed: Seed of that subset.

    Example:
        >>> round(self_bleu(["очень вкусный кофе", "очень вкусный кофе"]), 6)
        100.0
        >>> self_bleu(["очень вкусный кофе", "грязные номера и шум"])
        0.0
    """
    if isinstance(texts, str):
        raise TypeError("Pass a list of texts, not a single string.")
    texts = list(texts)
    if len(texts) < 2:
        raise ValueError(f"self-BLEU needs at least 2 texts. Received: {len(texts)}")
    order = list(range(len(texts)))
    if max_hypotheses is not None and max_hypotheses < len(texts):
        order = sorted(random.Random(seed).sample(order, max_hypotheses))
    scores = self_bleu_scores(texts, only=order)
    return sum(scores) / len(scores)


def self_bleu_scores(texts: Sequence[str], *, only: Sequence[int] | None = None) -> list[float]:
    """Per-text self-BLEU: sentence BLEU (0–100) of each text against all the others.

    The mean is `self_bleu`; per-text values give bootstrap intervals and
    paired win rates (the "others" stay the full set when requests are resampled).

    Args:
        texts: The generated texts of one model (at least 2).
        only: Score only these indices (each still against all the others).

    Example:
        >>> [round(s, 1) for s in self_bleu_scores(["очень вкусный кофе", "очень вкусный кофе", "шум"])]
        [100.0, 100.0, 0.0]
    """
    if isinstance(texts, str):
        raise TypeError("Pass a list of texts, not a single string.")
    texts = list(texts)
    if len(texts) < 2:
        raise ValueError(f"self-BLEU needs at least 2 texts. Received: {len(texts)}")
    bleu = bleu_metric(True)
    order = range(len(texts)) if only is None else only
    return [bleu.sentence_score(texts[i], texts[:i] + texts[i + 1 :]).score for i in order]


def length_ratio(hypothesis: str, reference: str) -> float:
    """Words in `hypothesis` / words in `reference`.

    Example:
        >>> length_ratio("Чисто и уютно", "Чисто, уютно, тихо и недорого")
        0.6
    """
    ref = len(words(reference))
    if ref == 0:
        raise ValueError(f"The reference has no words. Received: reference={reference!r}")
    return len(words(hypothesis)) / ref


def corpus_length_ratio(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """All hypothesis words / all reference words (long references weigh more, as in BLEU).

    Example:
        >>> corpus_length_ratio(["Чисто", "Очень грязно и шумно"], ["Чисто и уютно", "Грязно"])
        1.25
    """
    check_pairs(hypotheses, references)
    ref = sum(len(words(r)) for r in references)
    if ref == 0:
        raise ValueError("The references have no words.")
    return sum(len(words(h)) for h in hypotheses) / ref
