"""Rubric consistency: does a generated review read like a review of the requested kind of place?

The classifier ranks every rubric of its vocabulary for a text; a sample is a
hit when one of the requested rubrics is among the top 3. Top-3 rather than
top-1 because rubrics overlap ("Кафе" / "Ресторан" / "Кофейня",
"Супермаркет" / "Магазин продуктов"): a café review that reads like a
restaurant review is not a failure of control.

Design (a single-label ranker over (review, rubric) pairs, not multi-label):
every rubric of a training review becomes one (text, rubric) example, so a
review of a "Ресторан; Бар, паб" teaches both rubrics and no rubric order is
assumed (the first rubric is not the main one in the source data). The
scores are only used to rank rubrics, which is all top-k needs; a one-vs-rest
multi-label model would fit one classifier per rubric (1,370 on the real data)
for scores that are not comparable across rubrics anyway.

The model is Complement Naive Bayes (Rennie et al., 2003) on the shared
TF-IDF features: a topic ("what kind of place") is carried by content words,
where it is as accurate as logistic regression; it fits in one pass, while a
multinomial logistic regression over 52 rubrics already took ~20 s on the
4.5k-review synthetic train split (and would take hours over the real
1,370 rubrics). On that split: top-3 hit rate 0.99 on validation and 0.96 on
test for CNB vs 0.98 / 0.96 for logistic regression.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kit.errors import UserError
from kit.metrics import text_classifier as tc


class RubricClassifier:
    """Rank rubrics (kinds of place) for a review text.

    Args:
        min_count: Rubrics with fewer training reviews are left out of the
            vocabulary (too few to learn; requests for them are not scored).
        max_rubrics: Keep at most this many most frequent rubrics.
        alpha: Additive smoothing of the Complement Naive Bayes model.
        max_rows: Fit on at most this many reviews (a seeded subset).
        seed: Seed of that subset.

    Example:
        >>> texts = ["Вкусный кофе и десерты", "Чистый номер и завтрак",
        ...          "Свежие продукты и кассы", "Кофе с собой и десерты"] * 3
        >>> rubrics = [["Кафе"], ["Гостиница"], ["Супермаркет"], ["Кофейня", "Кафе"]] * 3
        >>> clf = RubricClassifier(min_count=1).fit(texts, rubrics)
        >>> clf.top_k(["Номер чистый, завтрак вкусный"], k=1)
        [['Гостиница']]
        >>> clf.hits(["Вкусный кофе", "Вкусный кофе"], [["Кафе"], ["Зоопарк"]])
        [1.0, None]
    """

    kind = "RubricClassifier"

    def __init__(
        self,
        *,
        min_count: int = 2,
        max_rubrics: int = 300,
        alpha: float = 0.1,
        max_rows: int | None = 100_000,
        seed: int = 0,
    ):
        self.min_count = min_count
        self.max_rubrics = max_rubrics
        self.alpha = alpha
        self.max_rows = max_rows
        self.seed = seed
        self.pipeline = None

    @property
    def rubrics(self) -> list[str]:
        """The rubric vocabulary, in the classifier's column order."""
        return [str(r) for r in self._fitted().classes_]

    def fit(self, texts: Sequence[str], rubrics: Sequence[Sequence[str]]) -> RubricClassifier:
        """Fit on human reviews and their rubric lists (the train split)."""
        from sklearn.naive_bayes import ComplementNB
        from sklearn.pipeline import make_pipeline

        texts = tc.check_texts(texts, "rubric classifier")
        rubrics = _check_rubrics(rubrics, len(texts))
        rows = tc.subsample(len(texts), self.max_rows, self.seed)
        counts = Counter(r for i in rows for r in set(rubrics[i]))
        # most_common breaks count ties by first occurrence: deterministic for a fixed input.
        vocab = {r for r, c in counts.most_common(self.max_rubrics) if c >= self.min_count}
        pairs = [(texts[i], r) for i in rows for r in dict.fromkeys(rubrics[i]) if r in vocab]
        if len(vocab) < 2:
            raise UserError(
                "The rubric classifier needs at least 2 rubrics with "
                f">= {self.min_count} reviews each. "
                f"Received: {len(texts)} reviews, {len(counts)} rubrics"
            )
        self.pipeline = make_pipeline(tc.tfidf_features(), ComplementNB(alpha=self.alpha))
        self.pipeline.fit([t for t, _ in pairs], [r for _, r in pairs])
        return self

    def top_k(self, texts: Sequence[str], k: int = 3) -> list[list[str]]:
        """The `k` highest-ranked rubrics of each text, best first."""
        texts = tc.check_texts(texts, "rubric classifier")
        if not texts:
            return []
        pipeline = self._fitted()
        scores = pipeline.predict_log_proba(texts)
        # A stable sort on -score: equal scores keep vocabulary order, so ties are deterministic.
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        classes = pipeline.classes_
        return [[str(classes[j]) for j in row] for row in order]

    def hits(self, texts: Sequence[str], requested: Sequence[Sequence[str]], k: int = 3) -> list[float | None]:
        """Per sample: 1.0 if a requested rubric is in the top `k`, else 0.0.

        None when no requested rubric is in the classifier's vocabulary (the
        judge cannot recognise it, so the sample says nothing about control).
        """
        texts = tc.check_texts(texts, "rubric classifier")
        requested = _check_rubrics(requested, len(texts))
        known = set(self.rubrics)
        top = self.top_k(texts, k)
        return [
            (1.0 if set(want) & set(got) else 0.0) if set(want) & known else None
            for want, got in zip(requested, top, strict=True)
        ]

    def score(self, texts: Sequence[str], requested: Sequence[Sequence[str]], k: int = 3) -> dict:
        """Top-`k` hit rate over the scorable samples, with how many were scored and skipped."""
        hits = self.hits(texts, requested, k)
        scored = [h for h in hits if h is not None]
        rate = sum(scored) / len(scored) if scored else float("nan")
        return {f"top{k}_hit_rate": rate, "n": len(scored), "skipped": len(hits) - len(scored)}

    def save(self, path: str | Path) -> Path:
        """Save the fitted classifier to a `.joblib` file, atomically."""
        self._fitted()
        params = {k: getattr(self, k) for k in ("min_count", "max_rubrics", "alpha", "max_rows", "seed")}
        return tc.save({**params, "pipeline": self.pipeline}, path, kind=self.kind)

    @classmethod
    def load(cls, path: str | Path) -> RubricClassifier:
        """Load a classifier written by `save`."""
        state = dict(tc.load(path, kind=cls.kind))
        pipeline = state.pop("pipeline")
        clf = cls(**state)
        clf.pipeline = pipeline
        return clf

    def _fitted(self):
        if self.pipeline is None:
            raise UserError("The rubric classifier is not fitted: call fit(texts, rubrics) or load(path) first.")
        return self.pipeline


def _check_rubrics(rubrics: Sequence[Sequence[str]], n: int) -> list[list[str]]:
    rubrics = [[r] if isinstance(r, str) else list(r) for r in rubrics]
    if len(rubrics) != n:
        raise ValueError(f"Need one rubric list per text. Received: {n} texts and {len(rubrics)} rubric lists")
    return rubrics
