"""The synthetic sample generator: determinism, format, statistics, predictability."""

from __future__ import annotations

import random
import re
import statistics
from collections import Counter
from pathlib import Path

import pytest

from kit.data.synth import places as synth_places
from kit.data.synth import sample as synth
from kit.data.synth.sample import (
    PROFILES,
    generate_records,
    planted_counts,
    rubric_group,
    write_sample,
)
from kit.data.tskv import read_tskv
from kit.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample" / "geo-reviews-sample.tskv"
# Counts of the real file (docs/design.md) that the rubric weights reproduce.
REAL_TOP_RUBRICS = {"Гостиница": 42236, "Ресторан": 14613, "Кафе": 12363, "Супермаркет": 8891,
                    "Магазин продуктов": 5284, "Музей": 5003, "Быстрое питание": 4900}  # fmt: skip


@pytest.fixture(scope="module")
def big() -> list:
    return list(generate_records(20_000, seed=0))


@pytest.fixture(scope="module")
def small() -> list:
    return list(generate_records(5_000, seed=0))


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path):
    a, b, c = tmp_path / "a.tskv", tmp_path / "b.tskv", tmp_path / "c.tskv"
    assert write_sample(a, rows=2000, seed=5) == 2000
    write_sample(b, rows=2000, seed=5)
    write_sample(c, rows=2000, seed=6)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_file_reads_back_line_for_line(tmp_path):
    path = tmp_path / "s.tskv"
    write_sample(path, rows=3000, seed=1)
    raw = path.read_bytes()
    assert raw.endswith(b"\n") and raw.count(b"\n") == 3000  # newlines in texts are escaped
    assert list(read_tskv(path)) == list(generate_records(3000, seed=1))
    assert b"\trating=5.\t" in raw and b"\\n" in raw


def test_committed_sample_is_what_the_command_writes(tmp_path):
    # Guards the README's claim: `kit data synth --rows 5000 --seed 0` makes this file.
    assert SAMPLE.is_file(), "run: kit data synth --out data/sample/geo-reviews-sample.tskv --rows 5000 --seed 0"
    fresh = tmp_path / "fresh.tskv"
    write_sample(fresh, rows=5000, seed=0)
    assert SAMPLE.read_bytes() == fresh.read_bytes()


def test_cli_writes_the_same_file(tmp_path, capsys):
    from kit.cli import main

    out = tmp_path / "cli.tskv"
    assert main(["data", "synth", "--out", str(out), "--rows", "300", "--seed", "2"]) == 0
    assert "Wrote 300 synthetic reviews" in capsys.readouterr().out
    ref = tmp_path / "ref.tskv"
    write_sample(ref, rows=300, seed=2)
    assert out.read_bytes() == ref.read_bytes()


def test_rating_shares_match_the_real_data(big):
    counts = Counter(r.rating for r in big)
    for rating, share in synth.RATING_SHARES.items():
        assert abs(counts[rating] / len(big) - share) < 0.01, (rating, counts[rating])


@pytest.mark.parametrize("rows", [5_000, 20_000])
def test_planted_rows_are_there(rows, big, small):
    records = big if rows == 20_000 else small
    plan = planted_counts(rows)
    assert plan["zero"] >= 2 and plan["noname"] >= 1 and plan["dup"] >= 3
    assert sum(r.rating == 0 for r in records) == plan["zero"]
    assert sum(r.name_ru is None for r in records) == plan["noname"]
    # Exactly the planted duplicates: every other text is unique.
    assert len(records) - len({r.text for r in records}) == plan["dup"]


def test_planted_counts_follow_real_rates():
    assert planted_counts(500_000) == {"zero": 200, "noname": 970, "dup": 115}
    assert planted_counts(5) == {"zero": 0, "noname": 0, "dup": 0}
    assert len(list(generate_records(1, seed=0))) == 1


def test_rubric_weights_reproduce_real_top_counts():
    totals: Counter[str] = Counter()
    for rubric_str, group, weight, chains in synth_places.RUBRIC_ENTRIES:
        assert group in synth_places.GROUPS
        assert sum(w for _, w in chains) < weight
        for rubric in rubric_str.split(";"):
            totals[rubric] += weight
    for rubric, real in REAL_TOP_RUBRICS.items():
        assert totals[rubric] == real, rubric
    top = [r for r, _ in totals.most_common(len(REAL_TOP_RUBRICS))]
    assert top == list(REAL_TOP_RUBRICS)
    assert len(totals) >= 25 and len(synth_places.GROUPS) >= 10


def test_rubrics_names_and_chains(big):
    rubrics = Counter(x for r in big for x in r.rubrics)
    assert rubrics.most_common(1)[0][0] == "Гостиница"
    strings = {r.rubrics_str for r in big}
    for multi in (
        "Кафе;Ресторан",
        "Супермаркет;Магазин продуктов",
        "Быстрое питание;Кафе",
        "Гостиница;Хостел",
    ):
        assert multi in strings
    names = Counter(r.name_ru for r in big if r.name_ru)
    assert names.most_common(1)[0][0] == "Пятёрочка"
    assert 0.008 < names["Пятёрочка"] / len(big) < 0.016
    for chain in (
        "Пятёрочка",
        "Магнит",
        "Перекрёсток",
        "ВкусВилл",
        "Шоколадница",
        "KFC",
        "Вкусно — и точка",
        "Додо Пицца",
        "Ригла",
    ):
        branches = {r.address for r in big if r.name_ru == chain}
        assert len(branches) >= 0.4 * names[chain] and len(branches) >= 10, chain


def test_organisations_have_several_reviews(big):
    orgs = Counter((r.name_ru, r.address) for r in big if r.name_ru)
    assert 1.7 < len(big) / len(orgs) < 4
    assert sum(n >= 5 for n in orgs.values()) >= 100
    # No single independent place outweighs the top chain.
    assert max(n for (name, _), n in orgs.items()) < 60


def test_addresses_look_russian(big):
    pattern = re.compile(r"^(?:[А-ЯЁ][^,]+, )?[А-ЯЁ][^,]+, [^,]+, \d+(?:к\d|[АБВ]|с\d|, корп\. \d)?$")
    assert all(pattern.match(r.address) for r in big), [r.address for r in big if not pattern.match(r.address)][:5]
    addresses = [r.address for r in big]
    assert any(a.startswith("Москва, ") for a in addresses)
    assert any(a.startswith("Санкт-Петербург, ") for a in addresses)
    assert any(a.startswith("Республика Татарстан, Казань, ") for a in addresses)
    assert any(a.startswith("Московская область, ") for a in addresses)


def test_lengths_negative_longer_and_paragraphs(big):
    lengths = {k: statistics.mean(len(r.text) for r in big if r.rating == k) for k in range(1, 6)}
    assert min(lengths[1], lengths[2]) > 1.2 * max(lengths[4], lengths[5])
    median = statistics.median(len(r.text) for r in big)
    assert 250 < median < 450
    assert max(len(r.text) for r in big) > 1200
    share = sum("\n" in r.text for r in big) / len(big)
    assert 0.03 < share < 0.3


def test_every_template_renders_for_every_rubric():
    rng = random.Random(0)
    for rubric_str, profile in PROFILES.items():
        aspects = [*profile.aspects, profile.open, profile.close]
        if profile.must:
            aspects.append(profile.must)
        assert profile.specific, rubric_str
        for aspect in aspects:
            for sentiment in ("pos", "mix", "neg"):
                assert aspect[sentiment], (rubric_str, sentiment)
                for template in aspect[sentiment]:
                    text = synth.render_template(rng, template, profile.fillers)
                    assert "{" not in text and "}" not in text and "  " not in text
                    assert text[0].isupper() and text[-1] in ".!…»", (rubric_str, text)


def test_texts_name_concrete_nouns(small):
    from kit.data.keywords import KeywordExtractor

    texts = [r.text for r in small[:1500]]
    kx = KeywordExtractor().fit(texts)
    with_keywords = sum(len(kx.extract(t, k=3)) >= 2 for t in texts)
    assert with_keywords / len(texts) > 0.95


def test_rating_and_group_are_predictable_from_text():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score

    # A seed the other tests do not use, so the classifier sees fresh texts.
    records = [r for r in generate_records(5_200, seed=11) if r.rating][:5_000]
    train, test = records[:4_000], records[4_000:]
    vec = TfidfVectorizer(min_df=2, sublinear_tf=True)
    x_train = vec.fit_transform(r.text for r in train)
    x_test = vec.transform(r.text for r in test)

    def rating_class(r):
        return "1-2" if r.rating <= 2 else "3" if r.rating == 3 else "4-5"

    for label in (rating_class, lambda r: rubric_group(r.rubrics)):
        y_train, y_test = [label(r) for r in train], [label(r) for r in test]
        model = LogisticRegression(max_iter=1000, class_weight="balanced").fit(x_train, y_train)
        score = balanced_accuracy_score(y_test, model.predict(x_test))
        # The majority baseline has balanced accuracy 1 / n_classes (≤ 0.34 here).
        assert score >= 0.7, (label, score)


@pytest.mark.parametrize("rows", [0, -3, 2.5, True])
def test_bad_rows_is_a_user_error(rows, tmp_path):
    with pytest.raises(UserError, match="positive integer"):
        write_sample(tmp_path / "x.tskv", rows=rows, seed=0)
    with pytest.raises(UserError, match="positive integer"):
        list(generate_records(rows))
    assert not (tmp_path / "x.tskv").exists()


def test_missing_output_directory_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        write_sample(tmp_path / "no" / "x.tskv", rows=10, seed=0)


def test_rubric_group_rejects_unknown_strings():
    assert rubric_group("Кафе;Ресторан") == "food"
    with pytest.raises(KeyError):
        rubric_group("Планетарий")
