"""The control judges: a rating and a rubric classifier fitted on the train split, cached on disk."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

from kit.metrics import RatingClassifier, RubricClassifier

JUDGES_DIR = "judges"  # inside the prepared data dir, next to the splits it was fitted on


def load_judges(data_dir: str | Path, train, *, progress: bool = False):
    """The rating and rubric classifiers fitted on `train`, cached in `<data_dir>/judges/`.

    The cache file name carries a digest of the train texts, ratings and rubrics,
    so re-prepared data never meets a stale judge; files are written atomically.
    """
    digest = hashlib.sha256()
    for t, r, rub in zip(train["text"], train["rating"], train["rubrics"], strict=True):
        digest.update(f"{t}\x1f{r}\x1f{';'.join(rub)}\x1e".encode())
    key = digest.hexdigest()[:16]
    cache = Path(data_dir) / JUDGES_DIR
    judges = []
    for cls, fit_args in ((RatingClassifier, ("text", "rating")), (RubricClassifier, ("text", "rubrics"))):
        path = cache / f"{cls.kind.lower()}-{key}.joblib"
        if path.is_file():
            judges.append(cls.load(path))
            continue
        if progress:
            print(f"Fitting the {cls.kind} on {train.num_rows} train reviews (cached in {cache})")
        clf = cls().fit(
            list(train[fit_args[0]]), [list(x) if isinstance(x, list) else int(x) for x in train[fit_args[1]]]
        )
        # A read-only data dir: the judge still works, it is only refitted next time.
        with contextlib.suppress(OSError):
            clf.save(path)
        judges.append(clf)
    return judges[0], judges[1]
