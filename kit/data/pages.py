"""Pretraining documents for the tiny base: reviews as they appear on the web.

Gemma 2 2B learned from web pages, where a review sits under its place's name,
rubric and address and after its star rating, so it arrives at fine-tuning
already able to read a rating or a rubric earlier in the text. A tiny base
pretrained on bare review texts cannot: the rating changes only the first few
of ~100 review tokens, too sparse a signal for a ~1 M-parameter model in a few
minutes (measured in docs/log.md, "The pages base"). So `kit tiny` pretrains on
two kinds of page, built from the train split only and never in the chat
template or with the instruction, so following a request stays LoRA's job:

* organisation pages: name, rubrics and address; the words its reviews
  mention (`В отзывах упоминают: …`, like the map's review-topic chips; from
  the prepared `keywords` column when there is one), each with the first
  sentence that uses it as a quote (`— кофе: «Кофе варят отлично.»`, the
  highlights a place page shows under a chip); then the reviews, each under
  a line `Оценка N из 5` (how Yandex Maps labels its stars) and, when it has
  keywords, a line `О чём отзыв: …` (the topic tags review sites print);
* review listings: short previews (place, stars, the review's first
  sentence) of reviews drawn with every rating equally likely, as a feed of
  recent reviews shows them. They put many rating-to-opening examples in each
  sequence, and they give rare 1–4-star openings as much weight as five-star ones;
* review cards (with `cards`, `kit tiny --documents pages+cards`): each review
  alone under its place header, star line and topic line, as a review site
  shows one review. A page quotes its reviews' sentences in its header, so a
  review there can be copied from above; a card cannot, so the base has to
  choose what to write from the topic words, which is what a request asks.

The quotes and topic lines are there so the base learns to carry a word it
was given into the text it writes (measured in docs/log.md: without them a base
pretrained for ~5 minutes ignores the words it is given, and so does its
LoRA; with them the fine-tuned model's loss drops by 0.03–0.07 nats per
review token when its request's keywords are the true ones).
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence

from kit.data.prompt import END_OF_TURN

# A whole review ends with the marker a fine-tuned model ends its review with.
# Without it the marker never occurs in pretraining: its embedding stays at its
# random start while the base learns to end a review with `<eos>`, and LoRA
# (embeddings frozen) only lifted it to P = 0.004 at a review's true end, below
# top-k 5's cut in 71 % of the demo requests, so 86 of 150 reviews ran to the
# token limit (docs/log.md, "The end-of-turn fix"). Previews and quotes get none.
REVIEW_END = END_OF_TURN
RATING_LINE = "Оценка {rating} из 5"
MENTIONED = "В отзывах упоминают"
QUOTE_LINE = "— {word}: «{sentence}»"
TOPICS_LINE = "О чём отзыв: {words}"
_FIRST_SENTENCE = re.compile(r"(.+?[.!?…])(?:\s|$)", re.S)
_SENTENCE = re.compile(r"[^.!?…\n]+[.!?…]*")


def first_sentence(text: str) -> str:
    """The text up to its first sentence end (all of it when there is none).

    Example:
        >>> first_sentence("Очень вкусно! Вернёмся ещё.")
        'Очень вкусно!'
        >>> first_sentence("Без точки")
        'Без точки'
    """
    m = _FIRST_SENTENCE.match(text)
    return m.group(1) if m else text


def sentences(text: str) -> list[str]:
    """The sentences of `text` (split after `.`, `!`, `?`, `…` and at line breaks).

    Example:
        >>> sentences("Вкусно! Кофе хороший…\\nВернёмся.")
        ['Вкусно!', 'Кофе хороший…', 'Вернёмся.']
    """
    return [s for s in (m.group(0).strip() for m in _SENTENCE.finditer(text)) if s]


def quotes(words: Sequence[str], texts: Sequence[str]) -> list[str]:
    """A quote line per word: the first sentence of `texts` holding one of its forms.

    Words are lemmas (as the prepared `keywords` are) and match any inflected
    form; a word no sentence uses gets no line.

    Example:
        >>> quotes(["круассан", "терраса"], ["Брали кофе и круассаны. Всё свежее."])
        ['— круассан: «Брали кофе и круассаны.»']
    """
    from kit.data.keywords import lemmatize

    found = [(s, set(lemmatize(s))) for text in texts for s in sentences(text)]
    lines = []
    for word in words:
        hit = next((s for s, lemmas in found if word in lemmas), None)
        if hit:
            lines.append(QUOTE_LINE.format(word=word, sentence=hit))
    return lines


def organisation_pages(rows: Mapping[str, Sequence], *, per_page: int = 3) -> list[str]:
    """One document per `per_page` reviews of an organisation, under its header; each review ends with `REVIEW_END`.

    Args:
        rows: Columns `org_id`, `name_ru`, `address`, `rubrics`, `rating`, `text`
            and optionally `keywords` (lemmas; a prepared split, or a dict of lists).
        per_page: Reviews per document (longer pages are cut at the sequence length).

    Example:
        >>> rows = {"org_id": ["a", "a"], "name_ru": ["Кафе Ромашка"] * 2, "address": ["Москва, Тверская улица, 1"] * 2,
        ...         "rubrics": [["Кафе"]] * 2, "rating": [5, 1], "text": ["Вкусно.", "Грязно."]}
        >>> print(organisation_pages(rows)[0])
        Кафе Ромашка
        Кафе
        Москва, Тверская улица, 1
        <BLANKLINE>
        Оценка 5 из 5
        Вкусно.<end_of_turn>
        <BLANKLINE>
        Оценка 1 из 5
        Грязно.<end_of_turn>
    """
    by_org: dict[str, list[int]] = defaultdict(list)
    for i, org in enumerate(rows["org_id"]):
        by_org[org].append(i)
    docs = []
    for org in sorted(by_org):
        idx = by_org[org]
        for start in range(0, len(idx), per_page):
            chunk = idx[start : start + per_page]
            first = chunk[0]
            header = [
                x for x in (rows["name_ru"][first], ", ".join(rows["rubrics"][first]), rows["address"][first]) if x
            ]
            keywords = {i: list(rows["keywords"][i]) if "keywords" in rows else [] for i in chunk}
            words = list(dict.fromkeys(w for i in chunk for w in keywords[i]))
            if words:
                header.append(f"{MENTIONED}: {', '.join(words)}")
                header += quotes(words, [rows["text"][i] for i in chunk])
            reviews = []
            for i in chunk:
                lines = [RATING_LINE.format(rating=rows["rating"][i])]
                if keywords[i]:
                    lines.append(TOPICS_LINE.format(words=", ".join(keywords[i])))
                reviews.append("\n".join([*lines, rows["text"][i] + REVIEW_END]))
            docs.append("\n".join(header) + "\n\n" + "\n\n".join(reviews))
    return docs


def review_cards(rows: Mapping[str, Sequence]) -> list[str]:
    """One document per review: its place header, star line, topic line and the review, ending with `REVIEW_END`.

    A review as a review site shows it, alone under its place, stars and topic
    tags. In an organisation page a review's words are also quoted in the
    header above it, so the base can copy a quoted sentence instead of
    choosing one by its topic words; a card has no quotes, so the only way to
    the review's words is the topic line (docs/log.md, "The review cards base").

    Example:
        >>> rows = {"name_ru": ["Кафе Ромашка"], "address": [""], "rubrics": [["Кафе"]], "rating": [4],
        ...         "text": ["Кофе варят отлично."], "keywords": [["кофе"]]}
        >>> print(review_cards(rows)[0])
        Кафе Ромашка
        Кафе
        Оценка 4 из 5
        О чём отзыв: кофе
        Кофе варят отлично.<end_of_turn>
    """
    docs = []
    for i, text in enumerate(rows["text"]):
        lines = [x for x in (rows["name_ru"][i], ", ".join(rows["rubrics"][i]), rows["address"][i]) if x]
        lines.append(RATING_LINE.format(rating=rows["rating"][i]))
        keywords = list(rows["keywords"][i]) if "keywords" in rows else []
        if keywords:
            lines.append(TOPICS_LINE.format(words=", ".join(keywords)))
        docs.append("\n".join([*lines, text + REVIEW_END]))
    return docs


def review_listings(rows: Mapping[str, Sequence], *, documents: int, per_page: int = 4, seed: int = 0) -> list[str]:
    """`documents` feeds of `per_page` review previews, every rating equally likely.

    Example:
        >>> rows = {"name_ru": ["Кафе Ромашка", None], "rubrics": [["Кафе"], ["Аптека"]], "rating": [5, 1],
        ...         "text": ["Вкусно. Вернёмся.", "Грязно. Не советую."]}
        >>> doc = review_listings(rows, documents=1, per_page=2, seed=1)[0]
        >>> sorted(doc.split("\\n\\n"))[0]
        'Аптека\\nОценка 1 из 5\\nГрязно.'
    """
    by_rating: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(rows["rating"]):
        by_rating[int(r)].append(i)
    ratings = sorted(by_rating)
    if not ratings:
        return []
    rng = random.Random(f"kit.pages:{seed}")
    docs = []
    for _ in range(documents):
        items = []
        for _ in range(per_page):
            i = rng.choice(by_rating[rng.choice(ratings)])
            rubrics = ", ".join(rows["rubrics"][i])
            name = rows["name_ru"][i]
            place = f"{name} · {rubrics}" if name else rubrics
            items.append(f"{place}\n{RATING_LINE.format(rating=rows['rating'][i])}\n{first_sentence(rows['text'][i])}")
        docs.append("\n\n".join(items))
    return docs


def pretraining_documents(
    rows: Mapping[str, Sequence], *, listing_share: float = 0.5, cards: bool = False, seed: int = 0
) -> list[str]:
    """Organisation pages plus review listings (`listing_share` of pages and listings), shuffled.

    With `cards`, one review card per row (`review_cards`) joins them.

    Example:
        >>> rows = {"org_id": ["a", "b"], "name_ru": ["Кафе Ромашка", "Аптека 36,6"],
        ...         "address": ["Москва, Тверская улица, 1", ""], "rubrics": [["Кафе"], ["Аптека"]],
        ...         "rating": [5, 1], "text": ["Вкусно.", "Грязно."]}
        >>> docs = pretraining_documents(rows, listing_share=0.5)
        >>> len(docs), sum("·" in d for d in docs)
        (4, 2)
    """
    if not 0.0 <= listing_share < 1.0:
        raise ValueError(f"listing_share must be in [0, 1). Received: {listing_share}")
    pages = organisation_pages(rows)
    n_listings = round(len(pages) * listing_share / (1.0 - listing_share))
    docs = pages + review_listings(rows, documents=n_listings, seed=seed)
    if cards:
        docs += review_cards(rows)
    random.Random(f"kit.pages:{seed}:order").shuffle(docs)
    return docs
