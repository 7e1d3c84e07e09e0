"""Tokenising a split in a multi-process job: each process tokenises only about its share.

Planning the length-bucketed batches needs every example's length, and the
plan must be the one a single process makes, so every process builds the same
global batch order. Each process therefore tokenises the rows
`i % processes == process_index` (to learn their sizes: token count and prompt
length), the sizes are exchanged (`kit.model.multihost.allgather`, a few
integers per row), and every process plans from the full list. The tokens of a
row are made on first use, only by the processes whose devices hold it, and
kept. On one process nothing here is used: the split is tokenised in one pass
as before.

Set `KIT_TOKENISE_LOG` to a directory and each process writes
`process-<i>.json` there at the end of `kit finetune`: how many rows of each
split it tokenised (the multi-process tests read it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

import kit  # noqa: F401
from kit.atomic import atomic_path
from kit.data.batching import Encoder, LazyExamples, example_sizes, select, target_fits
from kit.model import multihost

ENV_LOG = "KIT_TOKENISE_LOG"


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
