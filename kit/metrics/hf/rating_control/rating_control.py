"""Rating control (classifier accuracy and MAE vs the requested rating), as an `evaluate` module."""

import datasets
import evaluate

from kit.metrics.hf.common import as_list, metric_info
from kit.metrics.rating_classifier import RatingClassifier

_DESCRIPTION = """A TF-IDF + logistic-regression rating classifier (kit.metrics.RatingClassifier,
fitted on the train split and saved with .save(path)) reads each generated review;
accuracy and mean absolute error are against the rating the request asked for."""

_INPUTS = """
Args:
    predictions: Generated texts.
    references: The requested rating (1–5) of each prediction.
    classifier: Path of a saved RatingClassifier (.joblib), or a fitted RatingClassifier.
Returns:
    accuracy, balanced_accuracy (mean of per-requested-rating accuracies), mae, n.
"""


class RatingControl(evaluate.Metric):
    """Accuracy and MAE of a rating classifier's reading of outputs vs requested ratings.

    Example:
        >>> from kit.metrics import RatingClassifier, load_metric
        >>> texts = ["Отлично, понравилось", "Ужасно и грязно"] * 5
        >>> clf = RatingClassifier().fit(texts, [5, 1] * 5)
        >>> load_metric("rating_control").compute(predictions=["Ужасно", "Отлично"],
        ...                                       references=[1, 1], classifier=clf)
        {'accuracy': 0.5, 'balanced_accuracy': 0.5, 'mae': 2.0, 'n': 2}
    """

    def _info(self):
        return metric_info(
            description=_DESCRIPTION,
            inputs=_INPUTS,
            features={
                "predictions": datasets.Value("string"),
                "references": datasets.Value("int64"),
            },
        )

    def _compute(self, predictions, references, classifier=None):
        if classifier is None:
            raise ValueError("Pass classifier=<path of a saved RatingClassifier> to compute().")
        if not isinstance(classifier, RatingClassifier):
            classifier = RatingClassifier.load(classifier)
        return classifier.score(as_list(predictions), [int(r) for r in as_list(references)])
