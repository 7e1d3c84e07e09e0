"""Length of the outputs relative to the human reviews, as an `evaluate` module."""

import evaluate

from kit.metrics.diversity import corpus_length_ratio, length_ratio
from kit.metrics.hf.common import corpus_and_per_sample, text_pair_info

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
        return text_pair_info(description=_DESCRIPTION, inputs=_INPUTS)

    def _compute(self, predictions, references, return_per_sample=False):
        return corpus_and_per_sample(
            predictions,
            references,
            key="length_ratio",
            corpus=corpus_length_ratio,
            per_sample_key="length_ratio_per_sample",
            per_sample=length_ratio,
            return_per_sample=return_per_sample,
        )
