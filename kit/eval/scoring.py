"""Scores of an evaluation: per-sample scores per column, intervals, slices and win rates.

A *column* is one writer of reviews for the same requests: each model, plus
`human` (the reference review itself). Every column gets the same per-sample
scores, so base, fine-tuned and human sit side by side; a score that needs a
reference (chrF++, BLEU, ROUGE-L, length ratio) or a model (perplexity of the
references) is NaN for the human column, and NaN samples drop out of means and
win rates alike (`kit.metrics.bootstrap` skips them).

Aggregates are of two kinds:

- means of per-sample scores (rating accuracy, keyword coverage, ...): a
  percentile bootstrap of the mean (`bootstrap_ci`), and paired win rates;
- corpus statistics (corpus chrF++/BLEU, distinct-n, token-weighted
  perplexity, balanced rating accuracy): the statistic recomputed on
  resampled request indices. Corpus chrF++/BLEU resample per-sentence
  sufficient statistics, as sacrebleu's own paired bootstrap does, so a
  thousand resamples cost one pass over the texts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from kit.metrics import (
    bootstrap_ci,
    keyword_coverage,
    length_ratio,
    repeated_ngram_share,
    rouge_l,
    sentence_bleu,
    sentence_chrf,
    win_rate,
)
from kit.metrics.diversity import self_bleu_scores
from kit.metrics.overlap import bleu_metric, chrf_metric
from kit.metrics.tokens import ngrams, words

HUMAN = "human"


@dataclasses.dataclass(frozen=True)
class Metric:
    """How one metric is reported.

    Attributes:
        key: Name in `metrics.json` and `samples.jsonl`.
        label: Column title in `report.md`.
        higher_is_better: Direction, for win rates (None: no direction, no win rate).
        human: Whether the human reference gets a value (the ceiling column).
        per_sample: A mean of per-sample scores (else a corpus statistic).
        fmt: Format of the value in `report.md`.
    """

    key: str
    label: str
    higher_is_better: bool | None
    human: bool
    per_sample: bool = True
    fmt: str = "{:.3f}"


METRICS: tuple[Metric, ...] = (
    Metric("rating_accuracy", "rating acc.", True, True),
    Metric("rating_balanced_accuracy", "rating bal. acc.", True, True, per_sample=False),
    Metric("rating_mae", "rating MAE", False, True),
    Metric("rubric_top3", "rubric top-3", True, True),
    Metric("keyword_coverage", "keyword cov.", True, True),
    Metric("chrf", "chrF++", True, False, fmt="{:.1f}"),
    Metric("corpus_chrf", "corpus chrF++", True, False, per_sample=False, fmt="{:.1f}"),
    Metric("bleu", "BLEU", True, False, fmt="{:.1f}"),
    Metric("corpus_bleu", "corpus BLEU", True, False, per_sample=False, fmt="{:.1f}"),
    Metric("rouge_l", "ROUGE-L", True, False),
    Metric("distinct_1", "distinct-1", True, True, per_sample=False),
    Metric("distinct_2", "distinct-2", True, True, per_sample=False),
    Metric("self_bleu", "self-BLEU", False, True, fmt="{:.1f}"),
    Metric("repeated_4gram", "repeated 4-gram", False, True),
    Metric("length_ratio", "length ratio", None, False, fmt="{:.2f}"),
    Metric("words", "words", None, True, fmt="{:.0f}"),
    Metric("ref_perplexity", "ref. perplexity", False, False, per_sample=False, fmt="{:.2f}"),
)
BY_KEY = {m.key: m for m in METRICS}
# The rows a reader looks at first (report.md, `kit evaluate`'s table, the notebooks, the
# Metrics page): control, overlap with the human review, diversity, fluency.
HEADLINE = (
    "rating_accuracy",
    "rating_balanced_accuracy",
    "rating_mae",
    "rubric_top3",
    "keyword_coverage",
    "chrf",
    "bleu",
    "rouge_l",
    "distinct_2",
    "self_bleu",
    "repeated_4gram",
    "length_ratio",
    "ref_perplexity",
)
# Per-sample keys that are stored per sample but aggregated as a mean.
PER_SAMPLE_KEYS = tuple(m.key for m in METRICS if m.per_sample)


def sample_scores(
    texts: Sequence[str],
    requests: Sequence[Mapping],
    *,
    rating_judge,
    rubric_judge,
    is_human: bool = False,
    ref_nll: Sequence[float] | None = None,
    ref_tokens: Sequence[float] | None = None,
) -> dict[str, np.ndarray]:
    """Per-sample scores of one column of texts (one float per request, NaN where undefined).

    Args:
        texts: The column's review for each request.
        requests: Rows with `text` (the reference), `rating`, `rubrics`, `keywords`.
        rating_judge: A fitted `RatingClassifier`.
        rubric_judge: A fitted `RubricClassifier`.
        is_human: The texts are the references themselves (no reference-based scores).
        ref_nll: Summed negative log-likelihood of each reference under the model.
        ref_tokens: Number of reference tokens each `ref_nll` sums over.

    Example:
        >>> s = sample_scores(["Чисто"], [{"text": "Чисто и тихо", "rating": 5, "rubrics": ["Кафе"],
        ...     "keywords": []}], rating_judge=judge, rubric_judge=judge)  # doctest: +SKIP
    """
    n = len(texts)
    nan = np.full(n, np.nan)
    refs = [r["text"] for r in requests]
    rating = rating_judge.per_sample(list(texts), [int(r["rating"]) for r in requests])
    rubric = rubric_judge.hits(list(texts), [list(r["rubrics"]) for r in requests], k=3)
    out = {
        "rating_predicted": rating["predicted"].astype(np.float64),
        "rating_accuracy": rating["correct"],
        "rating_mae": rating["abs_error"],
        "rubric_top3": _floats(rubric),
        "keyword_coverage": _floats(
            [keyword_coverage(t, list(r["keywords"])) for t, r in zip(texts, requests, strict=True)]
        ),
        "self_bleu": np.asarray(self_bleu_scores(list(texts)) if n > 1 else nan, dtype=np.float64),
        "repeated_4gram": np.asarray([repeated_ngram_share(t, 4) for t in texts], dtype=np.float64),
        "words": np.asarray([len(words(t)) for t in texts], dtype=np.float64),
    }
    if is_human:
        out.update(chrf=nan, bleu=nan, rouge_l=nan, length_ratio=nan)
    else:
        out.update(
            chrf=np.asarray([sentence_chrf(t, r) for t, r in zip(texts, refs, strict=True)]),
            bleu=np.asarray([sentence_bleu(t, r) for t, r in zip(texts, refs, strict=True)]),
            rouge_l=np.asarray([rouge_l(t, r) for t, r in zip(texts, refs, strict=True)]),
            length_ratio=np.asarray(
                [length_ratio(t, r) if words(r) else np.nan for t, r in zip(texts, refs, strict=True)]
            ),
        )
    if ref_nll is not None:
        nll, tok = np.asarray(ref_nll, np.float64), np.asarray(ref_tokens, np.float64)
        out["ref_nll"], out["ref_tokens"] = nll, tok
        with np.errstate(invalid="ignore", divide="ignore"):
            out["ref_perplexity"] = np.where(tok > 0, np.exp(nll / np.maximum(tok, 1)), np.nan)
    return out


def control_scores(texts: Sequence[str], request: Mapping, *, rating_judge, rubric_judge) -> list[dict]:
    """The control scores of reviews written for one request (what the app shows next to an output).

    Args:
        texts: Reviews for the same request.
        request: `rating`, `rubrics`, `keywords` (e.g. `kit.generate.request.Request.to_dict()`).
        rating_judge: A fitted `RatingClassifier`.
        rubric_judge: A fitted `RubricClassifier`.

    Returns:
        Per text: `rating_predicted` (1–5), `rating_accuracy` (0/1), `rubric_top3`
        (0/1, None if the judge knows no requested rubric) and `keyword_coverage`
        (0–1, None when no keywords were requested) — the same scores as in `samples.jsonl`.

    Example:
        >>> control_scores(["Вкусный кофе"], {"rating": 5, "rubrics": ["Кафе"], "keywords": ["кофе"]},
        ...                rating_judge=rating, rubric_judge=rubric)  # doctest: +SKIP
        [{'rating_predicted': 5, 'rating_accuracy': 1.0, 'rubric_top3': 1.0, 'keyword_coverage': 1.0}]
    """
    texts = list(texts)
    if not texts:
        return []
    rating = rating_judge.per_sample(texts, [int(request["rating"])] * len(texts))
    rubric = rubric_judge.hits(texts, [list(request["rubrics"])] * len(texts), k=3)
    keywords = list(request.get("keywords") or [])
    return [
        {
            "rating_predicted": int(rating["predicted"][i]),
            "rating_accuracy": float(rating["correct"][i]),
            "rubric_top3": rubric[i],
            "keyword_coverage": keyword_coverage(t, keywords),
        }
        for i, t in enumerate(texts)
    ]


def _floats(values) -> np.ndarray:
    return np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def corpus_statistics(
    texts: Sequence[str],
    references: Sequence[str],
    scores: Mapping[str, np.ndarray],
    requested: Sequence[int],
    *,
    is_human: bool,
) -> dict[str, Callable[[np.ndarray], float]]:
    """Corpus statistics of one column as functions of a (resampled) array of request indices.

    Example:
        >>> stats = corpus_statistics(["а б в", "а б"], ["а", "б"], {}, [5, 5], is_human=True)
        >>> round(stats["distinct_1"](np.array([0, 1])), 3)
        0.6
    """
    grams = {n: [ngrams(words(t), n) for t in texts] for n in (1, 2)}

    def distinct(n: int) -> Callable[[np.ndarray], float]:
        def stat(idx: np.ndarray) -> float:
            total = sum(len(grams[n][i]) for i in idx)
            return len(set().union(*(grams[n][i] for i in idx))) / total if total else 0.0

        return stat

    out: dict[str, Callable[[np.ndarray], float]] = {"distinct_1": distinct(1), "distinct_2": distinct(2)}
    if "rating_accuracy" in scores:
        correct, want = scores["rating_accuracy"], np.asarray(requested)

        def balanced(idx: np.ndarray) -> float:
            c, w = correct[idx], want[idx]
            return float(np.mean([c[w == r].mean() for r in np.unique(w)]))

        out["rating_balanced_accuracy"] = balanced
    if not is_human:
        for key, metric in (("corpus_chrf", chrf_metric()), ("corpus_bleu", bleu_metric(False))):
            # sacrebleu's paired bootstrap (sacrebleu/significance.py) resamples these same
            # per-sentence sufficient statistics; a corpus score is a function of their sum.
            stats = np.asarray(metric._extract_corpus_statistics(list(texts), [list(references)]))
            out[key] = (lambda m, s: lambda idx: float(m._compute_score_from_stats(s[idx].sum(0)).score))(metric, stats)
    if "ref_nll" in scores:
        nll, tok = scores["ref_nll"], scores["ref_tokens"]
        out["ref_perplexity"] = lambda idx: float(np.exp(nll[idx].sum() / max(tok[idx].sum(), 1.0)))
    return out


def summarize(
    scores: Mapping[str, np.ndarray],
    corpus: Mapping[str, Callable[[np.ndarray], float]],
    *,
    rows: np.ndarray | None = None,
    seed: int = 0,
    n_resamples: int = 1000,
    corpus_resamples: int | None = None,
) -> dict[str, dict]:
    """Every metric of one column with its 95 % bootstrap interval (`Interval.to_dict()`).

    Args:
        scores: Per-sample scores (`sample_scores`).
        corpus: Corpus statistics (`corpus_statistics`); None-valued entries are skipped.
        rows: Restrict to these request indices (a slice); all by default.
        seed: Bootstrap seed (the same for every metric and column: paired resamples).
        n_resamples: Resamples for means.
        corpus_resamples: Resamples for corpus statistics (default `n_resamples`).

    Example:
        >>> out = summarize({"keyword_coverage": np.array([1.0, 0.0, np.nan, 1.0])}, {})
        >>> round(out["keyword_coverage"]["value"], 3), out["keyword_coverage"]["n"]
        (0.667, 3)
    """
    n = len(next(iter(scores.values()))) if scores else 0
    rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    out = {}
    for key in PER_SAMPLE_KEYS:
        if key in scores and not np.all(np.isnan(scores[key][rows])):
            out[key] = bootstrap_ci(scores[key][rows], seed=seed, n_resamples=n_resamples).to_dict()
    for key, stat in corpus.items():
        if len(rows) == 0:
            continue
        ci = bootstrap_ci(
            rows.astype(np.float64),
            statistic=lambda ix, f=stat: f(ix.astype(np.int64)),
            seed=seed,
            n_resamples=corpus_resamples or n_resamples,
        )
        if key in BIASED_UNDER_RESAMPLING:
            ci = _bias_corrected(ci, stat, rows, seed, corpus_resamples or n_resamples)
        out[key] = ci.to_dict()
    return out


# A resample with replacement repeats texts, and repeated texts repeat their
# n-grams, so distinct-n of a resample is lower than of any real corpus of the
# same size: the plain percentile interval sits below the estimate (often
# excluding it). We shift it by the bootstrap estimate of that bias,
# mean(resampled) - estimate (Efron & Tibshirani 1993, ch. 10).
BIASED_UNDER_RESAMPLING = ("distinct_1", "distinct_2")


def _bias_corrected(ci, stat, rows: np.ndarray, seed: int, n_resamples: int):
    from kit.metrics.bootstrap import Interval

    rng = np.random.default_rng(seed)  # the same resamples bootstrap_ci drew
    idx = rng.integers(0, len(rows), size=(n_resamples, len(rows)))
    bias = float(np.mean([stat(rows[r]) for r in idx])) - ci.value
    return Interval(value=ci.value, low=ci.low - bias, high=ci.high - bias, confidence=ci.confidence, n=ci.n)


def pairwise_win_rates(columns: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, dict[str, dict]]:
    """Per-sample win rates of every ordered pair `A vs B` (A listed first) on every directed metric.

    Pairs with no comparable sample for a metric (e.g. chrF++ of the human column) are left out.

    Example:
        >>> cols = {"a": {"keyword_coverage": np.array([1.0, 0.5])}, "b": {"keyword_coverage": np.array([0.0, 0.5])}}
        >>> pairwise_win_rates(cols)["a vs b"]["keyword_coverage"]["win_rate"]
        0.75
    """
    names = list(columns)
    out: dict[str, dict[str, dict]] = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            pair = {}
            for m in METRICS:
                if not m.per_sample or m.higher_is_better is None:
                    continue
                if m.key not in columns[a] or m.key not in columns[b]:
                    continue
                w = win_rate(columns[a][m.key], columns[b][m.key], higher_is_better=m.higher_is_better, tolerance=1e-9)
                if w.n:
                    pair[m.key] = w.to_dict()
            out[f"{a} vs {b}"] = pair
    return out


def paired_differences(
    columns: Mapping[str, Mapping[str, np.ndarray]], baseline: str, *, seed: int = 0, n_resamples: int = 1000
) -> dict[str, dict[str, dict]]:
    """Mean per-sample difference (column − baseline) with a bootstrap interval, per metric.

    Paired on the same requests, so it is tighter than comparing two separate
    intervals: an interval that excludes 0 is a difference the sample supports.

    Example:
        >>> cols = {"base": {"keyword_coverage": np.zeros(4)}, "ft": {"keyword_coverage": np.ones(4)}}
        >>> paired_differences(cols, "base")["ft"]["keyword_coverage"]["value"]
        1.0
    """
    out = {}
    for name, col in columns.items():
        if name == baseline:
            continue
        diffs = {}
        for key in PER_SAMPLE_KEYS:
            if key in col and key in columns[baseline]:
                d = col[key] - columns[baseline][key]
                if not np.all(np.isnan(d)):
                    diffs[key] = bootstrap_ci(d, seed=seed, n_resamples=n_resamples).to_dict()
        out[name] = diffs
    return out


def slice_rows(requests: Sequence[Mapping], *, top_rubrics: int = 5) -> dict[str, dict[str, np.ndarray]]:
    """Request indices per requested rating and per most frequent requested rubric.

    Example:
        >>> reqs = [{"rating": 5, "rubrics": ["Кафе"]}, {"rating": 1, "rubrics": ["Кафе", "Бар"]}]
        >>> s = slice_rows(reqs, top_rubrics=1)
        >>> s["rating"]["1"].tolist(), s["rubric"]["Кафе"].tolist()
        ([1], [0, 1])
    """
    from collections import Counter

    ratings = np.asarray([int(r["rating"]) for r in requests])
    by_rating = {str(k): np.flatnonzero(ratings == k) for k in sorted(set(ratings.tolist()))}
    counts = Counter(rub for r in requests for rub in dict.fromkeys(r["rubrics"]))
    # Ties broken by name, so the chosen slices do not depend on request order.
    top = sorted(counts, key=lambda k: (-counts[k], k))[:top_rubrics]
    by_rubric = {
        rub: np.asarray([i for i, r in enumerate(requests) if rub in r["rubrics"]], dtype=np.int64) for rub in top
    }
    return {"rating": by_rating, "rubric": by_rubric}
