"""ROUGE-L for Russian (Cyrillic-keeping tokenizer), as an `evaluate` module.

The Hub's `rouge` module uses rouge_score's default tokenizer, which drops
every non-[a-z0-9] character and so scores any two Russian texts 0.0. This one
wraps `kit.metrics.overlap.rouge_l`, whose tokenizer keeps Cyrillic.
"""

import evaluate

from kit.metrics.hf.common import as_list, text_pair_info
from kit.metrics.overlap import rouge_l

_DESCRIPTION = """ROUGE-L F-measure (Lin, 2004; rouge_score) over lower-case word tokens with
Cyrillic kept (ё as е), optionally over pymorphy3 lemmas; 0–1, averaged over samples."""

_INPUTS = """
Args:
    predictions: Generated texts.
    references: One human review per prediction.
    use_lemmas: Match lemmas instead of word forms.
    return_per_sample: Also return each prediction's ROUGE-L.
Returns:
    rouge_l: Mean ROUGE-L F-measure (0–1).
    rouge_l_per_sample: Per-sample scores, when asked for.
"""


class RougeLRu(evaluate.Metric):
    """Mean ROUGE-L F-measure (0–1) with a tokenizer that keeps Cyrillic.

    Example:
        >>> from kit.metrics import load_metric
        >>> rouge = load_metric("rouge_l_ru")
        >>> rouge.compute(predictions=["Чистые номера"], references=["Чистые номера"])
        {'rouge_l': 1.0}
    """

    def _info(self):
        return text_pair_info(description=_DESCRIPTION, inputs=_INPUTS)

    def _compute(self, predictions, references, use_lemmas=False, return_per_sample=False):
        pairs = zip(as_list(predictions), as_list(references), strict=True)
        scores = [rouge_l(p, r, use_lemmas=use_lemmas) for p, r in pairs]
        out = {"rouge_l": sum(scores) / len(scores) if scores else 0.0}
        if return_per_sample:
            out["rouge_l_per_sample"] = scores
        return out
