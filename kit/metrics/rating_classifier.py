"""Rating control: does a generated review read like the rating it was asked for?

A TF-IDF + logistic-regression classifier, fitted on the human reviews and
ratings of the train split, reads each generated review; the metric is its
accuracy and mean absolute error against the *requested* rating. Its score on
the human test reviews (against their true ratings) is the ceiling: a
generator that obeys the rating perfectly still cannot beat the judge.

Classes are weighted as balanced: 78 % of real reviews are 5-star, so an
unweighted classifier learns to say "5" whenever in doubt and a model that
ignores the requested rating would still look obedient on the mostly-5-star
test requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kit.errors import UserError
from kit.metrics import text_classifier as tc

RATINGS = (1, 2, 3, 4, 5)


class RatingClassifier:
    """Predict a review's 1–5 rating from its text.

    Args:
        C: Inverse regularisation strength of the logistic regression.
        max_rows: Fit on at most this many reviews (a seeded subset).
        seed: Seed of that subset.

    Example:
        >>> texts = ["Отлично, всё понравилось", "Ужасно, грязно и грубо"] * 5
        >>> clf = RatingClassifier().fit(texts, [5, 1] * 5)
        >>> clf.predict(["Всё понравилось, отлично"]).tolist()
        [5]
        >>> clf.score(["Грязно и ужасно", "Отлично"], [1, 1])
        {'accuracy': 0.5, 'balanced_accuracy': 0.5, 'mae': 2.0, 'n': 2}
    """

    kind = "RatingClassifier"

    def __init__(self, *, C: float = 1.0, max_rows: int | None = 100_000, seed: int = 0):
        self.C = C
        self.max_rows = max_rows
        self.seed = seed
        self.pipeline = None

    def fit(self, texts: Sequence[str], ratings: Sequence[int]) -> RatingClassifier:
        """Fit on human reviews and their ratings (the train split)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        texts = tc.check_texts(texts, "rating classifier")
        ratings = _check_ratings(ratings, len(texts))
        if len(set(ratings.tolist())) < 2:
            raise UserError(
                "The rating classifier needs reviews of at least 2 different ratings. "
                f"Received: {len(texts)} reviews, ratings {sorted(set(ratings.tolist()))}"
            )
        rows = tc.subsample(len(texts), self.max_rows, self.seed)
        self.pipeline = make_pipeline(
            tc.tfidf_features(),
            LogisticRegression(C=self.C, class_weight="balanced", max_iter=1000),
        )
        self.pipeline.fit([texts[i] for i in rows], ratings[rows])
        return self

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """The predicted rating (1–5) of each text."""
        return self._fitted().predict(tc.check_texts(texts, "rating classifier")).astype(np.int64)

    def per_sample(self, texts: Sequence[str], requested: Sequence[int]) -> dict[str, np.ndarray]:
        """Per-sample `predicted` rating, `correct` (0/1) and `abs_error` against `requested`."""
        texts = tc.check_texts(texts, "rating classifier")
        requested = _check_ratings(requested, len(texts))
        predicted = self.predict(texts) if texts else np.zeros(0, dtype=np.int64)
        return {
            "predicted": predicted,
            "correct": (predicted == requested).astype(np.float64),
            "abs_error": np.abs(predicted - requested).astype(np.float64),
        }

    def score(self, texts: Sequence[str], requested: Sequence[int]) -> dict:
        """Accuracy, balanced accuracy and mean absolute error of predicted vs requested ratings.

        Balanced accuracy is the mean over the requested ratings present of the
        accuracy within each: with ~80 % 5-star requests, plain accuracy
        rewards a model that always writes a 5-star review; this does not.
        """
        s = self.per_sample(texts, requested)
        n = len(s["correct"])
        if n == 0:
            nan = float("nan")
            return {"accuracy": nan, "balanced_accuracy": nan, "mae": nan, "n": 0}
        want = np.asarray(list(requested))
        per_rating = [s["correct"][want == r].mean() for r in np.unique(want)]
        return {
            "accuracy": float(s["correct"].mean()),
            "balanced_accuracy": float(np.mean(per_rating)),
            "mae": float(s["abs_error"].mean()),
            "n": n,
        }

    def save(self, path: str | Path) -> Path:
        """Save the fitted classifier to a `.joblib` file, atomically."""
        self._fitted()
        return tc.save(
            {"C": self.C, "max_rows": self.max_rows, "seed": self.seed, "pipeline": self.pipeline},
            path,
            kind=self.kind,
        )

    @classmethod
    def load(cls, path: str | Path) -> RatingClassifier:
        """Load a classifier written by `save`."""
        state = tc.load(path, kind=cls.kind)
        clf = cls(C=state["C"], max_rows=state["max_rows"], seed=state["seed"])
        clf.pipeline = state["pipeline"]
        return clf

    def _fitted(self):
        if self.pipeline is None:
            raise UserError("The rating classifier is not fitted: call fit(texts, ratings) or load(path) first.")
        return self.pipeline


def _check_ratings(ratings: Sequence[int], n: int) -> np.ndarray:
    values = np.asarray(list(ratings))
    if len(values) != n:
        raise ValueError(f"Need one rating per text. Received: {n} texts and {len(values)} ratings")
    if n and (values.dtype.kind not in "iuf" or not np.isin(values, RATINGS).all()):
        bad = [v for v in values.tolist() if v not in RATINGS][:5]
        raise UserError(f"Ratings must be integers 1–5. Received: {bad}")
    return values.astype(np.int64)
