"""Overlap with the human review: chrF++, BLEU (sacrebleu) and ROUGE-L (rouge_score).

Scales follow the reference implementations, so numbers can be checked
against them and against papers: chrF++ and BLEU are 0–100 (sacrebleu),
ROUGE-L is an F-measure in 0–1 (rouge_score).

A generated review is one free-form text per request and there is one human
review per request, so every function takes one reference per hypothesis.
The `sentence_*` functions give the per-sample scores that bootstrap
intervals and win rates are computed from; the `corpus_*` functions give the
corpus statistic (for BLEU and chrF++ that is not the mean of sentence scores:
n-gram counts are summed first).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from kit.metrics.tokens import RougeTokenizer


@functools.cache
def chrf_metric():
    """sacrebleu's chrF++ metric object, built once (the one every chrF++ here uses).

    `kit.eval.scoring` bootstraps corpus chrF++ from its per-sentence statistics.

    Example:
        >>> chrf_metric().word_order
        2
    """
    from sacrebleu.metrics import CHRF

    # word_order=2 is what makes chrF into chrF++ (character 6-grams plus word 1–2-grams).
    return CHRF(word_order=2)


@functools.cache
def bleu_metric(sentence: bool):
    """sacrebleu's BLEU metric object, built once: sentence-level (effective order) or corpus-level.

    Args:
        sentence: True for per-sentence scores (self-BLEU, `sentence_bleu`),
            False for the standard corpus BLEU.

    Example:
        >>> bleu_metric(True).effective_order, bleu_metric(False).effective_order
        (True, False)
    """
    from sacrebleu.metrics import BLEU

    # A short review often has no matching 4-gram; effective order keeps a
    # sentence score from collapsing to 0 for that (sacrebleu's advice for
    # sentence-level BLEU). Corpus BLEU keeps the standard definition.
    return BLEU(effective_order=sentence)


@functools.cache
def _rouge(use_lemmas: bool):
    from rouge_score.rouge_scorer import RougeScorer

    # The default rouge_score tokenizer keeps only [a-z0-9]: every Russian
    # text becomes empty and every score 0.0. Pass one that keeps Cyrillic.
    return RougeScorer(["rougeL"], tokenizer=RougeTokenizer(use_lemmas=use_lemmas))


def check_pairs(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    """Refuse a single string or lists of different lengths: one reference per hypothesis.

    Raises:
        TypeError: A string instead of a list.
        ValueError: Not as many references as hypotheses.

    Example:
        >>> check_pairs(["Чисто"], ["Чисто и уютно"])
        >>> check_pairs(["Чисто"], [])
        Traceback (most recent call last):
        ...
        ValueError: Need one reference per hypothesis. Received: 1 hypotheses and 0 references
    """
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise TypeError("Pass lists of texts, not a single string.")
    if len(hypotheses) != len(references):
        raise ValueError(
            "Need one reference per hypothesis. Received: "
            f"{len(hypotheses)} hypotheses and {len(references)} references"
        )


def sentence_chrf(hypothesis: str, reference: str) -> float:
    """chrF++ of one generated text against its reference, 0–100.

    Example:
        >>> round(sentence_chrf("Отличный кофе и выпечка", "Отличный кофе и вкусная выпечка"), 2)
        67.93
    """
    return chrf_metric().sentence_score(hypothesis, [reference]).score


def corpus_chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF++ (character and word n-gram statistics summed over all pairs), 0–100.

    Example:
        >>> round(corpus_chrf(["Отличный кофе"], ["Отличный кофе"]), 1)
        100.0
    """
    check_pairs(hypotheses, references)
    return chrf_metric().corpus_score(list(hypotheses), [list(references)]).score


def sentence_bleu(hypothesis: str, reference: str) -> float:
    """BLEU of one generated text against its reference (effective order), 0–100.

    Example:
        >>> round(sentence_bleu("Очень вкусный кофе", "Очень вкусный кофе"), 1)
        100.0
    """
    return bleu_metric(True).sentence_score(hypothesis, [reference]).score


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (sacrebleu defaults: 13a tokens, 4-grams, brevity penalty), 0–100.

    Example:
        >>> texts = ["Очень вкусный кофе и выпечка"]
        >>> round(corpus_bleu(texts, texts), 1)
        100.0
    """
    check_pairs(hypotheses, references)
    return bleu_metric(False).corpus_score(list(hypotheses), [list(references)]).score


def rouge_l(hypothesis: str, reference: str, *, use_lemmas: bool = False) -> float:
    """ROUGE-L F-measure (longest common subsequence of words), 0–1, Cyrillic kept.

    Args:
        hypothesis: The generated text.
        reference: The human review.
        use_lemmas: Compare lemmas, so "номера чистые" matches "номер чистый".

    Example:
        >>> round(rouge_l("Номера чистые и уютные", "Чистые номера"), 4)
        0.3333
        >>> rouge_l("Номера чистые", "номер чистый", use_lemmas=True)
        1.0
    """
    return _rouge(use_lemmas).score(reference, hypothesis)["rougeL"].fmeasure


def corpus_rouge_l(hypotheses: Sequence[str], references: Sequence[str], *, use_lemmas: bool = False) -> float:
    """Mean per-sample ROUGE-L F-measure, 0–1 (0.0 for an empty list).

    Example:
        >>> corpus_rouge_l(["Чистые номера", "Грязно"], ["Чистые номера", "Чисто"])
        0.5
    """
    check_pairs(hypotheses, references)
    if not hypotheses:
        return 0.0
    scores = [rouge_l(h, r, use_lemmas=use_lemmas) for h, r in zip(hypotheses, references, strict=True)]
    return sum(scores) / len(scores)
