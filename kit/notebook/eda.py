"""The prepared dataset at a glance: small pandas tables for the EDA notebook (and anyone else).

Every function reads a prepared dataset (`kit data prepare`): its `stats.json`
(via `kit.data.prepare.load_stats`) and/or its splits (`load_prepared`). The
tables are plain `pandas.DataFrame`s, so a notebook plots them with one
`.plot` call and holds no logic of its own.

Example:
    >>> stats = {"synthetic": True, "input": "data/sample/geo-reviews-sample.tskv"}
    >>> data_label(stats)
    'SYNTHETIC sample (data/sample/geo-reviews-sample.tskv): figures describe generated reviews, not Yandex data'
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping

import pandas as pd

SPLITS = ("train", "validation", "test")


def data_label(stats: Mapping) -> str:
    """A one-line label saying whether figures come from the synthetic sample or real data."""
    if stats.get("synthetic"):
        return f"SYNTHETIC sample ({stats.get('input')}): figures describe generated reviews, not Yandex data"
    return f"real data ({stats.get('input')})"


def rating_table(stats: Mapping) -> pd.DataFrame:
    """Reviews per rating (rows 1-5) and split (columns), plus `share` of all reviews in %.

    Example:
        >>> rating_table({"ratings": {"train": {"5": 3, "1": 1}, "all": {"5": 3, "1": 1}}})["share_%"].to_dict()
        {1: 25.0, 5: 75.0}
    """
    table = pd.DataFrame({split: {int(k): v for k, v in counts.items()} for split, counts in stats["ratings"].items()})
    table = table.fillna(0).astype(int).sort_index()
    table.index.name = "rating"
    table["share_%"] = (100 * table["all"] / table["all"].sum()).round(1)
    return table


def review_lengths(dataset, split: str = "train") -> pd.DataFrame:
    """One row per review of `split`: `rating`, `chars`, `words`, `paragraphs`.

    Example:
        >>> review_lengths({"train": {"rating": [5], "text": ["Хорошо.\\nВернёмся!"]}})
           rating  chars  words  paragraphs
        0       5     17      2           2
    """
    rows = dataset[split]
    texts = list(rows["text"])
    return pd.DataFrame(
        {
            "rating": [int(r) for r in rows["rating"]],
            "chars": [len(t) for t in texts],
            "words": [len(t.split()) for t in texts],
            "paragraphs": [t.count("\n") + 1 for t in texts],
        }
    )


def length_by_rating(lengths: pd.DataFrame) -> pd.DataFrame:
    """Per rating: reviews, mean/median/p90 characters and mean words (from `review_lengths`)."""
    g = lengths.groupby("rating")
    return pd.DataFrame(
        {
            "reviews": g.size(),
            "mean_chars": g["chars"].mean().round(1),
            "median_chars": g["chars"].median(),
            "p90_chars": g["chars"].quantile(0.9).round(1),
            "mean_words": g["words"].mean().round(1),
        }
    )


def top_rubrics(stats: Mapping, n: int = 15) -> pd.DataFrame:
    """The `n` most reviewed single rubrics (from `stats.json`), with their share of reviews in %."""
    table = pd.DataFrame(stats["rubrics_top"][:n]).set_index("rubric")
    table["share_%"] = (100 * table["reviews"] / stats["counts"]["final"]).round(1)
    return table


def top_chains(dataset, n: int = 15) -> pd.DataFrame:
    """The `n` names with the most reviews over all splits, and in how many organisations (branches).

    Example:
        >>> top_chains({"train": {"name_ru": ["Пятёрочка", "Пятёрочка", None], "org_id": ["a", "b", "c"]}}).to_dict("index")
        {'Пятёрочка': {'reviews': 2, 'organisations': 2}}
    """
    reviews: Counter[str] = Counter()
    orgs: dict[str, set] = {}
    for split in _splits(dataset):
        for name, org in zip(dataset[split]["name_ru"], dataset[split]["org_id"], strict=True):
            if name:
                reviews[name] += 1
                orgs.setdefault(name, set()).add(org)
    top = reviews.most_common(n)
    table = pd.DataFrame(
        {"reviews": [c for _, c in top], "organisations": [len(orgs[k]) for k, _ in top]},
        index=pd.Index([k for k, _ in top], name="name_ru"),
    )
    return table


def quality_counts(stats: Mapping, dataset) -> pd.DataFrame:
    """Missing and dropped counts: what `prepare` removed (`stats.json`) and what the kept rows lack.

    Rows: lines read, malformed lines skipped, each drop reason (rating 0,
    empty, too short/long, duplicate text), reviews kept, then kept reviews
    with no name, no address, no keywords.
    """
    counts = stats["counts"]
    items: dict[str, int] = {"lines read": counts["lines"], "malformed lines skipped": counts["skipped_lines"]}
    items.update({f"dropped: {k.replace('_', ' ')}": v for k, v in counts["dropped"].items()})
    items["reviews kept"] = counts["final"]
    missing = {"kept, no name": 0, "kept, no address": 0, "kept, no keywords": 0}
    for split in _splits(dataset):
        rows = dataset[split]
        missing["kept, no name"] += sum(not x for x in rows["name_ru"])
        missing["kept, no address"] += sum(not x for x in rows["address"])
        missing["kept, no keywords"] += sum(not x for x in rows["keywords"])
    items.update(missing)
    return pd.DataFrame({"count": items}).rename_axis("what")


def keyword_examples(dataset, split: str = "train", n: int = 5, *, chars: int = 160, seed: int = 0) -> pd.DataFrame:
    """`n` random reviews of `split` with their extracted keywords, one per rating where possible."""
    rows = dataset[split]
    ratings = [int(r) for r in rows["rating"]]
    picks: list[int] = []
    rng = random.Random(seed)
    for rating in sorted(set(ratings)):
        candidates = [i for i, r in enumerate(ratings) if r == rating and rows["keywords"][i]]
        if candidates:
            picks.append(rng.choice(candidates))
    picks = picks[:n]
    return pd.DataFrame(
        {
            "rating": [ratings[i] for i in picks],
            "rubrics": ["; ".join(rows["rubrics"][i]) for i in picks],
            "keywords": [", ".join(rows["keywords"][i]) for i in picks],
            "text": [_clip(rows["text"][i], chars) for i in picks],
        }
    )


def prompt_example(dataset, split: str = "test", row: int = 0) -> str:
    """The training string a row becomes: its prompt (the template of `kit.data.prompt`) + target."""
    r = dataset[split][row]
    return r["prompt"] + r["target"]


def _splits(dataset):
    return [s for s in SPLITS if s in dataset]


def _clip(text: str, chars: int) -> str:
    text = text.replace("\n", " ⏎ ")
    return text if len(text) <= chars else text[: chars - 1] + "…"
