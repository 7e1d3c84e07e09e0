"""Cleaning rules for raw reviews: whitespace, rubric names, what gets dropped.

Each rule is a small pure function so it can be tested alone; `Cleaner`
applies them in order and counts what each stage dropped for `stats.json`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Iterator

from kit.data.tskv import Record

_SPACES_RE = re.compile(r"[ \t\u00a0\u2000-\u200b\u202f\u205f\u3000]+")
_MANY_NEWLINES_RE = re.compile(r"\n{3,}")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def normalize_text(text: str) -> str:
    r"""Tidy a review: unify line ends, drop control characters, squeeze spaces.

    Paragraph breaks are kept (at most one blank line), since they are part of
    how people write reviews and the model should learn them.

    Example:
        >>> normalize_text("  Очень   вкусно!\r\n\r\n\r\nВернёмся\t ещё ")
        'Очень вкусно!\n\nВернёмся ещё'
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL_RE.sub("", text)
    lines = [_SPACES_RE.sub(" ", line).strip() for line in text.split("\n")]
    text = "\n".join(lines)
    return _MANY_NEWLINES_RE.sub("\n\n", text).strip()


def normalize_field(value: str | None) -> str | None:
    """Squeeze whitespace in a one-line field (name, address); empty becomes None.

    Example:
        >>> normalize_field("  Москва,  Тверская\\nулица ")
        'Москва, Тверская улица'
    """
    if value is None:
        return None
    value = _SPACES_RE.sub(" ", _CONTROL_RE.sub(" ", value.replace("\n", " ").replace("\r", " ")))
    value = value.strip()
    return value or None


def normalize_rubric(rubric: str) -> str:
    """One rubric name: whitespace squeezed, first letter upper case, `ё` kept.

    Example:
        >>> normalize_rubric("  магазин   продуктов ")
        'Магазин продуктов'
    """
    rubric = _SPACES_RE.sub(" ", rubric).strip()
    return rubric[:1].upper() + rubric[1:]


def normalize_rubrics(rubrics: Iterable[str]) -> tuple[str, ...]:
    """Normalise each rubric and drop repeats, keeping the source order.

    Example:
        >>> normalize_rubrics(["кафе", "Кафе ", "Ресторан"])
        ('Кафе', 'Ресторан')
    """
    seen: dict[str, None] = {}
    for rubric in rubrics:
        r = normalize_rubric(rubric)
        if r:
            seen.setdefault(r, None)
    return tuple(seen)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CleanOptions:
    """Limits for `Cleaner`.

    Attributes:
        min_chars: Reviews shorter than this (after tidying) are dropped.
        max_chars: Reviews longer than this are dropped, not cut: a cut review
            would teach the model to stop mid-sentence.
    """

    min_chars: int = 20
    max_chars: int = 2500


class Cleaner:
    """Apply the cleaning rules to a stream of records and count the drops.

    Drops, in this order: rating 0 (not a valid request), empty text after
    tidying, too short, too long, exact duplicate texts (first one kept).

    Example:
        >>> recs = [Record("Омск", None, 5, ("кафе",), "Очень вкусно, приду ещё раз!"),
        ...         Record("Омск", None, 0, ("Кафе",), "Оценки нет, но текст длинный"),
        ...         Record("Омск", None, 4, ("Кафе",), "Очень  вкусно, приду ещё раз!")]
        >>> c = Cleaner()
        >>> [r.rubrics for r in c.clean(recs)]
        [('Кафе',)]
        >>> c.dropped["rating_0"], c.dropped["duplicate_text"]
        (1, 1)
    """

    DROP_REASONS = ("rating_0", "empty_text", "too_short", "too_long", "duplicate_text")

    def __init__(self, options: CleanOptions | None = None):
        self.options = options or CleanOptions()
        self.dropped: Counter[str] = Counter({k: 0 for k in self.DROP_REASONS})
        self.kept = 0
        self._seen_texts: set[int] = set()

    def clean(self, records: Iterable[Record]) -> Iterator[Record]:
        for record in records:
            cleaned = self.clean_one(record)
            if cleaned is not None:
                self.kept += 1
                yield cleaned

    def clean_one(self, record: Record) -> Record | None:
        """The cleaned record, or None (and a counted reason) when it is dropped."""
        if record.rating == 0:
            return self._drop("rating_0")
        text = normalize_text(record.text)
        if not text:
            return self._drop("empty_text")
        if len(text) < self.options.min_chars:
            return self._drop("too_short")
        if len(text) > self.options.max_chars:
            return self._drop("too_long")
        # A 64-bit digest keeps memory flat on 500k rows; unlike `hash()` it is
        # the same in every process, so a (negligible) collision is at least
        # repeatable and `prepare` stays deterministic.
        key = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")
        if key in self._seen_texts:
            return self._drop("duplicate_text")
        self._seen_texts.add(key)
        rubrics = normalize_rubrics(record.rubrics)
        address = normalize_field(record.address)
        if not rubrics or address is None:
            return self._drop("empty_text")
        return Record(
            address=address,
            name_ru=normalize_field(record.name_ru),
            rating=record.rating,
            rubrics=rubrics,
            text=text,
        )

    def _drop(self, reason: str) -> None:
        self.dropped[reason] += 1
        return None
