"""The TSKV reader/writer: exact real format, escapes, every malformed-line kind."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kit.data.tskv import (
    ReadReport,
    Record,
    escape,
    format_record,
    read_parquet,
    read_records,
    read_tskv,
    unescape,
    write_tskv,
)
from kit.errors import DataError, UserError

REAL_LINE = (
    "address=Екатеринбург, ул. Московская / ул. Волгоградская / ул. Печатников\t"
    "name_ru=Московский квартал\trating=3.\trubrics=Жилой комплекс\t"
    "text=Московский квартал 2.\\nШумно : летом по ночам дикие гонки.\\n"
    "Грязно : кругом стройки"
)


def write(tmp_path, content: bytes | str, name: str = "r.tskv"):
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def test_reads_a_real_line(tmp_path):
    (rec,) = read_tskv(write(tmp_path, REAL_LINE + "\n"))
    assert rec.name_ru == "Московский квартал"
    assert rec.rating == 3
    assert rec.rubrics == ("Жилой комплекс",)
    assert rec.text.splitlines() == [
        "Московский квартал 2.",
        "Шумно : летом по ночам дикие гонки.",
        "Грязно : кругом стройки",
    ]


def test_writer_produces_the_real_format(tmp_path):
    (rec,) = read_tskv(write(tmp_path, REAL_LINE + "\n"))
    assert format_record(rec) == REAL_LINE


@pytest.mark.parametrize("raw, expected", [("5.", 5), ("5", 5), ("4.0", 4), ("0.", 0), (" 1 ", 1)])
def test_rating_forms(tmp_path, raw, expected):
    line = f"address=Омск\trating={raw}\trubrics=Кафе\ttext=Хорошо\n"
    assert next(read_tskv(write(tmp_path, line))).rating == expected


def test_rubrics_split_and_name_optional(tmp_path):
    line = "address=Омск\trating=5.\trubrics=Супермаркет;Магазин продуктов\ttext=Ок\n"
    rec = next(read_tskv(write(tmp_path, line)))
    assert rec.rubrics == ("Супермаркет", "Магазин продуктов")
    assert rec.name_ru is None


def test_escapes_decode():
    assert unescape(r"a\nb\tc\\d\re") == "a\nb\tc\\d\re"
    assert unescape(r"\\n") == "\\n"  # an escaped backslash followed by n
    assert unescape(r"C:\path") == r"C:\path"  # unknown escape kept as is
    assert escape("a\\nb") == r"a\\nb"


def test_bom_and_crlf_accepted(tmp_path):
    content = b"\xef\xbb\xbf" + "address=Омск\trating=5.\trubrics=Кафе\ttext=Раз\r\n".encode()
    content += "address=Томск\trating=4\trubrics=Бар\ttext=Два\r\n".encode()
    recs = list(read_tskv(write(tmp_path, content)))
    assert [r.address for r in recs] == ["Омск", "Томск"]
    assert [r.text for r in recs] == ["Раз", "Два"]


def test_blank_lines_are_ignored_and_line_numbers_stay_true(tmp_path):
    content = "\naddress=Омск\trating=5.\trubrics=Кафе\ttext=Раз\n\naddress=Омск\trating=5.\n"
    with pytest.raises(DataError) as e:
        list(read_tskv(write(tmp_path, content)))
    assert e.value.line == 4


BAD_LINES = {
    "no_equals": ("address=Омск\trating=5.\trubrics\ttext=Раз", "field 3 has no '='"),
    "missing_address": ("rating=5.\trubrics=Кафе\ttext=Раз", "missing field 'address'"),
    "missing_rating": ("address=Омск\trubrics=Кафе\ttext=Раз", "missing field 'rating'"),
    "missing_rubrics": ("address=Омск\trating=5.\ttext=Раз", "missing field 'rubrics'"),
    "missing_text": ("address=Омск\trating=5.\trubrics=Кафе", "missing field 'text'"),
    "rating_not_number": ("address=Омск\trating=пять\trubrics=Кафе\ttext=Раз", "rating is not a number"),
    "rating_too_high": ("address=Омск\trating=6.\trubrics=Кафе\ttext=Раз", "between 0 and 5"),
    "rating_negative": ("address=Омск\trating=-1\trubrics=Кафе\ttext=Раз", "between 0 and 5"),
    "rating_fraction": ("address=Омск\trating=4.5\trubrics=Кафе\ttext=Раз", "whole number"),
    "empty_text": ("address=Омск\trating=5.\trubrics=Кафе\ttext=  ", "text is empty"),
    "empty_address": ("address=\trating=5.\trubrics=Кафе\ttext=Раз", "address is empty"),
    "empty_rubrics": ("address=Омск\trating=5.\trubrics=;\ttext=Раз", "rubrics is empty"),
}


@pytest.mark.parametrize("kind", sorted(BAD_LINES))
def test_each_malformed_kind_fails_with_file_and_line(tmp_path, kind):
    bad, reason = BAD_LINES[kind]
    good = "address=Омск\trating=5.\trubrics=Кафе\ttext=Хорошо"
    path = write(tmp_path, f"{good}\n{bad}\n{good}\n")
    with pytest.raises(DataError) as e:
        list(read_tskv(path))
    assert str(e.value).startswith(f"{path}:2: ")
    assert reason in str(e.value)
    assert "\n" not in str(e.value)


def test_undecodable_bytes_reported(tmp_path):
    good = "address=Омск\trating=5.\trubrics=Кафе\ttext=Хорошо\n".encode()
    bad = b"address=\xff\xfe\trating=5.\trubrics=Cafe\ttext=x\n"
    path = write(tmp_path, good + bad)
    with pytest.raises(DataError, match=r":2: line is not valid UTF-8 \(byte 0xff at column 9\)"):
        list(read_tskv(path))


def test_skip_mode_lists_every_bad_line(tmp_path):
    good = "address=Омск\trating=5.\trubrics=Кафе\ttext=Хорошо"
    lines = [good, BAD_LINES["no_equals"][0], good, BAD_LINES["rating_too_high"][0], good]
    report = ReadReport("x")
    recs = list(read_tskv(write(tmp_path, "\n".join(lines) + "\n"), on_error="skip", report=report))
    assert len(recs) == 3
    assert [b.line for b in report.skipped] == [2, 4]
    assert "between 0 and 5" in report.skipped[1].reason
    assert report.lines == 5 and report.records == 3


def test_missing_file_and_bad_policy(tmp_path):
    with pytest.raises(UserError, match="not found"):
        list(read_tskv(tmp_path / "none.tskv"))
    with pytest.raises(UserError, match="--on-error"):
        list(read_tskv(tmp_path / "none.tskv", on_error="ignore"))
    with pytest.raises(UserError, match="Unsupported input format"):
        read_records(tmp_path / "x.csv")


def test_parquet_hub_layout(tmp_path):
    path = tmp_path / "hub.parquet"
    pd.DataFrame(
        {
            "address": ["Омск", "Томск", "Казань"],
            "name_ru": ["Кафе", None, "Бар"],
            "rating": [5, 3, 9],
            "rubrics": ["Кафе;Ресторан", "Бар", "Бар"],
            "text": ["Вкусно\nочень", "Нормально", "Плохо"],
        }
    ).to_parquet(path)
    report = ReadReport(str(path))
    recs = list(read_parquet(path, on_error="skip", report=report))
    assert [r.rubrics for r in recs] == [("Кафе", "Ресторан"), ("Бар",)]
    assert recs[0].text == "Вкусно\nочень" and recs[1].name_ru is None
    assert [b.line for b in report.skipped] == [3]
    with pytest.raises(DataError, match=r"hub.parquet:3: rating must be between 0 and 5"):
        list(read_records(path))


# ---------------------------------------------------------------- property: write → read


def _no_surrounding_blank(s: str) -> bool:
    return bool(s.strip())


text_chars = st.characters(blacklist_categories=("Cs",))  # any unicode but lone surrogates
values = st.text(text_chars, min_size=1, max_size=60).filter(_no_surrounding_blank)
rubric = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=";"), min_size=1, max_size=20)
records = st.builds(
    Record,
    address=values,
    name_ru=st.none() | values,
    rating=st.integers(0, 5),
    rubrics=st.lists(rubric.filter(lambda r: r.strip() == r and r), min_size=1, max_size=4).map(tuple),
    text=values,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(records, min_size=1, max_size=5))
def test_any_record_survives_write_then_read(tmp_path_factory, recs):
    path = tmp_path_factory.mktemp("prop") / "r.tskv"
    write_tskv(path, recs)
    assert list(read_tskv(path)) == recs


def test_parquet_missing_column_and_broken_file(tmp_path):
    path = tmp_path / "cols.parquet"
    pd.DataFrame({"address": ["Омск"], "rating": [5], "text": ["Да"]}).to_parquet(path)
    with pytest.raises(UserError, match="no column 'rubrics'"):
        read_parquet(path)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(UserError, match="Cannot read .*broken.parquet as parquet"):
        read_parquet(broken)


def test_missing_file_is_reported_before_iteration(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_tskv(tmp_path / "none.tskv")  # no list(): the call itself fails
