"""kit.metrics.overlap: chrF++ and BLEU against sacrebleu, ROUGE-L on Cyrillic against a hand computation."""

from __future__ import annotations

import numpy as np
import pytest
import sacrebleu

from kit.metrics import corpus_bleu, corpus_chrf, corpus_rouge_l, rouge_l, sentence_bleu, sentence_chrf
from kit.metrics.tokens import RougeTokenizer, words
from tests.metrics.texts import HYPS, PAIRS, REFS


def test_chrf_plus_plus_matches_sacrebleu():
    for h, r in PAIRS:
        assert sentence_chrf(h, r) == pytest.approx(sacrebleu.sentence_chrf(h, [r], word_order=2).score)
    assert corpus_chrf(HYPS, REFS) == pytest.approx(sacrebleu.corpus_chrf(HYPS, [REFS], word_order=2).score)
    # chrF++ (word 1-2-grams added), not plain chrF:
    assert corpus_chrf(HYPS, REFS) != pytest.approx(sacrebleu.corpus_chrf(HYPS, [REFS]).score)
    assert sentence_chrf(REFS[0], REFS[0]) == pytest.approx(100.0)


def test_bleu_matches_sacrebleu():
    for h, r in PAIRS:
        # sacrebleu.sentence_bleu uses effective order by default, as ours does.
        assert sentence_bleu(h, r) == pytest.approx(sacrebleu.sentence_bleu(h, [r]).score)
    assert corpus_bleu(HYPS, REFS) == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score)
    assert 0 < corpus_bleu(HYPS, REFS) < 100


def test_corpus_functions_reject_mismatched_lists():
    with pytest.raises(ValueError, match="2 hypotheses and 1 references"):
        corpus_chrf(["а", "б"], ["в"])
    with pytest.raises(TypeError, match="lists of texts"):
        corpus_bleu("а", "б")


def _lcs(a: list[str], b: list[str]) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


def _hand_rouge_l(h: str, r: str) -> float:
    ht, rt = words(h), words(r)
    lcs = _lcs(ht, rt)
    if lcs == 0:
        return 0.0
    p, rec = lcs / len(ht), lcs / len(rt)
    return 2 * p * rec / (p + rec)


def test_rouge_l_on_cyrillic_known_value():
    # hyp: номера чистые и уютные персонал вежливый (6); ref: чистые номера вежливый персонал и тихо (6)
    # Longest common subsequence has 2 words (e.g. "чистые … персонал"): P = R = 2/6, F = 1/3.
    assert rouge_l(HYPS[0], REFS[0]) == pytest.approx(1 / 3)


def test_rouge_l_matches_hand_lcs_and_default_tokenizer_fails():
    from rouge_score.rouge_scorer import RougeScorer

    for h, r in PAIRS:
        assert rouge_l(h, r) == pytest.approx(_hand_rouge_l(h, r))
        assert rouge_l(h, r) > 0
        # The pitfall this guards against: rouge_score's own tokenizer drops Cyrillic.
        assert RougeScorer(["rougeL"]).score(r, h)["rougeL"].fmeasure == 0.0
    assert corpus_rouge_l(HYPS, REFS) == pytest.approx(np.mean([_hand_rouge_l(h, r) for h, r in PAIRS]))
    # "Ёлка" and "елка" are one word (ё folded): LCS "елка во дворе гуляли" = 4 of 7 and 7 words.
    assert rouge_l(HYPS[3], REFS[3]) == pytest.approx(4 / 7)


def test_rouge_l_on_lemmas():
    assert rouge_l("Номера чистые", "номер чистый") == 0.0
    assert rouge_l("Номера чистые", "номер чистый", use_lemmas=True) == 1.0
    assert RougeTokenizer(use_lemmas=True).tokenize("В номерах чисто") == ["в", "номер", "чисто"]
