"""Length of the outputs relative to the human reviews, as an `evaluate` module."""

import datasets
import evaluate

from kit.metrics.diversity import corpus_length_ratio, length_ratio
from kit.metrics.hf.common import as_list, metric_info

_DESCRIPTION = """Words in the generated texts / words in the human reviews (lower-case word
tokens, Cyrillic kept). 1.0 means as long as a human; the corpus ratio sums words first."""

_INPUTS = """
Args:
    predictions: Generated texts.
    references: One human review per prediction.
    return_per_sample: Also return each sample's ratio.
Returns:
    length_ratio: Corpus ratio (all output words / all reference words).
    length_ratio_per_sample: Per-sample ratios, when asked for.
"""


class LengthRatio(evaluate.Metric):
    """Corpus length ratio of outputs to references.

    Example:
        >>> from kit.metrics import load_metric
        >>> load_metric("length_ratio").compute(predictions=["Чисто"], references=["Чисто и уютно"])
        {'length_ratio': 0.3333333333333333}
    """

    def _info(self):
        return metric_info(
            description=_DESCRIPTION,
            inputs=_INPUTS,
            features={
                "predictions": datasets.Value("string"),
                "references": datasets.Value("string"),
            },
        )

    def _compute(self, predictions, references, return_per_sample=False):
        predictions, references = as_list(predictions), as_list(references)
        out = {"length_ratio": corpus_length_ratio(predictions, references)}
        if return_per_sample:
            out["length_ratio_per_sample"] = [
                length_ratio(p, r) for p, r in zip(predictions, references, strict=True)
            ]
        return out
