"""docs/tools/render_review_comment.py: a review rendered as GitHub renders the pull-request comment
(docs/images/review-comment.png). The review's words are users' metric keys, params keys and group
labels: whatever they hold, the page gets only the markup the review meant, and text is escaped
once, not twice."""

from __future__ import annotations

import importlib.util
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ROOT
from mlpipe.config import Guard
from mlpipe.tools import review

spec = importlib.util.spec_from_file_location("render_review_comment", ROOT / "docs" / "tools" / "render_review_comment.py")
picture = importlib.util.module_from_spec(spec)
spec.loader.exec_module(picture)

# What CommonMark, GFM's tables and the review's own <details> produce, and nothing else.
MARKUP = {"h1", "h2", "h3", "p", "ul", "li", "strong", "code", "pre", "table", "thead", "tbody", "tr", "th", "td", "details", "summary"}
MARKUP |= {"em", "a", "ol", "br", "hr", "blockquote", "del", "h4", "h5", "h6", "img"}


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_data(self, data):
        self.text.append(data)


def parsed(page: str) -> Elements:
    elements = Elements()
    elements.feed(page)
    return elements


def a_review(name: str) -> str:
    """A whole review whose metric key, params key, fairness attribute and group label are `name`."""
    metrics_diff = {
        "metrics/evaluation.json": {"test.roc_auc": {"old": 0.905, "new": 0.897}, name: {"old": 1, "new": 1}},
        "metrics/fairness.json": {f"sensitive.{name}.demographic_parity_difference": {"old": 0.1, "new": 0.2}},
    }
    group = {"rows": 500, "positives": 250, "roc_auc": 0.9, "selection_rate": 0.5, "true_positive_rate": 0.8, "false_positive_rate": 0.2}
    fairness = {
        "min_group_rows": 100,
        "sensitive": {
            name: {
                "column": name,
                "demographic_parity_difference": 0.2,
                "equalized_odds_difference": 0.1,
                "groups": {name: {**group, "in_differences": True}, "female": {**group, "in_differences": True}},
            }
        },
    }
    guards = review.check_guards(metrics_diff, [Guard(file="metrics/evaluation.json", key="test.roc_auc", max_drop=0.005)])
    params_diff = {"params.yaml": {name: {"old": name, "new": 2}}}
    return review.render(
        "main", params_diff, metrics_diff, guards, None, "reports/review_plots/index.html", ("metrics/fairness.json", fairness)
    )


HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    "</details><details open>",
    '<img alt=">" onerror=alert(1)>',
    "a < b & c > d &amp; e",
    "[x](javascript:alert(1))",
]


def assert_only_review_markup(page: str, frame: frozenset[str] = frozenset()) -> Elements:
    elements = parsed(page)
    for tag, attrs in elements.tags:
        assert tag in MARKUP | frame, (tag, attrs)
        for attr, value in attrs:
            assert not attr.startswith("on"), (tag, attrs)
            assert not (value or "").strip().lower().startswith("javascript:"), (tag, attrs)
    return elements


def test_the_review_renders_as_github_shows_it():
    page = picture.markdown_html(a_review("sex"))
    elements = assert_only_review_markup(page)
    tags = [tag for tag, _ in elements.tags]
    assert {"table", "details", "summary", "h2"} <= set(tags)
    # Rendered once: the verdict's ≤ and -> are characters, not entities shown as text.
    assert "drop ≤ 0.005" in page and "0.905 -&gt; 0.897" in page
    # A fold's summary names its file in <code>: raw HTML, where GitHub reads no Markdown.
    assert "<details><summary><code>metrics/evaluation.json</code>: 1 changed, 1 unchanged</summary>" in page


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_name_is_shown_as_written(name):
    page = picture.comment_page(a_review(name), author="<b>bot</b>")
    elements = assert_only_review_markup(page.split("<body>", 1)[1], frame=frozenset({"div", "span"}))
    text = "".join(elements.text)
    assert "<b>bot</b>" in text  # the author too is text
    if "](" not in name:  # a Markdown link is Markdown, rendered as GitHub does (a dead link, javascript: refused)
        assert name in text or name.replace("&amp;", "&") in text


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("<>/&;\"'=`|*_[]()!#\\ \nadeilmnoprstx:")), max_size=40))
def test_no_name_turns_into_markup(name):
    assert_only_review_markup(picture.markdown_html(a_review(name)))


def test_raw_html_keeps_only_the_review_s_tags():
    assert picture.raw_html("<details><summary>unchanged</summary>\n") == "<details><summary>unchanged</summary>\n"
    assert picture.raw_html("</details>") == "</details>"
    assert picture.raw_html("<details><summary><code>a</code>: b</summary>") == "<details><summary><code>a</code>: b</summary>"
    assert picture.raw_html("<img src=x onerror=alert(1)>") == "&lt;img src=x onerror=alert(1)&gt;"
    # A lone < in the block's text cannot open a tag; an entity stays an entity.
    assert picture.raw_html("<details>a <b & &amp;") == "<details>a &lt;b & &amp;"


def test_a_missing_review_is_one_line(tmp_path, capsys):
    assert picture.main([str(tmp_path / "review.md"), str(tmp_path / "out.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: render_review_comment: cannot read") and "make review" in err
