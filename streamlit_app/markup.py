"""Text as the pages show it: reviews as safe HTML with marked words, and score captions.

Pure functions (no Streamlit), so they are unit-tested on exact strings; the
pages hand their output to `st.markdown` (see `display.py`).
"""

from __future__ import annotations

from kit.metrics.tokens import lemma_spans, lemmas

# The classes `marked_html` puts on marked words; the app adds this once per page.
STYLE = (
    "<style>mark.kw{background:#ffe08a;padding:0 2px;border-radius:3px}"
    "u.shared{text-decoration:underline 2px #3b82f6}</style>"
)

# One pass over the characters: HTML's five special characters become entities,
# and the Markdown ones character references, because `st.markdown` reads its
# input as Markdown before it renders the HTML (a review's `*`, `_`, `#` or `$`
# would turn into emphasis, headings or LaTeX). Two passes would re-escape the
# `#` of the first pass's `&#x27;`, and an apostrophe would show as "&#x27;".
_ESCAPES = str.maketrans(
    {c: f"&#{ord(c)};" for c in "\\`*_{}[]()#+-.!|~$"}
    | {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;", "\n": "<br>"}
)


def _escape(text: str) -> str:
    return text.translate(_ESCAPES)


def marked_html(text: str, keywords=(), reference: str | None = None) -> str:
    """`text` as safe HTML: requested keywords in `<mark>`, words shared with `reference` underlined.

    Words match on lemmas (`kit.metrics.tokens`), as keyword coverage counts
    them. HTML and Markdown characters of `text` are escaped, line breaks
    become `<br>`, and an empty text shows as "(empty)".

    Args:
        text: The review to show.
        keywords: Requested keywords; each word of `text` with a keyword's lemma is marked.
        reference: A text (the human review) whose words are underlined in `text`.

    Example:
        >>> marked_html("Кофе <b>вкусный</b>", keywords=["кофе"])
        '<div class="review"><mark class="kw">Кофе</mark> &lt;b&gt;вкусный&lt;/b&gt;</div>'
    """
    wanted = {lemma for k in keywords for lemma in lemmas(k)}
    kw = set(lemma_spans(text, wanted)) if wanted else set()
    shared = set(lemma_spans(text, set(lemmas(reference)))) if reference else set()
    out, pos = [], 0
    for a, b in sorted(kw | shared):
        out.append(_escape(text[pos:a]))
        word = _escape(text[a:b])
        if (a, b) in shared:
            word = f'<u class="shared">{word}</u>'
        if (a, b) in kw:
            word = f'<mark class="kw">{word}</mark>'
        out.append(word)
        pos = b
    out.append(_escape(text[pos:]))
    return '<div class="review">' + ("".join(out) or "<i>(empty)</i>") + "</div>"


def fmt(value, spec: str = "{:.2f}") -> str:
    """`value` formatted by `spec`, or a dash for a missing score.

    Example:
        >>> fmt(0.4567), fmt(None), fmt(3, "{:.0f}")
        ('0.46', '—', '3')
    """
    return "—" if value is None else spec.format(value)


def scores_caption(scores: dict, *, requested_rating: int | None = None) -> str:
    """One line of a review's control scores (Markdown): predicted rating, keyword coverage, rubric top-3.

    Args:
        scores: A review's scores (`kit.eval.scoring.control_scores`); missing keys show as a dash.
        requested_rating: The request's rating; the predicted one gets ✓ when it matches, ✗ when not.

    Example:
        >>> scores_caption({"rating_predicted": 4, "keyword_coverage": 0.5, "rubric_top3": 1.0}, requested_rating=5)
        'predicted rating **4★** ✗ · keyword coverage **0.50** · rubric top-3 **1**'
    """
    rating = scores.get("rating_predicted")
    stars = "—" if rating is None else f"{int(rating)}★"
    ok = "" if requested_rating is None or rating is None else (" ✓" if int(rating) == requested_rating else " ✗")
    return (
        f"predicted rating **{stars}**{ok} · keyword coverage **{fmt(scores.get('keyword_coverage'))}** · "
        f"rubric top-3 **{fmt(scores.get('rubric_top3'), '{:.0f}')}**"
    )
