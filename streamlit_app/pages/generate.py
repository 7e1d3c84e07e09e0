"""Generate: one request to one model, the first review streamed as it is written, then every review scored."""

from __future__ import annotations

import time

import streamlit as st

from kit.errors import UserError
from streamlit_app.config import settings
from streamlit_app.display import show_scores, show_text
from streamlit_app.form import parse_form, request_fields
from streamlit_app.resources import compile_status, is_synthetic, need_runs, need_vocabulary, scores_for, stream

DIRS = settings()
st.title("Generate a review")
names = need_runs()
vocab = need_vocabulary()
default = names.index("tiny-lora") if "tiny-lora" in names else len(names) - 1
model = st.selectbox("Model (a run in the runs dir)", names, index=default, key="gen_model")

with st.form("gen_form"):
    values = request_fields("gen", vocab)
    submitted = st.form_submit_button("Generate", type="primary")

if submitted:
    live = st.empty()  # the review as it is written; replaced by the scored reviews below
    try:
        request, sampler = parse_form(values, vocab)
        n, limit = int(values["n"]), int(values["max_new_tokens"])
        gen, pieces = stream(model, request, sampler, n=n, max_new_tokens=limit)
        t = time.perf_counter()
        with compile_status(gen, model, request, sampler, n=n, max_new_tokens=limit), live.container(border=True):
            st.markdown("**Review 1** · writing…")
            st.write_stream(pieces)
        samples, seconds = pieces.samples, time.perf_counter() - t
        scores = scores_for([s.text for s in samples], request)
    except UserError as e:
        st.error(str(e))
    except Exception as e:  # noqa: BLE001  (no traceback reaches the user)
        st.error(f"Generation failed: {type(e).__name__}: {e}")
    else:
        st.session_state["gen_result"] = (model, request, samples, scores, seconds, pieces.first_token_s)
    live.empty()

result = st.session_state.get("gen_result")
if result:
    model, request, samples, scores, seconds, first_token_s = result
    st.subheader(f"{model}: {len(samples)} review(s) in {seconds:.2f} s")
    st.caption(f"First token after {first_token_s:.2f} s.")
    st.caption(
        "Requested keywords are highlighted. Control scores come from the judges `kit evaluate` uses"
        + (" (fitted on SYNTHETIC data)." if is_synthetic(str(DIRS.data)) else ".")
    )
    for i, (sample, s) in enumerate(zip(samples, scores, strict=True), 1):
        with st.container(border=True):
            st.markdown(
                f"**Review {i}** · {sample.new_tokens} tokens" + ("" if sample.stopped else " · cut at the token limit")
            )
            show_text(sample.text, request.keywords)
            show_scores(s, requested_rating=request.rating)
