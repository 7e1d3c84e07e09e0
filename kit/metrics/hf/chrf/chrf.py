"""chrF++ against the human review, as an `evaluate` module (wraps `kit.metrics.overlap`)."""

import evaluate

from kit.metrics.hf.common import corpus_and_per_sample, text_pair_info
from kit.metrics.overlap import corpus_chrf, sentence_chrf

_DESCRIPTION = """chrF++ (Popović, 2017) computed by sacrebleu: character 6-gram and word
1–2-gram F-score (beta 2), 0–100. One reference per prediction."""

_INPUTS = """
Args:
    predictions: Generated texts.
    references: One human review per prediction.
    return_per_sample: Also return each prediction's sentence chrF++.
Returns:
    chrf: Corpus chrF++ (0–100).
    sentence_chrf: Per-sample scores, when asked for.
"""


class Chrf(evaluate.Metric):
    """chrF++ (0–100) of generated texts against their references.

    Example:
        >>> from kit.metrics import load_metric
        >>> round(load_metric("chrf").compute(predictions=["Отличный кофе"],
        ...                                   references=["Отличный кофе"])["chrf"], 1)
        100.0
    """

    def _info(self):
        return text_pair_info(description=_DESCRIPTION, inputs=_INPUTS)

    def _compute(self, predictions, references, return_per_sample=False):
        return corpus_and_per_sample(
            predictions,
            references,
            key="chrf",
            corpus=corpus_chrf,
            per_sample_key="sentence_chrf",
            per_sample=sentence_chrf,
            return_per_sample=return_per_sample,
        )
