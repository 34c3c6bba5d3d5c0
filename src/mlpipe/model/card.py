"""The model card: what the model is, what it was trained on, how well it does overall, per period
and per group, how far its probabilities hold, how the later data drifted, and what it is for.

Laid out as a Hugging Face model card (https://huggingface.co/docs/hub/model-cards): YAML metadata
with a `model-index` of results (task, dataset, metrics as type and value), then the sections Model
Details, Uses, Bias, Risks, and Limitations, Training Details, Evaluation and Monitoring. One dict
(`build_card`) is written twice: as JSON for tools (models/card.json) and as Markdown with the
metadata as front matter for people (models/card.md, `render_markdown`), so the two never disagree.

Everything comes from the files the pipeline wrote (`read_inputs`) and from params; the statements
no file knows (intended use, out-of-scope uses, limitations, licence, owners) from `card.*`. Text
from the data or from params (column names, labels, reasons, the card.* statements) is escaped
wherever it lands in Markdown (`escape`), so a column named like a link or a tag shows as written.
Nothing on the card depends on when it was written: the same files give the same bytes.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mlpipe.config import Params
from mlpipe.credentials import mask_credentials
from mlpipe.data.schema import FeatureSchema
from mlpipe.data.times import time_values
from mlpipe.engine.parts import part_rows, parts_checked, read_columns
from mlpipe.io import read_pipeline_json, read_pipeline_text, rounded
from mlpipe.model.calibration import Calibration, describe_objective
from mlpipe.model.tracking import read_training_params

FORMAT = 1  # the layout of card.json: a tool reading it can refuse another
# The test metrics as model-index metric types (Hugging Face's metric ids where one exists) and as shown.
METRICS = {
    "roc_auc": ("roc_auc", "ROC-AUC"),
    "pr_auc": ("average_precision", "PR-AUC"),
    "log_loss": ("log_loss", "log-loss"),
    "brier": ("brier_score", "Brier"),
    "accuracy": ("accuracy", "accuracy"),
    "precision": ("precision", "precision"),
    "recall": ("recall", "recall"),
    "f1": ("f1", "F1"),
}
HASHED = "the bytes of {table}'s {parts} Parquet part file(s), one after the other in name order"


@dataclass(frozen=True)
class CardInputs:
    """What the card reads, each file already parsed. `fairness` and `calibration` are None when the
    file is absent (the feature is off or its stage is not in this pipeline); `*_path` say where
    each came from, as the card cites them."""

    model_path: str
    model_version: str
    schema: FeatureSchema
    table: str
    table_sha256: str
    table_parts: int
    table_rows: int
    train_rows: int
    train_times: tuple[Any, Any] | None  # (first, last) of the time column in the training rows
    training_params: dict[str, Any]
    training_summary: dict[str, Any]
    evaluation: dict[str, Any]
    drift: dict[str, Any]
    fairness: dict[str, Any] | None = None
    calibration: Calibration | None = None
    fairness_path: str = "metrics/fairness.json"
    calibration_path: str = "models/calibration.json"


def read_inputs(
    params: Params,
    *,
    model: Path,
    model_schema: Path,
    raw: Path,
    train: Path,
    train_record: Path,
    evaluation: Path,
    drift: Path,
    fairness: Path,
    calibration: Path,
) -> CardInputs:
    """Read every file the card needs; a missing required one is a `DataError` naming the stage
    that writes it, a corrupt one an `ArtifactError`."""
    schema = FeatureSchema.read(model_schema)
    raw_parts = parts_checked(raw, "the ingested table", "ingest")
    train_parts = parts_checked(train, "the training rows", "split")
    time_column = params.data.time_column
    times = None
    if time_column:
        # Only the time column is read: the card needs its first and last value, not the rows.
        values = time_values(read_columns(train_parts, [time_column])[time_column]).dropna()
        times = (_time_text(values.min()), _time_text(values.max())) if len(values) else None
    return CardInputs(
        model_path=str(model),
        # The md5 that mlpipe.model.scoring.model_version gives (and tests check they agree), taken
        # here so that the card does not import the scoring code, nor rerun when it changes.
        model_version=hashlib.md5(read_pipeline_text(model, "model", "train").encode("utf-8")).hexdigest(),
        schema=schema,
        table=str(raw),
        table_sha256=table_sha256(raw_parts),
        table_parts=len(raw_parts),
        table_rows=sum(part_rows(raw_parts)),
        train_rows=sum(part_rows(train_parts)),
        train_times=times,
        training_params=read_training_params(train_record / "params.yaml"),
        training_summary=read_pipeline_json(train_record / "metrics.json", "the training summary", "train", keys=("n_trees",)),
        evaluation=read_pipeline_json(evaluation, "the evaluation metrics", "evaluate", keys=("test",)),
        drift=read_pipeline_json(drift, "the drift verdict", "drift", keys=("retrain_recommended", "reasons", "windows")),
        fairness=read_pipeline_json(fairness, "the group metrics", "fairness", keys=("sensitive",)) if fairness.exists() else None,
        calibration=Calibration.read(calibration) if calibration.exists() else None,
        fairness_path=str(fairness),
        calibration_path=str(calibration),
    )


def table_sha256(parts: Iterable[Path]) -> str:
    """The sha256 of the parts' bytes, one file after the other in the order given (name order)."""
    digest = hashlib.sha256()
    for part in parts:
        with open(part, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _time_text(value: Any) -> Any:
    """A time as the card shows it: a number as it is, a date as ISO text (without a midnight time)."""
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat() if value == value.normalize() else value.isoformat()
    return value.item() if hasattr(value, "item") else value


def build_card(inputs: CardInputs, params: Params) -> dict[str, Any]:
    """The card as one JSON-ready dict (see the module docstring); pure: reads nothing."""
    card, data, schema = params.card, params.data, inputs.schema
    name = card.name or f"{schema.target} classifier"
    evaluation = inputs.evaluation
    threshold = inputs.calibration.threshold if inputs.calibration is not None else evaluation.get("threshold")
    # The params check refuses a source URL that holds a secret; masked again here all the same, as
    # every message is: the card is published.
    source = mask_credentials(data.source)
    dataset = {"type": source, "name": card.dataset_name or source, "split": "test", "revision": inputs.table_sha256}
    results = [_result(schema.target, dataset, evaluation["test"])]
    results += [
        _result(schema.target, {**dataset, "args": {schema.time_column or "period": period}}, values)
        for period, values in evaluation.get("by_period", {}).items()
    ]
    metadata = {
        **({"license": card.license} if card.license else {}),
        "library_name": "lightgbm",
        "tags": ["tabular-classification", "lightgbm", "mlpipe"],
        "datasets": [source],
        "metrics": [kind for key, (kind, _) in METRICS.items() if evaluation["test"].get(key) is not None],
        "model-index": [{"name": name, "results": [result for result in results if result["metrics"]]}],
    }
    return rounded(
        {
            "format": FORMAT,
            "metadata": metadata,
            "model_details": {
                "name": name,
                "version": inputs.model_version,
                "version_is": f"the md5 of {inputs.model_path}, as scored rows and the service's /metadata name the model",
                "type": "gradient-boosted decision trees (LightGBM), binary classification",
                "target": schema.target,
                "positive_label": schema.positive_label,
                "negative_label": schema.negative_label,
                "license": card.license,
                "owners": list(card.owners),
            },
            "uses": {"intended_use": card.intended_use, "out_of_scope": list(card.out_of_scope)},
            "bias_risks_limitations": {"limitations": list(card.limitations)},
            "training_details": {
                "data": {
                    "source": source,
                    "name": card.dataset_name,
                    "table": inputs.table,
                    "rows": inputs.table_rows,
                    "sha256": inputs.table_sha256,
                    "hashed": HASHED.format(table=inputs.table, parts=inputs.table_parts),
                },
                "window": _window(params, inputs),
                "features": [{"name": spec.name, "kind": spec.kind, "levels": len(spec.categories)} for spec in schema.features],
                "derived_features": dict(schema.derived),
                "left_out": dict(schema.dropped),
                "procedure": {
                    key: inputs.training_summary[key]
                    for key in ("train_rows", "validation_rows", "best_iteration", "n_trees", "validation_roc_auc")
                    if key in inputs.training_summary
                },
                "hyperparameters": inputs.training_params,
            },
            "evaluation": {
                "threshold": threshold,
                "overall": evaluation["test"],
                "by_period": evaluation.get("by_period", {}),
                "by_group": _groups(inputs),
                "calibration": _calibration(inputs),
            },
            "monitoring": _monitoring(inputs.drift),
        }
    )


def _result(target: str, dataset: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    return {
        "task": {"type": "tabular-classification", "name": f"binary classification of {target}"},
        "dataset": dataset,
        "metrics": [
            {"type": kind, "value": values[key], "name": title} for key, (kind, title) in METRICS.items() if values.get(key) is not None
        ],
    }


def _window(params: Params, inputs: CardInputs) -> dict[str, Any]:
    split = params.split
    window: dict[str, Any] = {"strategy": split.strategy, "time_column": params.data.time_column, "rows": inputs.train_rows}
    if split.strategy == "time":
        window.update(train_until=split.train_until, test_from=split.test_from)
    else:
        window.update(test_size=split.test_size, stratify=split.stratify, seed=split.seed)
    if inputs.train_times is not None:
        window.update(first=inputs.train_times[0], last=inputs.train_times[1])
    return window


def _groups(inputs: CardInputs) -> dict[str, Any]:
    sensitive = (inputs.fairness or {}).get("sensitive") or {}
    if inputs.fairness is None:
        note = f"Not measured: {inputs.fairness_path} does not exist (the fairness stage is not in this pipeline)"
    elif not sensitive:
        note = "Not measured: no sensitive column is declared (fairness.groups in params.yaml is empty)"
    else:
        return {
            "measured": True,
            "source": inputs.fairness_path,
            "min_group_rows": inputs.fairness.get("min_group_rows"),
            "attributes": sensitive,
        }
    return {"measured": False, "note": note}


def _calibration(inputs: CardInputs) -> dict[str, Any]:
    found = inputs.calibration
    if found is None:
        return {
            "measured": False,
            "note": f"None: {inputs.calibration_path} does not exist, so the model's probabilities are used as they are",
        }
    return {
        "measured": True,
        "source": inputs.calibration_path,
        "method": found.method,
        "threshold": found.threshold,
        "objective": describe_objective(found.objective),
        "fitted_on": _slice_figures(found.fitted_on),
    }


def _slice_figures(fitted_on: dict[str, Any]) -> dict[str, Any]:
    """The held-out slice's figures the card shows: its size, the Brier score and log-loss before and
    after calibration, and precision, recall and F1 at the threshold (not the reliability curve)."""
    figures = {key: fitted_on[key] for key in ("rows", "positives") if key in fitted_on}
    for score in ("brier", "log_loss"):
        pair = {side: fitted_on[f"{score}_{side}"] for side in ("raw", "calibrated") if f"{score}_{side}" in fitted_on}
        if pair:
            figures[score] = pair
    if isinstance(fitted_on.get("at_threshold"), dict):
        figures["at_threshold"] = fitted_on["at_threshold"]
    return figures


def _monitoring(drift: dict[str, Any]) -> dict[str, Any]:
    windows = {}
    for name, window in drift["windows"].items():
        shown = {
            "rows": window.get("rows"),
            "drifted_features": window.get("drifted_features"),
            "features": len(window.get("columns", {})),
            "drifted_columns": window.get("drifted_columns", []),
            "prediction_drifted": (window.get("prediction_drift") or {}).get("drifted"),
            "roc_auc": window.get("roc_auc"),
            "auc_change": window.get("auc_change"),
        }
        if "estimated_performance" in window:
            shown["estimated_performance"] = window["estimated_performance"]
        windows[name] = shown
    return {
        "retrain_recommended": drift["retrain_recommended"],
        "reasons": list(drift["reasons"]),
        "empty_windows": drift.get("empty_windows", {}),
        "windows": windows,
    }


def card_json(card: dict[str, Any]) -> str:
    return json.dumps(card, indent=2, allow_nan=False) + "\n"


# What Markdown (CommonMark and GitHub's) would read as syntax in running text: the characters of
# links, images, code, emphasis, strikethrough and table cells, `#`, an underscore that is not inside
# a word (one inside a word emphasises nothing), and the starts of the bare links GitHub makes
# (`scheme://`, `www.`, `user@host`). Each is backslash-escaped, as CommonMark allows for any ASCII
# punctuation; `<`, `>` and `&` are HTML-escaped instead.
_ACTIVE = re.compile(r"[\\`*\[\]|~#@]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])|:(?=//)|(?<=www)\.", re.IGNORECASE)
# What would open a block where the text starts a line or a bullet's text: a list item, or a
# thematic break (`---`); `#`, `*`, `_`, fences and quotes are escaped above.
_LINE_START = re.compile(r"^([-+]|\d+[.)])")


def escape(value: Any) -> str:
    """`value` as text that Markdown shows as written, on one line: nothing in it can open a link, an
    image, HTML, emphasis, code, a heading or a table cell."""
    text = " ".join(str(value).split())
    text = _ACTIVE.sub(lambda match: "\\" + match.group(0), text)
    text = _LINE_START.sub(lambda match: match.group(0)[:-1] + "\\" + match.group(0)[-1], text)
    return html.escape(text, quote=False)


def _value(value: Any) -> str:
    """A params or time value as shown: lists joined, booleans as YAML writes them, text escaped."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(map(_value, value))
    if isinstance(value, (int, float)):  # a number as written: no text to escape (and 0.05 is no list item)
        return str(value)
    return escape(value)


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return _value(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(row) + " |" for row in rows), ""]


def _bullets(items: list[Any], empty: str) -> list[str]:
    return [*(f"- {escape(item)}" for item in items), ""] if items else [empty, ""]


def render_markdown(card: dict[str, Any]) -> str:
    """The card for people: the metadata as YAML front matter, then the sections."""
    details, uses, training = card["model_details"], card["uses"], card["training_details"]
    evaluation, monitoring = card["evaluation"], card["monitoring"]
    front = yaml.safe_dump(card["metadata"], sort_keys=False, allow_unicode=True, width=1000)
    lines = ["---", front.rstrip("\n"), "---", "", f"# Model card: {escape(details['name'])}", ""]
    lines += [
        "<!-- Written by the card stage from the pipeline's files and params.yaml's card section: edit those, not this file. -->",
        "",
        "## Model Details",
        "",
        f"- **Model type:** {escape(details['type'])}",
        f"- **Predicts:** {escape(details['target'])} = {escape(details['positive_label'])} "
        f"(the other class: {escape(details['negative_label'])})",
        f"- **Version:** {details['version']} ({escape(details['version_is'])})",
        f"- **License:** {escape(details['license']) if details['license'] else 'not stated (card.license)'}",
        f"- **Owners:** {', '.join(map(escape, details['owners'])) if details['owners'] else 'not stated (card.owners)'}",
        "",
        "## Uses",
        "",
        "### Direct Use",
        "",
        escape(uses["intended_use"]) if uses["intended_use"] else "Not stated: describe it in card.intended_use (params.yaml).",
        "",
        "### Out-of-Scope Use",
        "",
        *_bullets(uses["out_of_scope"], "Not stated: list them in card.out_of_scope (params.yaml)."),
        "## Bias, Risks, and Limitations",
        "",
        *_bullets(card["bias_risks_limitations"]["limitations"], "Not stated: list them in card.limitations (params.yaml)."),
        "How the model treats groups of people is measured under Evaluation, per group; "
        "how the later data differs from the training data under Monitoring.",
        "",
    ]
    lines += _training_section(training)
    lines += _evaluation_section(evaluation)
    lines += _monitoring_section(monitoring)
    return "\n".join(lines).rstrip("\n") + "\n"


def _training_section(training: dict[str, Any]) -> list[str]:
    data, window = training["data"], training["window"]
    lines = ["## Training Details", "", "### Training Data", ""]
    if data["name"]:
        lines.append(f"- **Dataset:** {escape(data['name'])}")
    lines += [
        f"- **Source:** {escape(data['source'])} (data.source)",
        f"- **Ingested table:** {escape(data['table'])}, {data['rows']:,} rows",
        f"- **Content hash:** sha256 {data['sha256']} of {escape(data['hashed'])}",
    ]
    if window["strategy"] == "time":
        test_from = _value(window["test_from"]) if window["test_from"] is not None else f"after {_value(window['train_until'])}"
        split = f"time split: training rows up to {_value(window['train_until'])}, test rows from {test_from}"
    else:
        split = f"stratified random split: test share {window['test_size']}, seed {window['seed']}"
    span = (
        f"; their {escape(window['time_column'])} runs from {_value(window['first'])} to {_value(window['last'])}"
        if "first" in window
        else ""
    )
    lines.append(f"- **Training window:** {split}; {window['rows']:,} training rows{span}")
    lines += ["", "### Features", ""]
    lines += _table(
        ["feature", "kind", "category levels"],
        [
            [escape(spec["name"]), spec["kind"], str(spec["levels"]) if spec["kind"] == "categorical" else ""]
            for spec in training["features"]
        ],
    )
    if training["derived_features"]:
        lines += _bullets([f"{name} = {text}" for name, text in training["derived_features"].items()], "")
    if training["left_out"]:
        lines += ["Left out by featurize:", "", *_bullets([f"{name}: {why}" for name, why in training["left_out"].items()], "")]
    lines += ["### Training Procedure", ""]
    procedure = training["procedure"]
    if procedure:
        lines += [*(f"- {escape(key)}: {_number(value)}" for key, value in procedure.items()), ""]
    lines += ["#### Training Hyperparameters", ""]
    lines += _table(["parameter", "value"], [[escape(key), _value(value)] for key, value in training["hyperparameters"].items()])
    return lines


def _metric_rows(named: dict[str, dict[str, Any]]) -> list[list[str]]:
    return [[escape(name), _number(values.get("rows")), *(_number(values.get(key)) for key in METRICS)] for name, values in named.items()]


def _evaluation_section(evaluation: dict[str, Any]) -> list[str]:
    header = ["rows", *(title for _, title in METRICS.values())]
    lines = ["## Evaluation", "", "### Testing Data and Metrics", ""]
    lines += [f"The test rows, labelled positive at a probability of {_number(evaluation['threshold'])} or more.", ""]
    lines += ["### Results", "", "#### Overall", ""]
    lines += _table(["rows", *header[1:]], [_metric_rows({"test": evaluation["overall"]})[0][1:]])
    lines += ["#### Per period", ""]
    if evaluation["by_period"]:
        lines += _table(["period", *header], _metric_rows(evaluation["by_period"]))
    else:
        lines += ["No per-period metrics (no time column, or more periods than evaluate.max_periods).", ""]
    lines += ["#### Per group", ""]
    lines += _groups_section(evaluation["by_group"])
    lines += ["#### Calibration and threshold", ""]
    calibration = evaluation["calibration"]
    if not calibration["measured"]:
        lines += [f"{escape(calibration['note'])}.", ""]
    else:
        lines += [
            f"- **Method:** {escape(calibration['method'])} ({escape(calibration['source'])})",
            f"- **Threshold:** {_number(calibration['threshold'])} ({escape(calibration['objective'])})",
            "",
        ]
        fitted = calibration["fitted_on"]
        if "rows" in fitted:
            lines += [
                f"On the held-out slice of the training period ({_number(fitted['rows'])} rows, {_number(fitted.get('positives'))} positive):",
                "",
            ]
            lines += [
                f"- {title}: {_number(fitted[key].get('raw'))} before calibration, {_number(fitted[key].get('calibrated'))} after"
                for key, title in (("brier", "Brier score"), ("log_loss", "log-loss"))
                if key in fitted
            ]
            lines += [
                f"- at the threshold: {', '.join(f'{escape(key)} {_number(value)}' for key, value in fitted.get('at_threshold', {}).items())}",
                "",
            ]
    return lines


GROUP_COLUMNS = {
    "rows": "rows",
    "positives": "positives",
    "roc_auc": "ROC-AUC",
    "selection_rate": "selection rate",
    "true_positive_rate": "true positive rate",
    "false_positive_rate": "false positive rate",
    "in_differences": "in the differences",
}


def _groups_section(groups: dict[str, Any]) -> list[str]:
    if not groups["measured"]:
        return [f"{escape(groups['note'])}.", ""]
    lines = [
        f"From {escape(groups['source'])}: a group with fewer than {_number(groups['min_group_rows'])} test rows, or with one class "
        "only, gets its counts and stays out of the differences.",
        "",
    ]
    for name, attribute in groups["attributes"].items():
        lines += [
            f"**{escape(name)}** (column {escape(attribute.get('column'))}): demographic-parity difference "
            f"{_number(attribute.get('demographic_parity_difference'))}, equalised-odds difference "
            f"{_number(attribute.get('equalized_odds_difference'))}",
            "",
        ]
        rows = [
            [escape(group), *(_number(entry.get(key)) for key in GROUP_COLUMNS)] for group, entry in attribute.get("groups", {}).items()
        ]
        lines += _table(["group", *GROUP_COLUMNS.values()], rows)
    return lines


def _monitoring_section(monitoring: dict[str, Any]) -> list[str]:
    verdict = "yes" if monitoring["retrain_recommended"] else "no"
    lines = ["## Monitoring", "", "Drift of the current data against the training period, as the drift stage found it with this model.", ""]
    lines += [f"- **Retrain recommended:** {verdict}", *(f"  - {escape(reason)}" for reason in monitoring["reasons"])]
    lines += [f"- **Empty window:** {escape(name)}: {escape(why)}" for name, why in monitoring["empty_windows"].items()]
    lines.append("")
    estimated = any("estimated_performance" in window for window in monitoring["windows"].values())
    header = ["window", "rows", "drifted features", "prediction drifted", "ROC-AUC", "change"]
    header += ["estimated ROC-AUC (95% interval)", "estimated accuracy (95% interval)"] if estimated else []
    rows = []
    for name, window in monitoring["windows"].items():
        row = [
            escape(name),
            _number(window["rows"]),
            f"{_number(window['drifted_features'])} of {window['features']}",
            _number(window["prediction_drifted"]),
            _number(window["roc_auc"]),
            _number(window["auc_change"]),
        ]
        if estimated:
            found = window.get("estimated_performance") or {}
            row += [_estimate(found.get("roc_auc")), _estimate(found.get("accuracy"))]
        rows.append(row)
    return lines + _table(header, rows)


def _estimate(metric: dict[str, Any] | None) -> str:
    """An estimate from the drift stage's performance estimation, with its interval when it has one."""
    if not metric or metric.get("value") is None:
        return "n/a"
    interval = f" ({_number(metric['low'])}-{_number(metric['high'])})" if metric.get("low") is not None else ""
    return f"{_number(metric['value'])}{interval}"
