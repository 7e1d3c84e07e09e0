"""What the rating and rubric classifiers share: TF-IDF features, subsampling, save/load.

The control metrics ask "does this generated review read like a 2-star
review of a hotel?". A model judging that must not be the model being judged,
so it is a small, fast, classic text classifier trained on the human reviews
of the train split, and its score on the human test reviews is the ceiling
any generator can reach.

Features are TF-IDF of word 1–2-grams plus character 2–5-grams inside word
boundaries. Character n-grams carry Russian morphology without a
lemmatiser ("грязн" in "грязно", "грязный", "грязью") and survive typos;
word bigrams carry negation ("не понравилось").

Saved files are joblib pickles, written atomically. Like any pickle, load
only files you made: unpickling runs code.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kit.atomic import atomic_path
from kit.errors import UserError

SUFFIX = ".joblib"


def tfidf_features(*, max_word_features: int = 100_000, max_char_features: int = 200_000):
    """Word 1–2-gram + character 2–5-gram TF-IDF features (a scikit-learn FeatureUnion).

    Example:
        >>> f = tfidf_features()
        >>> X = f.fit_transform(["Очень чисто", "Очень грязно", "Грязно и шумно"])
        >>> X.shape[0]
        3
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    # sublinear_tf: a word said five times is not five times the evidence.
    # min_df=2 drops one-off typos and names, which only memorise the train split.
    common = {"sublinear_tf": True, "min_df": 2, "lowercase": True, "dtype": np.float32}
    return FeatureUnion(
        [
            (
                "word",
                TfidfVectorizer(analyzer="word", ngram_range=(1, 2), max_features=max_word_features, **common),
            ),
            (
                "char",
                TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), max_features=max_char_features, **common),
            ),
        ]
    )


def subsample(n: int, max_rows: int | None, seed: int) -> list[int]:
    """Row indices to train on: all `n`, or a seeded sorted subset of `max_rows`.

    The real train split has ~450k reviews; a few tens of thousands are
    plenty for these classifiers and keep fitting to a minute.

    Example:
        >>> subsample(5, None, 0), len(subsample(100, 10, 0))
        ([0, 1, 2, 3, 4], 10)
    """
    if max_rows is None or n <= max_rows:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), max_rows))


def check_texts(texts: Sequence[str], what: str) -> list[str]:
    if isinstance(texts, str):
        raise TypeError(f"Pass a list of texts to the {what}, not a single string.")
    return list(texts)


def save(obj: Any, path: str | Path, *, kind: str) -> Path:
    """Write a fitted classifier's state to `path` (`.joblib`) atomically."""
    import joblib
    import sklearn

    path = Path(path)
    if not path.name.endswith(SUFFIX):
        raise UserError(f"The classifier filename must end in {SUFFIX}. Received: path={path}")
    with atomic_path(path, suffix=SUFFIX) as tmp:
        joblib.dump({"kind": kind, "sklearn_version": sklearn.__version__, "state": obj}, tmp)
    return path


def load(path: str | Path, *, kind: str) -> Any:
    """Read what `save` wrote, checking it is a `kind` classifier."""
    import joblib

    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"{kind} not found: {path}. Fit one on the train split of a prepared dataset "
            f"and save it first ({kind}().fit(...).save(path))."
        )
    try:
        saved = joblib.load(path)
    except Exception as e:  # a truncated or foreign file: say which file, not a pickle traceback
        raise UserError(f"Could not read {kind} file {path}: {e}. Fit and save it again.") from e
    if not isinstance(saved, dict) or saved.get("kind") != kind:
        found = saved.get("kind") if isinstance(saved, dict) else type(saved).__name__
        raise UserError(f"{path} is not a {kind} file (it holds {found!r}). Pass the right file.")
    return saved["state"]
