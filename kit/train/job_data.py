"""The train job's data: the splits, their digests, and the tokenised, length-bucketed train examples.

`load_splits` reads the prepared train and validation splits,
`train_examples` tokenises the train split as a run trains on it (prompts
too long dropped, ratings redrawn, buckets planned), and `rows_digest` /
`dataset_fingerprint` say in `run.json` which data that was. `kit finetune`
and `kit plan` both build their examples here, so the plan counts the steps
the run takes.

In a multi-process job each process tokenises only about its share.
Planning the length-bucketed batches needs every example's length, and the
plan must be the one a single process makes, so every process builds the same
global batch order. Each process therefore tokenises the rows
`i % processes == process_index` (to learn their sizes: token count and prompt
length), the sizes are exchanged (`kit.model.multihost.allgather`, a few
integers per row), and every process plans from the full list. The tokens of a
row are made on first use, only by the processes whose devices hold it, and
kept. On one process none of this is needed: the split is tokenised in one pass
as before.

Set `KIT_TOKENISE_LOG` to a directory and each process writes
`process-<i>.json` there at the end of `kit finetune`: how many rows of each
split it tokenised (the multi-process tests read it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np

import kit  # noqa: F401
from kit.atomic import atomic_path
from kit.config import DataConfig, TrainConfig
from kit.data.batching import (
    Encoder,
    LazyExamples,
    choose_buckets,
    example_lengths,
    example_sizes,
    length_report,
    plan_batches,
    select,
    target_fits,
)
from kit.data.rating_mix import mix_by_rating, rating_shares
from kit.errors import UserError
from kit.model import multihost

ENV_LOG = "KIT_TOKENISE_LOG"


def load_splits(data: DataConfig, dataset=None):
    """The train and validation splits of `dataset` or of `data.dir`, cut to `data.max_train_rows`/`max_val_rows`.

    Raises:
        UserError: a split or its `prompt`/`target` column is missing.

    Example:
        >>> train, val = load_splits(load_config("configs/tiny.toml").data)  # doctest: +SKIP
    """
    if dataset is None:
        from kit.data.prepare import load_prepared

        dataset = load_prepared(data.dir)
    for split in ("train", "validation"):
        if split not in dataset:
            raise UserError(f"{data.dir} has no {split!r} split; re-run `kit data prepare`.")
    train, val = dataset["train"], dataset["validation"]
    if data.max_train_rows:
        train = train.select(range(min(data.max_train_rows, train.num_rows)))
    if data.max_val_rows:
        val = val.select(range(min(data.max_val_rows, val.num_rows)))
    for split, ds in (("train", train), ("validation", val)):
        missing = {"prompt", "target"} - set(ds.column_names)
        if missing:
            raise UserError(f"{data.dir} split {split!r} lacks columns {sorted(missing)}; re-run `kit data prepare`.")
    return train, val


def splits_or_none(data: DataConfig, dataset=None, *, required: bool = True):
    """`load_splits`, or `(None, None)` when the splits cannot be read and are not `required`.

    A base model registers as a run without data (its record then has no validation loss).

    Example:
        >>> from kit.config import DataConfig
        >>> splits_or_none(DataConfig(dir="no/such/data"), {}, required=False)
        (None, None)
    """
    try:
        return load_splits(data, dataset)
    except UserError:
        if required:
            raise
        return None, None


def rows_digest(*splits) -> str:
    """SHA-256 of the prompt/target pairs of `splits`, in order: which rows a run actually used.

    Example:
        >>> rows_digest({"prompt": ["p"], "target": ["t"]})[:12]
        '0a33071fdf38'
    """
    digest = hashlib.sha256()
    for ds in splits:
        for p, t in zip(ds["prompt"], ds["target"], strict=True):
            digest.update(p.encode())
            digest.update(b"\0")
            digest.update(t.encode())
            digest.update(b"\1")
    return digest.hexdigest()


def dataset_fingerprint(data_dir: str) -> str | None:
    """The `stats.json` fingerprint of the prepared dataset at `data_dir`; None when it has none.

    Example:
        >>> dataset_fingerprint("no/such/data") is None
        True
    """
    try:
        from kit.data.prepare import load_stats

        return load_stats(data_dir).get("fingerprint")
    except (UserError, ImportError, OSError, ValueError):
        return None


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainExamples:
    """The tokenised train examples of a run and the batching that feeds them.

    Attributes:
        train: The examples, in the order the batches are planned from.
        buckets: The sequence lengths (`data.buckets`, or chosen by `data.auto_buckets`).
        steps: Optimizer steps the run takes.
        batching: The `batching` section of `run.json` (buckets, padding share, drops, rating shares, lengths).
    """

    train: list
    buckets: tuple[int, ...]
    steps: int
    batching: dict


def train_examples(encoder: Encoder, train_ds, data: DataConfig, train: TrainConfig, *, seed: int) -> TrainExamples:
    """Tokenise the train split, drop prompts with no room for a review, redraw by rating, plan the buckets.

    Args:
        encoder: The model's tokenizer.
        train_ds: The train split (`prompt`, `target`, and `rating` when `data.rating_power` is not 1).
        data: Buckets and the rating mix.
        train: Batch size, accumulation and steps (or epochs).
        seed: The run seed (rating redraw and batch order).

    Raises:
        UserError: no example fits the largest bucket, or a rating mix without a `rating` column.

    Example:
        >>> ex = train_examples(encoder, train_ds, cfg.data, cfg.train, seed=cfg.run.seed)  # doctest: +SKIP
        >>> ex.steps, ex.batching["buckets"]  # doctest: +SKIP
        (8, [64, 128])
    """
    longest = data.buckets[-1]
    examples = tokenise(encoder, train_ds)
    n_all = len(examples)
    keep = keep_with_target(examples, longest)
    examples = select(examples, keep)
    if not examples:
        raise UserError(
            f"No train example has review tokens within data.buckets max {longest}: prompts are "
            "longer. Raise the largest value in data.buckets."
        )
    mix = None
    if data.rating_power != 1.0:
        if "rating" not in train_ds.column_names:
            raise UserError(f"data.rating_power needs a 'rating' column in {data.dir}; re-run `kit data prepare`.")
        all_ratings = train_ds["rating"]
        ratings = [int(all_ratings[i]) for i in keep]
        examples = select(examples, mix_by_rating(ratings, data.rating_power, seed=seed))
        mix = {str(r): round(s, 4) for r, s in rating_shares(ratings, data.rating_power).items()}
    buckets, bs = data.buckets, train.batch_size
    if data.auto_buckets:
        # A pure function of the train split, so a resumed run gets the same shapes.
        buckets = choose_buckets(example_lengths(examples) - 1, data.auto_buckets, longest)
    plan = plan_batches(examples, buckets, bs, seed=seed)
    steps = train.steps or max(1, math.ceil(train.epochs * len(plan) / train.grad_accum))
    batching = {
        "buckets": list(buckets),
        "padding_share": round(plan.padding_share(examples, bs), 4),
        "micro_batches_per_epoch": len(plan),
        "optimizer_steps": steps,
        "dropped_prompt_too_long": n_all - len(keep),
        "rating_shares": mix,
        **length_report(examples, buckets),
    }
    return TrainExamples(train=examples, buckets=tuple(buckets), steps=steps, batching=batching)


def tokenise(encoder: Encoder, ds):
    """A split's examples: all tokenised in one pass on one process, each process's share in a job.

    Example:
        >>> train = tokenise(encoder, train_ds)  # doctest: +SKIP
    """
    if multihost.process_count() > 1:
        return tokenise_share(encoder, ds)
    return encoder.encode_pairs(ds["prompt"], ds["target"])


def keep_with_target(examples, longest: int) -> list[int]:
    """Indices of the examples with a review token within `longest` inputs (from their sizes: no tokenising).

    A prompt longer than the largest bucket leaves no review token to learn from.

    Example:
        >>> from kit.data.batching import Example
        >>> keep_with_target([Example(np.arange(10, dtype=np.int32), 4), Example(np.arange(10, dtype=np.int32), 9)], 8)
        [0]
    """
    return [i for i, (n, p) in enumerate(example_sizes(examples).tolist()) if target_fits(n, p, longest)]


def with_target(examples, longest: int):
    """The examples `keep_with_target` keeps (a view of a `LazyExamples`).

    Example:
        >>> from kit.data.batching import Example
        >>> len(with_target([Example(np.arange(10, dtype=np.int32), 9)], 8))
        0
    """
    return select(examples, keep_with_target(examples, longest))


def tokenise_share(encoder: Encoder, ds) -> LazyExamples:
    """Every row of `ds` (`prompt`, `target`) as lazily tokenised examples, their sizes known to all processes.

    This process tokenises its own rows now (and keeps them); any other row it
    reads later (the rows of a global batch on its devices) is tokenised then.

    Example:
        >>> train = tokenise_share(encoder, train_ds)  # doctest: +SKIP
        >>> len(train) == train_ds.num_rows, train.tokenised <= train_ds.num_rows // 2 + 1  # doctest: +SKIP
        (True, True)
    """
    prompts, targets = list(ds["prompt"]), list(ds["target"])
    count, index = multihost.process_count(), multihost.process_index()
    own = list(range(index, len(prompts), count))
    mine = encoder.encode_pairs([prompts[i] for i in own], [targets[i] for i in own])
    local = np.asarray([(len(e.ids), e.n_prompt) for e in mine], dtype=np.int64).reshape(-1, 2)
    sizes = np.zeros((len(prompts), 2), dtype=np.int64)
    for p, part in enumerate(multihost.allgather(local)):
        sizes[p::count] = part  # process p tokenised rows p, p + count, ...

    def encode(row: int):
        # The vectorised call the sizes came from, so the tokens are the very same.
        return encoder.encode_pairs([prompts[row]], [targets[row]])[0]

    return LazyExamples(sizes, encode, cache=dict(zip(own, mine, strict=True)))


def log_tokenised(**splits) -> None:
    """Write this process's tokenised row counts to `$KIT_TOKENISE_LOG/process-<i>.json` when that is set.

    `splits` maps a split name to its examples: for each `LazyExamples`, how
    many of the split's rows this process tokenised (a list, on one process,
    is the whole split and is left out).
    """
    where = os.environ.get(ENV_LOG)
    if not where:
        return
    record = {"process": multihost.process_index(), "processes": multihost.process_count()}
    for name, examples in splits.items():
        if isinstance(examples, LazyExamples):
            record[name] = {"rows": examples.source_rows, "tokenised": examples.tokenised}
    with atomic_path(Path(where) / f"process-{record['process']}.json") as tmp:
        tmp.write_text(json.dumps(record), encoding="utf-8")
