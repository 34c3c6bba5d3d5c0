"""The drift report is a page people open: render it in headless Chromium, fail on JavaScript
errors, and keep a screenshot. .ci/run installs Debian's chromium package for this."""

import shutil

import numpy as np
import pandas as pd
import pytest

from mlpipe.config import DriftParams
from mlpipe.data.schema import FeatureSchema, FeatureSpec
from mlpipe.monitor import drift
from mlpipe.monitor import report as drift_report
from test_review_comment_picture import picture

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
]
# The flags the review picture's renderer starts Chromium with: one list for both.
CHROMIUM_ARGS = picture.CHROMIUM_ARGS


# Hostile text from outside: a category value in current data and a column name.
SCRIPT_IN_VALUE = "</script><script>alert(document.domain)</script>"
SCRIPT_IN_NAME = "<img src=x onerror=alert(1)>"


def report_inputs(numeric: str = "age", hostile_level: str | None = None):
    rng = np.random.default_rng(0)
    levels = ("a", "b", "c")
    schema = FeatureSchema(
        target="y",
        positive_label=1,
        negative_label=0,
        features=(FeatureSpec(numeric, "numeric", "float64"), FeatureSpec("city", "categorical", "object", levels)),
    )

    def table(shift: float, cities: tuple[str, ...]) -> pd.DataFrame:
        n = 3000
        return pd.DataFrame(
            {
                numeric: rng.normal(40 + shift, 10, n),
                "city": pd.Categorical(rng.choice(cities, n, p=[0.5, 0.3, 0.2]), categories=cities),
                "probability": rng.random(n),
                "y": rng.integers(0, 2, n),
            }
        )

    reference, current = table(0, levels), table(8, (*levels[:2], hostile_level or levels[2]))
    return reference, current, drift.monitored_columns(schema, current)


def small_report(**hostile) -> str:
    reference, current, columns = report_inputs(**hostile)
    return drift_report.report_html(reference, current, columns, DriftParams(report_sample_size=2000))


def open_in_chromium(html: str, tmp_path, ready: str | None = "Dataset drift detection threshold"):
    """Load the page; (page, browser, console errors, dialogs) with the report drawn when `ready` is given."""
    from playwright.sync_api import sync_playwright

    page_file = tmp_path / "drift.html"
    page_file.write_text(html, encoding="utf-8")
    errors: list[str] = []
    dialogs: list[str] = []
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1400, "height": 1200})
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(page_file.as_uri())
    if ready:
        page.get_by_text(ready).first.wait_for(timeout=30_000)
    return page, (browser, playwright), errors, dialogs


def close(handles) -> None:
    browser, playwright = handles
    browser.close()
    playwright.stop()


def test_drift_report_renders_without_javascript_errors(tmp_path):
    page, handles, errors, dialogs = open_in_chromium(small_report(), tmp_path)
    # Each monitored column (age, city, probability, y) draws a reference and a current histogram.
    page.wait_for_function("document.querySelectorAll('canvas').length >= 8", timeout=30_000)
    rows = page.locator("tr").count()
    page.screenshot(path=str(tmp_path / "drift.png"))
    close(handles)
    assert errors == [] and dialogs == []
    assert rows >= 3  # header plus one row per monitored column
    assert (tmp_path / "drift.png").stat().st_size > 20_000


def test_script_planted_in_data_runs_nothing_and_shows_as_text(tmp_path):
    html = small_report(numeric=SCRIPT_IN_NAME, hostile_level=SCRIPT_IN_VALUE)
    assert SCRIPT_IN_VALUE not in html and SCRIPT_IN_NAME not in html
    page, handles, errors, dialogs = open_in_chromium(html, tmp_path)
    page.get_by_text(SCRIPT_IN_NAME, exact=True).first.wait_for(timeout=10_000)  # the column name, as text
    page.locator("tr", has_text="city").first.locator("td").first.click()  # open the city column's histogram
    page.get_by_text(SCRIPT_IN_VALUE, exact=True).first.wait_for(timeout=10_000)  # the category, as text
    images = page.locator("img").count()
    close(handles)
    assert dialogs == [] and errors == [] and images == 0


def test_evidentlys_own_html_still_runs_the_planted_script(tmp_path):
    """The upstream defect that `drift_report.standalone_html` works around. When this fails, Evidently
    escapes its data itself: drop the workaround and this test."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    reference, current, columns = report_inputs(hostile_level=SCRIPT_IN_VALUE)
    definition = DataDefinition(numerical_columns=columns.numerical, categorical_columns=columns.categorical)
    datasets = {
        name: Dataset.from_pandas(table.astype({"city": str, "y": str}), data_definition=definition)
        for name, table in (("current_data", current), ("reference_data", reference))
    }
    html = Report([DataDriftPreset(columns=columns.all)]).run(**datasets).get_html_str(as_iframe=False)
    page, handles, _, dialogs = open_in_chromium(html, tmp_path, ready=None)
    page.wait_for_timeout(500)
    close(handles)
    assert len(dialogs) >= 1, "Evidently's own page no longer runs the planted script"


@pytest.mark.integration
def test_the_plots_page_draws_every_plot_with_the_network_blocked(repo, tmp_path):
    """`make plots` replaces `dvc plots show`, whose page loads Vega from a CDN and stays blank offline."""
    from playwright.sync_api import sync_playwright

    repo.make("plots")
    page_file = repo.path / "reports" / "plots.html"
    requested, errors = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.route(
            "**/*",
            lambda route: (
                route.continue_() if route.request.url.startswith("file:") else (requested.append(route.request.url), route.abort())
            ),
        )
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.goto(page_file.as_uri())
        drawn = {
            name: page.locator("section", has_text=name).locator("svg").count()
            for name in (
                "ROC curve",
                "Precision-recall curve",
                "Calibration",
                "Confusion matrix",
                "Feature importance",
                "Training curve",
                "Drift score per column and window",
            )
        }
        axis_labels = page.get_by_text("false positive rate").count()
        page.screenshot(path=str(tmp_path / "plots.png"), full_page=True)
        browser.close()
    assert requested == [] and errors == []
    assert all(count >= 1 for count in drawn.values()), drawn
    assert axis_labels >= 1
