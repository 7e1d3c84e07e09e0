"""kit.metrics.diversity: distinct-n, repeated n-grams, self-BLEU and length ratios on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
import sacrebleu

from kit.metrics import corpus_length_ratio, distinct_n, length_ratio, repeated_ngram_share, self_bleu
from tests.metrics.texts import HYPS


def test_distinct_n_hand_cases():
    assert distinct_n(["очень вкусно очень вкусно"], 1) == 0.5  # 2 unique of 4
    assert distinct_n(["очень вкусно очень вкусно"], 2) == pytest.approx(2 / 3)  # 2 unique of 3
    assert distinct_n(["Кофе вкусный", "кофе ВКУСНЫЙ!"], 1) == 0.5  # pooled, case-folded
    assert distinct_n(["Кофе вкусный", "кофе ВКУСНЫЙ!"], 2) == 0.5
    assert distinct_n(["кофе", ""], 2) == 0.0  # no bigrams at all


def test_repeated_4gram_share_hand_cases():
    assert repeated_ngram_share("а б в г а б в г") == pytest.approx(1 / 5)  # 5 4-grams, 1 repeat
    assert repeated_ngram_share("да да да да да да") == pytest.approx(2 / 3)  # 3 identical 4-grams
    assert repeated_ngram_share("чисто и очень уютно") == 0.0
    assert repeated_ngram_share("чисто и уютно") == 0.0  # fewer than 4 words
    assert repeated_ngram_share("а б а б а", n=2) == pytest.approx(2 / 4)


def test_self_bleu():
    assert self_bleu(["очень вкусный кофе"] * 2) == pytest.approx(100.0)
    assert self_bleu(["очень вкусный кофе", "грязные номера и шум"]) == 0.0
    # Three texts: each against the other two, checked against sacrebleu directly.
    expected = np.mean([sacrebleu.sentence_bleu(HYPS[i], HYPS[:i] + HYPS[i + 1 :]).score for i in range(4)])
    assert self_bleu(HYPS) == pytest.approx(expected)
    subset = self_bleu(HYPS, max_hypotheses=2, seed=1)
    assert subset == self_bleu(HYPS, max_hypotheses=2, seed=1)
    with pytest.raises(ValueError, match="at least 2 texts"):
        self_bleu(["один"])


def test_length_ratio():
    assert length_ratio("Чисто и уютно", "Чисто, уютно, тихо и недорого") == pytest.approx(3 / 5)
    assert corpus_length_ratio(["Чисто", "Очень грязно и шумно"], ["Чисто и уютно", "Грязно"]) == pytest.approx(5 / 4)
    with pytest.raises(ValueError, match="no words"):
        length_ratio("Чисто", "!!!")
