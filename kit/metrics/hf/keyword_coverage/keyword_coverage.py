"""Keyword coverage on Russian lemmas, as an `evaluate` module.

Wraps `kit.metrics.keyword_coverage` and its `mean_keyword_coverage`.
"""

import datasets
import evaluate

from kit.metrics.hf.common import as_list, metric_info
from kit.metrics.keyword_coverage import keyword_coverage, mean_keyword_coverage

_DESCRIPTION = """Share of the requested keywords present in the generated text, matched on
pymorphy3 lemmas ("номера" covers "номер"); averaged over the samples that requested
at least one keyword."""

_INPUTS = """
Args:
    predictions: Generated texts.
    references: The list of requested keywords of each prediction (may be empty).
    return_per_sample: Also return each sample's coverage (None without keywords).
Returns:
    keyword_coverage: Mean coverage over samples with keywords (None if there are none).
    n: Number of samples with keywords.
    keyword_coverage_per_sample: Per-sample coverage, when asked for.
"""


class KeywordCoverage(evaluate.Metric):
    """Mean share of requested keywords present in the outputs, matched on lemmas.

    Example:
        >>> from kit.metrics import load_metric
        >>> load_metric("keyword_coverage").compute(predictions=["Номера чистые"],
        ...                                         references=[["номер", "завтрак"]])
        {'keyword_coverage': 0.5, 'n': 1}
    """

    def _info(self):
        return metric_info(
            description=_DESCRIPTION,
            inputs=_INPUTS,
            features={
                "predictions": datasets.Value("string"),
                "references": datasets.Sequence(datasets.Value("string")),
            },
        )

    def _compute(self, predictions, references, return_per_sample=False):
        texts, keywords = as_list(predictions), [list(k) for k in as_list(references)]
        # The mean is `mean_keyword_coverage`'s own, not restated here; the second
        # pass over the texts is cheap, as the lemma of each word is cached.
        mean = mean_keyword_coverage(texts, keywords)
        scores = [keyword_coverage(t, k) for t, k in zip(texts, keywords, strict=True)]
        out = {"keyword_coverage": mean, "n": sum(s is not None for s in scores)}
        if return_per_sample:
            out["keyword_coverage_per_sample"] = scores
        return out
