"""The `prepare` stage: raw reviews in, a training-ready dataset directory out.

    raw .tskv / .parquet / hf://  →  read (bad lines: fail or skip)
      → clean (whitespace, rubrics; drop rating 0, empty, too short/long, duplicates)
      → split by organisation (train / validation / test)
      → optional rating balancing of train
      → keywords (noun lemmas, TF-IDF) → prompt (THE template) + target
      → DIR/{train,validation,test}/ (`datasets`), stats.json, rubrics.json

Everything is a pure function of the input and the seed: running it twice
gives byte-identical files. The directory is swapped in atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import time
from collections import Counter
from pathlib import Path

from kit.atomic import OutputKind, check_output_dir, output_dir, write_json
from kit.data import is_synthetic_sample
from kit.data import keywords as kw
from kit.data.clean import Cleaner, CleanOptions
from kit.data.prompt import build_prompt, build_target
from kit.data.split import SPLITS, assign_split, check_shares, org_id, unit_hash
from kit.data.tskv import ReadReport, Record, read_records
from kit.errors import UserError
from kit.options import check_options, option

STATS_FILE = "stats.json"
RUBRICS_FILE = "rubrics.json"
DATASET_DICT = "dataset_dict.json"  # written by `datasets.DatasetDict.save_to_disk`
# A prepared dataset dir; one from before the kit's marker is known by its dataset_dict.json and stats.json.
PREPARED = OutputKind("prepared dataset", "kit data prepare", legacy=(DATASET_DICT, STATS_FILE))


@dataclasses.dataclass(frozen=True, kw_only=True)
class PrepareOptions:
    """Settings of the `prepare` stage.

    Attributes:
        on_error: `"fail"` stops at the first bad input line; `"skip"` lists
            skipped lines in stats.json.
        max_rows: Read at most this many input records (quick runs).
        balance: `"rating"` downsamples train to equal counts per rating.
        seed: Seed of the split and of the random choices below.
        val_share: Share of organisations in validation.
        test_share: Share of organisations in test.
        min_chars: Shorter reviews are dropped.
        max_chars: Longer reviews are dropped (not cut).
        drop_keywords: Share of train/validation prompts without keywords.
        drop_name: Share of train/validation prompts without the name.
        drop_address: Share of train/validation prompts without the address.
            Test prompts always carry every field the row has.
    """

    on_error: str = option(
        "fail", "bad lines: stop at the first (fail) or list them in stats.json (skip)", choices=("fail", "skip")
    )
    max_rows: int | None = option(None, "read at most N input rows (default: all)", minimum=1)
    balance: str = option("none", "rating: downsample train so ratings are balanced", choices=("none", "rating"))
    seed: int = option(0, "seed for splitting and field dropping", minimum=0)
    val_share: float = option(0.05, "share of organisations in validation", minimum=0, maximum=0.5)
    test_share: float = option(0.05, "share of organisations in test", minimum=0, maximum=0.5)
    min_chars: int = 20
    max_chars: int = 2500
    drop_keywords: float = 0.15
    drop_name: float = 0.3
    drop_address: float = 0.5

    def __post_init__(self):
        check_options(self, flags=True)
        check_shares(self.val_share, self.test_share)  # their sum, too, must leave room for train
        if not 0 < self.min_chars < self.max_chars:
            raise UserError(
                f"Length limits must satisfy 0 < min_chars < max_chars. "
                f"Received: min_chars={self.min_chars}, max_chars={self.max_chars}"
            )


def prepare(
    input: str,
    out: str | Path,
    *,
    options: PrepareOptions | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> dict:
    """Run the whole stage; return the stats written to `stats.json` plus `timings_s`.

    Args:
        input: A `.tskv` or `.parquet` file, or `hf://OWNER/NAME` (downloaded
            to `data/raw` first).
        out: The prepared dataset directory: a new or empty one, or (with
            `overwrite`) an earlier prepared dataset, replaced atomically.
            Anything else at `out` is refused before any work starts
            (`kit.atomic.check_output_dir`).
        options: See `PrepareOptions`.
        progress: Show progress bars.
        overwrite: Replace an earlier prepared dataset at `out`.

    Example:
        >>> import tempfile, pathlib
        >>> from kit.data.synth import write_sample
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> write_sample(d / "s.tskv", rows=300, seed=0)
        300
        >>> prepare(str(d / "s.tskv"), d / "prepared", progress=False)["splits"]
        {'train': 265, 'validation': 18, 'test': 12}
    """
    laps = _Laps()
    options = options or PrepareOptions()
    check_output_dir(out, PREPARED, overwrite=overwrite)
    report = ReadReport(str(input))
    cleaner = Cleaner(CleanOptions(min_chars=options.min_chars, max_chars=options.max_chars))
    kept = _read_clean(input, options, report, cleaner, progress=progress)
    laps.lap("read_clean")
    rows = _assign_splits(input, kept, options)
    laps.lap("split")
    extractor = _fit_keywords(kept, progress=progress)
    laps.lap("keyword_df")
    dataset_dict, keyword_counter = _build_datasets(rows, extractor, options, progress=progress)
    laps.lap("keywords_prompts")
    vocabulary = _rubric_vocabulary(kept)
    stats = _stats(input, options, report, cleaner, rows, keyword_counter, vocabulary)
    stats["fingerprint"] = _write(out, dataset_dict, stats, vocabulary, overwrite=overwrite)
    laps.lap("stats_write")
    # Timings vary run to run, so they are returned but kept out of stats.json,
    # which must be byte-identical for the same input.
    return {**stats, "timings_s": laps.timings}


def load_prepared(path: str | Path):
    """Load a prepared dataset directory as a `datasets.DatasetDict`.

    Raises:
        UserError: when the directory is missing or is not a prepared dataset.

    Example:
        >>> load_prepared("no/such/dir")
        Traceback (most recent call last):
        ...
        kit.errors.UserError: Prepared dataset not found: no/such/dir. Run `kit data prepare --input data/sample/geo-reviews-sample.tskv --out no/such/dir` first.
    """
    import datasets

    path = Path(path)
    if not (path / DATASET_DICT).is_file():
        raise UserError(
            f"Prepared dataset not found: {path}. Run "
            f"`kit data prepare --input data/sample/geo-reviews-sample.tskv --out {path}` first."
        )
    splits = json.loads((path / DATASET_DICT).read_text(encoding="utf-8"))["splits"]
    out = datasets.DatasetDict()
    for split in splits:
        state = json.loads((path / split / "state.json").read_text(encoding="utf-8"))
        if state.get("_data_files"):
            out[split] = datasets.load_from_disk(str(path / split))
        else:
            # `save_to_disk` writes no data file for a 0-row split (e.g. --test-share 0)
            # and `load_from_disk` then fails; rebuild the empty split from its features.
            info = datasets.DatasetInfo.from_directory(str(path / split))
            out[split] = datasets.Dataset.from_dict(
                {name: [] for name in info.features}, features=info.features, split=split
            )
    return out


def load_rubrics(path: str | Path) -> dict[str, int]:
    """The rubric vocabulary saved with a prepared dataset (rubric → review count).

    Example:
        >>> load_rubrics("no/such/dir")
        Traceback (most recent call last):
        ...
        kit.errors.UserError: Rubric vocabulary not found: no/such/dir/rubrics.json. Run `kit data prepare` first.
    """
    file = Path(path) / RUBRICS_FILE
    if not file.is_file():
        raise UserError(f"Rubric vocabulary not found: {file}. Run `kit data prepare` first.")
    return json.loads(file.read_text(encoding="utf-8"))


def load_stats(path: str | Path) -> dict:
    """The `stats.json` of a prepared dataset (counts, distributions, fingerprint)."""
    file = Path(path) / STATS_FILE
    if not file.is_file():
        raise UserError(f"Dataset stats not found: {file}. Run `kit data prepare` first.")
    return json.loads(file.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- steps
# `prepare` runs these in order; each one is timed as a lap of its own.


@dataclasses.dataclass
class _Rows:
    """The cleaned records and where each goes: rows are indices into `kept`."""

    kept: list[Record]
    orgs: list[str]  # organisation id of each record
    keys: list[str]  # row key of each record; seeds its random choices
    by_split: dict[str, list[int]]
    balanced_away: int = 0


class _Laps:
    """Wall time of each step in seconds, in the order the steps ran."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._last, 2)
        self._last = now


def _bar(items, desc: str, *, progress: bool, **kwargs):
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, disable=not progress, mininterval=1.0, **kwargs)


def _read_clean(
    input: str, options: PrepareOptions, report: ReadReport, cleaner: Cleaner, *, progress: bool
) -> list[Record]:
    """Read the input and clean it record by record, so the raw file is never held in memory.

    `report` and `cleaner` keep the line and drop counts for stats.json.
    """
    path = _resolve_input(input, progress=progress)
    records = read_records(path, on_error=options.on_error, report=report)
    if options.max_rows is not None:
        records = itertools.islice(records, options.max_rows)
    kept = list(cleaner.clean(_bar(records, "read+clean", progress=progress, unit=" rows")))
    if not kept:
        raise UserError(
            f"No usable reviews in {input} after cleaning ({_dropped_summary(cleaner)}). "
            "Check the file, or use --on-error skip if lines were malformed."
        )
    return kept


def _assign_splits(input: str, kept: list[Record], options: PrepareOptions) -> _Rows:
    """Split by organisation (all reviews of one place land in one split), then balance train."""
    orgs = [org_id(r.name_ru, r.address) for r in kept]
    split_of = {
        o: assign_split(o, seed=options.seed, val_share=options.val_share, test_share=options.test_share)
        for o in set(orgs)
    }
    by_split: dict[str, list[int]] = {s: [] for s in SPLITS}
    for i, o in enumerate(orgs):
        by_split[split_of[o]].append(i)
    rows = _Rows(kept=kept, orgs=orgs, keys=[_row_key(r) for r in kept], by_split=by_split)
    if options.balance == "rating":
        train = by_split["train"]
        by_split["train"] = _balance_by_rating(train, kept, rows.keys, options.seed)
        rows.balanced_away = len(train) - len(by_split["train"])
    if not by_split["train"]:
        raise UserError(
            f"The train split of {input} is empty ({len(kept)} usable reviews). "
            "Use more rows or lower --val-share/--test-share."
        )
    return rows


def _fit_keywords(kept: list[Record], *, progress: bool) -> kw.KeywordExtractor:
    """Document frequencies for TF-IDF keywords, over every kept review."""
    texts = (r.text for r in kept)
    return kw.KeywordExtractor().fit(_bar(texts, "keyword df", progress=progress, total=len(kept)))


def _build_datasets(rows: _Rows, extractor: kw.KeywordExtractor, options: PrepareOptions, *, progress: bool):
    """One `datasets.Dataset` of prompt/target rows per split, and the keyword counts for stats.json."""
    import datasets

    features = _features(datasets)
    dataset_dict = datasets.DatasetDict()
    keyword_counter: Counter[str] = Counter()
    for split in SPLITS:
        idx = rows.by_split[split]
        made = (_make_row(rows.kept[i], rows.orgs[i], rows.keys[i], split, extractor, options) for i in idx)
        made = _bar(made, f"{split} rows", progress=progress, total=len(idx))
        table = _arrow_table(made, features.arrow_schema, keyword_counter)
        # Our own fingerprint (rows + options): without one, `datasets` hashes
        # the whole in-memory table, which costs a full serialised copy.
        fingerprint = hashlib.sha256(
            f"{split}\x1f{options}\x1f{','.join(rows.keys[i] for i in idx)}".encode()
        ).hexdigest()[:16]
        dataset_dict[split] = datasets.Dataset(
            table, info=datasets.DatasetInfo(features=features), split=split, fingerprint=fingerprint
        )
    return dataset_dict, keyword_counter


def _rubric_vocabulary(kept: list[Record]) -> dict[str, int]:
    """Rubric → review count, most frequent first (ties by name, so the order is stable)."""
    counts = Counter(r for rec in kept for r in rec.rubrics)
    return {r: n for r, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))}


def _write(out: str | Path, dataset_dict, stats: dict, vocabulary: dict[str, int], *, overwrite: bool) -> str:
    """Save the splits, stats.json and rubrics.json as one directory swap; return the data fingerprint.

    stats.json gets the fingerprint as its last key, which is why it is
    written only after the splits are on disk.
    """
    import datasets

    # Our own bars already cover the work; datasets' "Saving the dataset" bars are noise.
    datasets.disable_progress_bars()
    try:
        with output_dir(out, PREPARED, overwrite=overwrite) as tmp:
            dataset_dict.save_to_disk(str(tmp))
            fingerprint = _fingerprint(tmp)
            write_json(tmp / STATS_FILE, {**stats, "fingerprint": fingerprint})
            write_json(tmp / RUBRICS_FILE, vocabulary)
    finally:
        datasets.enable_progress_bars()
    return fingerprint


# --------------------------------------------------------------------------- helpers


def _resolve_input(input: str, *, progress: bool) -> Path:
    if str(input).startswith("hf://"):
        from kit.data.download import download

        repo = str(input)[len("hf://") :]
        return download("hub", "data/raw", repo=repo, progress=progress)
    return Path(input)


def _row_key(record: Record) -> str:
    # Texts are unique after cleaning, so the text identifies the row.
    return hashlib.blake2b(record.text.encode("utf-8"), digest_size=8).hexdigest()


def _balance_by_rating(rows: list[int], kept: list[Record], keys: list[str], seed: int) -> list[int]:
    """Keep the same number of train rows for every rating (that of the rarest).

    Which rows stay is decided by a hash of the row and the seed, not by order.
    """
    by_rating: dict[int, list[int]] = {}
    for i in rows:
        by_rating.setdefault(kept[i].rating, []).append(i)
    target = min(len(v) for v in by_rating.values())
    keep: set[int] = set()
    for idx in by_rating.values():
        keep.update(sorted(idx, key=lambda i: unit_hash(f"balance\x1f{keys[i]}", seed))[:target])
    return [i for i in rows if i in keep]


def _make_row(record: Record, org: str, key: str, split: str, extractor, options: PrepareOptions) -> dict:
    def chance(purpose: str) -> float:
        return unit_hash(f"{purpose}\x1f{key}", options.seed)

    keywords = extractor.extract(record.text, k=kw.keyword_count(chance("k")))
    partial = split != "test"  # test requests carry every field the row has
    prompt = build_prompt(
        rubrics=record.rubrics,
        rating=record.rating,
        keywords=[] if partial and chance("drop_keywords") < options.drop_keywords else keywords,
        name=None if partial and chance("drop_name") < options.drop_name else record.name_ru,
        address=None if partial and chance("drop_address") < options.drop_address else record.address,
    )
    return {
        "org_id": org,
        "address": record.address,
        "name_ru": record.name_ru,
        "rating": record.rating,
        "rubrics": list(record.rubrics),
        "text": record.text,
        "keywords": keywords,
        "prompt": prompt,
        "target": build_target(record.text),
    }


def _arrow_table(rows, schema, keyword_counter: Counter, chunk: int = 10_000):
    """Rows → an Arrow table, built in record batches of `chunk` rows so a split
    never exists as whole Python column lists (the peak-memory cost on 500k rows).
    Counts keywords on the way ("" counts reviews without any) for stats.json."""
    import pyarrow as pa

    batches, buffer = [], []
    for row in rows:
        keyword_counter.update(row["keywords"] or [""])
        buffer.append(row)
        if len(buffer) == chunk:
            batches.append(pa.RecordBatch.from_pylist(buffer, schema=schema))
            buffer = []
    if buffer or not batches:
        batches.append(pa.RecordBatch.from_pylist(buffer, schema=schema))
    return pa.Table.from_batches(batches, schema=schema)


def _features(datasets):
    string = datasets.Value("string")
    return datasets.Features(
        {
            "org_id": string,
            "address": string,
            "name_ru": string,
            "rating": datasets.Value("int8"),
            "rubrics": datasets.Sequence(string),
            "text": string,
            "keywords": datasets.Sequence(string),
            "prompt": string,
            "target": string,
        }
    )


def _percentiles(values: list[int]) -> dict[str, float]:
    import numpy as np

    if not values:
        return {}
    arr = np.asarray(values)
    out = {f"p{q}": round(float(np.percentile(arr, q)), 1) for q in (5, 25, 50, 75, 95, 99)}
    out.update(mean=round(float(arr.mean()), 1), max=int(arr.max()))
    return out


def _dropped_summary(cleaner: Cleaner) -> str:
    return ", ".join(f"{k}: {v}" for k, v in cleaner.dropped.items() if v) or "nothing read"


def _stats(input, options, report, cleaner, rows: _Rows, keyword_counter: Counter, vocabulary: dict[str, int]) -> dict:
    """Everything stats.json says, except the fingerprint of the written files."""
    kept, orgs, rows_by_split = rows.kept, rows.orgs, rows.by_split
    ratings = {s: dict(sorted(Counter(kept[i].rating for i in rows).items())) for s, rows in rows_by_split.items()}
    ratings["all"] = dict(sorted(Counter(r.rating for r in kept).items()))
    chars = [len(r.text) for r in kept]
    by_rating: dict[int, list[int]] = {}
    for r, n in zip(kept, chars, strict=True):
        by_rating.setdefault(r.rating, []).append(n)
    without = keyword_counter.pop("", 0)
    n_rows = sum(len(v) for v in rows_by_split.values())
    return {
        "input": str(input),
        # Results built on the bundled sample must say they come from synthetic reviews.
        "synthetic": not str(input).startswith("hf://") and is_synthetic_sample(input),
        "options": dataclasses.asdict(options),
        "counts": {
            "lines": report.lines,
            "records_read": report.records,
            "skipped_lines": len(report.skipped),
            "dropped": dict(cleaner.dropped),
            "kept": len(kept),
            "balanced_away": rows.balanced_away,
            "final": n_rows,
        },
        "splits": {s: len(v) for s, v in rows_by_split.items()},
        "organisations": {s: len({orgs[i] for i in v}) for s, v in rows_by_split.items()},
        "ratings": ratings,
        "rubrics_top": [{"rubric": r, "reviews": n} for r, n in itertools.islice(vocabulary.items(), 30)],
        "rubric_strings": len({r.rubrics for r in kept}),
        "length_chars": _percentiles(chars),
        "mean_chars_by_rating": {k: round(sum(v) / len(v), 1) for k, v in sorted(by_rating.items())},
        "keywords": {
            "mean_per_review": round(sum(keyword_counter.values()) / max(n_rows, 1), 2),
            "reviews_without": without,
            "top": [
                {"keyword": k, "reviews": n}
                for k, n in sorted(keyword_counter.items(), key=lambda kv: (-kv[1], kv[0]))[:30]
            ],
        },
        "skipped_lines": [b.to_dict() for b in report.skipped],
    }


def _fingerprint(directory: Path) -> str:
    """sha256 over the split files, so a run can record exactly which data it saw."""
    digest = hashlib.sha256()
    for file in sorted(directory.rglob("*")):
        if file.is_file() and file.suffix in (".arrow", ".json") and file.parent != directory:
            digest.update(str(file.relative_to(directory)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()
