"""Diversity of one model's outputs, as an `evaluate` module (wraps `kit.metrics.diversity`)."""

import datasets
import evaluate

from kit.metrics.diversity import distinct_n, repeated_ngram_share, self_bleu
from kit.metrics.hf.common import as_list, metric_info

_DESCRIPTION = """Diversity of a set of generated texts: distinct-1/2 (Li et al., 2016; unique
over all n-grams, pooled), self-BLEU (Zhu et al., 2018; mean BLEU of each text against
the others, 0–100, lower is more diverse) and the mean share of repeated word 4-grams
within a text (degenerate loops)."""

_INPUTS = """
Args:
    predictions: The generated texts of one model (at least 2 for self-BLEU).
    max_hypotheses: Score self-BLEU on at most this many texts (seeded subset).
    seed: Seed of that subset.
Returns:
    distinct_1, distinct_2, self_bleu (None for fewer than 2 texts), repeated_4gram_share.
"""


class Diversity(evaluate.Metric):
    """distinct-1/2, self-BLEU and repeated-4-gram share of a set of outputs.

    Example:
        >>> from kit.metrics import load_metric
        >>> r = load_metric("diversity").compute(predictions=["очень вкусно", "очень дорого"])
        >>> r["distinct_1"], r["distinct_2"], r["repeated_4gram_share"]
        (0.75, 1.0, 0.0)
    """

    def _info(self):
        return metric_info(
            description=_DESCRIPTION,
            inputs=_INPUTS,
            features={"predictions": datasets.Value("string")},
        )

    def _compute(self, predictions, max_hypotheses=None, seed=0):
        texts = as_list(predictions)
        shares = [repeated_ngram_share(t, 4) for t in texts]
        return {
            "distinct_1": distinct_n(texts, 1),
            "distinct_2": distinct_n(texts, 2),
            "self_bleu": self_bleu(texts, max_hypotheses=max_hypotheses, seed=seed) if len(texts) >= 2 else None,
            "repeated_4gram_share": sum(shares) / len(shares) if shares else 0.0,
        }
