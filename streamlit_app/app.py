"""The geo-reviews evaluator: generate, compare models, read reports and vote on samples.

    streamlit run streamlit_app/app.py -- --runs runs --reports reports --data data/prepared

A thin layer over `kit`; the pages in `pages/` share:

- `config.py`: the settings (runs, reports and data dirs, model cache size) from the command line or KIT_* env vars;
- `resources.py`: the cached model pool, judges, reports and vocabulary, and generation;
- `form.py`: the request and sampler widgets;
- `markup.py`: reviews as safe HTML with marked words, score captions (pure, unit-tested);
- `display.py`: showing those on a page.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The repo root, so that the pages import `streamlit_app.<module>` (`streamlit run` puts only HERE on the path).
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

import streamlit as st  # noqa: E402

import kit  # noqa: E402,F401  (JAX backend before keras)
from kit.errors import UserError  # noqa: E402
from streamlit_app.config import settings  # noqa: E402
from streamlit_app.markup import STYLE  # noqa: E402

st.set_page_config(page_title="Geo reviews evaluator", page_icon=":material/rate_review:", layout="wide")
st.markdown(STYLE, unsafe_allow_html=True)

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
    DIRS = settings()
except UserError as e:
    st.error(str(e))
    st.stop()
st.sidebar.caption(f"runs: `{DIRS.runs}`  \nreports: `{DIRS.reports}`  \ndata: `{DIRS.data}`")
page.run()
