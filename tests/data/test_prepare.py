"""The prepare stage: cleaning counts, split by organisation, keywords, prompts, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kit.cli import main
from kit.data.keywords import lemmatize
from kit.data.prepare import PrepareOptions, load_prepared, load_rubrics, load_stats, prepare
from kit.data.prompt import build_prompt
from kit.data.tskv import Record, write_tskv
from kit.errors import DataError, UserError

NOUNS = ["кофе", "завтрак", "номер", "персонал", "парковка", "касса", "десерт", "бассейн", "очередь", "музей"]
GOOD = ["Отличный {n}, всё понравилось, рекомендую", "Прекрасный {n}, придём ещё не раз"]
BAD = ["Ужасный {n}, больше никогда сюда не приду, очень жаль", "Плохой {n}, всё испортили, не советую"]


def corpus(n: int = 400) -> list[Record]:
    """Deterministic reviews over ~80 organisations, a few per organisation."""
    records = []
    for i in range(n):
        rating = (5, 5, 5, 4, 1, 3, 2, 5)[i % 8]
        noun = NOUNS[i % len(NOUNS)]
        template = (GOOD if rating >= 4 else BAD)[i % 2]
        text = template.format(n=noun) + f". Визит номер {i}, {NOUNS[(i * 7) % len(NOUNS)]} тоже запомнился."
        org = i % 80
        records.append(
            Record(
                address=f"Москва, улица Ленина, {org}",
                name_ru=None if org == 7 else f"Место {org}",
                rating=rating,
                rubrics=(("Кафе", "Ресторан") if org % 3 else ("Гостиница",)),
                text=text,
            )
        )
    return records


@pytest.fixture
def raw(tmp_path) -> Path:
    records = corpus()
    records.append(Record("Омск", "X", 0, ("Кафе",), "Оценки нет, но отзыв длинный"))  # rating 0
    records.append(records[0])  # an exact duplicate
    records.append(Record("Омск", "Y", 5, ("Кафе",), "Коротко"))  # too short
    path = tmp_path / "raw.tskv"
    write_tskv(path, records)
    return path


def files_of(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_prepare_writes_splits_stats_and_vocabulary(raw, tmp_path):
    out = tmp_path / "prepared"
    stats = prepare(str(raw), out, options=PrepareOptions(val_share=0.15, test_share=0.15), progress=False)
    ds = load_prepared(out)
    assert set(ds) == {"train", "validation", "test"}
    assert stats["counts"]["dropped"] == {
        "rating_0": 1,
        "empty_text": 0,
        "too_short": 1,
        "too_long": 0,
        "duplicate_text": 1,
    }
    assert stats["counts"]["kept"] == 400 == sum(stats["splits"].values())
    assert {k: len(v) for k, v in ds.items()} == stats["splits"]
    assert all(stats["splits"][s] > 0 for s in ("train", "validation", "test"))
    on_disk = load_stats(out)
    assert on_disk["fingerprint"] and "timings_s" not in on_disk
    assert on_disk["splits"] == stats["splits"]
    assert load_rubrics(out) == {"Кафе": 265, "Ресторан": 265, "Гостиница": 135}
    assert set(stats["length_chars"]) >= {"p5", "p50", "p95", "mean", "max"}
    # the corpus' negative templates are longer; stats must show it per rating
    assert on_disk["mean_chars_by_rating"]["1"] > on_disk["mean_chars_by_rating"]["5"]
    assert set(on_disk["ratings"]["all"]) == {"1", "2", "3", "4", "5"}


def test_no_organisation_in_two_splits(raw, tmp_path):
    prepare(str(raw), tmp_path / "p", options=PrepareOptions(val_share=0.2, test_share=0.2), progress=False)
    ds = load_prepared(tmp_path / "p")
    orgs = {s: set(ds[s]["org_id"]) for s in ds}
    assert not orgs["train"] & orgs["validation"]
    assert not orgs["train"] & orgs["test"]
    assert not orgs["validation"] & orgs["test"]


def test_rows_carry_keywords_prompt_and_target(raw, tmp_path):
    prepare(str(raw), tmp_path / "p", options=PrepareOptions(val_share=0.2, test_share=0.2), progress=False)
    ds = load_prepared(tmp_path / "p")
    for row in ds["test"]:
        # test prompts carry every field the row has
        assert row["prompt"] == build_prompt(
            rubrics=row["rubrics"],
            rating=row["rating"],
            keywords=row["keywords"],
            name=row["name_ru"],
            address=row["address"],
        )
        assert row["target"] == row["text"] + "<end_of_turn>"
    train = ds["train"]
    lemmas_ok = all(set(r["keywords"]) <= set(lemmatize(r["text"])) for r in train)
    assert lemmas_ok
    assert sum(bool(r["keywords"]) for r in train) > 0.9 * len(train)
    # some train prompts leave optional fields out, so partial requests work
    assert any("Адрес:" not in p for p in train["prompt"])
    assert any("Адрес:" in p for p in train["prompt"])
    assert all(p.endswith("<start_of_turn>model\n") for p in train["prompt"])


def test_prepare_twice_is_byte_identical(raw, tmp_path):
    prepare(str(raw), tmp_path / "a", progress=False)
    prepare(str(raw), tmp_path / "b", progress=False)
    a, b = files_of(tmp_path / "a"), files_of(tmp_path / "b")
    assert a.keys() == b.keys() and a == b
    prepare(str(raw), tmp_path / "c", options=PrepareOptions(seed=1), progress=False)
    assert files_of(tmp_path / "c") != a


def test_balance_rating_equalises_train(raw, tmp_path):
    stats = prepare(str(raw), tmp_path / "p", options=PrepareOptions(balance="rating"), progress=False)
    counts = stats["ratings"]["train"]
    assert len(set(counts.values())) == 1, counts
    assert stats["counts"]["balanced_away"] > 0


def test_max_rows_limits_reading(raw, tmp_path):
    stats = prepare(str(raw), tmp_path / "p", options=PrepareOptions(max_rows=100), progress=False)
    assert stats["counts"]["records_read"] == 100


def test_bad_lines_fail_or_are_listed(raw, tmp_path, capsys):
    lines = raw.read_text(encoding="utf-8").splitlines()
    lines.insert(3, "address=Омск\trating=9.\trubrics=Кафе\ttext=Слишком много звёзд")
    lines.insert(10, "нет полей вообще")
    bad = tmp_path / "bad.tskv"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.tskv:4: rating must be between 0 and 5"):
        prepare(str(bad), tmp_path / "p", progress=False)
    assert not (tmp_path / "p").exists()  # nothing half-written

    stats = prepare(str(bad), tmp_path / "p", options=PrepareOptions(on_error="skip"), progress=False)
    assert [s["line"] for s in stats["skipped_lines"]] == [4, 11]
    assert load_stats(tmp_path / "p")["skipped_lines"][1]["reason"].startswith("field 1 has no '='")

    code = main(["data", "prepare", "--input", str(bad), "--out", str(tmp_path / "q"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().count("\n") == 0 and "bad.tskv:4:" in err and "Traceback" not in err


def test_failed_prepare_keeps_the_previous_output(raw, tmp_path):
    out = tmp_path / "p"
    prepare(str(raw), out, progress=False)
    before = files_of(out)
    empty = tmp_path / "empty.tskv"
    write_tskv(empty, [Record("Омск", "X", 0, ("Кафе",), "Только нулевые оценки тут")])
    with pytest.raises(UserError, match="No usable reviews"):
        prepare(str(empty), out, progress=False, overwrite=True)
    assert files_of(out) == before


def test_option_and_path_errors(tmp_path):
    with pytest.raises(UserError, match="--val-share must be between 0 and 0.5, received 0.9"):
        PrepareOptions(val_share=0.9)
    with pytest.raises(UserError, match=r"--val-share \+ --test-share must be below 1"):
        PrepareOptions(val_share=0.5, test_share=0.5)
    with pytest.raises(UserError, match="--balance must be one of none, rating, received 'rubric'"):
        PrepareOptions(balance="rubric")
    with pytest.raises(UserError, match="--max-rows must be ≥ 1, received 0"):
        PrepareOptions(max_rows=0)
    with pytest.raises(UserError, match="kit data prepare"):
        load_prepared(tmp_path / "missing")


def test_cli_prepare_success_and_usage_errors(raw, tmp_path, capsys):
    assert main(["data", "prepare", "--input", str(raw), "--out", str(tmp_path / "p"), "--quiet"]) == 0
    assert "Prepared" in capsys.readouterr().out
    assert main(["data", "prepare", "--input", str(tmp_path / "nope.tskv"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "nope.tskv" in err and "kit data synth" in err
    assert main(["data", "prepare", "--input", str(raw), "--out", str(tmp_path / "x"), "--max-rows", "0"]) == 2
    assert "--max-rows" in capsys.readouterr().err
    stats = json.loads((tmp_path / "p" / "stats.json").read_text(encoding="utf-8"))
    assert stats["input"] == str(raw)
    assert stats["synthetic"] is False


SAMPLE = Path(__file__).resolve().parents[2] / "data/sample/geo-reviews-sample.tskv"


def test_committed_sample_prepares_byte_identically_twice(tmp_path, capsys):
    """The README's `kit data prepare --input data/sample/... --out data/prepared`, twice."""
    for name in ("a", "b"):
        assert main(["data", "prepare", "--input", str(SAMPLE), "--out", str(tmp_path / name), "--quiet"]) == 0
    assert "from the SYNTHETIC sample" in capsys.readouterr().out
    a, b = files_of(tmp_path / "a"), files_of(tmp_path / "b")
    assert a == b
    stats = load_stats(tmp_path / "a")
    assert stats["synthetic"] is True
    assert stats["counts"]["dropped"]["rating_0"] >= 2 and stats["counts"]["dropped"]["duplicate_text"] >= 3
    assert min(stats["splits"].values()) > 200
    # the synthetic sample's negative reviews are longer, as in the real data
    assert stats["mean_chars_by_rating"]["1"] > stats["mean_chars_by_rating"]["5"]
    assert stats["keywords"]["mean_per_review"] > 2


def test_an_empty_split_still_loads(raw, tmp_path):
    prepare(str(raw), tmp_path / "p", options=PrepareOptions(test_share=0.0), progress=False)
    ds = load_prepared(tmp_path / "p")
    assert ds["test"].num_rows == 0 and ds["train"].num_rows > 0
    assert ds["test"].column_names == ds["train"].column_names
