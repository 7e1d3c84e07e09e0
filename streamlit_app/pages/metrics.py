"""Metrics: a report's side-by-side table with 95 % intervals, charts, slices and win rates."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from kit.errors import UserError
from kit.eval.report import list_reports
from kit.eval.rows import headline_rows, interval_cell, win_rate_rows
from kit.eval.scoring import BY_KEY, METRICS
from streamlit_app.config import DEMO_HINT, settings
from streamlit_app.display import synthetic_banner
from streamlit_app.resources import report_metrics

DIRS = settings()
st.title("Metrics")
reports = list_reports(DIRS.reports)
if not reports:
    st.info(
        f"No reports found in `{DIRS.reports}`. {DEMO_HINT} Or `kit evaluate --models runs/A runs/B "
        f"--out {DIRS.reports}/NAME`."
    )
    st.stop()
name = st.selectbox("Report", [p.name for p in reports], key="met_report")
try:
    result = report_metrics(DIRS.reports / name)
    order = list(result["columns_order"])
    cols = result["metrics"]["columns"]
except (UserError, KeyError, TypeError) as e:
    st.error(str(e) if isinstance(e, UserError) else f"{DIRS.reports / name}: broken report ({e!r}).")
    st.stop()

synthetic_banner(bool(result.get("synthetic")), "data: the requests and human reviews of this report are")
req = result.get("requests", {})
st.caption(
    f"{req.get('n', '?')} requests ({req.get('mode', '?')}, ratings {req.get('ratings', {})}); "
    f"sampler {result.get('sampler', {}).get('name', '?')}. Values: estimate [95 % bootstrap interval]; "
    "`human` is the reference review itself."
)

# report.md's rows (kit.eval.rows.headline_rows), but every metric the report has, not just the headline.
metric_rows = {r.key: r for r in headline_rows(result, [m.key for m in METRICS])}
keys = list(metric_rows)
table = pd.DataFrame(
    {c: [r.cells[c] for r in metric_rows.values()] for c in order}, index=[r.title for r in metric_rows.values()]
)
st.dataframe(table, width="stretch")


def interval_chart(rows: list[dict], x: str) -> alt.Chart:
    df = pd.DataFrame(rows)
    base = alt.Chart(df).encode(x=alt.X(f"{x}:N", sort=None, title=None))
    return base.mark_bar(opacity=0.6).encode(
        y=alt.Y("value:Q", title=None),
        color=alt.Color("column:N"),
        xOffset="column:N" if x != "column" else alt.Undefined,
    ) + base.mark_rule().encode(y="low:Q", y2="high:Q", xOffset="column:N" if x != "column" else alt.Undefined)


st.subheader("Per metric")
chart_keys = st.multiselect(
    "Metrics to chart",
    keys,
    default=[k for k in keys if k in ("rating_accuracy", "keyword_coverage", "chrf", "distinct_2")][:4],
    format_func=lambda k: BY_KEY[k].label,
    key="met_charts",
)
chart_cols = st.columns(2)
for i, key in enumerate(chart_keys):
    rows = [
        {"column": c, **cols[c][key]}
        for c in order
        if isinstance(cols.get(c, {}).get(key), dict) and cols[c][key].get("value") is not None
    ]
    with chart_cols[i % 2]:
        st.markdown(f"**{metric_rows[key].label}**{metric_rows[key].arrow}")
        if rows:
            st.altair_chart(interval_chart(rows, "column"), width="stretch")

st.subheader("Slices")
slices = result["metrics"].get("slices", {})
if slices:
    c1, c2 = st.columns(2)
    kind = c1.radio("By", list(slices), horizontal=True, key="met_slice_kind")
    key = c2.selectbox("Metric", keys, format_func=lambda k: BY_KEY[k].label, key="met_slice_metric")
    groups = slices.get(kind, {})
    st.dataframe(
        pd.DataFrame(
            [
                {
                    kind: v,
                    "n": s.get("n"),
                    **{c: interval_cell(key, s.get("columns", {}).get(c, {}).get(key)) for c in order},
                }
                for v, s in groups.items()
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    rows = [
        {kind: v, "column": c, **s["columns"][c][key]}
        for v, s in groups.items()
        for c in order
        if isinstance(s.get("columns", {}).get(c, {}).get(key), dict) and s["columns"][c][key].get("value") is not None
    ]
    if rows:
        st.altair_chart(interval_chart(rows, kind), width="stretch")

st.subheader("Pairwise win rates (per request; ties count half)")
wins = [
    {
        "pair": w.pair,
        "metric": w.label,
        "A wins": w.wins,
        "B wins": w.losses,
        "ties": w.ties,
        "win rate of A": w.win_rate,
        "n": w.n,
    }
    for w in win_rate_rows(result)
]
if wins:
    st.dataframe(pd.DataFrame(wins), hide_index=True, width="stretch")
else:
    st.caption("No win rates in this report.")
