"""The retrain decision and its one-screen verdict. No Evidently import: `make monitor` reads
metrics/drift.json in a fraction of a second."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def retrain_verdict(
    windows: dict[str, dict[str, Any]], test_auc: float | None, max_auc_drop: float, max_estimated_auc_drop: float
) -> tuple[bool, list[str]]:
    """Retrain on dataset drift or target drift in any window, when a labelled window's ROC-AUC fell
    more than `max_auc_drop` below the test ROC-AUC or cannot be computed, when a window without
    labels has an estimated ROC-AUC more than `max_estimated_auc_drop` below it, and on every finding
    (a column whose drift could not be measured) that counts as drift: a problem of the current rows
    is news, one of the reference's own (no usable value in it) is not, and featurize drops such
    columns before training. Adds each window's `auc_change` and `estimated_auc_change` as it goes."""
    reasons = []
    for name, result in windows.items():
        if result["dataset_drift"]:
            reasons.append(
                f"window {name}: dataset drift ({result['drifted_features']} of "
                f"{len(result['columns'])} features drifted: {', '.join(result['drifted_columns'])})"
            )
        monitored = {**result["columns"], "(prediction)": result["prediction_drift"]}
        if "target_drift" in result:
            monitored["(target)"] = result["target_drift"]
            target = result["target_drift"]
            if target["drifted"] and "finding" not in target:
                beyond = "<" if target.get("statistic") == "p_value" else ">="  # a p-value drifts below its threshold
                reasons.append(
                    f"window {name}: target drift (the label distribution moved: {target['method']} "
                    f"{target['score']:.4f} {beyond} {target['threshold']})"
                )
        reasons.extend(
            f"window {name}: column {column}: {values['finding']}"
            for column, values in monitored.items()
            if "finding" in values and values["drifted"]
        )
        if "target_drift" in result and result.get("roc_auc") is None:
            reasons.append(f"window {name}: ROC-AUC cannot be computed (its labels hold one class), so the model's accuracy is unknown")
        if test_auc is not None and result.get("roc_auc") is not None:
            result["auc_change"] = result["roc_auc"] - test_auc
            if -result["auc_change"] > max_auc_drop:
                reasons.append(
                    f"window {name}: ROC-AUC {result['roc_auc']:.4f} fell {-result['auc_change']:.4f} "
                    f"below the test ROC-AUC {test_auc:.4f} (limit drift.max_auc_drop={max_auc_drop})"
                )
        estimated = result.get("estimated_performance", {}).get("roc_auc", {})
        if test_auc is not None and estimated.get("value") is not None:
            result["estimated_auc_change"] = estimated["value"] - test_auc
            # Only a window without labels: a labelled one is judged on its realised ROC-AUC above.
            if result["estimated_performance"]["labelled_rows"] == 0 and -result["estimated_auc_change"] > max_estimated_auc_drop:
                reasons.append(
                    f"window {name}: estimated ROC-AUC {estimated['value']:.4f} ({interval(estimated)}; no labels: estimated from "
                    f"the probabilities) fell {-result['estimated_auc_change']:.4f} below the test ROC-AUC {test_auc:.4f} "
                    f"(limit drift.max_estimated_auc_drop={max_estimated_auc_drop})"
                )
    return bool(reasons), reasons


def interval(metric: dict[str, Any]) -> str:
    """An estimate's 95% interval as text."""
    if metric.get("low") is None:
        return "no interval: too few rows"
    return f"95% interval {metric['low']:.4f}-{metric['high']:.4f}"


def quality_reasons(report: dict[str, Any], max_bad_row_share: float) -> list[str]:
    """A reason to look when more of the current rows broke the data contract than training allows
    (`validate.max_bad_row_share`): those rows were quarantined, not scored, and drift cannot see them."""
    if report["bad_row_share"] <= max_bad_row_share:
        return []
    worst = max(report["failures_by_rule"].items(), key=lambda item: item[1])[0]
    return [
        f"current data: {report['rows_quarantined']:,} of {report['rows_in']:,} rows ({report['bad_row_share']:.1%}) broke the "
        f"data contract (most: {worst}), above validate.max_bad_row_share={max_bad_row_share}; see the current quarantine"
    ]


def coverage_reasons(windows: dict[str, dict[str, Any]], empty: dict[str, str]) -> list[str]:
    """A reason to look when no window selected any current rows: drift was not measured at all."""
    if windows:
        return []
    return [
        f"no drift window selects any current rows ({', '.join(empty)}): drift was not measured; "
        "set drift.windows to the periods the current data covers"
    ]


def format_verdict(report: dict[str, Any]) -> str:
    lines = []
    for name, why in report.get("empty_windows", {}).items():
        lines.append(f"{name:>8}: {why}")
    for name, result in report["windows"].items():
        auc = f", ROC-AUC {result['roc_auc']:.4f} ({result['auc_change']:+.4f})" if result.get("auc_change") is not None else ""
        drifted = ", ".join(result["drifted_columns"]) or "none"
        prediction = "drifted" if result["prediction_drift"]["drifted"] else "stable"
        lines.append(f"{name:>8}: {result['rows']:>9,} rows, drifted features: {drifted}; prediction {prediction}{auc}")
        if "estimated_performance" in result:  # absent from a verdict written before the estimate existed
            lines.append(f"{'':>8}  {estimate_line(result['estimated_performance'])}")
    if report["retrain_recommended"]:
        lines.append("RETRAIN RECOMMENDED:")
        lines.extend(f"  - {reason}" for reason in report["reasons"])
    else:
        lines.append("no retraining needed: no dataset drift and no ROC-AUC drop (realised or estimated) beyond its limit")
    return "\n".join(lines)


def estimate_line(estimated: dict[str, Any]) -> str:
    """The estimated ROC-AUC and accuracy with their intervals, and the realised ones when the window has labels."""
    parts = []
    for name, metric in (("ROC-AUC", estimated["roc_auc"]), ("accuracy", estimated["accuracy"])):
        value = "undefined" if metric["value"] is None else f"{metric['value']:.4f}"
        realised = "" if metric["realised"] is None else f", realised {metric['realised']:.4f}"
        parts.append(f"{name} {value} ({interval(metric)}{realised})")
    labelled = estimated["labelled_rows"]
    labels = "no labels" if not labelled else f"realised on {labelled:,} labelled rows"
    return f"estimated {' and '.join(parts)}; {labels}"


def read_verdict(path: str | Path) -> tuple[dict[str, Any], str]:
    """The drift stage's verdict file and its text (`format_verdict`). Raises a `DataError` when it is
    missing and an `ArtifactError` when it is corrupt or truncated: never a verdict read from half a file."""
    from mlpipe.errors import ArtifactError
    from mlpipe.io import read_pipeline_json

    report = read_pipeline_json(path, "the drift verdict", "drift", keys=("retrain_recommended", "reasons", "windows"))
    try:
        return report, format_verdict(report)
    except (KeyError, TypeError, AttributeError) as exc:  # valid JSON, but not what the drift stage writes
        raise ArtifactError(
            f"the drift verdict '{path}' is corrupt ({type(exc).__name__}: {exc}): rebuild it with `dvc repro drift`"
        ) from None


def main(argv: list[str] | None = None) -> int:
    """`mlpipe monitor`: print the verdict of a drift metrics file; exit 1 when retraining is
    recommended (for CI gates), 2 when the file is missing, 3 when it is corrupt (mlpipe.errors)."""
    import argparse

    from mlpipe.errors import EXIT_FINDING, EXIT_OK, PipelineError, exit_status

    parser = argparse.ArgumentParser(
        description="Print the drift verdict. Exit status: 0 no retraining needed, 1 retraining recommended, "
        "2 the file is missing or an argument is wrong, 3 the file is corrupt or truncated."
    )
    parser.add_argument("drift", nargs="?", default="metrics/drift.json", help="the drift stage's verdict (default: metrics/drift.json)")
    args = parser.parse_args(argv)
    try:
        report, verdict = read_verdict(args.drift)
    except PipelineError as exc:
        print(f"error: monitor: {exc}", file=sys.stderr)
        return exit_status(exc)
    print(verdict)
    return EXIT_FINDING if report["retrain_recommended"] else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
