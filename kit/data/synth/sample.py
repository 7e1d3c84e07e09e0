"""Deterministic synthetic reviews in the real dataset's format and proportions.

The real `geo-reviews-dataset-2023.tskv` cannot be fetched on every machine,
so the kit ships a synthetic stand-in (`data/sample/geo-reviews-sample.tskv`)
that tests, the tiny model and the benchmarks use. It reproduces what the
pipeline depends on (see docs/design.md, "The data"):

* the TSKV format, `rating` written `5.`, `;`-joined rubrics, escaped newlines;
* the rating shares (5: 78.1 %, 4: 8.2 %, 1: 6.9 %, 3: 4.3 %, 2: 2.4 %) plus a
  few rating-0 rows, ~0.2 % rows without a name and a few exact duplicate
  texts (planted at their real rates, with a floor so small files have them);
* the top rubrics in their real ratios, multi-rubric strings, chains with
  many branches (Пятёрочка on top at ~1.2 % of reviews) and independent
  organisations with several reviews each, at Russian addresses;
* texts built from phrase banks per rubric group × aspect × sentiment
  (`kit.data.synth.banks*`), so rating, rubric group and keywords are predictable from
  the text, negative reviews are longer, some have several paragraphs, and no
  text repeats except the planted duplicates.

Everything is drawn from `random.Random` instances seeded from `seed`, and
nothing depends on `hash()` or set order, so the same `(rows, seed)` gives a
byte-identical file on any machine.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import os
import random
from collections.abc import Iterator

from kit.data.synth import banks as common
from kit.data.synth import places
from kit.data.synth.banks_retail import GROCERY, PHARMACY, SHOP
from kit.data.synth.banks_services import BEAUTY, CAR, CULTURE, FITNESS, MEDICAL
from kit.data.synth.banks_venues import FOOD, HOTEL
from kit.data.tskv import Record, write_tskv
from kit.errors import UserError

GROUP_BANKS = {"hotel": HOTEL, "food": FOOD, "grocery": GROCERY, "pharmacy": PHARMACY,
               "beauty": BEAUTY, "car": CAR, "medical": MEDICAL, "fitness": FITNESS,
               "culture": CULTURE, "shop": SHOP}  # fmt: skip

# Real shares (docs/design.md); rating 0 is planted separately at its real rate.
RATING_SHARES = {5: 0.781, 4: 0.082, 1: 0.069, 3: 0.043, 2: 0.024}
# Planted oddities: (real count per 500,000 rows, floor, rows from which the
# floor applies), so even a small sample has a few of each for tests to find.
_REAL_ROWS = 500_000
_PLANTED = {"zero": (200, 2, 10), "noname": (970, 1, 10), "dup": (115, 3, 100)}

RUBRIC_GROUPS: dict[str, str] = {e[0]: e[1] for e in places.RUBRIC_ENTRIES}

# Probability that a review goes to a new organisation rather than to one
# already reviewed; chains open branches more readily. An existing one is
# picked in proportion to its reviews with probability _P_POPULAR (popular
# places get more: a tail, as on a map), else uniformly (so no single place
# outgrows the top chain in a small file).
_P_NEW_ORG = 0.4
_P_NEW_BRANCH = 0.6
_P_POPULAR = 0.25
# How many aspects a review talks about, by rating (drawn uniformly from the tuple):
# unhappy reviewers explain more, which makes negative reviews longer.
_N_ASPECTS = {5: (1, 2, 3, 3, 3, 4, 4, 5, 5), 4: (2, 3, 3, 4, 4, 5), 3: (3, 3, 4, 4, 5, 5),
              2: (3, 4, 4, 5, 5, 6), 1: (4, 4, 5, 5, 6, 7)}  # fmt: skip
# Chance of a long, multi-paragraph review (the real file's long tail).
_P_LONG = {5: 0.03, 4: 0.05, 3: 0.07, 2: 0.12, 1: 0.14}
_TONE = {5: "pos", 4: "pos", 3: "mix", 2: "neg", 1: "neg"}


def rubric_group(rubrics: tuple[str, ...] | list[str] | str) -> str:
    """The synthetic rubric group (`hotel`, `food`, …) of a rubric string.

    Raises:
        KeyError: for a rubric string the generator never writes.

    Example:
        >>> rubric_group(("Супермаркет", "Магазин продуктов"))
        'grocery'
    """
    group = RUBRIC_GROUPS.get(rubrics if isinstance(rubrics, str) else ";".join(rubrics))
    if group is None:
        raise KeyError(f"not a synthetic rubric string: {rubrics!r}")
    return group


class _Profile:
    """Everything needed to write reviews for one rubric string."""

    __slots__ = ("rubrics", "group", "must", "specific", "aspects", "open", "close", "fillers")

    def __init__(self, rubric_str: str, group: str):
        bank = GROUP_BANKS[group]
        self.rubrics = tuple(rubric_str.split(";"))
        self.group = group
        first = self.rubrics[0]
        extras: list[str] = []
        for r in self.rubrics:
            extras.extend(bank["rubric_aspects"].get(r, ()))
        default = bank.get("rubric_default", {}).get(first, bank["default"])
        names = list(dict.fromkeys([*extras, *default]))  # ordered de-duplication
        # Extras (a sauna, a hostel kitchen) are what makes a rubric recognisable:
        # every review of such a place mentions one.
        self.must = _aspect(bank, extras[0]) if extras else None
        names = [n for n in names if not extras or n != extras[0]]
        self.aspects = tuple(_aspect(bank, n) for n in names)
        # Indexes of aspects with no shared templates: a review always has one,
        # so its rubric group can be told from the text.
        self.specific = tuple(i for i, n in enumerate(names) if n not in common.COMMON_ASPECTS)
        self.open = _aspect(bank, "open")
        self.close = _aspect(bank, "close")
        fillers = dict(common.COMMON_FILLERS)
        fillers.update(bank["fillers"])
        for r in reversed(self.rubrics):  # the first rubric's fillers win
            fillers.update(bank["rubric_fillers"].get(r, {}))
        self.fillers = fillers


def _aspect(bank: dict, name: str) -> dict[str, tuple[str, ...]]:
    blocks = [b for b in (common.COMMON_ASPECTS.get(name), bank["aspects"].get(name)) if b]
    if not blocks:
        raise KeyError(f"aspect {name!r} has no phrase bank")
    parsed = [common.parse_block(b) for b in blocks]
    out = {s: tuple(itertools.chain.from_iterable(p[s] for p in parsed)) for s in ("pos", "mix", "neg")}
    for s, templates in out.items():
        if not templates:
            raise KeyError(f"aspect {name!r} has no {s} templates")
    return out


PROFILES: dict[str, _Profile] = {e[0]: _Profile(e[0], e[1]) for e in places.RUBRIC_ENTRIES}

# One sampling slot per chain and one per rubric string's independent remainder.
_SLOTS: list[tuple[str, str | None]] = []  # (rubric string, chain name or None)
_SLOT_CUM: list[float] = []
_total = 0.0
for _rubric_str, _group, _weight, _chains in places.RUBRIC_ENTRIES:
    _rest = _weight - sum(w for _, w in _chains)
    if _rest <= 0:
        raise ValueError(f"chains outweigh their rubric string {_rubric_str!r}")
    for _name, _w in (*_chains, (None, _rest)):
        _total += _w
        _SLOTS.append((_rubric_str, _name))
        _SLOT_CUM.append(_total)
_CITY_CUM = list(itertools.accumulate(c[2] for c in places.CITIES))
_RATINGS = tuple(RATING_SHARES)
_RATING_CUM = list(itertools.accumulate(RATING_SHARES.values()))


class _Slots(dict):
    """`str.format_map` mapping that draws each `{slot}` from its filler list on demand.

    `{x2}` draws from list `x` a value different from `{x}`'s, so a template can
    name two dishes. Drawing happens in the order fields appear, so it is
    deterministic for a given generator state.
    """

    __slots__ = ("rng", "fillers")

    def __init__(self, rng: random.Random, fillers: dict[str, tuple[str, ...]]):
        super().__init__()
        self.rng = rng
        self.fillers = fillers

    def __missing__(self, key: str) -> str:
        base = key.rstrip("0123456789")
        values = self.fillers[base]
        value = self.rng.choice(values)
        if base != key and len(values) > 1:
            while value == self.get(base):
                value = self.rng.choice(values)
        self[key] = value
        return value


def render_template(rng: random.Random, template: str, fillers: dict) -> str:
    """`template` with each `{slot}` drawn from `fillers`, its first letter capitalised.

    Args:
        rng: The generator the slots are drawn from (deterministic for its state).
        template: A sentence with `{slot}` fields (`{x2}`: another value than `{x}`'s).
        fillers: Slot name -> the values it draws from.

    Example:
        >>> render_template(random.Random(0), "{dish} и {dish2} вкусные.", {"dish": ("суп", "плов")})
        'Плов и суп вкусные.'
    """
    text = template.format_map(_Slots(rng, fillers)) if "{" in template else template
    return text[0].upper() + text[1:] if text[0].islower() else text


def _lower_first(text: str) -> str:
    # Keep acronyms and Latin words ("Wi-Fi", "IMAX") as they are.
    if "А" <= text[0] <= "Я" and not (len(text) > 1 and text[1].isupper()):
        return text[0].lower() + text[1:]
    return text


def _sentiments(rating: int, n: int, rng: random.Random) -> list[str]:
    """Per-aspect sentiment for a review with `rating` stars."""
    if rating == 5:
        return ["pos"] * n
    if rating == 1:
        return ["neg"] * n
    if rating == 4:
        out = ["pos"] * n
        out[rng.randrange(n)] = "mix" if rng.random() < 0.85 else "neg"
        return out
    if rating == 2:
        out = ["neg"] * n
        r = rng.random()
        if r < 0.85:
            out[rng.randrange(n)] = "mix" if r < 0.6 else "pos"
        return out
    out = [rng.choice(("pos", "mix", "mix", "neg")) for _ in range(n)]
    if "neg" not in out and "mix" not in out:
        out[rng.randrange(n)] = "neg"
    if "pos" not in out and "mix" not in out:
        out[rng.randrange(n)] = "pos"
    return out


def _compose(profile: _Profile, rating: int, rng: random.Random, long: bool) -> str:
    """One review text: opening, aspect sentences with connectors, closing."""
    tone = _TONE[rating]
    fillers = profile.fillers
    if long:
        chosen = list(profile.aspects)
        rng.shuffle(chosen)
        per_aspect = 3
    else:
        n = rng.choice(_N_ASPECTS[rating])
        first = rng.choice(profile.specific)
        rest = [a for i, a in enumerate(profile.aspects) if i != first]
        chosen = [profile.aspects[first], *rng.sample(rest, min(n, len(profile.aspects)) - 1)]
        rng.shuffle(chosen)
        per_aspect = 2 if rng.random() < 0.25 else 1
    if profile.must is not None:
        chosen.insert(rng.randrange(min(2, len(chosen) + 1)), profile.must)
    body: list[str] = []
    prev = None
    for aspect, sentiment in zip(chosen, _sentiments(rating, len(chosen), rng), strict=True):
        options = aspect[sentiment]
        k = 1 if per_aspect == 1 or rng.random() < 0.4 else rng.randint(2, per_aspect)
        for template in rng.sample(options, min(k, len(options))):
            sentence = render_template(rng, template, fillers)
            if prev is not None and rng.random() < 0.3:
                sentence = rng.choice(common.CONNECTORS[prev, sentiment]) + _lower_first(sentence)
            body.append(sentence)
            prev = sentiment
    sentences: list[str] = []
    if long or rng.random() < 0.7:
        sentences.append(render_template(rng, rng.choice(profile.open[tone]), fillers))
    sentences.extend(body)
    if long or rng.random() < (0.85 if tone == "neg" else 0.7):
        sentences.append(render_template(rng, rng.choice(profile.close[tone]), fillers))
    if rng.random() < 0.25:
        sentences.append(rng.choice(common.RATING_LINES[rating]))
    return _join(sentences, rng, long)


def _join(sentences: list[str], rng: random.Random, long: bool) -> str:
    """Join sentences into one paragraph, or several separated by real newlines."""
    if len(sentences) < 4 or not (long or rng.random() < 0.1):
        return " ".join(sentences)
    parts = [sentences[0]]
    breaks = 0
    for s in sentences[1:]:
        if rng.random() < (0.35 if long else 0.25):
            parts.append("\n")
            breaks += 1
        else:
            parts.append(" ")
        parts.append(s)
    if not breaks:  # a multi-paragraph review has at least one break: after the opening
        parts[1] = "\n"
    return "".join(parts)


def _address(rng: random.Random) -> str:
    city, region, _, big = places.CITIES[bisect.bisect(_CITY_CUM, rng.random() * _CITY_CUM[-1])]
    own = places.CITY_STREETS.get(city)
    street = rng.choice(own) if own and rng.random() < 0.5 else rng.choice(places.STREETS)
    house = str(1 + int(140 * rng.random() ** 2))
    r = rng.random()
    if r < 0.15:
        house += f"к{rng.randint(1, 4)}"
    elif r < 0.2:
        house += rng.choice("АБВ")
    elif r < 0.25:
        house += f"с{rng.randint(1, 3)}"
    elif r < 0.28:
        house += f", корп. {rng.randint(1, 3)}"
    if region and (not big or rng.random() < 0.4):
        return f"{region}, {city}, {street}, {house}"
    return f"{city}, {street}, {house}"


def _org_name(rubrics: tuple[str, ...], rng: random.Random) -> str:
    first = rubrics[0]
    if first in places.CULTURE_NAMES:
        return rng.choice(places.CULTURE_NAMES[first])
    prefix = rng.choice(places.NAME_PREFIXES.get(first, ("",)))
    if prefix in places.NUMBERED_PREFIXES:
        return f"{prefix} {rng.randint(1, 250)}"
    if prefix == "Продукты" and rng.random() < 0.3:
        return prefix
    return f"{prefix} {rng.choice(places.NAME_CORES)}".strip()


def planted_counts(rows: int) -> dict[str, int]:
    """How many rating-0 rows, nameless rows and duplicate texts `rows` rows get.

    Real rates per 500,000 rows (200, 970 and 115), with a floor of 2, 1 and 3
    in files of at least 10, 10 and 100 rows.

    Example:
        >>> planted_counts(5000)
        {'zero': 2, 'noname': 10, 'dup': 3}
    """
    out = {}
    for kind, (real, floor, min_rows) in _PLANTED.items():
        out[kind] = max(floor, round(rows * real / _REAL_ROWS)) if rows >= min_rows else 0
    return out


def generate_records(rows: int, seed: int = 0) -> Iterator[Record]:
    """Yield `rows` synthetic reviews, the same ones for the same `(rows, seed)`.

    Args:
        rows: Number of reviews (> 0).
        seed: Random seed; any integer.

    Raises:
        UserError: when `rows` is not a positive integer.

    Example:
        >>> records = list(generate_records(200, seed=1))
        >>> len(records), sorted({r.rating for r in records}) == [0, 1, 2, 3, 4, 5]
        (200, True)
        >>> records[0] == next(generate_records(200, seed=1))
        True
    """
    if isinstance(rows, bool) or not isinstance(rows, int) or rows <= 0:
        raise UserError(f"rows must be a positive integer. Received: rows={rows!r}")
    counts = planted_counts(rows)
    # Separate streams, so the plan does not shift when text generation changes.
    plan_rng = random.Random(f"kit.synth:{seed}:plan")
    rng = random.Random(f"kit.synth:{seed}:rows")
    # Duplicates sit in the second half, so there are earlier texts to copy.
    dup_at = set(plan_rng.sample(range(rows // 2, rows), counts["dup"]))
    others = [i for i in range(rows) if i not in dup_at]
    special = plan_rng.sample(others, counts["zero"] + counts["noname"])
    zero_at = set(special[: counts["zero"]])
    noname_at = set(special[counts["zero"] :])

    # (rubric string, chain) -> (distinct organisations, one entry per review)
    pools: dict[tuple[str, str | None], tuple[list, list]] = {}
    recent: dict[str, list[tuple[int, str]]] = {}  # group -> (rating, text) for duplicates
    seen: set[bytes] = set()
    for i in range(rows):
        rubric_str, chain = _SLOTS[bisect.bisect(_SLOT_CUM, rng.random() * _total)]
        profile = PROFILES[rubric_str]
        if i in noname_at:
            # A nameless place is its own organisation and gets no more reviews.
            name, address = None, _address(rng)
        else:
            orgs, reviewed = pools.setdefault((rubric_str, chain), ([], []))
            if not orgs or rng.random() < (_P_NEW_BRANCH if chain else _P_NEW_ORG):
                org = (chain or _org_name(profile.rubrics, rng), _address(rng))
                orgs.append(org)
            elif rng.random() < _P_POPULAR:
                org = rng.choice(reviewed)
            else:
                org = rng.choice(orgs)
            reviewed.append(org)
            name, address = org
        if i in dup_at:
            # Same group when possible: a copied review should still fit its rubric.
            source = recent.get(profile.group) or next(v for v in recent.values() if v)
            rating, text = rng.choice(source)
            yield Record(address, name, rating, profile.rubrics, text)
            continue
        rating = _RATINGS[bisect.bisect(_RATING_CUM, rng.random() * _RATING_CUM[-1])]
        text = _unique_text(profile, rating, rng, seen)
        if i in zero_at:
            yield Record(address, name, 0, profile.rubrics, text)
            continue
        kept = recent.setdefault(profile.group, [])
        if len(kept) < 64:
            kept.append((rating, text))
        else:
            kept[rng.randrange(64)] = (rating, text)
        yield Record(address, name, rating, profile.rubrics, text)


def _unique_text(profile: _Profile, rating: int, rng: random.Random, seen: set[bytes]) -> str:
    # A digest, not the text, goes in `seen`: 500,000 texts would take ~0.5 GB.
    long = rng.random() < _P_LONG[rating]
    for attempt in range(100):
        text = _compose(profile, rating, rng, long or attempt >= 10)
        key = hashlib.blake2b(text.encode("utf-8"), digest_size=12).digest()
        if key not in seen:
            seen.add(key)
            return text
    raise RuntimeError(f"could not write a new {rating}-star text for {profile.rubrics}")


def write_sample(path: str | os.PathLike, *, rows: int, seed: int = 0) -> int:
    """Write `rows` synthetic reviews to a `.tskv` file atomically; returns the count.

    Args:
        path: Output file (its directory must exist).
        rows: Number of reviews (> 0).
        seed: Random seed; the same `(rows, seed)` gives a byte-identical file.

    Raises:
        UserError: when `rows` is not a positive integer.

    Example:
        >>> import tempfile, pathlib
        >>> from kit.data.tskv import read_tskv
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "sample.tskv"
        >>> write_sample(p, rows=50, seed=0)
        50
        >>> sum(1 for _ in read_tskv(p))
        50
    """
    if isinstance(rows, bool) or not isinstance(rows, int) or rows <= 0:
        raise UserError(f"--rows must be a positive integer. Received: --rows={rows!r}")
    parent = os.path.dirname(os.fspath(path)) or "."
    if not os.path.isdir(parent):
        raise UserError(f"Output directory does not exist: {parent}. Create it first.")
    return write_tskv(path, generate_records(rows, seed))
