"""Every validation rule of the review request (no model needed)."""

import pytest

from kit.errors import UserError
from kit.generate.request import MAX_KEYWORDS, Request, RequestError

VOCAB = {"Кафе": 120, "Ресторан": 80, "Гостиница": 300, "Кофейня": 40, "Музей": 12}


def make(**kw):
    fields = {"rubrics": "Кафе", "rating": 5, **kw}
    return Request.create(**fields, vocabulary=VOCAB)


def refused(field, match=None, **kw):
    with pytest.raises(RequestError) as info:
        make(**kw)
    err = info.value
    msg = str(err)
    assert isinstance(err, UserError) and "\n" not in msg
    assert err.field == field and f"Request field {field!r}" in msg and f"Received: {field}=" in msg
    if match:
        assert match in msg, msg
    return msg


def test_normalises_loose_input():
    r = make(
        rubrics="  кафе ; Ресторан;;Кафе ",
        rating=" 4. ",
        keywords=" кофе ,десерты, кофе,",
        name="  Кофемания ",
        address="   ",
    )
    assert r.rubrics == ("Кафе", "Ресторан")  # case matched to the vocabulary, duplicates and blanks dropped
    assert r.rating == 4 and r.keywords == ("кофе", "десерты")
    assert r.name == "Кофемания" and r.address is None
    assert make(rubrics=["Музей"], rating=5.0, keywords=["экскурсия"]).keywords == ("экскурсия",)
    assert make(keywords=None).keywords == () and make(keywords="").keywords == ()


def test_prompt_uses_the_template():
    r = make(rubrics="Кафе;Ресторан", keywords="кофе", name="Кофемания")
    p = r.prompt()
    assert p.startswith("<start_of_turn>user\n") and p.endswith("<start_of_turn>model\n")
    assert "Рубрики: Кафе; Ресторан\nОценка: 5 из 5\nКлючевые слова: кофе\nНазвание: Кофемания" in p


@pytest.mark.parametrize("rubrics", ["", " ; ", [], "Кафе;Ресторан;Гостиница;Кофейня;Музей;Аптека"])
def test_rubric_count(rubrics):
    refused("rubrics", "1 to 5 rubrics", rubrics=rubrics)


def test_unknown_rubric_suggests_closest():
    msg = refused("rubrics", "closest: 'Кафе'", rubrics="Кафэ")
    assert "vocabulary (5 known)" in msg and "Received: rubrics='Кафэ'" in msg
    # nothing close: the most frequent rubrics are shown instead
    assert "e.g. 'Кафе', 'Ресторан'" in refused("rubrics", rubrics="Автосервис")


def test_no_vocabulary_skips_the_vocabulary_check():
    assert Request.create(rubrics="Автосервис", rating=3).rubrics == ("Автосервис",)


@pytest.mark.parametrize("rating", [0, 6, "6", "пять", 4.5, True, None, "", [5]])
def test_rating_range(rating):
    refused("rating", "an integer from 1 to 5", rating=rating)


def test_keyword_rules():
    refused("keywords", f"at most {MAX_KEYWORDS}", keywords=[f"слово{i}" for i in range(11)])
    refused("keywords", "at most 40 characters", keywords="очень-очень длинное ключевое словосочетание тут")
    refused("keywords", "without commas", keywords=["кофе, чай"])
    refused("keywords", "list of strings", keywords=[1, 2])


@pytest.mark.parametrize("field,limit", [("name", 200), ("address", 300)])
def test_name_and_address_length(field, limit):
    assert getattr(make(**{field: "я" * limit}), field) == "я" * limit
    refused(field, f"at most {limit} characters", **{field: "я" * (limit + 1)})
    refused(field, "text or empty", **{field: 42})


@pytest.mark.parametrize("field", ["name", "address", "keywords", "rubrics"])
@pytest.mark.parametrize("bad", ["Коф\nемания", "Коф\x00е", "Кофе\tбар", "Коф\u2028е", "\x1b[31mКофе"])
def test_control_characters_refused(field, bad):
    refused(field, "control characters", **{field: bad})


@pytest.mark.parametrize("field", ["name", "address", "keywords"])
def test_prompt_markers_refused(field):
    refused(field, "prompt marker <end_of_turn>", **{field: "Кафе<end_of_turn>"})


def test_direct_construction_is_validated_too():
    with pytest.raises(RequestError, match="'rating'"):
        Request(rubrics=("Кафе",), rating=9)
    with pytest.raises(RequestError, match="'name'"):
        Request(rubrics=("Кафе",), rating=5, name=" padded ")


def test_from_dict_and_round_trip():
    r = make(rubrics="Кафе;Ресторан", keywords="кофе", name="Кофемания", address="Москва, Тверская улица, 3")
    assert Request.from_dict(r.to_dict(), vocabulary=VOCAB) == r
    with pytest.raises(RequestError, match="'stars'.*one of the request fields"):
        Request.from_dict({"rubrics": "Кафе", "rating": 5, "stars": 5})
    with pytest.raises(RequestError, match="'rating' must be given"):
        Request.from_dict({"rubrics": "Кафе"})
    with pytest.raises(RequestError, match="'request' must be a JSON object"):
        Request.from_dict(["Кафе", 5])
