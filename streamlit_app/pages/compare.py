"""Compare: one request to two or three models side by side; a random test request with its human review."""

from __future__ import annotations

import random

import streamlit as st

from kit.errors import UserError
from streamlit_app.config import settings
from streamlit_app.display import show_scores, show_text, synthetic_banner
from streamlit_app.form import parse_form, request_fields
from streamlit_app.resources import generate, is_synthetic, need_runs, need_vocabulary, scores_for

DIRS = settings()
st.title("Compare models")
names = need_runs()
vocab = need_vocabulary()
models = st.multiselect("Models (2–3)", names, default=names[:3], max_selections=3, key="cmp_models")


@st.cache_resource(show_spinner=False)
def _test_split(data_dir: str):
    from kit.data.prepare import load_prepared

    return load_prepared(data_dir)["test"]


def _random_request():
    """Fill the form from a random row of the test split and keep its human review."""
    try:
        split = _test_split(str(DIRS.data))
    except (UserError, KeyError) as e:
        st.session_state["cmp_error"] = f"No test split to draw from: {e}"
        return
    if split.num_rows == 0:
        st.session_state["cmp_error"] = "The test split is empty."
        return
    row = split[random.randrange(split.num_rows)]
    st.session_state.update(
        cmp_rubrics=[r for r in row["rubrics"] if r in vocab][:5],
        cmp_rating=int(row["rating"]),
        cmp_keywords=", ".join(row["keywords"]),
        cmp_name=row.get("name_ru") or "",
        cmp_address=row.get("address") or "",
        cmp_human=row["text"],
        cmp_result=None,
    )


st.button("🎲 Random test request", on_click=_random_request, key="cmp_random")
if err := st.session_state.pop("cmp_error", None):
    st.error(err)

with st.form("cmp_form"):
    values = request_fields("cmp", vocab)
    submitted = st.form_submit_button("Generate with each model", type="primary")

if submitted:
    try:
        if len(models) < 1:
            raise UserError("Pick at least one model (two or three to compare).")
        request, sampler = parse_form(values, vocab)
        out = {}
        for m in models:
            samples, seconds = generate(m, request, sampler, n=1, max_new_tokens=int(values["max_new_tokens"]))
            out[m] = (samples[0], scores_for([samples[0].text], request)[0], seconds)
    except UserError as e:
        st.error(str(e))
    except Exception as e:  # noqa: BLE001
        st.error(f"Generation failed: {type(e).__name__}: {e}")
    else:
        st.session_state["cmp_result"] = (request, out)

result = st.session_state.get("cmp_result")
human = st.session_state.get("cmp_human")
if result:
    request, out = result
    cols = st.columns(len(out) + (1 if human else 0))
    for col, (m, (sample, s, seconds)) in zip(cols, out.items(), strict=False):
        with col, st.container(border=True):
            st.markdown(f"**{m}** · {seconds:.2f} s")
            show_text(sample.text, request.keywords, human)
            show_scores(s, requested_rating=request.rating)
    if human:
        with cols[-1], st.container(border=True):
            synthetic = is_synthetic(str(DIRS.data))
            st.markdown("**human review**" + (" (SYNTHETIC)" if synthetic else ""))
            show_text(human, request.keywords)
            show_scores(scores_for([human], request)[0], requested_rating=request.rating)
    st.caption("Highlighted: requested keywords; underlined: words shared with the human review.")
elif human:
    synthetic_banner(is_synthetic(str(DIRS.data)), "test request")
    st.caption("Human review of this request: submit the form to compare.")
