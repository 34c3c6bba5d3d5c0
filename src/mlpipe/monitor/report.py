"""Evidently's HTML drift reports, drawn in worker processes while the verdicts are computed.

`monitor` is the drift stage's step: the verdicts of every window (`mlpipe.monitor.drift`, on every
row, from per-part summaries) and, at the same time, one report per window, drawn by Evidently's
`DataDriftPreset` on a seeded sample in a pool of workers forked once Evidently is imported
(`report_workers`). The report page is Evidently's own template with the data escaped for a
`<script>` block (`standalone_html`): Evidently 0.7 writes it raw, so a category value could run
script in the browser of whoever opens the report.
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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlpipe.config import DriftParams
from mlpipe.data.schema import FeatureSchema
from mlpipe.monitor.drift import (
    MonitoredColumns,
    category_values,
    check_current,
    import_evidently,
    merged_window,
    monitored_columns,
    window_rows,
    window_summary,
    window_verdicts,
)

log = logging.getLogger(__name__)


def sample_rows(table: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    if len(table) <= size:
        return table
    chosen = np.sort(np.random.default_rng(seed).choice(len(table), size=size, replace=False))
    return table.iloc[chosen]


def _start_report_worker(parent: int) -> None:
    """A report worker's start: tie its life to the stage's and let go of the stage's output pipes.

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
    """A no-op task: submitting one makes the pool start its workers."""


def worker_count(windows: int, cores: int | None = None) -> int:
    """One report worker per reported window, at most one per core."""
    return min(windows, cores or os.cpu_count() or 1)


@contextlib.contextmanager
def report_workers(count: int) -> Iterator[Executor | None]:
    """Worker processes that draw HTML reports, forked from this process once it has imported Evidently.

    The import takes seconds; paid once here, every worker inherits it (sharing its memory
    pages until they are written), so a worker per window costs no extra import. Enter this
    before reading the data: the workers are forked before the caller starts any thread (the
    Arrow reader's pool), so they cannot inherit a held lock. On an error they are stopped at
    once; if the caller is killed, they die with it (see `_start_report_worker`). With a count
    of 0 (no report wanted) this yields None and imports nothing.
    """
    if count == 0:
        yield None
        return
    import_evidently()
    gc.freeze()  # the imported objects go to a generation the workers' collections never touch (no copy-on-write)
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


def report_columns(columns: MonitoredColumns, params: DriftParams, verdicts: dict[str, Any] | None = None) -> MonitoredColumns:
    """The columns a window's report draws: every monitored column while the features are at most
    `drift.report_max_columns`; past it, the prediction, the label and that many features, the
    window's drifted ones first (`verdicts` are then needed), the rest in schema order. Evidently
    draws a column in about 0.1 s and 36 KB of page: 2,500 features took almost five minutes and a
    91 MB page, while the verdicts on all of them took 26 s."""
    limit = params.report_max_columns
    if len(columns.features) <= limit:
        return columns
    drifted = set(verdicts["drifted_columns"])
    chosen = set(sorted(columns.features, key=lambda name: name not in drifted)[:limit])  # a stable sort: schema order otherwise
    features = [name for name in columns.features if name in chosen]
    log.info(
        "the report draws %d of %d features (drift.report_max_columns; %d drifted ones first); the verdicts cover all of them",
        limit,
        len(columns.features),
        min(len(drifted), limit),
    )
    return MonitoredColumns(
        numerical=[name for name in columns.numerical if name in chosen or name == columns.prediction],
        categorical=[name for name in columns.categorical if name in chosen or name == columns.target],
        features=features,
        prediction=columns.prediction,
        target=columns.target,
        positive_label=columns.positive_label,
    )


def report_html(reference: pd.DataFrame, current: pd.DataFrame, columns: MonitoredColumns, params: DriftParams) -> str:
    """Evidently's DataDriftPreset on seeded samples (`report_sample`), as a standalone HTML page.

    A column with no usable value on one side (all missing or not finite) is left out of the
    page: Evidently cannot draw it, and the verdicts already report it as a finding.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    frames = {
        name: drawable_values(report_sample(table, columns, params), columns)
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


def drawable_values(frame: pd.DataFrame, columns: MonitoredColumns) -> pd.DataFrame:
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

    drawn = snapshot.to_snapshot_model()  # the public view of what get_html_str draws
    widgets = [group_widget(title="", widgets=drawn.widgets), *drawn.tests_widgets]
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
    reference: Path,
    current: Path,
    schema: FeatureSchema,
    params: DriftParams,
    reporter: Executor | None,
    on_window=lambda name, result: None,
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The drift step on the scored reference and current tables (folders of parts): verdicts for
    every window in `params.windows` that selects current rows, and an HTML report for those of
    them in `params.reported`, without gathering either table.

    Each part sends back, per window, the `window_summary` of its rows (each monitored column's
    value counts, from which the default tests' statistics come exactly, and the labels and
    probabilities for ROC-AUC) and a seeded candidate sample: every row gets a random key seeded by
    drift.seed and the part's number, and a window's report is drawn from the rows with the
    `drift.report_sample_size` smallest keys over all parts, a uniform sample of the window. The
    reports are drawn by `reporter` (see `report_workers`; None when no report is wanted) while
    the verdicts are computed here. `on_window` is called with each window's verdicts as they are
    ready (for progress logging).
    """
    from mlpipe.engine.parts import describe_parts, parts_checked, sample_part, summaries

    reference_parts = parts_checked(reference, "the scored reference rows", "predict")
    current_parts = parts_checked(current, "the scored current rows", "predict")
    log.info("reference: %s; current: %s", describe_parts(reference_parts), describe_parts(current_parts))
    reference_head, current_head = sample_part(reference_parts), sample_part(current_parts)
    labelled = (
        schema.target in current_head.columns and sum(summaries(_labelled_rows, current_parts, schema.target, what="drift: labels")) > 0
    )
    columns = monitored_columns(schema, current_head, labelled=labelled)
    check_current(current_head, reference_head, columns)
    size, seed = params.report_sample_size, params.seed
    reference_found = summaries(_window_summary, reference_parts, {"reference": None}, None, columns, size, seed, what="drift: reference")
    current_found = summaries(
        _window_summary, current_parts, params.windows, schema.time_column, columns, size, seed, what="drift: current"
    )
    reference_side = _merged(reference_found, "reference", columns, size)
    # New batches decide which periods the current data covers, so an empty window is not an
    # error the user could have seen coming: it is left out, and `empty_windows` says so.
    selected = {name: _merged(current_found, name, columns, size) for name in params.windows}
    selected = {name: window for name, window in selected.items() if window["rows"]}

    def submit(name: str, verdicts: dict[str, Any] | None = None):
        drawn = report_columns(columns, params, verdicts)  # only its columns travel to the report worker
        return reporter.submit(report_html, reference_side["sample"][drawn.all], selected[name]["sample"][drawn.all], drawn, params)

    # A report on every column is drawn while the verdicts are computed; one on some of them
    # (`report_columns`) waits for its window's verdicts, which choose them.
    wide = len(columns.features) > params.report_max_columns
    pending = {name: submit(name) for name in selected if name in params.reported and not wide}
    windows = {}
    for name, window in selected.items():
        windows[name] = window_verdicts(reference_side, window, columns, params)
        on_window(name, windows[name])
        if name in params.reported and wide:
            pending[name] = submit(name, windows[name])
    return windows, {name: future.result() for name, future in pending.items()}


def _labelled_rows(table: pd.DataFrame, index: int, target: str) -> int:
    return int(table[target].notna().sum())


def _window_summary(table: pd.DataFrame, index: int, windows, time_column, columns: MonitoredColumns, size: int, seed: int) -> dict:
    found = {}
    for name, window in windows.items():
        rows = table if window is None else window_rows(table, time_column, name, window)
        keys = np.random.default_rng([seed, index]).random(len(rows))
        candidates = np.sort(np.argsort(keys, kind="stable")[:size])
        found[name] = {**window_summary(rows, columns), "sample": rows[columns.all].iloc[candidates].assign(_key=keys[candidates])}
    return found


def _merged(found: list[dict], name: str, columns: MonitoredColumns, size: int) -> dict:
    """One window's summaries from every part, merged (`merged_window`), with its report sample."""
    parts = [summary[name] for summary in found]
    candidates = pd.concat([part["sample"] for part in parts], ignore_index=True)
    chosen = np.sort(np.argsort(candidates["_key"].to_numpy(), kind="stable")[:size])  # table order kept
    return {**merged_window(parts, columns), "sample": candidates.iloc[chosen].drop(columns="_key").reset_index(drop=True)}
