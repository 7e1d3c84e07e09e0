"""Control judges: the rating and rubric classifiers on the synthetic sample.

The sample is prepared in-test (data/sample → tmp dir, ~1.5 s) so the test
does not depend on whatever is in data/prepared. Fitting both classifiers on
its ~4.5k train reviews takes a few seconds; they are module-scoped.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from kit.data.prepare import load_prepared, prepare
from kit.errors import UserError
from kit.metrics import RatingClassifier, RubricClassifier, load_metric

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "geo-reviews-sample.tskv"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("metrics") / "prepared"
    prepare(str(SAMPLE), out, progress=False)
    return load_prepared(out)


@pytest.fixture(scope="module")
def rating_clf(sample):
    return RatingClassifier().fit(sample["train"]["text"], sample["train"]["rating"])


@pytest.fixture(scope="module")
def rubric_clf(sample):
    return RubricClassifier().fit(sample["train"]["text"], sample["train"]["rubrics"])


def test_rating_classifier_beats_majority_baseline_on_test_references(sample, rating_clf):
    test = sample["test"]
    ratings = np.array(test["rating"])
    majority = Counter(sample["train"]["rating"]).most_common(1)[0][0]
    baseline_acc = float((ratings == majority).mean())
    baseline_mae = float(np.abs(ratings - majority).mean())

    ceiling = rating_clf.score(test["text"], ratings)
    print(
        f"\nrating classifier on {ceiling['n']} test references: accuracy {ceiling['accuracy']:.4f} "
        f"(majority baseline {baseline_acc:.4f}), balanced accuracy {ceiling['balanced_accuracy']:.4f} "
        f"(baseline 0.2), MAE {ceiling['mae']:.4f} (baseline {baseline_mae:.4f})"
    )
    assert ceiling["accuracy"] >= baseline_acc + 0.08
    assert ceiling["mae"] <= baseline_mae / 2
    assert ceiling["balanced_accuracy"] >= 0.6  # the majority baseline scores 0.2 here
    # Minority ratings are recognised too, not only the 5-star majority.
    negative = ratings <= 2
    assert (rating_clf.predict(list(np.array(test["text"])[negative])) <= 3).mean() >= 0.8


def test_rating_control_drops_when_texts_ignore_the_request(sample, rating_clf):
    # A "model" that writes the right review for the wrong request: accuracy must fall.
    test = sample["test"]
    shifted = [r % 5 + 1 for r in test["rating"]]
    obeyed = rating_clf.score(test["text"], test["rating"])["accuracy"]
    ignored = rating_clf.score(test["text"], shifted)
    assert ignored["accuracy"] < obeyed - 0.5
    assert ignored["mae"] > 1.0


def test_rating_classifier_save_load_round_trip(sample, rating_clf, tmp_path):
    texts = sample["test"]["text"][:40]
    path = rating_clf.save(tmp_path / "judges" / "rating.joblib")
    assert sorted(p.name for p in path.parent.iterdir()) == ["rating.joblib"]  # no temp file left
    loaded = RatingClassifier.load(path)
    assert loaded.predict(texts).tolist() == rating_clf.predict(texts).tolist()

    with pytest.raises(UserError, match="must end in .joblib. Received: path="):
        rating_clf.save(tmp_path / "rating.pkl")
    with pytest.raises(UserError, match="RatingClassifier not found: .*missing.joblib"):
        RatingClassifier.load(tmp_path / "missing.joblib")
    with pytest.raises(UserError, match="is not a RubricClassifier file"):
        RubricClassifier.load(path)
    (tmp_path / "broken.joblib").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="Could not read RatingClassifier file"):
        RatingClassifier.load(tmp_path / "broken.joblib")


def test_rating_classifier_input_errors():
    with pytest.raises(UserError, match="not fitted"):
        RatingClassifier().predict(["Отлично"])
    with pytest.raises(UserError, match="at least 2 different ratings"):
        RatingClassifier().fit(["Отлично", "Супер"], [5, 5])
    with pytest.raises(UserError, match=r"Ratings must be integers 1–5. Received: \[0\]"):
        RatingClassifier().fit(["Отлично", "Плохо"], [5, 0])
    with pytest.raises(ValueError, match="one rating per text"):
        RatingClassifier().fit(["Отлично"], [5, 1])


def test_rubric_classifier_top3_on_test_references(sample, rubric_clf):
    test, train = sample["test"], sample["train"]
    result = rubric_clf.score(test["text"], test["rubrics"])
    # Baseline: always answer the 3 most frequent train rubrics.
    top3 = {r for r, _ in Counter(r for rs in train["rubrics"] for r in rs).most_common(3)}
    baseline = np.mean([bool(set(rs) & top3) for rs in test["rubrics"]])
    top1 = rubric_clf.score(test["text"], test["rubrics"], k=1)["top1_hit_rate"]
    print(
        f"\nrubric classifier on {result['n']} test references ({result['skipped']} skipped, "
        f"{len(rubric_clf.rubrics)} rubrics): top-3 hit rate {result['top3_hit_rate']:.4f} "
        f"(most-frequent-3 baseline {baseline:.4f}), top-1 {top1:.4f}"
    )
    assert result["top3_hit_rate"] >= 0.9
    assert result["top3_hit_rate"] > baseline + 0.3
    assert result["n"] + result["skipped"] == test.num_rows


def test_rubric_classifier_save_load_and_unknown_rubrics(sample, rubric_clf, tmp_path):
    texts = sample["test"]["text"][:30]
    loaded = RubricClassifier.load(rubric_clf.save(tmp_path / "rubric.joblib"))
    assert loaded.top_k(texts) == rubric_clf.top_k(texts)
    assert loaded.rubrics == rubric_clf.rubrics
    # A rubric the judge never saw cannot be judged: skipped, not counted as a miss.
    assert rubric_clf.hits(["Вкусный кофе"], [["Космодром"]]) == [None]
    assert rubric_clf.score(["Вкусный кофе"], [["Космодром"]])["skipped"] == 1
    with pytest.raises(UserError, match="at least 2 rubrics"):
        RubricClassifier().fit(["Кофе", "Чай"], [["Кафе"], ["Кафе"]])


def test_control_evaluate_modules_match_the_classifiers(sample, rating_clf, rubric_clf, tmp_path):
    test = sample["test"].select(range(60))
    rating_path = rating_clf.save(tmp_path / "rating.joblib")
    rubric_path = rubric_clf.save(tmp_path / "rubric.joblib")

    rating = load_metric("rating_control").compute(
        predictions=test["text"], references=test["rating"], classifier=str(rating_path)
    )
    assert rating == pytest.approx(rating_clf.score(test["text"], test["rating"]))

    rubric = load_metric("rubric_top3").compute(
        predictions=test["text"], references=test["rubrics"], classifier=str(rubric_path)
    )
    assert rubric == pytest.approx(rubric_clf.score(test["text"], test["rubrics"]))
