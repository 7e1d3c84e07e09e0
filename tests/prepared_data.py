"""A tiny prepared dataset (the columns of `kit data prepare`) built in-process for tests.

Reviews are templated Russian sentences whose tone follows the rating and
which mention the keywords, so a model trained on them has something
learnable. The lead can later swap `make_prepared` to load real prepared
sample data; tests only rely on the column contract.
"""

from __future__ import annotations

import random
from pathlib import Path

from kit.data.prompt import build_prompt, build_target

RUBRICS = ["Кафе", "Ресторан", "Гостиница", "Супермаркет", "Музей", "Парикмахерская", "Аптека"]
NAMES = ["Кофемания", "Пятёрочка", "Вкусно и точка", "Азимут", "Эрмитаж", "Магнит", "Шоколадница"]
STREETS = ["Тверская улица", "Невский проспект", "улица Ленина", "проспект Мира", "Садовая улица"]
CITIES = ["Москва", "Санкт-Петербург", "Казань", "Екатеринбург", "Новосибирск"]
KEYWORDS = [
    "персонал",
    "цены",
    "кофе",
    "обслуживание",
    "чистота",
    "очередь",
    "завтрак",
    "номер",
    "выбор",
    "атмосфера",
    "десерт",
    "парковка",
    "экскурсия",
    "мастер",
    "интерьер",
]
OPENERS = {
    5: ["Отличное место!", "Очень понравилось.", "Всё супер, рекомендую.", "Прекрасное заведение."],
    4: ["Хорошее место.", "В целом понравилось.", "Неплохо, но есть нюансы."],
    3: ["Обычное место.", "Так себе, средне.", "Ничего особенного."],
    2: ["Не понравилось.", "Ожидали большего.", "Слабо."],
    1: ["Ужасное место!", "Никому не советую.", "Очень плохо, больше не придём."],
}
PRAISE = {5: "отличный", 4: "хороший", 3: "обычный", 2: "плохой", 1: "ужасный"}


def _review(rng: random.Random, rating: int, keywords: list[str]) -> str:
    parts = [rng.choice(OPENERS[rating])]
    for kw in keywords:
        parts.append(f"{kw.capitalize()} {PRAISE[rating]}.")
    if rng.random() < 0.3:
        parts.append("\nПридём ещё." if rating >= 4 else "\nБольше не придём.")
    return " ".join(parts)


def make_rows(n: int, seed: int = 0) -> list[dict]:
    """`n` rows with the prepared columns (`org_id`, ..., `prompt`, `target`).

    Example:
        >>> make_rows(1)[0]["target"].endswith("<end_of_turn>")
        True
    """
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        rating = rng.choices([5, 4, 3, 2, 1], weights=[50, 15, 10, 10, 15])[0]
        rubrics = rng.sample(RUBRICS, rng.choice([1, 1, 2]))
        keywords = rng.sample(KEYWORDS, rng.choice([0, 1, 2, 3]))
        name = rng.choice(NAMES) if rng.random() < 0.9 else None
        address = f"{rng.choice(CITIES)}, {rng.choice(STREETS)}, {rng.randint(1, 99)}"
        text = _review(rng, rating, keywords)
        rows.append(
            {
                "org_id": f"org{i % max(n // 3, 1)}",
                "address": address,
                "name_ru": name,
                "rating": rating,
                "rubrics": rubrics,
                "text": text,
                "keywords": keywords,
                "prompt": build_prompt(rubrics=rubrics, rating=rating, keywords=keywords, name=name, address=address),
                "target": build_target(text),
            }
        )
    return rows


def make_prepared(path: str | Path, *, train: int = 48, validation: int = 16, test: int = 16, seed: int = 0):
    """Write a `datasets.DatasetDict` with the prepared columns to `path` and return it.

    Example:
        >>> import tempfile
        >>> dd = make_prepared(tempfile.mkdtemp() + "/p", train=4, validation=2, test=2)
        >>> dd["train"].num_rows
        4
    """
    import datasets

    rows = make_rows(train + validation + test, seed)
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(rows[:train]),
            "validation": datasets.Dataset.from_list(rows[train : train + validation]),
            "test": datasets.Dataset.from_list(rows[train + validation :]),
        }
    )
    dd.save_to_disk(str(path))
    return dd
