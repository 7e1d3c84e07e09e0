"""Keyword coverage: did the review mention the keywords the request asked for?

Matched on lemmas (pymorphy3, via `kit.metrics.tokens.lemmas`, the same
lemmatiser that picked the keywords in `kit.data.keywords`), so a requested
"номер" is covered by "номера", "номеров" or "в номере": a Russian review
almost never uses the dictionary form.
"""

from __future__ import annotations

from collections.abc import Sequence

from kit.metrics.tokens import lemmas


def keyword_coverage(text: str, keywords: Sequence[str]) -> float | None:
    """Share of `keywords` whose lemmas all occur in `text`; None when none were requested.

    A multi-word keyword ("хачапури по-аджарски") counts when each of its
    lemmas occurs somewhere in the text. Blank keywords are ignored.

    Args:
        text: The generated review.
        keywords: The requested keywords (lemmas or any inflected form).

    Example:
        >>> keyword_coverage("Номера чистые, а завтраки так себе", ["номер", "завтрак", "парковка"])
        0.6666666666666666
        >>> keyword_coverage("Чисто", []) is None
        True
    """
    if isinstance(keywords, str):
        raise TypeError(f"Pass a list of keywords, not a single string. Received: {keywords!r}")
    wanted = [lemmas(k) for k in keywords]
    wanted = [w for w in wanted if w]
    if not wanted:
        return None
    present = set(lemmas(text))
    return sum(all(lemma in present for lemma in w) for w in wanted) / len(wanted)


def mean_keyword_coverage(texts: Sequence[str], keywords: Sequence[Sequence[str]]) -> float | None:
    """Mean per-sample coverage over the samples that requested keywords (None if none did).

    Example:
        >>> mean_keyword_coverage(["Вкусный кофе", "Чисто"], [["кофе", "десерт"], []])
        0.5
    """
    if len(texts) != len(keywords):
        raise ValueError(
            f"Need one keyword list per text. Received: {len(texts)} texts and {len(keywords)} keyword lists"
        )
    scores = [s for s in map(keyword_coverage, texts, keywords) if s is not None]
    return sum(scores) / len(scores) if scores else None
