"""Word tokens and n-grams shared by the token-based metrics.

One tokenizer for ROUGE-L, distinct-n, repeated n-grams and length ratios, so
that "a token" means the same thing in every column of a report. It keeps
Cyrillic (unlike `rouge_score`'s default tokenizer, which keeps only `[a-z0-9]`
and so scores every Russian pair 0.0) and digits ("2 часа" differ from
"3 часа"), lower-cases, and writes `ё` as `е` because Russian text uses the two
interchangeably.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from kit.data.keywords import lemmatize

# `\w` is Unicode-aware in Python 3: Cyrillic, Latin and digits. Hyphenated
# words ("по-моему", "wi-fi") stay one token, as in `kit.data.keywords`.
_WORD_RE = re.compile(r"\w+(?:-\w+)*")


def words(text: str) -> list[str]:
    """Lower-case word tokens of `text` (Cyrillic, Latin, digits; `ё` → `е`).

    Example:
        >>> words("Ёлка стоит 2 часа, Wi-Fi — ОТЛИЧНЫЙ!")
        ['елка', 'стоит', '2', 'часа', 'wi-fi', 'отличный']
    """
    return _WORD_RE.findall(text.lower().replace("ё", "е"))


def lemmas(text: str) -> list[str]:
    """`words(text)` with every Russian/Latin word replaced by its pymorphy3 lemma.

    Tokens `kit.data.keywords.lemmatize` has no lemma for (numbers, words with
    digits) are kept as they are, so a lemma sequence lines up with `words`.

    Example:
        >>> lemmas("Номера чистые, 2 завтрака")
        ['номер', 'чистый', '2', 'завтрак']
    """
    out = []
    for token in words(text):
        lemma = lemmatize(token)
        out.append(lemma[0] if len(lemma) == 1 else token)
    return out


def lemma_spans(text: str, wanted: set[str] | Sequence[str]) -> list[tuple[int, int]]:
    """Character spans `(start, end)` of the words of `text` whose lemma is in `wanted`.

    For marking requested keywords (lemmas of `kit.metrics.keyword_coverage`)
    or words shared with a reference (`set(lemmas(reference))`) in a text.

    Example:
        >>> text = "Номера чистые, завтрак так себе"
        >>> [text[a:b] for a, b in lemma_spans(text, {"номер", "завтрак"})]
        ['Номера', 'завтрак']
    """
    wanted = set(wanted)
    out = []
    for m in _WORD_RE.finditer(text):
        token = m.group(0).lower().replace("ё", "е")
        lemma = lemmatize(token)
        if (lemma[0] if len(lemma) == 1 else token) in wanted:
            out.append(m.span())
    return out


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """The contiguous `n`-grams of `tokens`, in order (empty when there are fewer than `n`).

    Example:
        >>> ngrams(["a", "b", "c"], 2)
        [('a', 'b'), ('b', 'c')]
    """
    if n < 1:
        raise ValueError(f"n must be a positive integer. Received: n={n}")
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


class RougeTokenizer:
    """A `rouge_score` tokenizer (any object with `.tokenize(text)`) that keeps Cyrillic.

    Args:
        use_lemmas: Match on lemmas ("номера" = "номер") instead of word forms.

    Example:
        >>> RougeTokenizer().tokenize("Номера чистые")
        ['номера', 'чистые']
        >>> RougeTokenizer(use_lemmas=True).tokenize("Номера чистые")
        ['номер', 'чистый']
    """

    def __init__(self, *, use_lemmas: bool = False):
        self.use_lemmas = use_lemmas

    def tokenize(self, text: str) -> list[str]:
        return lemmas(text) if self.use_lemmas else words(text)
