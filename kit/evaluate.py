"""`kit evaluate`: the same requests to every model, scored side by side with the human review.

The stage:

1. picks requests from a split of a prepared dataset (`select_requests`:
   seeded, rating-balanced by default, see `EvalOptions.requests`);
2. fits (or loads from the cache) the control judges on the train split,
   a `RatingClassifier` and a `RubricClassifier` (`load_judges`);
3. for each run dir (base or base + LoRA): loads the model, generates one
   review per request through `kit.generate.Generator` (the same sampler and
   seed for every model) and scores the log-likelihood of each human review
   given its request (`reference_nll`, review tokens only);
4. scores every column, the human reference included (`kit.scoring`), and
   writes the report dir atomically (`kit.report`).

Example:
    >>> result = evaluate_models(["runs/tiny-base", "runs/tiny-lora"], "data/prepared",
    ...                          out="reports/demo", options=EvalOptions(limit=150))  # doctest: +SKIP
    >>> result["columns"]["tiny-lora"]["rating_accuracy"]["value"]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import kit  # noqa: F401  (JAX backend before keras)
from kit.errors import UserError
from kit.scoring import HUMAN

REQUEST_MODES = ("balanced", "random")
JUDGES_DIR = "judges"  # inside the prepared data dir, next to the splits it was fitted on
DEFAULT_PPL_BUCKETS = (256, 512, 1024)


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalOptions:
    """What to evaluate on and how to generate.

    Attributes:
        split: Split of the prepared dataset to draw requests from.
        limit: Number of requests (None: the whole split).
        seed: Seeds the request sample, the sampler and the bootstrap.
        requests: `balanced` (default): as equal a number of requests per
            rating as the split allows; `random`: a uniform sample (the
            split's own rating mix, ~80 % 5-star on the real data). Rating
            control is judged on balanced requests because on the natural mix
            a model that always writes a 5-star review scores ~0.8 "accuracy";
            the natural mix is one flag away for overlap-style comparisons.
        sampler: A `kit.generate.SamplerSpec` name (`top_k`, `top_p`, `greedy`, ...).
            The default, top-k with k 5 at temperature 1, is what KerasHub's
            `CausalLM.generate` samples with unless compiled otherwise.
        temperature: Sampling temperature.
        top_k: k of `top_k` (and the cap of `top_p`).
        top_p: p of `top_p`.
        max_new_tokens: Longest generated review, in tokens.
        batch_size: Requests per generation / scoring batch.
        n_resamples: Bootstrap resamples for each interval.
        top_rubrics: How many of the most requested rubrics get a slice.
        perplexity: Score the human references' perplexity under each model.
        progress: Show progress bars.
    """

    split: str = "test"
    limit: int | None = 150
    seed: int = 0
    requests: str = "balanced"
    sampler: str = "top_k"
    temperature: float = 1.0
    top_k: int = 5
    top_p: float = 0.9
    max_new_tokens: int = 192
    batch_size: int = 16
    n_resamples: int = 1000
    top_rubrics: int = 5
    perplexity: bool = True
    progress: bool = True

    def __post_init__(self):
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit must be a positive integer. Received: limit={self.limit}")
        if self.requests not in REQUEST_MODES:
            raise UserError(f"--requests must be one of {', '.join(REQUEST_MODES)}. Received: {self.requests!r}")
        if self.batch_size < 1 or self.n_resamples < 1 or self.max_new_tokens < 1:
            raise UserError("--batch-size, --bootstrap and --max-new-tokens must be positive integers. "
                            f"Received: {self.batch_size}, {self.n_resamples}, {self.max_new_tokens}")

    def sampler_spec(self):
        """The `kit.generate.SamplerSpec` every model gets (validated there)."""
        from kit.generate import SamplerSpec

        return SamplerSpec(name=self.sampler, temperature=self.temperature, k=self.top_k, p=self.top_p,
                           seed=self.seed)


def select_requests(ratings: Sequence[int], *, limit: int | None, seed: int, mode: str = "balanced") -> list[int]:
    """Row indices of the requests to evaluate, sorted; the same inputs give the same rows.

    `balanced` water-fills: each rating gets an equal share of `limit`; a
    rating with fewer rows gives all it has and the rest is shared among the
    others. Rows within a rating are a seeded random choice.

    Example:
        >>> ratings = [5] * 80 + [1] * 10 + [3] * 10
        >>> rows = select_requests(ratings, limit=30, seed=0)
        >>> sorted(ratings[i] for i in rows).count(5), len(rows)
        (10, 30)
        >>> select_requests(ratings, limit=30, seed=0) == rows
        True
    """
    n = len(ratings)
    limit = n if limit is None else min(limit, n)
    rng = np.random.default_rng(seed)
    if mode == "random":
        return sorted(rng.choice(n, size=limit, replace=False).tolist())
    by_rating = {r: [i for i, x in enumerate(ratings) if x == r] for r in sorted(set(ratings))}
    quota = dict.fromkeys(by_rating, 0)
    left = limit
    while left > 0:
        open_ = [r for r in by_rating if quota[r] < len(by_rating[r])]
        share = max(left // len(open_), 1)
        for r in open_:
            take = min(share, len(by_rating[r]) - quota[r], left)
            quota[r] += take
            left -= take
            if left == 0:
                break
    rows = [i for r, idx in by_rating.items() for i in rng.permutation(idx)[: quota[r]].tolist()]
    return sorted(rows)


def load_judges(data_dir: str | Path, train, *, progress: bool = False):
    """The rating and rubric classifiers fitted on `train`, cached in `<data_dir>/judges/`.

    The cache file name carries a digest of the train texts, ratings and rubrics,
    so re-prepared data never meets a stale judge; files are written atomically.
    """
    from kit.metrics import RatingClassifier, RubricClassifier

    digest = hashlib.sha256()
    for t, r, rub in zip(train["text"], train["rating"], train["rubrics"], strict=True):
        digest.update(f"{t}\x1f{r}\x1f{';'.join(rub)}\x1e".encode())
    key = digest.hexdigest()[:16]
    cache = Path(data_dir) / JUDGES_DIR
    judges = []
    for cls, fit_args in ((RatingClassifier, ("text", "rating")), (RubricClassifier, ("text", "rubrics"))):
        path = cache / f"{cls.kind.lower()}-{key}.joblib"
        if path.is_file():
            judges.append(cls.load(path))
            continue
        if progress:
            print(f"Fitting the {cls.kind} on {train.num_rows} train reviews (cached in {cache})")
        clf = cls().fit(list(train[fit_args[0]]), [list(x) if isinstance(x, list) else int(x) for x in train[fit_args[1]]])
        # A read-only data dir: the judge still works, it is only refitted next time.
        with contextlib.suppress(OSError):
            clf.save(path)
        judges.append(clf)
    return judges[0], judges[1]


def reference_nll(lm, prompts: Sequence[str], references: Sequence[str], *, buckets: Sequence[int],
                  batch_size: int, progress: bool = False, desc: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Summed negative log-likelihood of each reference (review + end of turn) given its prompt.

    The examples and their masks are exactly the training ones (`kit.batching`:
    `<bos>` + prompt + target, weight 1 on target labels only), so this is the
    per-request form of the validation loss. References longer than the
    largest bucket are scored on their first tokens.

    Returns:
        `(nll, tokens)`: per request, the summed NLL and how many tokens it sums over.
    """
    import jax
    import jax.numpy as jnp
    from tqdm.auto import tqdm

    from kit.batching import Encoder, make_batch, plan_batches
    from kit.data.prompt import build_target

    encoder = Encoder(lm.preprocessor.tokenizer.proto)
    examples = encoder.encode_pairs(list(prompts), [build_target(r) for r in references])
    plan = plan_batches(examples, sorted(buckets), batch_size)  # no seed: fixed order

    @jax.jit
    def token_nll(tv, ntv, x, y, w):
        logits, _ = lm.stateless_call(tv, ntv, x)
        logits = logits.astype(jnp.float32)
        picked = jnp.take_along_axis(logits, y[..., None], axis=-1)[..., 0]
        return jnp.sum((jax.nn.logsumexp(logits, axis=-1) - picked) * w, axis=1), jnp.sum(w, axis=1)

    tv = [v.value for v in lm.trainable_variables]
    ntv = [v.value for v in lm.non_trainable_variables]
    nll = np.zeros(len(examples))
    count = np.zeros(len(examples))
    for length, idx in tqdm(plan.batches, desc=f"perplexity {desc}".strip(), disable=not progress, leave=False):
        batch = make_batch([examples[i] for i in idx], length, batch_size, encoder.pad_id)
        s, c = token_nll(tv, ntv, batch.x, batch.y, batch.sample_weight)
        nll[list(idx)] = np.asarray(s)[: len(idx)]
        count[list(idx)] = np.asarray(c)[: len(idx)]
    return nll, count


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
        raise UserError(f"Split {split!r} of {data_dir} is empty: nothing to evaluate. Re-run `kit data prepare` "
                        "with a larger --test-share, or pass another --split.")


def _check_inputs(run_dirs, data_dir, split):
    from kit.data.prepare import load_prepared, load_stats
    from kit.runs import read_run

    if not run_dirs:
        raise UserError("Pass at least one run dir to compare, e.g. --models runs/tiny-base runs/tiny-lora.")
    runs = [read_run(p) for p in run_dirs]  # a missing run fails before any heavy work
    _check_not_empty(data_dir, split)
    dataset = load_prepared(data_dir)
    if split not in dataset:
        raise UserError(f"{data_dir} has no split {split!r} (it has {', '.join(dataset)}). Pass --split "
                        "with one of those.")
    if dataset[split].num_rows == 0:
        raise UserError(f"Split {split!r} of {data_dir} is empty: nothing to evaluate. Re-run `kit data prepare` "
                        "with a larger --test-share, or pass another --split.")
    if "train" not in dataset or dataset["train"].num_rows == 0:
        raise UserError(f"{data_dir} has no train rows to fit the rating/rubric judges on; re-run `kit data prepare`.")
    try:
        stats = load_stats(data_dir)
    except UserError:
        stats = {}
    return runs, dataset, stats


def evaluate_models(run_dirs: Sequence[str | Path], data_dir: str | Path, *, out: str | Path | None = None,
                    options: EvalOptions = EvalOptions()) -> dict:
    """Run every model on the same requests, score them and the human reviews, write the report.

    Args:
        run_dirs: Run dirs (`runs/<name>`) to compare; the first is the baseline of paired differences.
        data_dir: Prepared dataset dir (`kit data prepare`).
        out: Report dir to write (`reports/<name>`), replaced atomically; None writes nothing.
        options: Requests, sampler and bootstrap settings.

    Returns:
        The `metrics.json` content, plus `samples` (the `samples.jsonl` rows).

    Raises:
        UserError: a missing run, dataset or split, or an empty split.
    """
    from tqdm.auto import tqdm

    from kit import report, scoring
    from kit.generate import Generator, load_model

    t0 = time.perf_counter()
    timings: dict = {}
    runs, dataset, stats = _check_inputs(run_dirs, data_dir, options.split)
    names = _column_names(run_dirs)
    split = dataset[options.split]
    rows = select_requests([int(r) for r in split["rating"]], limit=options.limit, seed=options.seed,
                           mode=options.requests)
    requests = split.select(rows).to_list()
    for i, r in zip(rows, requests, strict=True):
        r["row"] = i
    prompts = [r["prompt"] for r in requests]
    references = [r["text"] for r in requests]
    sampler = options.sampler_spec()
    timings["data_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    rating_judge, rubric_judge = load_judges(data_dir, dataset["train"], progress=options.progress)
    timings["judges_s"] = time.perf_counter() - t

    outputs: dict[str, list[str]] = {}
    extra: dict[str, dict] = {}
    timings["models"] = {}
    bar = tqdm(total=len(names), desc="models", unit="model", disable=not options.progress)
    for name, path, info in zip(names, run_dirs, runs, strict=True):
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
        outputs[name] = [s.text for s in samples]
        mt["generate_s"] = time.perf_counter() - t
        mt["new_tokens"] = int(sum(s.new_tokens for s in samples))
        mt["tokens_per_s"] = mt["new_tokens"] / max(mt["generate_s"], 1e-9)
        mt["cut_at_limit"] = int(sum(not s.stopped for s in samples))
        extra[name] = {"new_tokens": [s.new_tokens for s in samples], "stopped": [s.stopped for s in samples]}
        if options.perplexity:
            t = time.perf_counter()
            bar.set_postfix_str(f"{name}: scoring the references")
            buckets = (info.get("config", {}).get("data", {}) or {}).get("buckets") or DEFAULT_PPL_BUCKETS
            nll, tok = reference_nll(lm, prompts, references, buckets=buckets, batch_size=options.batch_size,
                                     progress=options.progress, desc=name)
            extra[name].update(ref_nll=nll, ref_tokens=tok)
            mt["perplexity_s"] = time.perf_counter() - t
        timings["models"][name] = {k: round(v, 3) if isinstance(v, float) else v for k, v in mt.items()}
        del gen, lm
        gc.collect()
        bar.update(1)
    bar.close()

    t = time.perf_counter()
    columns: dict[str, dict[str, np.ndarray]] = {}
    for name in names:
        columns[name] = scoring.sample_scores(
            outputs[name], requests, rating_judge=rating_judge, rubric_judge=rubric_judge,
            ref_nll=extra[name].get("ref_nll"), ref_tokens=extra[name].get("ref_tokens"))
    columns[HUMAN] = scoring.sample_scores(references, requests, rating_judge=rating_judge,
                                           rubric_judge=rubric_judge, is_human=True)
    texts = {**outputs, HUMAN: references}
    requested = [int(r["rating"]) for r in requests]
    corpus = {name: scoring.corpus_statistics(texts[name], references, columns[name], requested,
                                              is_human=name == HUMAN) for name in columns}
    summary = {name: scoring.summarize(columns[name], corpus[name], seed=options.seed,
                                       n_resamples=options.n_resamples) for name in columns}
    slices: dict = {}
    for kind, groups in scoring.slice_rows(requests, top_rubrics=options.top_rubrics).items():
        slices[kind] = {
            value: {"n": int(len(idx)),
                    "columns": {name: scoring.summarize(columns[name], corpus[name], rows=idx, seed=options.seed,
                                                        n_resamples=options.n_resamples,
                                                        corpus_resamples=min(options.n_resamples, 200))
                                for name in columns}}
            for value, idx in groups.items()}
    win_rates = scoring.pairwise_win_rates(columns)
    differences = scoring.paired_differences(columns, names[0], seed=options.seed, n_resamples=options.n_resamples)
    timings["scoring_s"] = time.perf_counter() - t

    result = {
        "schema": report.SCHEMA,
        "synthetic": bool(stats.get("synthetic", False)),
        "data": {"dir": str(data_dir), "split": options.split, "fingerprint": stats.get("fingerprint"),
                 "split_rows": split.num_rows},
        "requests": {"n": len(rows), "mode": options.requests, "seed": options.seed,
                     "ratings": {str(k): requested.count(k) for k in sorted(set(requested))}},
        "options": dataclasses.asdict(options),
        "sampler": dataclasses.asdict(sampler),
        "models": [{"name": n, "path": str(p), "preset": i.get("preset"), "adapter": i.get("adapter"),
                    "lora": i.get("lora"), "val_loss": (i.get("metrics") or {}).get("val_loss")}
                   for n, p, i in zip(names, run_dirs, runs, strict=True)],
        "columns_order": [*names, HUMAN],
        "judges": {"rating": "RatingClassifier (TF-IDF + logistic regression, balanced classes)",
                   "rubric": "RubricClassifier (TF-IDF + Complement NB), top-3 hit",
                   "fitted_on": f"{data_dir}:train ({dataset['train'].num_rows} reviews)"},
        "metrics": {"columns": summary, "slices": slices, "win_rates": win_rates,
                    f"difference_vs_{names[0]}": differences},
        "timings": timings,
    }
    result["samples"] = report.sample_rows(requests, texts, columns, extra, names)
    timings["total_s"] = round(time.perf_counter() - t0, 3)
    if out is not None:
        t = time.perf_counter()
        report.write_report(out, result)
        timings["write_s"] = round(time.perf_counter() - t, 3)
    return result
