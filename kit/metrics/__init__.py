"""Metrics of generated reviews: pure functions, control classifiers, `evaluate` modules.

- `overlap`: chrF++, BLEU (sacrebleu), ROUGE-L with Cyrillic kept (rouge_score).
- `diversity`: distinct-n, self-BLEU, repeated n-grams, length ratio.
- `perplexity`: the per-token NLL from logits (`token_nll`, JAX), perplexity from
  per-token log-probabilities and a mask.
- `keyword_coverage`: requested keywords present in the text, matched on lemmas.
- `rating_classifier`, `rubric_classifier`: the control judges.
- `bootstrap`: percentile bootstrap intervals and paired win rates.
- `hf/`: `evaluate` modules wrapping the above, loaded offline by `load_metric`.

Heavy libraries (sacrebleu, rouge_score, scikit-learn, evaluate) are imported
on first use, so `import kit.metrics` stays cheap.
"""

from kit.metrics.bootstrap import Interval, WinRate, bootstrap_ci, win_rate
from kit.metrics.diversity import (
    corpus_length_ratio,
    distinct_n,
    length_ratio,
    repeated_ngram_share,
    self_bleu,
)
from kit.metrics.keyword_coverage import keyword_coverage, mean_keyword_coverage
from kit.metrics.loader import load_metric, metric_names
from kit.metrics.overlap import (
    corpus_bleu,
    corpus_chrf,
    corpus_rouge_l,
    rouge_l,
    sentence_bleu,
    sentence_chrf,
)
from kit.metrics.perplexity import (
    perplexity,
    perplexity_from_loss,
    sequence_perplexities,
    token_log_probs,
    token_nll,
)
from kit.metrics.rating_classifier import RatingClassifier
from kit.metrics.rubric_classifier import RubricClassifier

__all__ = [
    "Interval",
    "RatingClassifier",
    "RubricClassifier",
    "WinRate",
    "bootstrap_ci",
    "corpus_bleu",
    "corpus_chrf",
    "corpus_length_ratio",
    "corpus_rouge_l",
    "distinct_n",
    "keyword_coverage",
    "length_ratio",
    "load_metric",
    "mean_keyword_coverage",
    "metric_names",
    "perplexity",
    "perplexity_from_loss",
    "repeated_ngram_share",
    "rouge_l",
    "self_bleu",
    "sentence_bleu",
    "sentence_chrf",
    "sequence_perplexities",
    "token_log_probs",
    "token_nll",
    "win_rate",
]
