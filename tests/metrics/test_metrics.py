"""Pure metric functions on hand-made cases with known values, and the `evaluate` modules.

Reference implementations are the oracle where one exists: sacrebleu for
chrF++/BLEU, a hand-written LCS for ROUGE-L on Cyrillic.
"""

from __future__ import annotations

import math
import socket

import numpy as np
import pytest
import sacrebleu

from kit.errors import UserError
from kit.metrics import (
    bootstrap_ci,
    corpus_bleu,
    corpus_chrf,
    corpus_length_ratio,
    corpus_rouge_l,
    distinct_n,
    keyword_coverage,
    length_ratio,
    load_metric,
    mean_keyword_coverage,
    metric_names,
    perplexity,
    repeated_ngram_share,
    rouge_l,
    self_bleu,
    sentence_bleu,
    sentence_chrf,
    sequence_perplexities,
    token_log_probs,
    token_nll,
    win_rate,
)
from kit.metrics.tokens import RougeTokenizer, lemmas, ngrams, words

HYPS = [
    "Номера чистые и уютные, персонал вежливый.",
    "Кофе остыл, официант грубил. Больше не придём!",
    "Отличный супермаркет: свежие овощи, быстрые кассы.",
    "Ёлка во дворе красивая, 2 часа гуляли.",
]
REFS = [
    "Чистые номера, вежливый персонал и тихо.",
    "Официант грубил, кофе холодный, не придём больше.",
    "Хороший магазин, свежие овощи и фрукты, кассы работают быстро.",
    "Красивая елка во дворе, гуляли 3 часа.",
]
PAIRS = list(zip(HYPS, REFS, strict=True))


# --- tokens -------------------------------------------------------------------------------


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


# --- chrF++ / BLEU against sacrebleu ------------------------------------------------------


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


# --- ROUGE-L on Cyrillic against a hand computation ---------------------------------------


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


# --- diversity ----------------------------------------------------------------------------


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


# --- perplexity ---------------------------------------------------------------------------


def test_perplexity_of_uniform_predictions_is_the_vocabulary_size():
    lp = np.full((2, 5), math.log(1 / 4))
    mask = np.ones((2, 5))
    assert perplexity(lp, mask) == pytest.approx(4.0)
    # Prompt/padding positions are masked out, whatever their log-probs are.
    lp[:, :2] = -100.0
    mask[:, :2] = 0
    assert perplexity(lp, mask) == pytest.approx(4.0)
    assert sequence_perplexities(lp, mask).tolist() == pytest.approx([4.0, 4.0])


def test_perplexity_weights_tokens_and_rows():
    lp = np.log([[0.5, 0.5, 1.0], [0.25, 1.0, 1.0]])
    mask = np.array([[1, 1, 0], [1, 0, 0]])
    assert sequence_perplexities(lp, mask).tolist() == pytest.approx([2.0, 4.0])
    # Token-weighted: exp(-(2 ln .5 + ln .25) / 3) = exp(4 ln 2 / 3)
    assert perplexity(lp, mask) == pytest.approx(2 ** (4 / 3))
    assert np.isnan(sequence_perplexities(lp, np.array([[1, 0, 0], [0, 0, 0]]))[1])
    with pytest.raises(ValueError, match="selects no tokens"):
        perplexity(lp, np.zeros_like(mask))
    with pytest.raises(ValueError, match="log-probabilities"):
        perplexity([[0.5]], [[1]])
    with pytest.raises(ValueError, match="same shape"):
        perplexity([[0.0, 0.0]], [[1]])


def test_token_log_probs_is_a_log_softmax():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 7)) * 5
    targets = rng.integers(0, 7, size=(2, 3))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    expected = np.log(np.take_along_axis(probs, targets[..., None], -1)[..., 0])
    assert token_log_probs(logits, targets) == pytest.approx(expected)
    assert np.isfinite(token_log_probs([[1e4, 0.0]], [1])).all()  # no overflow


def test_token_nll_is_float32_cross_entropy_under_jit_and_grad():
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 3, 11)) * 5
    targets = rng.integers(0, 11, size=(2, 3))
    shifted = logits - logits.max(-1, keepdims=True)
    expected = np.log(np.exp(shifted).sum(-1)) - np.take_along_axis(shifted, targets[..., None], -1)[..., 0]
    eager = token_nll(logits, targets)
    assert eager.dtype == jnp.float32 and eager.shape == (2, 3)
    np.testing.assert_allclose(np.asarray(eager), expected, rtol=1e-5, atol=1e-5)
    # What the training step does with it: jit, mixed-precision logits, a gradient.
    jitted = jax.jit(token_nll)(jnp.asarray(logits, jnp.bfloat16), jnp.asarray(targets, jnp.int32))
    assert jitted.dtype == jnp.float32  # bfloat16 logits are scored in float32
    np.testing.assert_allclose(np.asarray(jitted), expected, atol=0.3)
    grad = jax.grad(lambda z: token_nll(z, targets).sum())(jnp.asarray(logits, jnp.float32))
    softmax = np.exp(shifted) / np.exp(shifted).sum(-1, keepdims=True)
    onehot = np.eye(11)[targets]
    np.testing.assert_allclose(np.asarray(grad), softmax - onehot, atol=1e-5)
    assert token_log_probs(logits, targets) == pytest.approx(-np.asarray(eager, np.float64))


# --- keyword coverage ---------------------------------------------------------------------


def test_keyword_coverage_matches_inflected_forms():
    assert keyword_coverage("Номера чистые", ["номер"]) == 1.0  # "номера" covers "номер"
    assert keyword_coverage("Отличный номер", ["номера"]) == 1.0  # and the other way round
    text = "В номерах чисто, а завтраков не было вовсе"
    assert keyword_coverage(text, ["номер", "завтрак", "парковка"]) == pytest.approx(2 / 3)
    assert keyword_coverage("Во дворе ёлка", ["елка"]) == 1.0
    assert keyword_coverage("Хачапури по-аджарски", ["хачапури по-аджарски"]) == 1.0
    assert keyword_coverage("Хачапури", ["хачапури по-аджарски"]) == 0.0
    assert keyword_coverage("Чисто", []) is None
    assert keyword_coverage("Чисто", ["", " "]) is None
    with pytest.raises(TypeError, match="not a single string"):
        keyword_coverage("Чисто", "номер")


def test_mean_keyword_coverage_skips_requests_without_keywords():
    assert mean_keyword_coverage(["Вкусный кофе", "Чисто", "Номер"], [["кофе", "десерт"], [], ["номер"]]) == 0.75
    assert mean_keyword_coverage(["Чисто"], [[]]) is None


# --- bootstrap and win rates --------------------------------------------------------------


def test_bootstrap_interval_contains_mean_and_is_seeded():
    rng = np.random.default_rng(1)
    scores = (rng.random(400) < 0.7).astype(float)
    ci = bootstrap_ci(scores, seed=3)
    assert ci.value == pytest.approx(scores.mean())
    assert ci.low < ci.value < ci.high
    assert ci == bootstrap_ci(scores, seed=3)
    assert ci != bootstrap_ci(scores, seed=4)
    # Width ~ 2 * 1.96 * standard error of a proportion.
    se = math.sqrt(scores.mean() * (1 - scores.mean()) / len(scores))
    assert ci.high - ci.low == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert ci.to_dict()["n"] == 400 and ci.confidence == 0.95


def test_bootstrap_edge_cases_and_custom_statistic():
    const = bootstrap_ci([0.5] * 10)
    assert (const.low, const.value, const.high) == (0.5, 0.5, 0.5)
    assert bootstrap_ci([1.0, float("nan"), 0.0]).n == 2  # NaN = metric not applicable
    assert math.isnan(bootstrap_ci([]).value)
    med = bootstrap_ci([1, 2, 3, 4, 100], statistic=np.median, n_resamples=200)
    assert med.value == 3 and med.low <= 3 <= med.high
    # A corpus-level metric: resample indices, recompute the metric on them.
    texts = ["очень вкусно", "очень вкусно", "грязно и шумно", "дорого"]
    ci = bootstrap_ci(
        np.arange(4),
        statistic=lambda idx: distinct_n([texts[int(i)] for i in idx], 1),
        n_resamples=50,
    )
    assert ci.value == distinct_n(texts, 1)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([1.0], confidence=95)


def test_win_rate():
    w = win_rate([0.9, 0.5, 0.3, 0.7], [0.1, 0.5, 0.6, 0.2])
    assert (w.wins, w.losses, w.ties, w.n) == (0.5, 0.25, 0.25, 4)
    assert w.win_rate == 0.625 and w.to_dict()["win_rate"] == 0.625
    lower = win_rate([10.0, 20.0], [15.0, 15.0], higher_is_better=False)  # e.g. perplexity
    assert (lower.wins, lower.losses) == (0.5, 0.5)
    tol = win_rate([1.0, 1.05, 2.0], [1.0, 1.0, 1.0], tolerance=0.1)
    assert (tol.wins, tol.ties) == (pytest.approx(1 / 3), pytest.approx(2 / 3))
    assert win_rate([1.0, float("nan")], [0.0, 1.0]).n == 1
    with pytest.raises(ValueError, match="equally long"):
        win_rate([1.0], [1.0, 2.0])


# --- evaluate modules, offline -------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_load_metric_lists_and_rejects_unknown_names():
    assert {"chrf", "bleu", "rouge_l_ru", "keyword_coverage", "diversity", "length_ratio"} <= set(metric_names())
    with pytest.raises(UserError, match="Unknown metric 'rouge'. Available: "):
        load_metric("rouge")


def test_evaluate_modules_match_pure_functions(no_network):
    chrf = load_metric("chrf").compute(predictions=HYPS, references=REFS, return_per_sample=True)
    assert chrf["chrf"] == pytest.approx(corpus_chrf(HYPS, REFS))
    assert chrf["sentence_chrf"] == pytest.approx([sentence_chrf(h, r) for h, r in PAIRS])

    bleu = load_metric("bleu").compute(predictions=HYPS, references=REFS, return_per_sample=True)
    assert bleu["bleu"] == pytest.approx(corpus_bleu(HYPS, REFS))
    assert bleu["sentence_bleu"] == pytest.approx([sentence_bleu(h, r) for h, r in PAIRS])

    rouge = load_metric("rouge_l_ru")
    assert rouge.compute(predictions=HYPS, references=REFS)["rouge_l"] == pytest.approx(corpus_rouge_l(HYPS, REFS))
    lem = rouge.compute(predictions=HYPS, references=REFS, use_lemmas=True)["rouge_l"]
    assert lem == pytest.approx(corpus_rouge_l(HYPS, REFS, use_lemmas=True))

    keywords = [["номер", "персонал"], [], ["овощ", "касса", "парковка"], ["ёлка"]]
    kc = load_metric("keyword_coverage").compute(predictions=HYPS, references=keywords, return_per_sample=True)
    assert kc["keyword_coverage"] == pytest.approx(mean_keyword_coverage(HYPS, keywords))
    assert kc["n"] == 3
    assert kc["keyword_coverage_per_sample"] == [keyword_coverage(h, k) for h, k in zip(HYPS, keywords, strict=True)]

    div = load_metric("diversity").compute(predictions=HYPS)
    assert div == pytest.approx(
        {
            "distinct_1": distinct_n(HYPS, 1),
            "distinct_2": distinct_n(HYPS, 2),
            "self_bleu": self_bleu(HYPS),
            "repeated_4gram_share": np.mean([repeated_ngram_share(h) for h in HYPS]),
        }
    )

    lr = load_metric("length_ratio").compute(predictions=HYPS, references=REFS, return_per_sample=True)
    assert lr["length_ratio"] == pytest.approx(corpus_length_ratio(HYPS, REFS))
    assert lr["length_ratio_per_sample"] == pytest.approx([length_ratio(h, r) for h, r in PAIRS])


def test_evaluate_module_supports_add_batch():
    metric = load_metric("rouge_l_ru")
    metric.add_batch(predictions=HYPS[:2], references=REFS[:2])
    metric.add_batch(predictions=HYPS[2:], references=REFS[2:])
    assert metric.compute()["rouge_l"] == pytest.approx(corpus_rouge_l(HYPS, REFS))
