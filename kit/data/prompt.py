"""THE prompt template: the one place a request becomes model input.

Training, generation, evaluation and the app all call `build_prompt`, so a
model is always asked in exactly the format it was trained on. The format is
Gemma's chat turn format with Russian field labels; optional fields
(keywords, name, address) are simply left out when empty, which `prepare`
also does at random in training so partial requests work.

    <start_of_turn>user
    Напиши отзыв о месте.
    Рубрики: Кафе; Ресторан
    Оценка: 5 из 5
    Ключевые слова: кофе, десерт
    Название: Кофемания
    Адрес: Москва, Тверская улица, 3<end_of_turn>
    <start_of_turn>model
    {review}<end_of_turn>
"""

from __future__ import annotations

from collections.abc import Sequence

START_OF_TURN = "<start_of_turn>"
END_OF_TURN = "<end_of_turn>"
INSTRUCTION = "Напиши отзыв о месте."
LABELS = {
    "rubrics": "Рубрики",
    "rating": "Оценка",
    "keywords": "Ключевые слова",
    "name": "Название",
    "address": "Адрес",
}
RESPONSE_PREFIX = f"{START_OF_TURN}model\n"
# What follows the review in training; generation stops on it.
RESPONSE_SUFFIX = END_OF_TURN


def build_prompt(
    *,
    rubrics: Sequence[str],
    rating: int,
    keywords: Sequence[str] = (),
    name: str | None = None,
    address: str | None = None,
) -> str:
    """The model input for one request, ending where the review starts.

    Args:
        rubrics: One or more rubrics, e.g. `["Кафе", "Ресторан"]`.
        rating: Requested stars, 1–5.
        keywords: Words the review should mention (may be empty).
        name: Organisation name (optional).
        address: Organisation address (optional).

    Example:
        >>> print(build_prompt(rubrics=["Кафе"], rating=5, keywords=["кофе"]))
        <start_of_turn>user
        Напиши отзыв о месте.
        Рубрики: Кафе
        Оценка: 5 из 5
        Ключевые слова: кофе<end_of_turn>
        <start_of_turn>model
        <BLANKLINE>
    """
    lines = [
        INSTRUCTION,
        f"{LABELS['rubrics']}: {'; '.join(rubrics)}",
        f"{LABELS['rating']}: {int(rating)} из 5",
    ]
    if keywords:
        lines.append(f"{LABELS['keywords']}: {', '.join(keywords)}")
    if name:
        lines.append(f"{LABELS['name']}: {name}")
    if address:
        lines.append(f"{LABELS['address']}: {address}")
    body = "\n".join(lines)
    return f"{START_OF_TURN}user\n{body}{END_OF_TURN}\n{RESPONSE_PREFIX}"


def build_target(review: str) -> str:
    """What the model is trained to write after the prompt: the review and the end of turn.

    Example:
        >>> build_target("Отличное место!")
        'Отличное место!<end_of_turn>'
    """
    return f"{review}{RESPONSE_SUFFIX}"


def extract_response(generated: str) -> str:
    """Cut a generated string down to the review: drop the prompt and anything after the end of turn.

    Example:
        >>> p = build_prompt(rubrics=["Кафе"], rating=4)
        >>> extract_response(p + "Неплохо.<end_of_turn>\\n<start_of_turn>user")
        'Неплохо.'
    """
    if RESPONSE_PREFIX in generated:
        generated = generated.rsplit(RESPONSE_PREFIX, 1)[1]
    for stop in (END_OF_TURN, "<eos>"):
        generated = generated.split(stop, 1)[0]
    return generated.strip()
