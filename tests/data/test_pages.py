"""The tiny base's pretraining documents (`kit.data.pages`, `kit.train.pretrain.pretraining_texts`)."""

from collections import Counter

import pytest

from kit.data.pages import (
    first_sentence,
    organisation_pages,
    pretraining_documents,
    quotes,
    review_cards,
    review_listings,
    sentences,
)
from kit.data.prompt import END_OF_TURN, INSTRUCTION, START_OF_TURN
from kit.errors import UserError
from kit.model.tiny import TinySpec
from kit.train.pretrain import pretraining_texts


def _rows(n_orgs=6, per_org=4):
    rows = {"org_id": [], "name_ru": [], "address": [], "rubrics": [], "rating": [], "text": []}
    for o in range(n_orgs):
        for k in range(per_org):
            rows["org_id"].append(f"org{o}")
            rows["name_ru"].append(f"Кафе №{o}" if o % 3 else None)
            rows["address"].append(f"Москва, улица Ленина, {o}")
            rows["rubrics"].append(["Кафе", "Ресторан"] if o % 2 else ["Кафе"])
            rating = 5 if k % 4 else 1 + o % 4
            rows["rating"].append(rating)
            rows["text"].append(f"Отзыв {o}-{k} на {rating}. Второе предложение.")
    return rows


def test_first_sentence():
    assert first_sentence("Были вчера… Понравилось.") == "Были вчера…"
    assert first_sentence("Отлично!\nВернёмся.") == "Отлично!"
    assert first_sentence("Нет конца") == "Нет конца"


def test_pages_hold_every_review_once_under_its_own_header_and_stars():
    rows = _rows()
    pages = organisation_pages(rows, per_page=3)
    assert len(pages) == 6 * 2  # 4 reviews per organisation: pages of 3 + 1
    for i, text in enumerate(rows["text"]):
        holding = [p for p in pages if text in p]
        assert len(holding) == 1
        page = holding[0]
        assert f"Оценка {rows['rating'][i]} из 5\n{text}" in page
        assert page.startswith(rows["name_ru"][i] or "Кафе")
        assert rows["address"][i] in page.split("\n\n")[0]


def test_listings_draw_every_rating_equally_and_show_only_first_sentences():
    rows = _rows(n_orgs=8)
    docs = review_listings(rows, documents=400, per_page=4, seed=0)
    stars = Counter(int(line.split()[1]) for d in docs for line in d.splitlines() if line.startswith("Оценка"))
    assert sum(stars.values()) == 1600
    for rating in (1, 2, 3, 4, 5):
        assert 1600 / 5 * 0.8 < stars[rating] < 1600 / 5 * 1.2, stars
    assert "Второе предложение" not in "".join(docs)
    assert review_listings(rows, documents=3, seed=1) == review_listings(rows, documents=3, seed=1)


def test_documents_never_contain_the_prompt_format():
    rows = _rows()
    docs = pretraining_documents(rows, listing_share=0.5, seed=0)
    pages = organisation_pages(rows)
    assert len(docs) == 2 * len(pages)
    joined = "\n".join(docs)
    for marker in (START_OF_TURN, INSTRUCTION, "Оценка:", "Рубрики:", "Ключевые слова", "user\n", "model\n"):
        assert marker not in joined
    # The end-of-turn marker closes every whole review (so its embedding is trained), and nothing else:
    # not the previews of listings, not the quotes.
    assert joined.count(END_OF_TURN) == len(rows["text"])
    for text in rows["text"]:
        assert text + END_OF_TURN in joined
    assert pretraining_documents(rows, listing_share=0.0) != pretraining_documents(rows, listing_share=0.0, seed=1)
    with pytest.raises(ValueError, match="listing_share"):
        pretraining_documents(rows, listing_share=1.0)


def test_cards_give_each_review_alone_under_its_place_stars_and_topic_words_without_quotes():
    rows = _rows(n_orgs=2, per_org=2)
    rows["keywords"] = [["отзыв"], [], ["предложение", "отзыв"], ["отзыв"]]
    cards = review_cards(rows)
    assert len(cards) == len(rows["text"])
    for i, card in enumerate(cards):
        head, text = card.rsplit("\n", 1)
        assert text == rows["text"][i] + END_OF_TURN and card.count(END_OF_TURN) == 1
        assert head.startswith(rows["name_ru"][i] or "Кафе") and rows["address"][i] in head
        stars = f"Оценка {rows['rating'][i]} из 5"
        topics = f"\nО чём отзыв: {', '.join(rows['keywords'][i])}" if rows["keywords"][i] else ""
        assert head.endswith(stars + topics)
        assert "«" not in card and "упоминают" not in card  # no quote to copy the review's words from
    # Joined to the pages and listings: every review once more, still never the prompt format.
    docs = pretraining_documents(rows, listing_share=0.5, cards=True)
    assert len(docs) == len(pretraining_documents(rows, listing_share=0.5)) + len(cards)
    assert sorted(set(cards) & set(docs)) == sorted(cards)
    joined = "\n".join(docs)
    assert joined.count(END_OF_TURN) == 2 * len(rows["text"])
    for marker in (START_OF_TURN, INSTRUCTION, "Оценка:", "Рубрики:", "Ключевые слова"):
        assert marker not in joined


def test_tiny_spec_chooses_the_documents():
    rows = _rows(n_orgs=2, per_org=1)
    ended = [t + END_OF_TURN for t in rows["text"]]
    assert pretraining_texts(rows, TinySpec(documents="reviews")) == ended
    assert pretraining_texts(rows) == ended  # the default keeps the bare review texts, each ended by the marker
    pages = pretraining_texts(rows, TinySpec(documents="pages", listing_share=0.0))
    assert len(pages) == 2 and all(d.count("Оценка") == 1 for d in pages)
    with_cards = pretraining_texts(rows, TinySpec(documents="pages+cards", listing_share=0.0))
    assert sorted(with_cards) == sorted(pages + review_cards(rows))
    with pytest.raises(UserError, match="documents"):
        pretraining_texts(rows, TinySpec(documents="prompts"))


def test_pages_list_the_words_their_reviews_mention_with_a_quote_each():
    rows = _rows(n_orgs=1, per_org=2)
    rows["text"] = ["Кофе варят отлично. Десерты свежие!", "Сидели на террасе, десерт так себе."]
    rows["keywords"] = [["кофе", "десерт"], ["десерт", "терраса"]]
    page = organisation_pages(rows)[0]
    header = (
        "\nВ отзывах упоминают: кофе, десерт, терраса\n"
        "— кофе: «Кофе варят отлично.»\n"
        "— десерт: «Десерты свежие!»\n"
        "— терраса: «Сидели на террасе, десерт так себе.»\n\n"
    )
    assert header in page
    # each review under its star line and its own topic words, then its text
    assert "Оценка 1 из 5\nО чём отзыв: кофе, десерт\nКофе варят отлично. Десерты свежие!" in page
    assert "Оценка 5 из 5\nО чём отзыв: десерт, терраса\nСидели на террасе" in page
    rows["keywords"] = [[], ["терраса"]]
    page = organisation_pages(rows)[0]
    assert "упоминают: терраса\n— терраса: «Сидели" in page
    assert page.count("О чём отзыв") == 1 and "Оценка 1 из 5\nКофе" in page
    rows["keywords"] = [[], []]
    assert "упоминают" not in organisation_pages(rows)[0] and "«" not in organisation_pages(rows)[0]


def test_quotes_match_inflected_forms_and_skip_unused_words():
    texts = ["Заселили быстро. Завтраки вкусные: творог со сметаной.", "Творог кислый."]
    assert quotes(["сметана", "творог", "бассейн"], texts) == [
        "— сметана: «Завтраки вкусные: творог со сметаной.»",
        "— творог: «Завтраки вкусные: творог со сметаной.»",
    ]
    assert quotes([], texts) == [] and quotes(["творог"], []) == []


def test_sentences():
    assert sentences("Раз. Два!! Три?\n\nЧетыре") == ["Раз.", "Два!!", "Три?", "Четыре"]
    assert sentences("  ") == []


def test_pretraining_texts_read_a_prepared_split(tiny_prepared):
    from kit.data.prepare import load_prepared

    train = load_prepared(tiny_prepared)["train"]
    docs = pretraining_texts(train, TinySpec(documents="pages", listing_share=0.0))
    joined = "\n".join(docs)
    assert all(t in joined for t in train["text"])
    assert "В отзывах упоминают: " in joined and "\n— " in joined and "\nО чём отзыв: " in joined
