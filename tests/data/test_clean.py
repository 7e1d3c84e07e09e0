"""kit.data.clean: text and field normalisation, and the cleaning rules that drop and count rows."""

from __future__ import annotations

from kit.data.clean import Cleaner, CleanOptions, normalize_field, normalize_rubrics, normalize_text
from kit.data.tskv import Record


def rec(
    text="Очень хорошее место, рекомендую всем",
    rating=5,
    rubrics=("Кафе",),
    name="Ромашка",
    address="Омск, ул. Ленина, 1",
):
    return Record(address=address, name_ru=name, rating=rating, rubrics=tuple(rubrics), text=text)


def test_normalize_text_keeps_paragraphs_squeezes_the_rest():
    assert normalize_text("\u00a0Раз  два\t три\r\n\r\n\r\n\r\nЧетыре\x07 ") == "Раз два три\n\nЧетыре"


def test_normalize_field_and_rubrics():
    assert normalize_field("  ") is None
    assert normalize_field(None) is None
    assert normalize_field("Москва,\n Тверская") == "Москва, Тверская"
    assert normalize_rubrics([" магазин  продуктов", "Магазин продуктов", "Супермаркет"]) == (
        "Магазин продуктов",
        "Супермаркет",
    )


def test_cleaner_drops_each_kind_and_counts_it():
    cleaner = Cleaner(CleanOptions(min_chars=10, max_chars=60))
    inputs = [
        rec(),  # kept
        rec(rating=0),  # rating_0
        rec(text="  \n "),  # empty_text
        rec(text="Ок"),  # too_short
        rec(text="Очень " * 20),  # too_long
        rec(text="Очень   хорошее место, рекомендую всем "),  # duplicate after tidying
        rec(text="Другое хорошее место, рекомендую", rubrics=(" кафе",)),  # kept, rubric normalised
    ]
    out = list(cleaner.clean(inputs))
    assert [r.text for r in out] == ["Очень хорошее место, рекомендую всем", "Другое хорошее место, рекомендую"]
    assert out[1].rubrics == ("Кафе",)
    assert dict(cleaner.dropped) == {"rating_0": 1, "empty_text": 1, "too_short": 1, "too_long": 1, "duplicate_text": 1}
    assert cleaner.kept == 2
