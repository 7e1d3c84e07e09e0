"""BLEU against the human review, as an `evaluate` module (wraps `kit.metrics.overlap`)."""

import evaluate

from kit.metrics.hf.common import corpus_and_per_sample, text_pair_info
from kit.metrics.overlap import corpus_bleu, sentence_bleu

_DESCRIPTION = """BLEU (Papineni et al., 2002) computed by sacrebleu with its defaults (13a tokens,
4-grams, brevity penalty), 0–100; per-sample scores use effective order. One reference
per prediction."""

_INPUTS = """
Args:
    predictions: Generated texts.
    references: One human review per prediction.
    return_per_sample: Also return each prediction's sentence BLEU.
Returns:
    bleu: Corpus BLEU (0–100).
    sentence_bleu: Per-sample scores, when asked for.
"""


class Bleu(evaluate.Metric):
    """Corpus BLEU (0–100) of generated texts against their references.

    Example:
        >>> from kit.metrics import load_metric
        >>> texts = ["Очень вкусный кофе и выпечка"]
        >>> round(load_metric("bleu").compute(predictions=texts, references=texts)["bleu"], 1)
        100.0
    """

    def _info(self):
        return text_pair_info(description=_DESCRIPTION, inputs=_INPUTS)

    def _compute(self, predictions, references, return_per_sample=False):
        return corpus_and_per_sample(
            predictions,
            references,
            key="bleu",
            corpus=corpus_bleu,
            per_sample_key="sentence_bleu",
            per_sample=sentence_bleu,
            return_per_sample=return_per_sample,
        )
