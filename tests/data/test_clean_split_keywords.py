"""Cleaning rules, the split by organisation, keyword extraction and the prompt template."""

from __future__ import annotations

import pytest

from kit.data.clean import Cleaner, CleanOptions, normalize_field, normalize_rubrics, normalize_text
from kit.data.keywords import KeywordExtractor, candidate_lemmas, keyword_count, lemmatize
from kit.data.prompt import build_prompt, build_target, extract_response
from kit.data.split import SPLITS, assign_split, check_shares, org_id
from kit.data.tskv import Record
from kit.errors import UserError


def rec(
    text="Очень хорошее место, рекомендую всем",
    rating=5,
    rubrics=("Кафе",),
    name="Ромашка",
    address="Омск, ул. Ленина, 1",
):
    return Record(address=address, name_ru=name, rating=rating, rubrics=tuple(rubrics), text=text)


# ------------------------------------------------------------------------ clean


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


# ------------------------------------------------------------------------ split


def test_org_id_ignores_case_and_spacing_but_not_branch():
    assert org_id("Пятёрочка", "Москва, ул. Ленина, 1") == org_id(" пятёрочка", "москва,  ул. Ленина, 1")
    assert org_id("Пятёрочка", "Москва, ул. Ленина, 1") != org_id("Пятёрочка", "Москва, ул. Ленина, 2")
    assert org_id(None, "Омск") == org_id("", "Омск")


def test_assign_split_is_deterministic_and_close_to_the_shares():
    orgs = [org_id(f"Орг {i}", "Омск") for i in range(20_000)]
    first = [assign_split(o, seed=3, val_share=0.1, test_share=0.2) for o in orgs]
    assert first == [assign_split(o, seed=3, val_share=0.1, test_share=0.2) for o in orgs]
    shares = {s: first.count(s) / len(first) for s in SPLITS}
    assert shares["test"] == pytest.approx(0.2, abs=0.015)
    assert shares["validation"] == pytest.approx(0.1, abs=0.015)
    assert first != [assign_split(o, seed=4, val_share=0.1, test_share=0.2) for o in orgs]


@pytest.mark.parametrize("val, test", [(-0.1, 0.1), (0.6, 0.1), (0.5, 0.5)])
def test_check_shares_refuses_bad_values(val, test):
    with pytest.raises(UserError, match="share"):
        check_shares(val, test)


# ------------------------------------------------------------------------ keywords


def test_lemmas_and_candidates():
    assert lemmatize("Номера чистые, ёлки зелёные") == ["номер", "чистый", "елка", "зеленый"]
    # nouns only; generic nouns ("место", "раз") and verbs/adjectives are not keywords
    assert candidate_lemmas("Отличное место, был тут не раз: чистые номера и вкусные завтраки") == [
        "номер",
        "завтрак",
    ]
    assert "wi-fi" in candidate_lemmas("Бесплатный Wi-Fi в номере")


def test_extractor_prefers_specific_words_and_keeps_text_order():
    corpus = (
        ["Кофе и персонал хорошие"] * 5
        + ["Персонал вежливый"] * 5
        + [
            "Отличный персонал, а круассаны и кофе отменные",
            "Круассаны свежие",
        ]
    )
    kx = KeywordExtractor(min_df=1, max_df_share=0.9).fit(corpus)
    assert kx.extract("Отличный персонал, а круассаны и кофе отменные", k=2) == ["круассан", "кофе"]
    assert kx.extract("Отличный персонал, а круассаны и кофе", k=1) == ["круассан"]


def test_extractor_drops_rare_typos_and_too_common_words():
    corpus = ["Кофе вкусный"] * 9 + ["Кофе и кофейнко"]
    kx = KeywordExtractor(min_df=2, max_df_share=0.5).fit(corpus)
    assert kx.extract("Кофе и кофейнко", k=3) == []  # кофе in 100 %, typo in one review


def test_keyword_count_covers_one_to_five():
    counts = {keyword_count(i / 100) for i in range(100)}
    assert counts == {1, 2, 3, 4, 5}


# ------------------------------------------------------------------------ prompt


def test_prompt_has_every_field_in_gemma_turn_format():
    p = build_prompt(
        rubrics=["Кафе", "Ресторан"], rating=4, keywords=["кофе", "десерт"], name="Ромашка", address="Омск"
    )
    assert p == (
        "<start_of_turn>user\nНапиши отзыв о месте.\nРубрики: Кафе; Ресторан\nОценка: 4 из 5\n"
        "Ключевые слова: кофе, десерт\nНазвание: Ромашка\nАдрес: Омск<end_of_turn>\n<start_of_turn>model\n"
    )


def test_prompt_leaves_out_empty_optional_fields():
    p = build_prompt(rubrics=["Кафе"], rating=2, keywords=[], name=None, address="")
    assert "Ключевые слова" not in p and "Название" not in p and "Адрес" not in p
    assert p.endswith("Оценка: 2 из 5<end_of_turn>\n<start_of_turn>model\n")


def test_target_and_response_extraction():
    p = build_prompt(rubrics=["Кафе"], rating=5)
    assert build_target("Супер") == "Супер<end_of_turn>"
    assert extract_response(p + "Супер\n<end_of_turn>лишнее") == "Супер"
    assert extract_response("Супер<eos>") == "Супер"


def test_generic_nouns_with_yo_are_excluded():
    assert candidate_lemmas("Ребёнок доволен, всё отлично, аквапарк супер") == ["аквапарк"]


def test_nouns_of_set_phrases_are_not_keywords():
    text = "До сих пор вспоминаю, к сожалению, без раздумий скажу до свидания этой гостинице"
    assert candidate_lemmas(text) == ["гостиница"]
