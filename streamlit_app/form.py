"""The request form: the request and sampler widgets, and the `Request` and `SamplerSpec` they make."""

from __future__ import annotations

import streamlit as st


def request_fields(prefix: str, vocab: dict[str, int]) -> dict:
    """The request and sampler widgets (call inside an `st.form`); returns their raw values.

    Every sampler default is the kit's one set (`SamplerSpec()`, `GenerateOptions()`),
    the same `kit generate` and `kit evaluate` use, so the app samples like the report.
    Each widget's key is `f"{prefix}_{field}"`, so two pages' forms keep apart.
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
    """`(Request, SamplerSpec)` from the form values; raises `UserError` with kit's one-line message.

    Example:
        >>> values = {"rubrics": ["Кафе"], "rating": 5, "keywords": "кофе", "name": "", "address": "",
        ...           "sampler": "top_p", "temperature": 0.7, "top_k": 0, "top_p": 0.9, "seed": 1}
        >>> request, sampler = parse_form(values, {"Кафе": 3})
        >>> request.rubrics, request.keywords, sampler.name
        (('Кафе',), ('кофе',), 'top_p')
    """
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
