"""The Streamlit app, headless (`streamlit.testing.v1.AppTest`): every page on a micro run and a small report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kit.eval import EvalOptions, evaluate_models
from kit.testing import train_micro_run

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "streamlit_app" / "app.py")
PAGES = ROOT / "streamlit_app" / "pages"


@pytest.fixture(scope="module")
def app_dirs(tmp_path_factory, tiny_preset, tiny_prepared):
    """runs/{micro-base,micro-lora}, reports/micro and a copy of the tiny data (the judge cache is written there)."""
    root = tmp_path_factory.mktemp("app")
    data = root / "prepared"
    shutil.copytree(tiny_prepared, data)
    # What `kit data prepare` saves next to the splits: the rubric vocabulary and stats (marked synthetic).
    from collections import Counter

    from kit.data.prepare import load_prepared

    counts = Counter(r for rubrics in load_prepared(data)["train"]["rubrics"] for r in rubrics)
    (data / "rubrics.json").write_text(json.dumps(dict(counts.most_common()), ensure_ascii=False), encoding="utf-8")
    (data / "stats.json").write_text(json.dumps({"synthetic": True}), encoding="utf-8")
    runs = [
        str(train_micro_run(root, tiny_preset, data, name, **extra))
        for name, extra in (("micro-base", {"lora.enabled": "false"}), ("micro-lora", {}))
    ]
    evaluate_models(
        runs,
        data,
        out=root / "reports" / "micro",
        options=EvalOptions(
            limit=6,
            seed=1,
            max_new_tokens=8,
            batch_size=8,
            n_resamples=50,
            top_rubrics=2,
            perplexity=False,
            progress=False,
        ),
    )
    return {"runs": root / "runs", "reports": root / "reports", "data": data, "root": root}


@pytest.fixture
def env(app_dirs, monkeypatch):
    monkeypatch.setenv("KIT_RUNS_DIR", str(app_dirs["runs"]))
    monkeypatch.setenv("KIT_REPORTS_DIR", str(app_dirs["reports"]))
    monkeypatch.setenv("KIT_DATA_DIR", str(app_dirs["data"]))
    return app_dirs


def app(page: str | None = None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60).run()
    if page:
        at.switch_page(str(PAGES / f"{page}.py")).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def text_of(at) -> str:
    return "\n".join(m.value for m in at.markdown) + "\n".join(c.value for c in at.caption)


def fill(at, prefix: str, *, rubrics, keywords="", rating=5):
    at.multiselect(key=f"{prefix}_rubrics").set_value(rubrics)
    at.text_input(key=f"{prefix}_keywords").set_value(keywords)
    at.select_slider(key=f"{prefix}_rating").set_value(rating)
    at.number_input(key=f"{prefix}_max_new_tokens").set_value(12)


@pytest.mark.slow
def test_generate_form_gives_reviews_with_scores(env):
    at = app()
    assert at.selectbox(key="gen_model").options == ["micro-base", "micro-lora"]
    fill(at, "gen", rubrics=["Кафе"], keywords="кофе, персонал")
    at.number_input(key="gen_n").set_value(2)
    at.button[0].click().run()  # the form's submit button
    assert not at.exception and not at.error, [e.value for e in at.error]
    out = text_of(at)
    assert "micro-lora: 2 review(s) in" in [h.value for h in at.subheader][0]
    assert out.count('<div class="review">') == 2
    assert "predicted rating" in out and "keyword coverage" in out


@pytest.mark.slow
@pytest.mark.parametrize(
    "rubrics,keywords,match",
    [
        ([], "", "Request field 'rubrics'"),
        (["Кафе"], "x" * 41, "at most 40 characters"),
        (["Кафе"], ", ".join(f"k{i}" for i in range(11)), "at most 10 keywords"),
    ],
)
def test_generate_bad_input_is_one_error_line(env, rubrics, keywords, match):
    at = app()
    fill(at, "gen", rubrics=rubrics, keywords=keywords)
    at.button[0].click().run()
    assert not at.exception
    assert len(at.error) == 1 and match in at.error[0].value
    assert "Traceback" not in at.error[0].value


@pytest.mark.slow
def test_compare_random_request_and_side_by_side(env):
    at = app("compare")
    assert at.multiselect(key="cmp_models").value == ["micro-base", "micro-lora"]
    at.button(key="cmp_random").click().run()
    assert at.multiselect(key="cmp_rubrics").value  # filled from the test split
    at.number_input(key="cmp_max_new_tokens").set_value(12)
    at.button(key="FormSubmitter:cmp_form-Generate with each model").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    out = text_of(at)
    assert "**micro-base**" in out and "**micro-lora**" in out and "**human review**" in out
    assert out.count('<div class="review">') == 3


@pytest.mark.slow
def test_metrics_page_table_slices_win_rates(env):
    at = app("metrics")
    assert at.selectbox(key="met_report").value == "micro"
    assert not at.error
    table = at.dataframe[0].value
    assert list(table.columns) == ["micro-base", "micro-lora", "human"]
    assert any("[" in v for v in table["micro-lora"])  # estimate [low, high]
    assert len(at.dataframe) == 3  # table, slices, win rates
    assert "micro-base vs micro-lora" in set(at.dataframe[2].value["pair"])
    # The page's rows are report.md's (one kit.eval.report.headline_rows / win_rate_rows), plus non-headline metrics.
    md = (env["reports"] / "micro" / "report.md").read_text(encoding="utf-8")
    headline = [line.strip("| ").split(" | ") for line in md.split("| metric |")[1].split("\n\n")[0].splitlines()[2:]]
    assert len(headline) > 5 and len(table) > len(headline)
    for title, *cells in headline:
        assert table.loc[title].tolist() == cells, title
    wins = at.dataframe[2].value.set_index(["pair", "metric"])
    shown = [line.strip("| ").split(" | ") for line in md.split("## Win rates")[1].split("\n\n")[1].splitlines()[2:]]
    assert shown
    for pair, label, *numbers in shown:
        w = wins.loc[(pair, label)]
        assert [f"{w[k]:.2f}" for k in ("A wins", "B wins", "ties", "win rate of A")] == numbers, (pair, label)


@pytest.mark.slow
def test_samples_filter_vote_and_csv(env):
    at = app("samples")
    assert not at.error
    samples = [json.loads(x) for x in (env["reports"] / "micro" / "samples.jsonl").read_text().splitlines()]
    first = samples[0]
    assert text_of(at).count('<div class="review">') == 3 * len(samples)
    at.radio(key=f"vote_{first['id']}_micro-base_micro-lora").set_value("B").run()
    votes = json.loads((env["reports"] / "micro" / "votes.json").read_text())["votes"]
    assert votes[f"{first['id']}|micro-base|micro-lora"]["choice"] == "B"
    rating = first["request"]["rating"]
    at.multiselect(key="smp_ratings").set_value([rating]).run()
    assert text_of(at).count('<div class="review">') == 3 * sum(s["request"]["rating"] == rating for s in samples)
    # the vote is shown again on a fresh session
    at = app("samples")
    assert at.radio(key=f"vote_{first['id']}_micro-base_micro-lora").value == "B"


@pytest.mark.slow
def test_broken_report_shows_error_not_traceback(env, tmp_path, monkeypatch):
    reports = tmp_path / "reports"
    shutil.copytree(env["reports"] / "micro", reports / "broken")
    (reports / "broken" / "samples.jsonl").write_text('{"id": 0,\n', encoding="utf-8")
    (reports / "broken2").mkdir()
    (reports / "broken2" / "metrics.json").write_text("{nope", encoding="utf-8")
    monkeypatch.setenv("KIT_REPORTS_DIR", str(reports))
    at = app("samples")
    assert len(at.error) == 1 and "samples.jsonl:1 is not valid JSON" in at.error[0].value
    at = app("metrics")
    at.selectbox(key="met_report").set_value("broken2").run()
    assert not at.exception and "is not valid JSON" in at.error[0].value


def test_no_runs_or_reports_says_what_to_run(tmp_path, monkeypatch):
    for var in ("KIT_RUNS_DIR", "KIT_REPORTS_DIR", "KIT_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "missing"))
    for page in (None, "compare", "metrics", "samples"):
        at = app(page)
        assert not at.error and "make demo" in at.info[0].value, page


@pytest.mark.slow
def test_only_runs_inside_the_runs_dir(env):
    from kit.errors import UserError
    from kit.runs import resolve_run

    assert resolve_run(env["runs"], "micro-lora") == (env["runs"] / "micro-lora").resolve()
    for bad in ("..", "../prepared", "/etc", str(env["root"] / "prepared"), "nope", ""):
        with pytest.raises(UserError):
            resolve_run(env["runs"], bad)


def _labels(node) -> list[str]:
    """Labels of every status/expander block in an AppTest tree."""
    out = []
    for child in getattr(node, "children", {}).values():
        label = getattr(child, "label", None)
        if isinstance(label, str):
            out.append(label)
        out += _labels(child)
    return out


@pytest.mark.slow
def test_generate_streams_says_when_it_compiles_and_shares_one_base(env):
    import sys

    at = app()
    fill(at, "gen", rubrics=["Кафе"], keywords="кофе")
    at.number_input(key="gen_max_new_tokens").set_value(13)  # a sampler/length not compiled by other tests
    at.number_input(key="gen_top_k").set_value(3)
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    first = [x for x in _labels(at._tree) if "ompil" in x]
    assert first and "Compiled micro-lora for this shape in" in first[0], first
    assert any(c.value.startswith("First token after ") for c in at.caption)
    assert text_of(at).count('<div class="review">') == 1
    at.button[0].click().run()  # the same shape again: no compile message
    assert not [x for x in _labels(at._tree) if "ompil" in x]
    # Compare loads the base run too: both runs share one base in the process's model cache.
    at = app("compare")
    fill(at, "cmp", rubrics=["Кафе"])
    at.button(key="FormSubmitter:cmp_form-Generate with each model").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    pool = sys.modules["streamlit_app.resources"].model_pool(2)  # the app's own copy of the module
    assert len(pool.bases) == 1
    base = pool.base(pool.bases[0])
    assert len(base.nbytes()) == 3  # the base weights, micro-base (no adapter) and micro-lora


@pytest.mark.slow
def test_reports_are_read_again_only_when_they_change(env, tmp_path, monkeypatch):
    import kit.eval.report as report

    reports = tmp_path / "reports"
    shutil.copytree(env["reports"] / "micro", reports / "micro")
    monkeypatch.setenv("KIT_REPORTS_DIR", str(reports))
    calls = []
    real = report.read_metrics
    monkeypatch.setattr(report, "read_metrics", lambda d: calls.append(d) or real(d))
    at = app("metrics")
    at.run()
    at.run()
    assert len(calls) == 1  # three runs of the page, one read
    metrics = reports / "micro" / "metrics.json"
    doc = json.loads(metrics.read_text(encoding="utf-8"))
    doc["requests"]["n"] = 4242
    metrics.write_text(json.dumps(doc), encoding="utf-8")
    at.run()
    assert len(calls) == 2 and any("4242 requests" in c.value for c in at.caption)


@pytest.mark.slow
def test_each_vote_widget_is_a_fragment(env, monkeypatch):
    """AppTest reruns the whole script on a widget change, so check that each vote widget runs inside
    an `st.fragment` (which the browser reruns alone on a vote) and that a vote still saves."""
    import streamlit as st

    real, runs = st.fragment, []

    def recording(func=None, **kwargs):
        def wrap(f):
            def inner(*args, **kw):
                runs.append(f.__name__)
                return f(*args, **kw)

            inner.__name__ = f.__name__
            return real(inner, **kwargs)

        return wrap(func) if func is not None else wrap

    monkeypatch.setattr(st, "fragment", recording)
    at = app("samples")
    samples = [json.loads(x) for x in (env["reports"] / "micro" / "samples.jsonl").read_text().splitlines()]
    assert runs.count("vote_widget") == len(samples) == len(at.radio)
    first = samples[0]
    at.radio(key=f"vote_{first['id']}_micro-base_micro-lora").set_value("tie").run()
    assert not at.exception and not at.error
    votes = json.loads((env["reports"] / "micro" / "votes.json").read_text())["votes"]
    assert votes[f"{first['id']}|micro-base|micro-lora"]["choice"] == "tie"


@pytest.mark.slow
def test_bad_model_cache_size_is_one_error_line(env, monkeypatch):
    monkeypatch.setenv("KIT_MAX_MODELS", "0")
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception and len(at.error) == 1 and "KIT_MAX_MODELS" in at.error[0].value
