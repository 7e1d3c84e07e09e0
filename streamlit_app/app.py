"""The geo-reviews evaluator: generate, compare models, read reports and vote on samples.

    streamlit run streamlit_app/app.py -- --runs runs --reports reports --data data/prepared

A thin layer over `kit`: see `shared.py` for configuration and the pages in `pages/`.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import streamlit as st  # noqa: E402
from shared import config  # noqa: E402

import kit  # noqa: E402,F401  (JAX backend before keras)
from kit.errors import UserError  # noqa: E402

st.set_page_config(page_title="Geo reviews evaluator", page_icon=":material/rate_review:", layout="wide")
st.markdown(
    "<style>mark.kw{background:#ffe08a;padding:0 2px;border-radius:3px}"
    "u.shared{text-decoration:underline 2px #3b82f6}</style>",
    unsafe_allow_html=True,
)

page = st.navigation(
    [
        # Material icons ship with Streamlit; emoji need a colour-emoji font the browser may lack.
        st.Page(HERE / "pages" / "generate.py", title="Generate", icon=":material/edit_note:", default=True),
        st.Page(HERE / "pages" / "compare.py", title="Compare", icon=":material/compare:"),
        st.Page(HERE / "pages" / "metrics.py", title="Metrics", icon=":material/bar_chart:"),
        st.Page(HERE / "pages" / "samples.py", title="Samples", icon=":material/search:"),
    ]
)
try:
    DIRS = config()
except UserError as e:
    st.error(str(e))
    st.stop()
st.sidebar.caption(f"runs: `{DIRS.runs}`  \nreports: `{DIRS.reports}`  \ndata: `{DIRS.data}`")
page.run()
