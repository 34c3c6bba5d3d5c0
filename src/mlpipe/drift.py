"""Drift between a reference period and current windows, with Evidently 0.7.

Verdicts use Evidently's statistical tests, chosen the way its `DataDriftPreset` chooses them
(by column type, row count and number of distinct values), on every row. For Evidently's
default tests on large data (normed Wasserstein distance for numeric columns, Jensen-Shannon
distance for categorical ones) the same statistics are computed exactly from each column's
value counts, which is what makes a million rows take a second instead of a minute; any other
test, and small data, go through Evidently's own functions. The HTML report is Evidently's
`DataDriftPreset` on a seeded sample of each side: building its charts costs far more than the
tests, and a sample draws the same picture.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import logging
import multiprocessing
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import distance

from mlpipe.config import DriftParams, DriftWindow
from mlpipe.errors import ConfigError, DataError, first_line
from mlpipe.schema import PROBABILITY, FeatureSchema, category_strings
from mlpipe.split import time_values

log = logging.getLogger(__name__)

# Evidently is imported where it is used, not here: importing it takes seconds, and the
# drift stage overlaps that import (in report worker processes) with reading and verdicts.
NUMERICAL, CATEGORICAL = "numerical", "categorical"


@dataclass(frozen=True)
class MonitoredColumns:
    numerical: list[str]
    categorical: list[str]
    features: list[str]
    prediction: str
    target: str | None

    @property
    def all(self) -> list[str]:
        return [*self.features, self.prediction, *([self.target] if self.target else [])]


def monitored_columns(schema: FeatureSchema, current: pd.DataFrame) -> MonitoredColumns:
    """Features as the model sees them, its predicted probability, and the label when present."""
    target = schema.target if schema.target in current.columns and current[schema.target].notna().any() else None
    categorical = [*schema.categorical_names, *([target] if target else [])]
    numerical = [name for name in schema.feature_names if name not in schema.categorical_names] + [PROBABILITY]
    return MonitoredColumns(numerical, categorical, schema.feature_names, PROBABILITY, target)


def check_current(current: pd.DataFrame, reference: pd.DataFrame, columns: MonitoredColumns) -> None:
    """The current table must carry every monitored column, with the reference's kind of values."""
    missing = [name for name in columns.all if name not in current.columns]
    if missing:
        raise DataError(f"current table is missing column(s) {missing} that the reference has")
    for name in columns.numerical:
        if not pd.api.types.is_numeric_dtype(current[name]) and pd.api.types.is_numeric_dtype(reference[name]):
            raise DataError(f"column '{name}' is {current[name].dtype} in the current table but numeric in the reference")


def window_rows(current: pd.DataFrame, time_column: str | None, name: str, window: DriftWindow) -> pd.DataFrame:
    if window.start is None and window.end is None:
        return current
    if not time_column:
        raise ConfigError(f"drift.windows.{name} has start/end but data.time_column is null: use a window without bounds")
    times = time_values(current[time_column])
    keep = pd.Series(True, index=current.index)
    if window.start is not None:
        keep &= times >= _bound(window.start, times)
    if window.end is not None:
        keep &= times <= _bound(window.end, times)
    return current[keep]


def _bound(value, times: pd.Series):
    return pd.Timestamp(value) if pd.api.types.is_datetime64_any_dtype(times) else value


# Evidently's defaults: above this many reference rows it uses distances, not p-value tests.
LARGE_SAMPLE_ROWS = 1000
DEFAULT_THRESHOLD = 0.1  # of both wasserstein and jensenshannon


def column_drift(
    reference: pd.Series, current: pd.Series, kind: str, method: str | None, threshold: float | None, key: str
) -> dict[str, Any]:
    """Evidently's stat test for one column (`kind` is "numerical" or "categorical"), on all rows.

    A test that cannot run (no usable value on one side) or gives no finite score is a finding:
    the column counts as drifted and says why, never silently as stable.
    """
    if kind == NUMERICAL:
        infinite = _count_infinite(current)
        if infinite and not _count_infinite(reference):
            return _finding(kind, f"{infinite:,} of {len(current):,} current values are infinite, and the reference has none")
    reference, current = usable_values(reference, kind), usable_values(current, kind)
    for side, values in (("reference", reference), ("current", current)):
        if values.empty:
            return _finding(kind, f"no usable value in the {side} rows (all missing or not finite)")
    if method is None and len(reference) > LARGE_SAMPLE_ROWS:
        if kind == NUMERICAL and _continuous(reference):
            # Many distinct values: counting them gains nothing, sorting does the job.
            name, score = "wasserstein", sorted_wasserstein(reference.to_numpy(dtype=float), current.to_numpy(dtype=float))
        else:
            name, score = default_distance(reference.value_counts(), current.value_counts(), kind)
        limit = DEFAULT_THRESHOLD if threshold is None else threshold
        verdict = _verdict(kind, name, score, limit, score >= limit)
    else:
        verdict = evidently_test(reference, current, kind, method, threshold, key)
    if "finding" not in verdict and not np.isfinite(verdict["score"]):
        return _finding(kind, f"the {verdict['method']} score could not be computed", verdict["method"])
    return verdict


def _count_infinite(values: pd.Series) -> int:
    return int(np.isinf(values.dropna().to_numpy(dtype=float)).sum())


def usable_values(values: pd.Series, kind: str) -> pd.Series:
    """The values a stat test can use: present, finite numbers, and categories as text."""
    if kind == CATEGORICAL:
        return category_values(values.dropna())
    numbers = values.dropna()
    return numbers[np.isfinite(numbers.to_numpy(dtype=float))]


def evidently_test(
    reference: pd.Series, current: pd.Series, kind: str, method: str | None, threshold: float | None, key: str
) -> dict[str, Any]:
    """Run Evidently's own stat test function on the rows (small data, or a method named in params)."""
    from evidently.legacy.calculations.stattests.registry import StatTestNotFoundError, get_stattest
    from evidently.legacy.core import ColumnType

    column_type = ColumnType.Categorical if kind == CATEGORICAL else ColumnType.Numerical
    try:
        test = get_stattest(reference, current, column_type, method)
    except StatTestNotFoundError:
        raise ConfigError(
            f"{key}: unknown stat test '{method}' (Evidently knows e.g. wasserstein, ks, psi, jensenshannon, chisquare)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - Evidently signals a method unfit for the column type this way
        raise ConfigError(f"{key}: stat test '{method}' cannot be used for {kind} column '{reference.name}': {exc}") from None
    try:
        result = test(reference, current, column_type, threshold)
    except (ValueError, ZeroDivisionError) as exc:  # e.g. scipy's chi-square on a level the reference never had
        return _finding(kind, f"the {test.name} score could not be computed: {first_line(exc)}", test.name)
    return _verdict(kind, test.name, result.drift_score, result.actual_threshold, result.drifted)


def _verdict(kind: str, method: str, score: float, threshold: float, drifted: bool) -> dict[str, Any]:
    return {"kind": kind, "method": method, "score": float(score), "threshold": float(threshold), "drifted": bool(drifted)}


def _finding(kind: str, reason: str, method: str | None = None) -> dict[str, Any]:
    return {"kind": kind, "method": method, "score": None, "threshold": None, "drifted": True, "finding": reason}


def _continuous(values: pd.Series) -> bool:
    """More than 1,000 distinct values among the first 10,000: certainly more than five, and
    too many for value counts to be cheaper than sorting."""
    return values.iloc[:10_000].nunique() > 1000


def category_values(values: pd.Series) -> pd.Series:
    """Categories as text, each distinct value converted once (fast on millions of rows), in an
    object column: `astype(str)` on a categorical builds a fixed-width array of rows x the longest
    value, and two 200 KB cells in 6,000 rows took gigabytes."""
    return category_strings(values).astype(object)


def default_distance(reference_counts: pd.Series, current_counts: pd.Series, kind: str) -> tuple[str, float]:
    """Evidently's default test for more than 1,000 reference rows, from value counts alone.

    Numeric columns with more than five distinct values (over both sides) get the Wasserstein
    distance normed by the reference's standard deviation; every other column gets the
    Jensen-Shannon distance between the two frequency tables. Both equal what Evidently computes
    from the raw rows (tests/test_drift.py checks this against Evidently itself).
    """
    support = reference_counts.index.union(current_counts.index)
    if kind == NUMERICAL and len(support) > 5:
        return "wasserstein", _normed_wasserstein(reference_counts, current_counts)
    reference_share = reference_counts.reindex(support, fill_value=0).to_numpy() / reference_counts.sum()
    current_share = current_counts.reindex(support, fill_value=0).to_numpy() / current_counts.sum()
    return "jensenshannon", float(distance.jensenshannon(reference_share, current_share))


def sorted_wasserstein(reference: np.ndarray, current: np.ndarray) -> float:
    """W1 between two samples, normed by max(std(reference), 0.001), as Evidently defines it.

    scipy's `wasserstein_distance` integrates |F - G| over the merged sorted values; so does
    this, but it sorts each side once and merges the two sorted runs with a stable argsort
    (linear for two runs), then reads both CDFs off running counts: about twice as fast on a
    million rows. Between tied values the step width is zero, so ties need no special care.
    """
    u, v = np.sort(reference), np.sort(current)
    merged = np.concatenate([u, v])
    order = np.argsort(merged, kind="stable")
    from_u = order < len(u)
    values = merged[order]
    u_cdf = np.cumsum(from_u)[:-1] / len(u)
    v_cdf = np.cumsum(~from_u)[:-1] / len(v)
    distance_w1 = float(np.sum(np.abs(u_cdf - v_cdf) * np.diff(values)))
    return distance_w1 / max(float(np.std(reference)), 0.001)


def _normed_wasserstein(reference_counts: pd.Series, current_counts: pd.Series) -> float:
    """W1 = the area between the two CDFs, over sorted distinct values; / max(std(reference), 0.001)."""
    values = np.union1d(reference_counts.index.to_numpy(dtype=float), current_counts.index.to_numpy(dtype=float))
    ref = reference_counts.groupby(reference_counts.index.astype(float)).sum().reindex(values, fill_value=0).to_numpy(dtype=float)
    cur = current_counts.groupby(current_counts.index.astype(float)).sum().reindex(values, fill_value=0).to_numpy(dtype=float)
    ref_cdf, cur_cdf = np.cumsum(ref) / ref.sum(), np.cumsum(cur) / cur.sum()
    distance_w1 = float(np.sum(np.abs(ref_cdf - cur_cdf)[:-1] * np.diff(values)))
    weights = ref / ref.sum()
    mean = float(np.sum(weights * values))
    std = float(np.sqrt(np.sum(weights * (values - mean) ** 2)))
    return distance_w1 / max(std, 0.001)


def window_drift(reference: pd.DataFrame, current: pd.DataFrame, columns: MonitoredColumns, params: DriftParams) -> dict[str, Any]:
    """Per-column verdicts, the dataset verdict over features, prediction and target drift, and
    ROC-AUC when the window is labelled."""

    def one(name: str) -> dict[str, Any]:
        kind = CATEGORICAL if name in columns.categorical else NUMERICAL
        method, threshold, key = (
            (params.cat_method, params.cat_threshold, "drift.cat_method")
            if kind == CATEGORICAL
            else (params.num_method, params.num_threshold, "drift.num_method")
        )
        return column_drift(reference[name], current[name], kind, method, threshold, key)

    # One column after another: the cores are shared with the report workers, which are the
    # drift stage's critical path (threads here measurably slowed their Evidently import).
    per_column = {name: one(name) for name in columns.all}
    drifted = [name for name in columns.features if per_column[name]["drifted"]]
    share = len(drifted) / len(columns.features)
    result = {
        "rows": len(current),
        "dataset_drift": share >= params.drift_share,
        "drift_share": share,
        "drifted_features": len(drifted),
        "drifted_columns": drifted,
        "prediction_drift": per_column[columns.prediction],
        "columns": {name: per_column[name] for name in columns.features},
    }
    if columns.target:
        # Imported here: scikit-learn's import would otherwise delay the stage's start, before
        # the report thread can overlap it.
        from mlpipe.evaluation import binary_metrics

        labelled = current[columns.target].notna()
        result["target_drift"] = per_column[columns.target]
        y = current.loc[labelled, columns.target].astype(int).to_numpy()
        result["roc_auc"] = binary_metrics(y, current.loc[labelled, PROBABILITY].to_numpy(), 0.5)["roc_auc"]
    return result


def sample_rows(table: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    if len(table) <= size:
        return table
    chosen = np.sort(np.random.default_rng(seed).choice(len(table), size=size, replace=False))
    return table.iloc[chosen]


def import_evidently() -> None:
    """Import what `report_html` and `evidently_test` need (seconds of work: start it early)."""
    # The import builds about a thousand pydantic models; garbage collections during it find
    # nothing to free and cost about a quarter of its time.
    gc.disable()
    try:
        import evidently.legacy.calculations.stattests.registry  # noqa: F401
        import evidently.presets  # noqa: F401
    finally:
        gc.enable()


def _start_report_worker(parent: int) -> None:
    """A report worker's start: tie its life to the stage's, let go of the stage's output pipes,
    then import Evidently.

    A stage killed outright (the OOM killer, kill -9) cannot stop its workers; left alive, they
    would hold its stdout and stderr open, and `dvc repro | tee`, CI or a caller reading the
    output to its end would wait for ever. Results and errors travel through the pool's own
    queues, so the worker needs neither stream.
    """
    _die_with(parent)
    devnull = os.open(os.devnull, os.O_RDWR)
    for stream in (0, 1, 2):
        os.dup2(devnull, stream)
    os.close(devnull)
    import_evidently()


PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with(parent: int) -> None:
    """Have the kernel kill this process when `parent` dies (Linux), or watch for it (elsewhere)."""
    try:
        if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            raise OSError(ctypes.get_errno(), "prctl")
    except (OSError, AttributeError):
        threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _ready() -> None:
    """A no-op task: submitting one makes the pool start its workers (which import Evidently)."""


@contextlib.contextmanager
def report_workers(count: int) -> Iterator[Executor]:
    """Worker processes that draw HTML reports, each importing Evidently as it starts.

    Enter this before reading the data: the multi-second import then runs on another core
    while the caller reads and computes verdicts, without competing for its GIL. Workers are
    forked (inheriting pandas and friends already imported) when the pool is created, before
    the caller starts any thread, so they cannot inherit a held lock. On an error they are
    stopped at once rather than left to finish their import; if the caller is killed, they die
    with it (see `_start_report_worker`).
    """
    pool = ProcessPoolExecutor(
        max_workers=count, mp_context=multiprocessing.get_context("fork"), initializer=_start_report_worker, initargs=(os.getpid(),)
    )
    pool.submit(_ready)  # with "fork", the first submit starts every worker
    try:
        yield pool
    except BaseException:
        for worker in multiprocessing.active_children():
            worker.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def report_sample(table: pd.DataFrame, columns: MonitoredColumns, params: DriftParams) -> pd.DataFrame:
    """The seeded sample of the monitored columns that a report is drawn from."""
    return sample_rows(table[columns.all], params.report_sample_size, params.seed).reset_index(drop=True)


def report_html(reference: pd.DataFrame, current: pd.DataFrame, columns: MonitoredColumns, params: DriftParams) -> str:
    """Evidently's DataDriftPreset on seeded samples (`report_sample`), as a standalone HTML page.

    A column with no usable value on one side (all missing or not finite) is left out of the
    page: Evidently cannot draw it, and the verdicts already report it as a finding.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    frames = {
        name: _drawable_values(report_sample(table, columns, params), columns)
        for name, table in (("reference_data", reference), ("current_data", current))
    }
    drawn = [name for name in columns.all if all(frame[name].notna().any() for frame in frames.values())]
    definition = DataDefinition(
        numerical_columns=[name for name in columns.numerical if name in drawn],
        categorical_columns=[name for name in columns.categorical if name in drawn],
    )
    preset = DataDriftPreset(
        columns=drawn,
        drift_share=params.drift_share,
        cat_method=params.cat_method,
        num_method=params.num_method,
        cat_threshold=params.cat_threshold,
        num_threshold=params.num_threshold,
    )
    datasets = {name: Dataset.from_pandas(frame[drawn], data_definition=definition) for name, frame in frames.items()}
    return stable_ids(standalone_html(Report([preset]).run(**datasets)))


def _drawable_values(frame: pd.DataFrame, columns: MonitoredColumns) -> pd.DataFrame:
    """Categories as text (missing as None, as Evidently expects) and infinities as missing."""
    frame = frame.copy()
    for name in columns.categorical:
        frame[name] = category_values(frame[name]).where(frame[name].notna(), None)
    for name in columns.numerical:
        frame[name] = frame[name].replace([np.inf, -np.inf], np.nan)
    return frame


# The one id the page's script and its data share; fixed, so the page is byte-identical run to run.
_DASHBOARD_ID = "metric_" + "0" * 32


def standalone_html(snapshot) -> str:
    """The snapshot as one HTML page, as `snapshot.get_html_str(as_iframe=False)` draws it (this
    mirrors evidently.core.metric_types.render_widgets), except that the data is escaped JSON.

    Evidently 0.7 writes the report's data with a plain `json.dumps` into a `<script>` block, so a
    category value or a column name holding `</script><script>...` ends the block and runs as
    script when someone opens the report. Here every `<`, `>` and `&` in the data is written as a
    `\\u003c`-style escape, which JSON and JavaScript read back as the same character and which
    cannot end a script block. Everything else is Evidently's own template.
    """
    from evidently.legacy.model.dashboard import DashboardInfo
    from evidently.legacy.model.widget import AdditionalGraphInfo, BaseWidgetInfo
    from evidently.legacy.renderers.html_widgets import group_widget
    from evidently.legacy.utils.dashboard import TemplateParams, file_html_template

    widgets = [group_widget(title="", widgets=snapshot._widgets), *snapshot._tests_widgets]
    additional_graphs = {}
    for widget in widgets:
        for graph in widget.get_additional_graphs():
            info = graph.params if isinstance(graph, AdditionalGraphInfo) else graph
            additional_graphs[str(graph.id)] = info.dict() if isinstance(info, BaseWidgetInfo) else info
    dashboard = DashboardInfo(name="Report", widgets=widgets).dict()
    for widget in dashboard["widgets"]:
        widget.pop("additionalGraphs", None)
    page = file_html_template(
        TemplateParams(
            dashboard_id=_DASHBOARD_ID, dashboard_info=DashboardInfo(name="Report", widgets=[]), additional_graphs={}, embed_data=False
        )
    )
    data = (
        f"<script>\n    var {_DASHBOARD_ID} = {script_json(dashboard)};\n"
        f"    var additional_graphs_{_DASHBOARD_ID} = {script_json(additional_graphs)};\n</script>"
    )
    placeholder = "<!-- no embedded data -->"
    if page.count(placeholder) != 1:
        raise RuntimeError("Evidently's report template changed: re-check standalone_html against this Evidently version")
    return page.replace(placeholder, data)


def script_json(value: Any) -> str:
    """JSON that is safe inside an HTML `<script>` block (as Django's json_script writes it)."""
    from evidently.legacy.utils import NumpyEncoder

    text = json.dumps(value, cls=NumpyEncoder)  # ensure_ascii: U+2028/U+2029 come out escaped too
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


# Evidently names widgets with random (uuid4) and time-based (uuid7) ids.
_RANDOM_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|(?<=metric_)[0-9a-f]{32}")


def stable_ids(html: str) -> str:
    """Replace each random id by a counter of the same shape, in order of first appearance, so
    that the same data gives a byte-identical report (and one DVC hash)."""
    mapping: dict[str, str] = {}

    def replace(match: re.Match) -> str:
        found = match.group(0)
        if found not in mapping:
            number = len(mapping) + 1
            mapping[found] = f"{number:032x}" if len(found) == 32 else f"00000000-0000-4000-8000-{number:012x}"
        return mapping[found]

    return _RANDOM_ID.sub(replace, html)


def monitor(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    schema: FeatureSchema,
    params: DriftParams,
    reporter: Executor,
    on_window=lambda name, result: None,
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Verdicts and an HTML report for every window in `params.windows` that selects current rows.

    The reports are drawn by `reporter` (see `report_workers`) from samples, while the verdicts
    are computed here on every row. `on_window` is called with each window's verdicts as they
    are ready (for progress logging).
    """
    columns = monitored_columns(schema, current)
    check_current(current, reference, columns)
    selected = {name: window_rows(current, schema.time_column, name, window) for name, window in params.windows.items()}
    # New batches decide which periods the current data covers, so an empty window is not an
    # error the user could have seen coming: it is left out, and `empty_windows` says so.
    selected = {name: rows for name, rows in selected.items() if not rows.empty}
    reference_sample = report_sample(reference, columns, params)
    pending = {
        name: reporter.submit(report_html, reference_sample, report_sample(rows, columns, params), columns, params)
        for name, rows in selected.items()
    }
    windows = {}
    for name, rows in selected.items():
        windows[name] = window_drift(reference, rows, columns, params)
        on_window(name, windows[name])
    return windows, {name: future.result() for name, future in pending.items()}


def empty_windows(windows: dict[str, dict[str, Any]], params: DriftParams) -> dict[str, str]:
    """The windows of `params` that selected no current rows, with their bounds, for the verdict."""
    return {
        name: f"selects no rows of the current data (start {window.start}, end {window.end})"
        for name, window in params.windows.items()
        if name not in windows
    }


def score_records(windows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per window and column (the prediction included): the drift heat map's data.
    A finding (a score that could not be computed) has no ratio: its cell stays empty."""
    return [
        {
            "window": name,
            "column": column,
            **values,
            "score_over_threshold": None if values["score"] is None else values["score"] / values["threshold"],
        }
        for name, result in windows.items()
        for column, values in {**result["columns"], "(prediction)": result["prediction_drift"]}.items()
    ]
