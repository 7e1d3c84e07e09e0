"""kit.metrics.hf: the `evaluate` modules (loaded with kit.metrics.load_metric) match the pure functions, offline."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from kit.errors import UserError
from kit.metrics import (
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
    repeated_ngram_share,
    self_bleu,
    sentence_bleu,
    sentence_chrf,
)
from tests.metrics.texts import HYPS, PAIRS, REFS


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
