"""`streamlit_app/markup.py`: reviews as safe HTML with marked words, score captions; exact strings, no Streamlit."""

from __future__ import annotations

import ast
import doctest
from pathlib import Path

import pytest

from streamlit_app import markup
from streamlit_app.markup import fmt, marked_html, scores_caption

OPEN, CLOSE = '<div class="review">', "</div>"


def html(body: str) -> str:
    return OPEN + body + CLOSE


def test_user_text_html_characters_are_escaped():
    text = 'Tom\'s "best" <b>cafe</b> & bar'
    assert marked_html(text) == html("Tom&#x27;s &quot;best&quot; &lt;b&gt;cafe&lt;/b&gt; &amp; bar")


def test_an_apostrophe_is_escaped_once():
    # Escaping twice turned `'` into `&&#35;x27;`, which the page shows as the literal "&#x27;".
    assert marked_html("McDonald's") == html("McDonald&#x27;s")


def test_markdown_characters_show_as_themselves():
    text = "**Отлично!** #1 _кофе_ [ссылка](x) $5 a\\b `c` {d} |e| ~f~ 1+2-3. > q"
    assert marked_html(text) == html(
        "&#42;&#42;Отлично&#33;&#42;&#42; &#35;1 &#95;кофе&#95; &#91;ссылка&#93;&#40;x&#41; &#36;5 a&#92;b "
        "&#96;c&#96; &#123;d&#125; &#124;e&#124; &#126;f&#126; 1&#43;2&#45;3&#46; &gt; q"
    )


def test_line_breaks_and_empty_text():
    assert marked_html("Первая строка\nвторая") == html("Первая строка<br>вторая")
    assert marked_html("") == html("<i>(empty)</i>")


@pytest.mark.parametrize(
    "text,keywords,expected",
    [
        # The keyword's own word, not a longer word that starts like it.
        ("Кофе вкусный, кофейня рядом", ["кофе"], '<mark class="kw">Кофе</mark> вкусный, кофейня рядом'),
        # Matched on lemmas: every inflected form.
        (
            "Завтраки отличные, завтрак в 9",
            ["завтрак"],
            '<mark class="kw">Завтраки</mark> отличные, <mark class="kw">завтрак</mark> в 9',
        ),
        ("Ёлка у входа", ["елка"], '<mark class="kw">Ёлка</mark> у входа'),
        # A marked word is escaped too.
        ("Есть Wi-Fi и парковка", ["wi-fi"], 'Есть <mark class="kw">Wi&#45;Fi</mark> и парковка'),
        # Markup in a keyword is only its words: nothing of it reaches the HTML.
        ("Кофе <хороший>", ["<script>кофе"], '<mark class="kw">Кофе</mark> &lt;хороший&gt;'),
        ("Кофе хороший", ["чай"], "Кофе хороший"),
        ("Кофе хороший", [], "Кофе хороший"),
    ],
)
def test_requested_keywords_are_marked(text, keywords, expected):
    assert marked_html(text, keywords) == html(expected)


def test_words_shared_with_the_reference_are_underlined_inside_the_keyword_mark():
    out = marked_html("Кофе и завтрак отличные", ["кофе"], reference="Завтрак был, кофе тоже")
    assert out == html('<mark class="kw"><u class="shared">Кофе</u></mark> и <u class="shared">завтрак</u> отличные')


def test_style_styles_the_classes_marked_html_uses():
    assert "mark.kw{" in markup.STYLE and "u.shared{" in markup.STYLE


def test_fmt():
    assert fmt(1 / 3) == "0.33"
    assert fmt(0.0, "{:.0f}") == "0"
    assert fmt(None) == "—"


@pytest.mark.parametrize(
    "scores,requested,expected",
    [
        (
            {"rating_predicted": 5.0, "keyword_coverage": 1 / 3, "rubric_top3": 0.0},
            5,
            "predicted rating **5★** ✓ · keyword coverage **0.33** · rubric top-3 **0**",
        ),
        (
            {"rating_predicted": 4, "keyword_coverage": 0.5, "rubric_top3": 1.0},
            5,
            "predicted rating **4★** ✗ · keyword coverage **0.50** · rubric top-3 **1**",
        ),
        ({"rating_predicted": 4}, None, "predicted rating **4★** · keyword coverage **—** · rubric top-3 **—**"),
        ({}, 5, "predicted rating **—** · keyword coverage **—** · rubric top-3 **—**"),
    ],
)
def test_scores_caption(scores, requested, expected):
    assert scores_caption(scores, requested_rating=requested) == expected


def test_markup_imports_no_streamlit():
    # Pure, so it is testable without a Streamlit runtime; function-level imports count too.
    tree = ast.parse(Path(markup.__file__).read_text(encoding="utf-8"))
    modules = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    modules += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    assert modules and not [m for m in modules if m.split(".")[0] == "streamlit"]


def test_docstring_examples_hold():
    # streamlit_app/ is outside pytest's doctest paths (its pages run on import), so run them here.
    result = doctest.testmod(markup)
    assert result.attempted >= 3 and result.failed == 0
