"""Samples: browse a report's samples side by side, filter, vote, download."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from kit.errors import UserError
from kit.eval import (
    VOTE_CHOICES,
    list_reports,
    read_votes,
    save_vote,
    vote_key,
)
from kit.eval.scoring import BY_KEY, HUMAN
from streamlit_app.config import DEMO_HINT, settings
from streamlit_app.display import show_text, synthetic_banner
from streamlit_app.markup import fmt
from streamlit_app.resources import report_metrics, report_samples

DIRS = settings()
st.title("Samples")
reports = list_reports(DIRS.reports)
if not reports:
    st.info(f"No reports found in `{DIRS.reports}`. {DEMO_HINT}")
    st.stop()
name = st.selectbox("Report", [p.name for p in reports], key="smp_report")
report_dir = DIRS.reports / name
try:
    # Cached by file mtime: a rerun (a filter, a page) does not parse the report again.
    result = report_metrics(report_dir)
    rows = report_samples(report_dir)
    models = [c for c in result["columns_order"] if c != HUMAN]
except (UserError, KeyError, TypeError) as e:
    st.error(str(e) if isinstance(e, UserError) else f"{report_dir}: broken report ({e!r}).")
    st.stop()
if not models or not rows:
    st.info("This report has no model outputs.")
    st.stop()
synthetic = bool(result.get("synthetic"))
synthetic_banner(synthetic, "data: the requests and reference reviews here are")

c1, c2 = st.columns(2)
a = c1.selectbox("Model A", models, index=0, key="smp_a")
b = c2.selectbox("Model B", models, index=min(1, len(models) - 1), key="smp_b")

with st.expander("Filters", expanded=True):
    c1, c2 = st.columns(2)
    ratings = sorted({r["request"]["rating"] for r in rows})
    want_ratings = c1.multiselect("Requested rating", ratings, key="smp_ratings")
    rubrics = sorted({x for r in rows for x in r["request"]["rubrics"]})
    want_rubrics = c2.multiselect("Rubric", rubrics, key="smp_rubrics")
    score_keys = sorted({k for r in rows for k in r["scores"].get(a, {})})
    c1, c2, c3 = st.columns([1, 1, 2])
    metric = c1.selectbox(
        "Metric", ["(none)", *score_keys], key="smp_metric", format_func=lambda k: BY_KEY[k].label if k in BY_KEY else k
    )
    metric_col = c2.selectbox("of column", [a, b, HUMAN], key="smp_metric_col")
    bounds = None
    if metric != "(none)":
        values = [r["scores"].get(metric_col, {}).get(metric) for r in rows]
        values = [v for v in values if v is not None]
        if values and min(values) < max(values):
            lo, hi = float(min(values)), float(max(values))
            bounds = c3.slider("Range", lo, hi, (lo, hi), key=f"smp_range_{metric}_{metric_col}")


def keep(r: dict) -> bool:
    q = r["request"]
    if want_ratings and q["rating"] not in want_ratings:
        return False
    if want_rubrics and not set(want_rubrics) & set(q["rubrics"]):
        return False
    if bounds:
        v = r["scores"].get(metric_col, {}).get(metric)
        return v is not None and bounds[0] <= v <= bounds[1]
    return True


shown = [r for r in rows if keep(r)]
votes = read_votes(report_dir)
flat = pd.DataFrame(
    [
        {
            "id": r["id"],
            "rating": r["request"]["rating"],
            "rubrics": "; ".join(r["request"]["rubrics"]),
            "keywords": ", ".join(r["request"]["keywords"]),
            "reference": r["reference"],
            f"{a}": r["outputs"].get(a),
            f"{b}": r["outputs"].get(b),
            **{f"{c}.{k}": v for c in (a, b, HUMAN) for k, v in r["scores"].get(c, {}).items()},
            "vote": votes.get(vote_key(r["id"], a, b), {}).get("choice"),
            "synthetic": synthetic,
        }
        for r in shown
    ]
)
c1, c2 = st.columns([3, 1])
c1.caption(
    f"{len(shown)} of {len(rows)} samples · highlighted: requested keywords · underlined: words shared "
    "with the reference · votes are saved to the report dir (votes.json)"
)
c2.download_button(
    "⬇️ CSV", flat.to_csv(index=False).encode("utf-8"), file_name=f"{name}-samples.csv", mime="text/csv", key="smp_csv"
)

PAGE = 10
pages = max(1, -(-len(shown) // PAGE))
page = st.number_input("Page", 1, pages, 1, key="smp_page") if pages > 1 else 1


def on_vote(sample_id: int) -> None:
    choice = st.session_state.get(f"vote_{sample_id}_{a}_{b}")
    try:
        save_vote(report_dir, sample_id, a, b, choice)
    except (UserError, OSError) as e:
        st.session_state["smp_error"] = f"Vote not saved: {e}"


@st.fragment
def vote_widget(sample_id: int, saved: str | None) -> None:
    """One sample's vote: a fragment, so a vote reruns only this widget, not the whole page."""
    st.radio(
        "Which is better?",
        VOTE_CHOICES,
        key=f"vote_{sample_id}_{a}_{b}",
        horizontal=True,
        on_change=on_vote,
        args=(sample_id,),
        index=VOTE_CHOICES.index(saved) if saved in VOTE_CHOICES else None,
    )
    if err := st.session_state.pop("smp_error", None):
        st.error(err)


for r in shown[(page - 1) * PAGE : page * PAGE]:
    q = r["request"]
    with st.container(border=True):
        st.markdown(
            f"**#{r['id']}** · {'; '.join(q['rubrics'])} · {q['rating']}★ · keywords: "
            f"{', '.join(q['keywords']) or '—'}" + (f" · {q['name']}" if q.get("name") else "")
        )
        cols = st.columns(3)
        for col, (label, column, text) in zip(
            cols,
            [
                ("reference" + (" (SYNTHETIC)" if synthetic else ""), HUMAN, r["reference"]),
                (f"A: {a}", a, r["outputs"].get(a, "")),
                (f"B: {b}", b, r["outputs"].get(b, "")),
            ],
            strict=True,
        ):
            with col:
                st.markdown(f"*{label}*")
                show_text(text, q["keywords"], None if column == HUMAN else r["reference"])
                s = r["scores"].get(column, {})
                st.caption(
                    " · ".join(
                        f"{BY_KEY[k].label if k in BY_KEY else k} {fmt(s.get(k))}"
                        for k in ("rating_predicted", "keyword_coverage", "rubric_top3", "chrf", "rouge_l")
                        if k in s
                    )
                )
        vote_widget(r["id"], votes.get(vote_key(r["id"], a, b), {}).get("choice"))
