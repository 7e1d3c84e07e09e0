"""What the pages load once and share: the model cache, the judges, reports, the vocabulary; generation.

Cached across sessions with `st.cache_resource` (models, judges) or per input
with `st.cache_data` (reports, keyed by the files' mtime and size). Requests,
generation, scores and report reading themselves come from `kit`.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from kit.errors import UserError
from streamlit_app.config import DEMO_HINT, settings


@st.cache_resource(show_spinner=False)
def model_pool(max_models: int):
    """The process's model cache: at most `max_models` bases, each shared by the runs on it (LRU)."""
    from kit.generate import ModelPool

    return ModelPool(max_bases=max_models, batch_size=8)


@st.cache_resource(show_spinner="Loading the rating/rubric judges…")
def judges(data_dir: str):
    """The control judges `kit evaluate` uses (fitted on the train split, cached on disk by kit)."""
    from kit.data.prepare import load_prepared
    from kit.eval import load_judges

    return load_judges(data_dir, load_prepared(data_dir)["train"])


def _stamp(*files: Path) -> tuple:
    """What a cached read depends on: each file's mtime and size (None when missing)."""
    out = []
    for f in files:
        try:
            st_ = f.stat()
            out.append((st_.st_mtime_ns, st_.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


@st.cache_data(show_spinner=False, max_entries=32)
def _metrics(report_dir: str, stamp: tuple) -> dict:
    from kit.eval.report import read_metrics

    return read_metrics(report_dir)


@st.cache_data(show_spinner=False, max_entries=32)
def _samples(report_dir: str, stamp: tuple) -> list[dict]:
    from kit.eval.report import read_samples

    return read_samples(report_dir)


def report_metrics(report_dir: Path) -> dict:
    """`kit.eval.read_metrics`, read again only when metrics.json changes (cached by its mtime)."""
    from kit.eval.report import METRICS_JSON

    return _metrics(str(report_dir), _stamp(Path(report_dir) / METRICS_JSON))


def report_samples(report_dir: Path) -> list[dict]:
    """`kit.eval.read_samples`, read again only when samples.jsonl changes (cached by its mtime)."""
    from kit.eval.report import SAMPLES_JSONL

    return _samples(str(report_dir), _stamp(Path(report_dir) / SAMPLES_JSONL))


@st.cache_data(show_spinner=False)
def vocabulary(data_dir: str) -> dict[str, int]:
    """The prepared data's rubric vocabulary (`kit.data.prepare.load_rubrics`): rubric -> count."""
    from kit.data.prepare import load_rubrics

    return load_rubrics(data_dir)


@st.cache_data(show_spinner=False)
def is_synthetic(data_dir: str) -> bool:
    """Whether the prepared data is synthetic (its stats say so); False when it has no stats."""
    from kit.data.prepare import load_stats

    try:
        return bool(load_stats(data_dir).get("synthetic"))
    except UserError:
        return False


def run_names() -> list[str]:
    """The names of the runs in the runs dir; an error line on the page (and none) when it cannot be read."""
    from kit.runs import list_runs

    try:
        return [r["name"] for r in list_runs(settings().runs)]
    except UserError as e:
        st.error(str(e))
        return []


def need_runs() -> list[str]:
    """`run_names()`, or stop the page with what to run when there are none."""
    names = run_names()
    if not names:
        st.info(f"No runs found in `{settings().runs}`. {DEMO_HINT} Or start the app with `-- --runs DIR`.")
        st.stop()
    return names


def need_vocabulary() -> dict[str, int]:
    """`vocabulary()` of the data dir, or stop the page with what to run when it has none."""
    try:
        return vocabulary(str(settings().data))
    except UserError as e:
        st.info(f"{e} {DEMO_HINT} Or start the app with `-- --data DIR`.")
        st.stop()


def generator(run_name: str):
    """The `Generator` of a run inside the runs dir, loading its base (with a spinner) if it is not loaded."""
    from kit.runs import resolve_run

    s = settings()
    path = resolve_run(s.runs, run_name)
    pool = model_pool(s.max_models)
    if pool.loaded(path):
        return pool.generator(path)
    with st.spinner(f"Loading {run_name}…"):
        return pool.generator(path)


@contextmanager
def compile_status(gen, run_name: str, request, sampler, *, n: int, max_new_tokens: int):
    """Say so while the first request of a shape compiles (seconds on the tiny model, minutes at 2B)."""
    if gen.is_compiled(request, sampler, n=n, max_new_tokens=max_new_tokens):
        yield
        return
    estimate = gen.compile_estimate_s()
    rough = f"about {estimate:.0f} s" if estimate < 90 else f"about {estimate / 60:.0f} min"
    t = time.perf_counter()
    with st.status(
        f"First request to {run_name} with this sampler and length: compiling it ({rough}); "
        "later ones reuse the compiled program.",
        expanded=False,
    ) as status:
        yield
        status.update(label=f"Compiled {run_name} for this shape in {time.perf_counter() - t:.1f} s.", state="complete")


def generate(run_name: str, request, sampler, *, n: int, max_new_tokens: int):
    """Reviews for `request` from the run `run_name` (inside the runs dir only), and the seconds it took.

    Returns:
        `(samples, seconds)`: the request's `n` samples and the wall time, compiling included.
    """
    gen = generator(run_name)
    t = time.perf_counter()
    with compile_status(gen, run_name, request, sampler, n=n, max_new_tokens=max_new_tokens):
        # The generator holds its model's lock: one batch per model at a time across sessions.
        samples = gen.generate([request], sampler, n=n, max_new_tokens=max_new_tokens)[0]
    return samples, time.perf_counter() - t


def stream(run_name: str, request, sampler, *, n: int, max_new_tokens: int):
    """The run's generator and a stream of `request` from it.

    Returns:
        `(generator, stream)`: the `Generator` of `run_name` (for `compile_status`) and a
        `kit.generate.Stream`; iterate the stream (e.g. `st.write_stream`), then read `.samples`.
    """
    gen = generator(run_name)
    return gen, gen.stream(request, sampler, n=n, max_new_tokens=max_new_tokens)


def scores_for(texts, request) -> list[dict]:
    """The control scores of each text for `request`, from the judges `kit evaluate` uses."""
    from kit.eval.scoring import control_scores

    rating, rubric = judges(str(settings().data))
    return control_scores(texts, request.to_dict(), rating_judge=rating, rubric_judge=rubric)
