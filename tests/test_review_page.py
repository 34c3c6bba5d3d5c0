"""The review page (mlpipe.tools.review.render), headline first: the verdict, the params changed,
the guarded and test-set metrics with the fairness differences and the drift verdict; below them
every metric, group table and the drift report folded in <details>. Names from data and params
are shown as written, and the pull-request comment is cut only between whole folds."""

from __future__ import annotations

import functools
import html
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlpipe.config import Guard
from mlpipe.tools import review
from test_review_comment_picture import assert_only_review_markup, picture

EVALUATION = "metrics/evaluation.json"
FAIRNESS_FILE = "metrics/fairness.json"
METRICS = {
    EVALUATION: {
        "test.rows": {"old": 1000, "new": 1000},
        "test.f1": {"old": 0.8, "new": 0.81},
        "test.recall": {"old": 0.9, "new": 0.91},
        "test.roc_auc": {"old": 0.905, "new": 0.897},
        "by_period.2016.roc_auc": {"old": 0.9, "new": 0.89},
        "threshold": {"old": 0.41, "new": 0.4},
    },
    FAIRNESS_FILE: {
        "sensitive.sex.demographic_parity_difference": {"old": 0.1, "new": 0.2},
        "sensitive.sex.equalized_odds_difference": {"old": 0.3, "new": 0.25},
    },
    "metrics/drift.json": {"windows.all.roc_auc": {"old": 0.9, "new": 0.9}},
}
GUARDS = [
    Guard(file=EVALUATION, key="test.roc_auc", max_drop=0.005),
    Guard(file=FAIRNESS_FILE, key="sensitive.sex.equalized_odds_difference", max_rise=0.02),
]
GROUP = {"rows": 500, "positives": 250, "roc_auc": 0.9, "selection_rate": 0.5, "true_positive_rate": 0.8, "false_positive_rate": 0.2}


def fairness(name: str = "sex", group: str = "male") -> tuple[str, dict]:
    found = {
        "column": "SEX",
        "demographic_parity_difference": 0.2,
        "equalized_odds_difference": 0.25,
        "groups": {group: {**GROUP, "in_differences": True}, "female": {**GROUP, "in_differences": False}},
    }
    return FAIRNESS_FILE, {"min_group_rows": 100, "sensitive": {name: found}}


def drift(reasons: list[str], text: str = "    2018:  1,000 rows") -> tuple[dict, str]:
    return {"retrain_recommended": bool(reasons), "reasons": reasons, "windows": {"2018": {}}}, text


def page(metrics=METRICS, guards=GUARDS, drift_verdict=None, fairness_report=None) -> str:
    results = review.check_guards(metrics, guards)
    params = {"params.yaml": {"train.num_leaves": {"old": 31, "new": 63}}}
    return review.render("main", params, metrics, results, drift_verdict, "reports/review_plots/index.html", fairness_report)


def section(text: str, heading: str) -> str:
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def test_the_page_opens_with_the_verdict_and_the_headline_before_every_fold():
    text = page(drift_verdict=drift(["2018: dataset drift"]), fairness_report=fairness())
    assert text.startswith("# Review: workspace vs `main`\n\n## Verdict\n\n**REGRESSION**: 1 of 2 guarded metrics beyond their limit")
    headings = re.findall(r"^#+ .*$", text, re.M)
    assert headings == [
        "# Review: workspace vs `main`",
        "## Verdict",
        "## Params changed",
        "## Headline",
        "## Plots",
        "## All metrics",
        "## Fairness by group",
        "## Drift (workspace)",
    ]
    # Nothing before "All metrics" is folded; everything after it is.
    assert "<details>" not in text.split("\n## All metrics\n")[0]
    for heading in ["All metrics", "Fairness by group", "Drift (workspace)"]:
        assert re.fullmatch(r"\n(.*\n\n)?(<details><summary>.*</summary>\n\n(.*\n)*?</details>\n\n?)+", section(text, heading)), heading


def test_the_headline_holds_the_guarded_metrics_the_test_metrics_and_the_fairness_differences():
    headline = section(page(fairness_report=fairness()), "Headline")
    rows = re.findall(r"^\| (`[^`]+`(?: \(guarded\))?) \|", headline, re.M)
    # Guards first, then the test metrics in the reading order, then any other test metric by name.
    assert rows == [
        "`test.roc_auc` (guarded)",
        "`metrics/fairness.json:sensitive.sex.equalized_odds_difference` (guarded)",
        "`test.recall`",
        "`test.f1`",
        "`test.rows`",
    ]
    assert "| `test.roc_auc` (guarded) | 0.905 | 0.897 | -0.008 | -0.88% |" in headline
    assert "| `metrics/fairness.json:sensitive.sex.equalized_odds_difference` (guarded) | 0.3 | 0.25 | -0.05 | -16.67% |" in headline
    assert "by_period" not in headline and "threshold" not in headline  # those are under All metrics
    assert "| demographic parity (`sensitive.sex.demographic_parity_difference`) | 0.1 | 0.2 | +0.1 |" in headline
    assert "| equalised odds (`sensitive.sex.equalized_odds_difference`) | 0.3 | 0.25 | -0.05 |" in headline


def test_the_headline_gives_the_drift_verdict_in_one_line():
    recommended = section(page(drift_verdict=drift(["2018: dataset drift", "2018: ROC-AUC drop"])), "Headline")
    assert (
        "**Drift** (workspace): **RETRAIN RECOMMENDED**: 2018: dataset drift (and 1 more); the report is under Drift below." in recommended
    )
    stable = section(page(drift_verdict=drift([])), "Headline")
    assert "**Drift** (workspace): no retraining needed across 1 window; the report is under Drift below." in stable
    assert section(page(metrics={}, guards=[]), "Headline") == "\nNo guarded or test-set metrics.\n"


def folds(rendered: str) -> dict[str, list[str]]:
    """Each <details> of the rendered page: its summary's text -> the texts of the code spans in it."""
    return {
        html.unescape(re.sub(r"<[^>]+>", "", summary)): [html.unescape(code) for code in re.findall(r"<code>(.*?)</code>", body, re.S)]
        for summary, body in re.findall(r"<details><summary>(.*?)</summary>(.*?)</details>", rendered, re.S)
    }


NAME = st.text(alphabet=st.sampled_from(list("<>/&;\"'=`|*_[]()!#$~\\ \nadeilmnoprstx:.")), min_size=1, max_size=20)
VALUE = st.one_of(st.none(), st.integers(-5, 5), st.floats(-2, 2), st.sampled_from(["sigmoid", "a|b`c"]))
DIFF = st.dictionaries(
    st.sampled_from([EVALUATION, "metrics/drift.json", "m <b>&amp;`x`|y.json"]),
    st.dictionaries(NAME.filter(str.strip), st.fixed_dictionaries({"old": VALUE, "new": VALUE}), min_size=1, max_size=8),
    min_size=1,
)


@settings(max_examples=150, deadline=None)
@given(DIFF)
def test_every_metric_of_the_diff_is_in_its_file_s_fold_as_written(metrics):
    rendered = picture.markdown_html(page(metrics=metrics, guards=[]))
    found = folds(rendered)
    for file, entries in metrics.items():
        changed = sum(1 for values in entries.values() if values["old"] != values["new"])
        shown = found[f"{file}: {changed} changed, {len(entries) - changed} unchanged"]
        for key in entries:
            # A line break would end the table row: it is shown as \n.
            assert key.replace("\r", "\\r").replace("\n", "\\n") in shown, (key, shown)


def test_a_hostile_name_in_the_drift_verdict_or_a_guard_is_shown_as_written():
    name = "<img src=x onerror=alert(1)> `a|b` *$x$* &amp;"
    verdict = drift([f"{name}: dataset drift"], text=f"RETRAIN RECOMMENDED:\n```\n<details>\n## {name}")
    guards = [Guard(file=EVALUATION, key=name, max_drop=0.0)]
    rendered = picture.markdown_html(page(guards=guards, drift_verdict=verdict, fairness_report=fairness(name, name)))
    elements = assert_only_review_markup(rendered)
    text = "".join(elements.text)
    assert f"RETRAIN RECOMMENDED: {name}: dataset drift" in text  # the headline's reason: text, escaped once
    assert f"FAIL {EVALUATION}:{name}: missing in the workspace" in text
    # The drift report is one code block however many backticks it holds; nothing in it is a heading.
    assert f"<pre><code>RETRAIN RECOMMENDED:\n```\n&lt;details&gt;\n## {html.escape(name, quote=False)}\n</code></pre>" in rendered
    assert f"{name} (SEX): 2 groups, 1 compared" in folds(rendered)


def test_the_comment_is_cut_between_whole_folds_after_the_headline():
    metrics = {f"metrics/m{index}.json": {f"k{key}": {"old": key, "new": key + 1} for key in range(200)} for index in range(6)}
    text = page(
        metrics={**METRICS, **metrics}, drift_verdict=drift([], text="```\n<details>\n## not a heading"), fairness_report=fairness()
    )
    points = review.cut_points(text)
    fence = (text.index("\n````\n") + 1, text.rindex("\n````\n") + 1)
    assert all(text[point:].startswith(("## ", "<details><summary>")) for point in points[1:])
    assert not any(fence[0] < point <= fence[1] for point in points)  # never inside the drift report's code block
    assert len([point for point in points if text[point:].startswith("<details>")]) == len(metrics) + 3 + 1 + 1
    headline_end = text.index("\n## All metrics\n")
    for limit in range(headline_end + 300, len(text), 997):
        body = review.comment_body(text, "review.md", None, limit=limit)
        kept = body.split("**The report is cut here**")[0]
        assert len(body) <= limit and text.startswith(kept) and len(kept) > headline_end
        assert kept.count("<details><summary>") == kept.count("\n</details>\n")


def test_the_comment_counts_the_unchanged_metrics_and_leaves_their_rows_to_the_report():
    unchanged = {f"windows.all.column_{index}.drift_score": {"old": 0.1, "new": 0.1} for index in range(500)}
    metrics = {**METRICS, "metrics/drift.json": unchanged}
    results = review.check_guards(metrics, GUARDS)
    render = functools.partial(review.render, "main", {}, metrics, results, None, "review_plots/index.html")
    report, comment = render(), render(unchanged_listed_in="review.md")
    assert all(key in report for key in unchanged) and not any(key in comment for key in unchanged)
    assert "metrics/drift.json</code>: 0 changed, 500 unchanged" in comment
    assert "test.roc_auc" in comment.split("## All metrics")[1]  # changed rows stay in the comment's folds
    assert "the unchanged ones are listed in `review.md`" in comment
    assert len(comment) < len(report) / 5


def test_the_page_does_not_depend_on_the_order_dvc_lists_the_params_files_in():
    # `dvc params diff --json` lists params.yaml and metrics/train/params.yaml in an order that
    # changes from run to run: the page, a committed picture's source, must not.
    params = {
        "params.yaml": {"train.num_leaves": {"old": 31, "new": 63}},
        "metrics/train/params.yaml": {"num_leaves": {"old": 31, "new": 63}},
    }
    pages = {
        review.render("main", dict(order), METRICS, review.check_guards(METRICS, GUARDS), None, "review_plots/index.html")
        for order in (params.items(), reversed(params.items()))
    }
    assert len(pages) == 1


@pytest.mark.parametrize("key", ["a`b", "``x", "a|b", "a\\|b", "a\nb", " x ", "`"])
def test_a_key_with_a_backtick_a_pipe_or_a_line_break_keeps_its_row_and_shows_as_written(key):
    metrics = {"m.json": {key: {"old": 1, "new": 2}}}
    params = {"params.yaml": {key: {"old": "a|b", "new": "c`d"}}}
    rendered = picture.markdown_html(review.render("main", params, metrics, [], None, "p"))
    rows = re.findall(r"<tr>(.*?)</tr>", rendered, re.S)
    assert [row.count("<td") for row in rows if "<td" in row] == [4, 5]  # the params row, the metric row
    codes = [html.unescape(code) for code in re.findall(r"<code>(.*?)</code>", rendered, re.S)]
    assert key.replace("\n", "\\n") in codes and '"a|b"' in codes and '"c`d"' in codes
