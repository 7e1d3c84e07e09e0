"""kit.data.keywords: lemmas, keyword candidates and the TF-IDF keyword extractor."""

from __future__ import annotations

from kit.data.keywords import KeywordExtractor, candidate_lemmas, keyword_count, lemmatize


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


def test_generic_nouns_with_yo_are_excluded():
    assert candidate_lemmas("Ребёнок доволен, всё отлично, аквапарк супер") == ["аквапарк"]


def test_nouns_of_set_phrases_are_not_keywords():
    text = "До сих пор вспоминаю, к сожалению, без раздумий скажу до свидания этой гостинице"
    assert candidate_lemmas(text) == ["гостиница"]
