"""`kit tiny`'s training half: pretrain the tiny Gemma 2 base as a plain LM and save it as a preset.

The architecture and tokenizer live in `kit.model.tiny`; this module runs
the loop (`kit.train.loop.Engine`) over the train reviews, either bare or
laid out as web pages (`kit.data.pages`), and writes the preset atomically.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Sequence
from pathlib import Path

import keras_hub

import kit  # noqa: F401
from kit.atomic import check_output_dir, output_dir, write_json
from kit.data.batching import Encoder, plan_batches
from kit.data.pages import REVIEW_END, pretraining_documents
from kit.errors import UserError
from kit.model.lora import parameter_counts
from kit.model.tiny import TINY_BASE, TINY_INFO, TinySpec, build_tiny_lm, file_checksums, train_tokenizer
from kit.train.loop import Engine, LoopOptions
from kit.train.optim import make_optimizer


def pretrain(
    lm: keras_hub.models.CausalLM,
    train_texts: Sequence[str],
    val_texts: Sequence[str] = (),
    spec: TinySpec = TinySpec(),
    *,
    progress: bool = True,
) -> dict:
    """Train every weight of `lm` as a plain LM on `train_texts`; returns loss figures.

    Example:
        >>> stats = pretrain(lm, ["Отлично!"] * 8, spec=TinySpec(max_steps=2))  # doctest: +SKIP
    """
    encoder = Encoder(lm.preprocessor.tokenizer.proto)
    train = [encoder.encode_text(t) for t in train_texts if t]
    val = [encoder.encode_text(t) for t in val_texts if t]
    per_epoch = len(plan_batches(train, spec.buckets, spec.batch_size, seed=spec.seed))
    steps = max(1, int(round(per_epoch * spec.epochs)))
    if spec.max_steps:
        steps = min(steps, spec.max_steps)
    lm.backbone.trainable = True
    optimizer = make_optimizer(
        learning_rate=spec.learning_rate,
        warmup_steps=min(spec.warmup_steps, steps // 4),
        total_steps=steps,
        decay="cosine",
        min_ratio=0.05,
        weight_decay=0.01,
        clip_norm=1.0,
    )
    engine = Engine(lm, optimizer, pad_id=encoder.pad_id)
    options = LoopOptions(
        total_steps=steps,
        batch_size=spec.batch_size,
        buckets=spec.buckets,
        seed=spec.seed,
        progress=progress,
        desc="tiny pretrain",
        log_every=max(steps // 20, 1),
    )
    start = time.perf_counter()
    state, _ = engine.run(train, val, options)
    seconds = time.perf_counter() - start
    history = state.history
    return {
        "steps": steps,
        "epochs": spec.epochs,
        "train_tokens": int(sum(len(e.ids) - 1 for e in train)),
        "first_train_loss": next((r["train_loss"] for r in history if "train_loss" in r), None),
        "final_train_loss": next((r["train_loss"] for r in reversed(history) if "train_loss" in r), None),
        "initial_val_loss": history[0].get("val_loss") if history else None,
        "final_val_loss": next((r["val_loss"] for r in reversed(history) if "val_loss" in r), None),
        "train_seconds": round(seconds, 1),
    }


def pretraining_texts(split, spec: TinySpec = TinySpec()) -> list[str]:
    """The pretraining documents of one prepared split, as `spec.documents` says.

    Example:
        >>> rows = {"org_id": ["a"], "name_ru": ["Кафе Ромашка"], "address": [""], "rubrics": [["Кафе"]],
        ...         "rating": [5], "text": ["Вкусно."]}
        >>> pretraining_texts(rows)
        ['Вкусно.<end_of_turn>']
        >>> pretraining_texts(rows, TinySpec(documents="pages", listing_share=0.0))
        ['Кафе Ромашка\\nКафе\\n\\nОценка 5 из 5\\nВкусно.<end_of_turn>']
    """
    if spec.documents == "reviews":
        # Each review ends with the marker the fine-tuned model ends with (see kit.data.pages.REVIEW_END).
        return [t + REVIEW_END for t in split["text"]]
    columns = ("org_id", "name_ru", "address", "rubrics", "rating", "text", "keywords")
    present = split.column_names if hasattr(split, "column_names") else list(split)
    rows = {c: list(split[c]) for c in columns if c in present}
    return pretraining_documents(
        rows, listing_share=spec.listing_share, cards=spec.documents == "pages+cards", seed=spec.seed
    )


def extra_rows(extra, held_texts) -> tuple[dict[str, list], int]:
    """Every row of the prepared dataset `extra` (all its splits) whose text is not in `held_texts`.

    A larger corpus than the data being fine-tuned on, read in pretraining only,
    the way Gemma 2 2B read far more than any fine-tuning set. A review whose
    text is also in the fine-tuning data is left out, so no validation or test
    review reaches the base through the extra corpus. Returns the rows as
    columns and how many were left out.

    Example:
        >>> rows, dropped = extra_rows({"train": {"text": ["Вкусно.", "Грязно."], "rating": [5, 1]}}, {"Грязно."})
        >>> rows, dropped
        ({'text': ['Вкусно.'], 'rating': [5]}, 1)
    """
    columns: dict[str, list] = {}
    dropped = 0
    for name in extra:
        split = extra[name]
        names = split.column_names if hasattr(split, "column_names") else list(split)
        data = {c: list(split[c]) for c in names}
        for i, text in enumerate(data["text"]):
            if text in held_texts:
                dropped += 1
                continue
            for c in names:
                columns.setdefault(c, []).append(data[c][i])
    return columns, dropped


def _fingerprint_or_none(data_dir, load_stats) -> str | None:
    """The prepared data's fingerprint; None for a dataset saved without `stats.json` (tests, notebooks)."""
    try:
        return load_stats(data_dir).get("fingerprint")
    except UserError:
        return None


def make_tiny_base(
    data_dir: str | Path,
    out: str | Path,
    spec: TinySpec = TinySpec(),
    *,
    progress: bool = True,
    overwrite: bool = False,
    command: str | None = None,
    extra_data: str | Path | None = None,
) -> dict:
    """The `kit tiny` stage: prepared dataset -> tokenizer -> pretrained tiny Gemma 2 preset at `out`.

    Args:
        data_dir: A prepared dataset dir (`kit data prepare --out`).
        out: Preset directory to write, e.g. `models/tiny-base`: a new or empty
            one, or (with `overwrite`) an earlier `kit tiny` base, replaced
            atomically. Anything else is refused before any work starts.
        spec: Size and budget.
        progress: Show a progress bar.
        overwrite: Replace an earlier tiny base at `out`.
        command: The command line that made it (recorded, so the base can be rebuilt exactly).
        extra_data: Another prepared dataset dir whose reviews (every split, less
            any review text of `data_dir`) are pretrained on too, laid out as
            `spec.documents` says; e.g. a larger synthetic sample (`make tiny`).
            Its fingerprint and row counts are recorded.

    Returns:
        The info dict also saved as `<out>/tiny_base.json`: the spec (seed
        included), the command, the data fingerprint it was pretrained on and
        the sha256 of every preset file (`kit.model.tiny.verify_tiny_base`
        checks both before the base is used).

    Example:
        >>> make_tiny_base("data/prepared", "models/tiny-base")  # doctest: +SKIP
    """
    from kit.data.prepare import load_prepared, load_stats

    start = time.perf_counter()
    check_output_dir(out, TINY_BASE, overwrite=overwrite)
    dd = load_prepared(data_dir)
    extra_info = None
    if extra_data is not None:
        if Path(extra_data).resolve() == Path(data_dir).resolve():
            raise UserError(f"--extra-data {extra_data} is the --data dir itself; give another prepared dataset.")
        held = {t for name in dd for t in dd[name]["text"]}
        more, dropped = extra_rows(load_prepared(extra_data), held)
        if not more.get("text"):
            raise UserError(
                f"--extra-data {extra_data} holds no review that is not already in {data_dir}; "
                "prepare another corpus, e.g. kit data synth --seed 1, then kit data prepare."
            )
    train_texts = list(dd["train"]["text"])
    # Prompts only shape the vocabulary; the model never trains on them.
    proto = train_tokenizer(train_texts + list(dd["train"]["prompt"]), vocab_size=spec.vocab_size)
    lm = build_tiny_lm(proto, spec)
    train_docs = pretraining_texts(dd["train"], spec)
    if extra_data is not None:
        # Another seed for its listings' draws and document order than the main split's.
        extra_docs = pretraining_texts(more, dataclasses.replace(spec, seed=spec.seed + 1))
        extra_info = {
            "dir": str(extra_data),
            "fingerprint": _fingerprint_or_none(extra_data, load_stats),
            "rows": len(more["text"]),
            "rows_left_out_as_in_data": dropped,
            "documents": len(extra_docs),
        }
        train_docs += extra_docs
        # plan_batches shuffles again within each length bucket; this first mix is kept because it is
        # part of the recipe the committed base was made with (changing it changes the weights).
        random.Random(spec.seed).shuffle(train_docs)
    val_docs = pretraining_texts(dd["validation"], spec) if "validation" in dd else []
    stats = pretrain(lm, train_docs, val_docs, spec, progress=progress)
    stats["documents"] = {"kind": spec.documents, "train": len(train_docs), "validation": len(val_docs)}
    counts = parameter_counts(lm)
    info = {
        "kind": "kit tiny base (synthetic-data pretraining, for offline demos and tests)",
        "data_dir": str(data_dir),
        "data_fingerprint": _fingerprint_or_none(data_dir, load_stats),
        "extra_data": extra_info,
        "command": command,
        "spec": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(spec).items()},
        "vocabulary_size": lm.backbone.vocabulary_size,
        "parameters": counts["total"],
        "pretraining": stats,
        "total_seconds": round(time.perf_counter() - start, 1),
    }
    with output_dir(out, TINY_BASE, overwrite=overwrite) as tmp:
        lm.save_to_preset(str(tmp))
        info["files"] = file_checksums(tmp)
        write_json(Path(tmp) / TINY_INFO, info)
    return info
