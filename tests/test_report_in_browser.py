"""The drift report is a page people open: render it in headless Chromium, fail on JavaScript
errors, and keep a screenshot. .ci/run installs Debian's chromium package for this."""

import shutil

import numpy as np
import pandas as pd
import pytest

from mlpipe import drift
from mlpipe.config import DriftParams
from mlpipe.schema import FeatureSchema, FeatureSpec

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


def small_report() -> str:
    rng = np.random.default_rng(0)
    schema = FeatureSchema(target="y", positive_label=1, negative_label=0, features=(
        FeatureSpec("age", "numeric", "float64"), FeatureSpec("city", "categorical", "object", ("a", "b", "c"))))

    def table(shift: float) -> pd.DataFrame:
        n = 3000
        return pd.DataFrame({
            "age": rng.normal(40 + shift, 10, n),
            "city": pd.Categorical(rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]), categories=["a", "b", "c"]),
            "probability": rng.random(n), "y": rng.integers(0, 2, n),
        })

    reference, current = table(0), table(8)
    columns = drift.monitored_columns(schema, current)
    return drift.report_html(reference, current, columns, DriftParams(report_sample_size=2000))


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_drift_report_renders_without_javascript_errors(tmp_path):
    from playwright.sync_api import sync_playwright

    page_file = tmp_path / "drift.html"
    page_file.write_text(small_report(), encoding="utf-8")
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(page_file.as_uri())
        page.get_by_text("Dataset drift detection threshold").first.wait_for(timeout=30_000)
        # Each monitored column (age, city, probability, y) draws a reference and a current histogram.
        page.wait_for_function("document.querySelectorAll('canvas').length >= 8", timeout=30_000)
        rows = page.locator("tr").count()
        page.screenshot(path=str(tmp_path / "drift.png"))
        browser.close()
    assert errors == []
    assert rows >= 3  # header plus one row per monitored column
    assert (tmp_path / "drift.png").stat().st_size > 20_000
