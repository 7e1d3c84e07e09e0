"""`kit evaluate`: the same requests to every model, scored side by side with the human review.

The stage:

1. picks requests from a split of a prepared dataset (`_pick_requests`,
   `select_requests`: seeded, rating-balanced by default, see `EvalOptions.requests`);
2. fits (or loads from the cache) the control judges on the train split,
   a `RatingClassifier` and a `RubricClassifier` (`load_judges`);
3. for each run dir (base or base + LoRA, `_run_model`): loads the model,
   generates one review per request through `kit.generate.Generator` (the same
   sampler and seed for every model) and scores the log-likelihood of each
   human review given its request (`reference_nll`, review tokens only);
4. scores every column, the human reference included (`_score_columns`), and
   summarises them with intervals, slices, win rates and paired differences
   (`_aggregate`, all through `kit.eval.scoring`);
5. assembles the `metrics.json` content (`_assemble`) and writes the report dir
   atomically (`kit.eval.report`).

Example:
    >>> result = evaluate_models(["runs/tiny-base", "runs/tiny-lora"], "data/prepared",
    ...                          out="reports/demo", options=EvalOptions(limit=150))  # doctest: +SKIP
    >>> result["metrics"]["columns"]["tiny-lora"]["rating_accuracy"]["value"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import gc
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

import kit  # noqa: F401  (JAX backend before keras)
from kit.atomic import check_output_dir
from kit.errors import UserError
from kit.eval import report, scoring
from kit.eval.judges import load_judges
from kit.eval.nll import DEFAULT_PPL_BUCKETS, reference_nll
from kit.eval.options import EvalOptions
from kit.eval.requests import select_requests
from kit.eval.scoring import HUMAN


def _column_names(run_dirs: Sequence[str | Path]) -> list[str]:
    """Report column names: the run dir names, made unique (`a`, `a-2`) and never `human`."""
    names: list[str] = []
    for p in run_dirs:
        base = Path(p).name or str(p)
        base = f"{base}-model" if base == HUMAN else base
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


def _check_not_empty(data_dir, split) -> None:
    """`datasets` saves an empty split with no data file and then cannot load the dataset
    (IndexError in `load_from_disk`); catch that case first and say what it is."""
    import json

    state = Path(data_dir) / split / "state.json"
    if state.is_file() and not json.loads(state.read_text(encoding="utf-8")).get("_data_files"):
        raise UserError(
            f"Split {split!r} of {data_dir} is empty: nothing to evaluate. Re-run `kit data prepare` "
            "with a larger --test-share, or pass another --split."
        )


def _check_inputs(run_dirs, data_dir, split):
    from kit.data.prepare import load_prepared, load_stats
    from kit.runs import RunInfo

    if not run_dirs:
        raise UserError("Pass at least one run dir to compare, e.g. --models runs/tiny-base runs/tiny-lora.")
    runs = [RunInfo.read(p) for p in run_dirs]  # a missing run fails before any heavy work
    _check_not_empty(data_dir, split)
    dataset = load_prepared(data_dir)
    if split not in dataset:
        raise UserError(
            f"{data_dir} has no split {split!r} (it has {', '.join(dataset)}). Pass --split with one of those."
        )
    if dataset[split].num_rows == 0:
        raise UserError(
            f"Split {split!r} of {data_dir} is empty: nothing to evaluate. Re-run `kit data prepare` "
            "with a larger --test-share, or pass another --split."
        )
    if "train" not in dataset or dataset["train"].num_rows == 0:
        raise UserError(f"{data_dir} has no train rows to fit the rating/rubric judges on; re-run `kit data prepare`.")
    try:
        stats = load_stats(data_dir)
    except UserError:
        stats = {}
    return runs, dataset, stats


def evaluate_models(
    run_dirs: Sequence[str | Path],
    data_dir: str | Path,
    *,
    out: str | Path | None = None,
    options: EvalOptions = EvalOptions(),
    overwrite: bool = False,
) -> dict:
    """Run every model on the same requests, score them and the human reviews, write the report.

    Args:
        run_dirs: Run dirs (`runs/<name>`) to compare; the first is the baseline of paired differences.
        data_dir: Prepared dataset dir (`kit data prepare`).
        out: Report dir to write (`reports/<name>`): a new or empty one, or
            (with `overwrite`) an earlier report, replaced atomically; anything
            else is refused before a model loads. None writes nothing.
        options: Requests, sampler and bootstrap settings.
        overwrite: Replace an earlier report at `out`.

    Returns:
        The `metrics.json` content, plus `samples` (the `samples.jsonl` rows).

    Raises:
        UserError: a missing run, dataset or split, or an empty split.
    """
    t0 = time.perf_counter()
    timings: dict = {}
    if out is not None:
        check_output_dir(out, report.REPORT, overwrite=overwrite)
    runs, dataset, stats = _check_inputs(run_dirs, data_dir, options.split)
    names = _column_names(run_dirs)
    requests = _pick_requests(dataset[options.split], options)
    sampler = options.sampler_spec()  # the same for every model
    timings["data_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    judges = load_judges(data_dir, dataset["train"], progress=options.progress)
    timings["judges_s"] = time.perf_counter() - t

    outputs, extra, timings["models"] = _run_models(names, run_dirs, runs, requests, sampler, options)

    t = time.perf_counter()
    texts = {**outputs, HUMAN: [r["text"] for r in requests]}
    columns = _score_columns(texts, extra, requests, judges)
    metrics = _aggregate(columns, texts, requests, baseline=names[0], options=options)
    timings["scoring_s"] = time.perf_counter() - t

    result = _assemble(names, run_dirs, runs, data_dir, dataset, stats, requests, sampler, options, metrics, timings)
    result["samples"] = report.sample_rows(requests, texts, columns, extra, names)
    timings["total_s"] = round(time.perf_counter() - t0, 3)
    if out is not None:
        t = time.perf_counter()
        report.write_report(out, result, overwrite=overwrite)
        # Timed around the write, so it reaches the returned result but not metrics.json.
        timings["write_s"] = round(time.perf_counter() - t, 3)
    return result


def _pick_requests(split, options: EvalOptions) -> list[dict]:
    """The evaluated rows of `split` as dicts, each with `row`: its index in the split."""
    rows = select_requests(
        [int(r) for r in split["rating"]], limit=options.limit, seed=options.seed, mode=options.requests
    )
    requests = split.select(rows).to_list()
    for i, r in zip(rows, requests, strict=True):
        r["row"] = i
    return requests


def _run_models(
    names: Sequence[str],
    run_dirs: Sequence[str | Path],
    runs: Sequence,
    requests: Sequence[dict],
    sampler,
    options: EvalOptions,
) -> tuple[dict[str, list[str]], dict[str, dict], dict[str, dict]]:
    """`(outputs, extra, timings)` per column name: each model's reviews, generation details, timings."""
    from tqdm.auto import tqdm

    outputs: dict[str, list[str]] = {}
    extra: dict[str, dict] = {}
    timings: dict[str, dict] = {}
    bar = tqdm(total=len(names), desc="models", unit="model", disable=not options.progress)
    for name, path, info in zip(names, run_dirs, runs, strict=True):
        outputs[name], extra[name], mt = _run_model(name, path, info, requests, sampler, options, bar)
        timings[name] = {k: round(v, 3) if isinstance(v, float) else v for k, v in mt.items()}
        gc.collect()  # free this model's weights before the next one loads
        bar.update(1)
    bar.close()
    return outputs, extra, timings


def _run_model(
    name: str, path: str | Path, info, requests: Sequence[dict], sampler, options: EvalOptions, bar
) -> tuple[list[str], dict, dict]:
    """Load one model, write a review per request and (with `options.perplexity`) score the references.

    Returns:
        `(texts, extra, timings)`: the reviews; `new_tokens` and `stopped` per review, plus
        `ref_nll` and `ref_tokens` when the references were scored; the stage's seconds and counts.
    """
    from kit.generate.generator import Generator
    from kit.model.loader import load_model

    prompts = [r["prompt"] for r in requests]
    mt: dict = {}
    t = time.perf_counter()
    bar.set_postfix_str(f"{name}: loading")
    lm = load_model(str(path))
    mt["load_s"] = time.perf_counter() - t
    t = time.perf_counter()
    gen = Generator(lm, batch_size=options.batch_size)
    # One call for all requests: the generator seeds one random stream per batch of
    # that call, so splitting it (e.g. for a finer progress bar) would reuse streams.
    bar.set_postfix_str(f"{name}: generating {len(prompts)} reviews")
    samples = [s[0] for s in gen.complete(prompts, sampler, max_new_tokens=options.max_new_tokens)]
    mt["generate_s"] = time.perf_counter() - t
    mt["new_tokens"] = int(sum(s.new_tokens for s in samples))
    mt["tokens_per_s"] = mt["new_tokens"] / max(mt["generate_s"], 1e-9)
    mt["cut_at_limit"] = int(sum(not s.stopped for s in samples))
    extra = {"new_tokens": [s.new_tokens for s in samples], "stopped": [s.stopped for s in samples]}
    if options.perplexity:
        t = time.perf_counter()
        bar.set_postfix_str(f"{name}: scoring the references")
        buckets = (info.config.get("data") or {}).get("buckets") or DEFAULT_PPL_BUCKETS
        nll, tok = reference_nll(
            lm,
            prompts,
            [r["text"] for r in requests],
            buckets=buckets,
            batch_size=options.batch_size,
            progress=options.progress,
            desc=name,
        )
        extra.update(ref_nll=nll, ref_tokens=tok)
        mt["perplexity_s"] = time.perf_counter() - t
    return [s.text for s in samples], extra, mt


def _score_columns(
    texts: Mapping[str, Sequence[str]], extra: Mapping[str, Mapping], requests: Sequence[dict], judges
) -> dict[str, dict[str, np.ndarray]]:
    """Per-sample scores of every column: `texts` holds each model's reviews, then `human`'s."""
    rating_judge, rubric_judge = judges
    return {
        name: scoring.sample_scores(
            column,
            requests,
            rating_judge=rating_judge,
            rubric_judge=rubric_judge,
            is_human=name == HUMAN,
            ref_nll=extra.get(name, {}).get("ref_nll"),
            ref_tokens=extra.get(name, {}).get("ref_tokens"),
        )
        for name, column in texts.items()
    }


def _aggregate(
    columns: Mapping[str, dict[str, np.ndarray]],
    texts: Mapping[str, Sequence[str]],
    requests: Sequence[dict],
    *,
    baseline: str,
    options: EvalOptions,
) -> dict:
    """The `metrics` block: per column, per slice, pairwise win rates and differences vs `baseline`."""
    requested = [int(r["rating"]) for r in requests]
    corpus = {
        name: scoring.corpus_statistics(texts[name], texts[HUMAN], columns[name], requested, is_human=name == HUMAN)
        for name in columns
    }
    summary = {
        name: scoring.summarize(columns[name], corpus[name], seed=options.seed, n_resamples=options.n_resamples)
        for name in columns
    }
    return {
        "columns": summary,
        "slices": _slices(columns, corpus, requests, options),
        "win_rates": scoring.pairwise_win_rates(columns),
        f"difference_vs_{baseline}": scoring.paired_differences(
            columns, baseline, seed=options.seed, n_resamples=options.n_resamples
        ),
    }


def _slices(
    columns: Mapping[str, dict[str, np.ndarray]],
    corpus: Mapping[str, dict],
    requests: Sequence[dict],
    options: EvalOptions,
) -> dict:
    """Every column summarised on the requests of each rating and of each most requested rubric."""
    slices: dict = {}
    for kind, groups in scoring.slice_rows(requests, top_rubrics=options.top_rubrics).items():
        slices[kind] = {}
        for value, idx in groups.items():
            # Fewer resamples for corpus statistics: each recomputes the statistic, and there
            # are (ratings + rubrics) x columns of them.
            slices[kind][value] = {
                "n": int(len(idx)),
                "columns": {
                    name: scoring.summarize(
                        columns[name],
                        corpus[name],
                        rows=idx,
                        seed=options.seed,
                        n_resamples=options.n_resamples,
                        corpus_resamples=min(options.n_resamples, 200),
                    )
                    for name in columns
                },
            }
    return slices


def _assemble(
    names,
    run_dirs,
    runs,
    data_dir,
    dataset,
    stats: Mapping,
    requests: Sequence[dict],
    sampler,
    options: EvalOptions,
    metrics: dict,
    timings: dict,
) -> dict:
    """The `metrics.json` content: what was evaluated, how, the metrics and the timings."""
    requested = [int(r["rating"]) for r in requests]
    return {
        "schema": report.SCHEMA,
        "synthetic": bool(stats.get("synthetic", False)),
        "data": {
            "dir": str(data_dir),
            "split": options.split,
            "fingerprint": stats.get("fingerprint"),
            "split_rows": dataset[options.split].num_rows,
        },
        "requests": {
            "n": len(requests),
            "mode": options.requests,
            "seed": options.seed,
            "ratings": {str(k): requested.count(k) for k in sorted(set(requested))},
        },
        "options": dataclasses.asdict(options),
        "sampler": dataclasses.asdict(sampler),
        "models": [
            {
                "name": n,
                "path": str(p),
                "preset": i.preset,
                "adapter": i.adapter,
                "lora": dataclasses.asdict(i.lora) if i.lora else None,
                "val_loss": i.metrics.get("val_loss"),
            }
            for n, p, i in zip(names, run_dirs, runs, strict=True)
        ],
        "columns_order": [*names, HUMAN],
        "judges": {
            "rating": "RatingClassifier (TF-IDF + logistic regression, balanced classes)",
            "rubric": "RubricClassifier (TF-IDF + Complement NB), top-3 hit",
            "fitted_on": f"{data_dir}:train ({dataset['train'].num_rows} reviews)",
        },
        "metrics": metrics,
        "timings": timings,
    }
