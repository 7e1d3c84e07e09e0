"""What every page shares: the configured dirs, cached models and judges, request form, text marking.

Only presentation and Streamlit plumbing lives here; requests, generation,
scores and report reading come from `kit`.

Configuration (command line wins over the environment):
    streamlit run streamlit_app/app.py -- --runs runs --reports reports --data data/prepared --max-models 2
    KIT_RUNS_DIR=runs KIT_REPORTS_DIR=reports KIT_DATA_DIR=data/prepared KIT_MAX_MODELS=2 streamlit run ...

`--max-models` bounds the model cache: how many base models stay loaded. The
runs on one base (the base itself and its fine-tunes) share one copy of it
(`kit.generate.ModelPool`), so comparing a base with its LoRA runs needs one.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from kit.errors import UserError

DEMO_HINT = "Run `make demo` (it writes runs/tiny-base, runs/tiny-lora, reports/demo and data/prepared)."


@dataclasses.dataclass(frozen=True)
class Dirs:
    runs: Path
    reports: Path
    data: Path
    max_models: int = 2


def config(argv: list[str] | None = None) -> Dirs:
    """The dirs and the model cache size from `-- --runs ... --max-models N` or KIT_* env vars."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--runs", default=os.environ.get("KIT_RUNS_DIR", "runs"))
    parser.add_argument("--reports", default=os.environ.get("KIT_REPORTS_DIR", "reports"))
    parser.add_argument("--data", default=os.environ.get("KIT_DATA_DIR", "data/prepared"))
    parser.add_argument("--max-models", default=os.environ.get("KIT_MAX_MODELS", "2"))
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        max_models = int(args.max_models)
    except ValueError:
        max_models = 0
    if max_models < 1:
        # Shown by the app as one error line (every page calls config()).
        raise UserError(f"--max-models (or KIT_MAX_MODELS) must be a positive integer. Received: {args.max_models!r}")
    return Dirs(Path(args.runs), Path(args.reports), Path(args.data), max_models)


# ----------------------------------------------------------------- cached resources


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
    from kit.data.prepare import load_rubrics

    return load_rubrics(data_dir)


@st.cache_data(show_spinner=False)
def is_synthetic(data_dir: str) -> bool:
    from kit.data.prepare import load_stats

    try:
        return bool(load_stats(data_dir).get("synthetic"))
    except UserError:
        return False


def run_names() -> list[str]:
    from kit.runs import list_runs

    try:
        return [r["name"] for r in list_runs(config().runs)]
    except UserError as e:
        st.error(str(e))
        return []


def generator(run_name: str):
    """The `Generator` of a run inside the runs dir, loading its base (with a spinner) if it is not loaded."""
    from kit.runs import resolve_run

    dirs = config()
    path = resolve_run(dirs.runs, run_name)
    pool = model_pool(dirs.max_models)
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
    """Reviews for `request` from the run `run_name` (inside the runs dir only), and the seconds it took."""
    gen = generator(run_name)
    t = time.perf_counter()
    with compile_status(gen, run_name, request, sampler, n=n, max_new_tokens=max_new_tokens):
        # The generator holds its model's lock: one batch per model at a time across sessions.
        samples = gen.generate([request], sampler, n=n, max_new_tokens=max_new_tokens)[0]
    return samples, time.perf_counter() - t


def stream(run_name: str, request, sampler, *, n: int, max_new_tokens: int):
    """A `kit.generate.Stream` of `request` from `run_name`: iterate it (e.g. `st.write_stream`), then `.samples`."""
    gen = generator(run_name)
    return gen, gen.stream(request, sampler, n=n, max_new_tokens=max_new_tokens)


def scores_for(texts, request) -> list[dict]:
    from kit.eval.scoring import control_scores

    rating, rubric = judges(str(config().data))
    return control_scores(texts, request.to_dict(), rating_judge=rating, rubric_judge=rubric)


def need_runs() -> list[str]:
    names = run_names()
    if not names:
        st.info(f"No runs found in `{config().runs}`. {DEMO_HINT} Or start the app with `-- --runs DIR`.")
        st.stop()
    return names


def need_vocabulary() -> dict[str, int]:
    try:
        return vocabulary(str(config().data))
    except UserError as e:
        st.info(f"{e} {DEMO_HINT} Or start the app with `-- --data DIR`.")
        st.stop()


def synthetic_banner(synthetic: bool, what: str = "data") -> None:
    if synthetic:
        st.warning(f"SYNTHETIC {what}: generated by `kit.data.synth`, not real reviews.", icon="⚠️")


# ----------------------------------------------------------------- the request form


def request_fields(prefix: str, vocab: dict[str, int]) -> dict:
    """The request and sampler widgets (call inside an `st.form`); returns their raw values.

    Every sampler default is the kit's one set (`SamplerSpec()`, `GenerateOptions()`),
    the same `kit generate` and `kit evaluate` use, so the app samples like the report.
    """
    from kit.generate import SAMPLERS, GenerateOptions, SamplerSpec

    spec, gen = SamplerSpec(), GenerateOptions()
    v = {}
    v["rubrics"] = st.multiselect(
        "Rubrics",
        list(vocab),
        max_selections=5,
        key=f"{prefix}_rubrics",
        placeholder="Type to search the data's rubrics",
    )
    c1, c2 = st.columns(2)
    # The default goes through session state, not `value=`: "Random test request"
    # sets the rating there, and Streamlit warns when a widget gets both.
    st.session_state.setdefault(f"{prefix}_rating", 5)
    v["rating"] = c1.select_slider("Rating", options=[1, 2, 3, 4, 5], key=f"{prefix}_rating")
    v["keywords"] = c2.text_input("Keywords (comma-separated)", key=f"{prefix}_keywords")
    c1, c2 = st.columns(2)
    v["name"] = c1.text_input("Name", key=f"{prefix}_name")
    v["address"] = c2.text_input("Address", key=f"{prefix}_address")
    with st.expander("Sampler"):
        c1, c2, c3 = st.columns(3)
        v["sampler"] = c1.selectbox("Sampler", SAMPLERS, index=SAMPLERS.index(spec.name), key=f"{prefix}_sampler")
        v["temperature"] = c2.number_input(
            "Temperature", 0.05, 5.0, spec.temperature, 0.05, key=f"{prefix}_temperature"
        )
        v["seed"] = c3.number_input("Seed", 0, 2**31 - 1, spec.seed, key=f"{prefix}_seed")
        c1, c2, c3, c4 = st.columns(4)
        v["top_k"] = c1.number_input("Top-k", 0, 1000, spec.k, key=f"{prefix}_top_k")
        v["top_p"] = c2.number_input("Top-p", 0.01, 1.0, spec.p, 0.01, key=f"{prefix}_top_p")
        v["max_new_tokens"] = c3.number_input(
            "Max new tokens", 1, 1024, gen.max_new_tokens, key=f"{prefix}_max_new_tokens"
        )
        v["n"] = c4.number_input("Samples", 1, 8, gen.n, key=f"{prefix}_n")
    return v


def parse_form(v: dict, vocab: dict[str, int]):
    """`(Request, SamplerSpec)` from the form values; raises `UserError` with kit's one-line message."""
    from kit.generate import Request, SamplerSpec

    request = Request.create(
        rubrics=v["rubrics"],
        rating=v["rating"],
        keywords=v["keywords"],
        name=v["name"],
        address=v["address"],
        vocabulary=vocab,
    )
    sampler = SamplerSpec(
        name=v["sampler"],
        temperature=float(v["temperature"]),
        k=int(v["top_k"]),
        p=float(v["top_p"]),
        seed=int(v["seed"]),
    )
    return request, sampler


# ----------------------------------------------------------------- marking text

_MD_SPECIAL = str.maketrans({c: f"&#{ord(c)};" for c in "\\`*_{}[]()#+-.!|~>$"})


def marked_html(text: str, keywords=(), reference: str | None = None) -> str:
    """`text` as safe HTML: requested keywords in <mark>, words shared with `reference` underlined."""
    from kit.metrics.tokens import lemma_spans, lemmas

    wanted = {lemma for k in keywords for lemma in lemmas(k)}
    kw = set(lemma_spans(text, wanted)) if wanted else set()
    shared = set(lemma_spans(text, set(lemmas(reference)))) if reference else set()
    spans = sorted(kw | shared)
    out, pos = [], 0

    def esc(s: str) -> str:
        return html.escape(s).translate(_MD_SPECIAL).replace("\n", "<br>")

    for a, b in spans:
        out.append(esc(text[pos:a]))
        word = esc(text[a:b])
        if (a, b) in shared:
            word = f'<u class="shared">{word}</u>'
        if (a, b) in kw:
            word = f'<mark class="kw">{word}</mark>'
        out.append(word)
        pos = b
    out.append(esc(text[pos:]))
    return '<div class="review">' + ("".join(out) or "<i>(empty)</i>") + "</div>"


def show_text(text: str, keywords=(), reference: str | None = None) -> None:
    st.markdown(marked_html(text, keywords, reference), unsafe_allow_html=True)


def fmt(value, spec: str = "{:.2f}") -> str:
    return "—" if value is None else spec.format(value)


def show_scores(s: dict, *, requested_rating: int | None = None) -> None:
    rating = s.get("rating_predicted")
    stars = "—" if rating is None else f"{int(rating)}★"
    ok = "" if requested_rating is None or rating is None else (" ✓" if int(rating) == requested_rating else " ✗")
    st.caption(
        f"predicted rating **{stars}**{ok} · keyword coverage **{fmt(s.get('keyword_coverage'))}** · "
        f"rubric top-3 **{fmt(s.get('rubric_top3'), '{:.0f}')}**"
    )
