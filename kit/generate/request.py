"""The validated review request: what a user may ask the model for, checked field by field.

A `Request` can only exist in a valid state: `Request.create` parses loose
input (CLI strings, JSON values, form fields), normalises it (surrounding
whitespace stripped, `;`/`,`-separated strings split, duplicates dropped,
rubric spelling matched to the data's vocabulary) and refuses anything else
with a `RequestError` naming the field, the value and what is allowed. The
error is a `UserError`, so the CLI prints it as one line (exit 2) and the app
shows it with `st.error`.

Rubrics are checked against the vocabulary saved with the prepared data
(`kit.data.prepare.load_rubrics`): the model only ever saw those, so an
unknown rubric is refused with the closest known ones suggested.
"""

from __future__ import annotations

import dataclasses
import difflib
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kit.data.prompt import END_OF_TURN, START_OF_TURN, build_prompt
from kit.errors import UserError

MAX_RUBRICS = 5
MAX_KEYWORDS = 10
MAX_KEYWORD_CHARS = 40
MAX_NAME_CHARS = 200
MAX_ADDRESS_CHARS = 300
FIELDS = ("rubrics", "rating", "keywords", "name", "address")
# Strings that would become control tokens of the prompt format if let through.
_MARKERS = (START_OF_TURN, END_OF_TURN, "<bos>", "<eos>", "<pad>")
# Cc: C0/C1 controls incl. newline and tab (a newline in a field would forge
# a new prompt line); Zl/Zp: Unicode line/paragraph separators, same reason.
_REFUSED_CATEGORIES = {"Cc", "Cs", "Co", "Cn", "Zl", "Zp"}


class RequestError(UserError):
    """A refused request field: names the field, the value received and what is allowed.

    Attributes:
        field: The request field (`rubrics`, `rating`, ...).
        value: The offending value as received.
        allowed: What the field accepts.

    Example:
        >>> str(RequestError("rating", "7", "an integer from 1 to 5"))
        "Request field 'rating' must be an integer from 1 to 5. Received: rating='7'"
    """

    def __init__(self, field: str, value: Any, allowed: str, hint: str = ""):
        self.field, self.value, self.allowed = field, value, allowed
        shown = repr(value) if not isinstance(value, str) or len(value) <= 80 else repr(value[:77] + "...")
        super().__init__(f"Request field {field!r} must be {allowed}{hint}. Received: {field}={shown}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Request:
    """One review request, normalised and valid (build it with `Request.create`).

    Attributes:
        rubrics: 1–5 rubrics from the data's vocabulary, e.g. `("Кафе", "Ресторан")`.
        rating: Requested stars, 1–5.
        keywords: 0–10 short words or phrases the review should mention.
        name: Organisation name, or None.
        address: Organisation address, or None.

    Example:
        >>> r = Request.create(rubrics=" Кафе; Ресторан ", rating="5", keywords="кофе, десерты",
        ...                    vocabulary={"Кафе": 10, "Ресторан": 7})
        >>> r.rubrics, r.rating, r.keywords, r.name
        (('Кафе', 'Ресторан'), 5, ('кофе', 'десерты'), None)
        >>> print(r.prompt().splitlines()[2])
        Рубрики: Кафе; Ресторан
    """

    rubrics: tuple[str, ...]
    rating: int
    keywords: tuple[str, ...] = ()
    name: str | None = None
    address: str | None = None

    def __post_init__(self):
        # Guards direct construction too: a Request is valid or does not exist.
        if not isinstance(self.rubrics, tuple) or not 1 <= len(self.rubrics) <= MAX_RUBRICS:
            raise RequestError("rubrics", self.rubrics, f"1 to {MAX_RUBRICS} rubrics")
        for r in self.rubrics:
            _check_text("rubrics", r, MAX_NAME_CHARS)
        if isinstance(self.rating, bool) or not isinstance(self.rating, int) or not 1 <= self.rating <= 5:
            raise RequestError("rating", self.rating, "an integer from 1 to 5")
        if not isinstance(self.keywords, tuple) or len(self.keywords) > MAX_KEYWORDS:
            raise RequestError("keywords", self.keywords, f"at most {MAX_KEYWORDS} keywords")
        for k in self.keywords:
            _check_text("keywords", k, MAX_KEYWORD_CHARS)
            if "," in k:
                raise RequestError("keywords", k, "keywords without commas (a comma separates keywords)")
        if self.name is not None:
            _check_text("name", self.name, MAX_NAME_CHARS)
        if self.address is not None:
            _check_text("address", self.address, MAX_ADDRESS_CHARS)

    @classmethod
    def create(
        cls,
        *,
        rubrics: str | Sequence[str],
        rating: int | float | str,
        keywords: str | Sequence[str] | None = (),
        name: str | None = None,
        address: str | None = None,
        vocabulary: Mapping[str, int] | Iterable[str] | None = None,
    ) -> Request:
        """Parse and validate loose input into a `Request`.

        Args:
            rubrics: `"Кафе;Ресторан"` or a list of rubrics.
            rating: `5`, `"5"`, `5.0` or `"5."` (the raw data's spelling).
            keywords: `"кофе, десерты"` or a list; empty or None for none.
            name: Organisation name; empty means none.
            address: Organisation address; empty means none.
            vocabulary: Known rubrics (e.g. `load_rubrics(data_dir)`); None skips that check.

        Raises:
            RequestError: a field is invalid (the message names field, value and what is allowed).

        Example:
            >>> Request.create(rubrics="Кафф", rating=5, vocabulary=["Кафе", "Музей"])
            Traceback (most recent call last):
            ...
            kit.generate.request.RequestError: Request field 'rubrics' must be a rubric from the data's vocabulary (2 known); closest: 'Кафе'. Received: rubrics='Кафф'
        """
        rubric_list = _split("rubrics", rubrics, ";")
        if not 1 <= len(rubric_list) <= MAX_RUBRICS:
            raise RequestError("rubrics", rubrics, f"1 to {MAX_RUBRICS} rubrics separated by ';'")
        if vocabulary is not None:
            rubric_list = _dedupe(_known_rubric(r, vocabulary) for r in rubric_list)
        return cls(
            rubrics=tuple(rubric_list),
            rating=_parse_rating(rating),
            keywords=tuple(_split("keywords", keywords, ",")),
            name=_optional("name", name),
            address=_optional("address", address),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, vocabulary=None) -> Request:
        """A request from a JSON object with the keys of `FIELDS` (batch files, the app).

        Example:
            >>> Request.from_dict({"rubrics": ["Музей"], "rating": 4}).rating
            4
            >>> Request.from_dict({"rubrics": "Музей", "rating": 4, "stars": 5})
            Traceback (most recent call last):
            ...
            kit.generate.request.RequestError: Request field 'stars' must be one of the request fields rubrics, rating, keywords, name, address. Received: stars=5
        """
        if not isinstance(data, Mapping):
            raise RequestError("request", data, "a JSON object with rubrics, rating, keywords, name, address")
        for key in data:
            if key not in FIELDS:
                raise RequestError(str(key), data[key], f"one of the request fields {', '.join(FIELDS)}")
        for key in ("rubrics", "rating"):
            if key not in data:
                raise RequestError(key, None, "given (it is required)")
        return cls.create(**{k: data[k] for k in FIELDS if k in data}, vocabulary=vocabulary)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (lists, not tuples).

        Example:
            >>> Request.create(rubrics="Музей", rating=4).to_dict()
            {'rubrics': ['Музей'], 'rating': 4, 'keywords': [], 'name': None, 'address': None}
        """
        return {
            "rubrics": list(self.rubrics),
            "rating": self.rating,
            "keywords": list(self.keywords),
            "name": self.name,
            "address": self.address,
        }

    def prompt(self) -> str:
        """The model input, from THE template (`kit.data.prompt.build_prompt`)."""
        return build_prompt(
            rubrics=self.rubrics, rating=self.rating, keywords=self.keywords, name=self.name, address=self.address
        )


def _check_text(field: str, value: Any, max_chars: int) -> None:
    if not isinstance(value, str):
        raise RequestError(field, value, "text")
    if not value or value != value.strip():
        raise RequestError(field, value, "non-empty text without surrounding whitespace")
    if len(value) > max_chars:
        raise RequestError(field, value, f"at most {max_chars} characters (got {len(value)})")
    for ch in value:
        if unicodedata.category(ch) in _REFUSED_CATEGORIES:
            raise RequestError(field, value, f"text without control characters (found U+{ord(ch):04X})")
    for marker in _MARKERS:
        if marker in value:
            raise RequestError(field, value, f"text without the prompt marker {marker}")


def _split(field: str, value: Any, sep: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        items = value.split(sep)
    elif isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        items = list(value)
    else:
        raise RequestError(field, value, f"text separated by {sep!r} or a list of strings")
    # Empty parts ("Кафе;" or a blank form field) carry no meaning: skip them.
    return _dedupe(v.strip() for v in items if v.strip())


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _optional(field: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise RequestError(field, value, "text or empty")
    return value.strip() or None


def _parse_rating(value: Any) -> int:
    allowed = "an integer from 1 to 5"
    if isinstance(value, bool):
        raise RequestError("rating", value, allowed)
    number = value
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text[:-1] if text.endswith(".") else text)
        except ValueError:
            raise RequestError("rating", value, allowed) from None
    if not isinstance(number, int | float) or number != int(number) or not 1 <= number <= 5:
        raise RequestError("rating", value, allowed)
    return int(number)


def _known_rubric(rubric: str, vocabulary: Mapping[str, int] | Iterable[str]) -> str:
    _check_text("rubrics", rubric, MAX_NAME_CHARS)
    known = list(vocabulary)
    if rubric in vocabulary:
        return rubric
    # Same rubric typed in another case ("кафе"): take the vocabulary's spelling.
    by_fold = {k.casefold(): k for k in known}
    if rubric.casefold() in by_fold:
        return by_fold[rubric.casefold()]
    closest = difflib.get_close_matches(rubric, known, n=3, cutoff=0.6)
    if not closest:
        closest = difflib.get_close_matches(rubric.casefold(), list(by_fold), n=3, cutoff=0.6)
        closest = [by_fold[c] for c in closest]
    # The vocabulary is sorted by frequency, so its head makes good examples.
    hint = f"; closest: {', '.join(map(repr, closest))}" if closest else f"; e.g. {', '.join(map(repr, known[:3]))}"
    raise RequestError("rubrics", rubric, f"a rubric from the data's vocabulary ({len(known)} known)", hint)
