"""Rubric consistency (top-3 hit rate of a rubric classifier), as an `evaluate` module."""

import datasets
import evaluate

from kit.metrics.hf.common import as_list, metric_info
from kit.metrics.rubric_classifier import RubricClassifier

_DESCRIPTION = """A TF-IDF + Complement Naive Bayes rubric ranker (kit.metrics.RubricClassifier,
fitted on the train split) reads each generated review; a sample is a hit when one of
its requested rubrics is among the ranker's top k (3). Samples whose rubrics are all
unknown to the ranker are skipped and counted."""

_INPUTS = """
Args:
    predictions: Generated texts.
    references: The requested rubrics of each prediction.
    classifier: Path of a saved RubricClassifier (.joblib), or a fitted RubricClassifier.
    k: How many top-ranked rubrics count as a hit (3).
Returns:
    top3_hit_rate (top{k}_hit_rate), n (scored samples), skipped.
"""


class RubricTop3(evaluate.Metric):
    """Top-k hit rate of a rubric classifier against the requested rubrics.

    Example:
        >>> from kit.metrics import RubricClassifier, load_metric
        >>> clf = RubricClassifier(min_count=1).fit(["Вкусный кофе", "Чистый номер"] * 3,
        ...                                         [["Кафе"], ["Гостиница"]] * 3)
        >>> load_metric("rubric_top3").compute(predictions=["Кофе вкусный"],
        ...                                    references=[["Кафе"]], classifier=clf, k=1)
        {'top1_hit_rate': 1.0, 'n': 1, 'skipped': 0}
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

    def _compute(self, predictions, references, classifier=None, k=3):
        if classifier is None:
            raise ValueError("Pass classifier=<path of a saved RubricClassifier> to compute().")
        if not isinstance(classifier, RubricClassifier):
            classifier = RubricClassifier.load(classifier)
        return classifier.score(as_list(predictions), [list(r) for r in as_list(references)], k=k)
