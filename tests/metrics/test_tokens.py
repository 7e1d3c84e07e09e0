"""kit.metrics.tokens: words, lemmas and n-grams (ё folded, Cyrillic and digits kept)."""

from __future__ import annotations

import pytest

from kit.metrics.tokens import lemmas, ngrams, words


def test_words_keep_cyrillic_digits_and_fold_yo():
    assert words("Ёлка стоит 2 часа, Wi-Fi — ОТЛИЧНЫЙ!") == [
        "елка",
        "стоит",
        "2",
        "часа",
        "wi-fi",
        "отличный",
    ]
    assert lemmas("Номера чистые, 2 завтрака") == ["номер", "чистый", "2", "завтрак"]
    assert ngrams(["а", "б", "в"], 2) == [("а", "б"), ("б", "в")]
    assert ngrams(["а"], 2) == []
    with pytest.raises(ValueError, match="n=0"):
        ngrams(["а"], 0)
