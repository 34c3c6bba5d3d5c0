"""The headline metrics on one screen: what `mlpipe metrics` (`make metrics`) prints and `make repro` ends with.

    mlpipe metrics [--evaluation metrics/evaluation.json] [--drift metrics/drift.json] ...

Rows read and kept, the test metrics overall and per period (one line each), the drift verdict,
where the model card and the figures are. A wide table gives hundreds of metrics (null shares and drift scores
per column): every one of them stays in `dvc metrics show`, changes in `dvc metrics diff`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mlpipe.errors import EXIT_OK, ArtifactError, PipelineError, exit_status

COLUMNS = [("rows", "rows", "{:,}"), ("roc_auc", "ROC-AUC", "{:.4f}"), ("pr_auc", "PR-AUC", "{:.4f}"), ("log_loss", "log-loss", "{:.4f}")]
COLUMNS += [("accuracy", "accuracy", "{:.3f}"), ("f1", "F1", "{:.3f}"), ("positive_rate", "positives", "{:.1%}")]
MAX_PERIODS = 12  # monthly periods over years would scroll the overall line away: the latest ones, and a count


def metrics_table(evaluation: dict[str, Any]) -> list[str]:
    """The test metrics as a narrow table: one line for the whole test set, one per period (the latest ones)."""
    periods = list(evaluation.get("by_period", {}).items())
    shown = [("test", evaluation["test"]), *periods[-MAX_PERIODS:]]
    cells = [[name] + [_cell(values.get(key), fmt) for key, _, fmt in COLUMNS] for name, values in shown]
    header = ["period"] + [title for _, title, _ in COLUMNS]
    widths = [max(len(row[i]) for row in [header, *cells]) for i in range(len(header))]
    lines = [
        "  " + "  ".join(t.ljust(w) if i == 0 else t.rjust(w) for i, (t, w) in enumerate(zip(row, widths, strict=True)))
        for row in [header, *cells]
    ]
    if len(periods) > MAX_PERIODS:
        lines.append(f"  ... and {len(periods) - MAX_PERIODS} earlier periods")
    return lines


def _cell(value: Any, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


def summary(evaluation: dict, drift: dict, quality: dict | None, figures: list[Path], reports: list[Path], paths: dict[str, Path]) -> str:
    lines = []
    if quality is not None:
        lines.append(
            f"rows: {quality['rows_in']:,} read, {quality['rows_out']:,} kept, {quality['rows_quarantined']:,} quarantined "
            f"({paths['quality']})"
        )
    # An evaluation written before calibration came has no "calibration": the model's probability then.
    calibration = evaluation.get("calibration", "none")
    lines.append(f"test metrics at threshold {evaluation['threshold']:.4g} (calibration {calibration}) ({paths['evaluation']}):")
    lines += metrics_table(evaluation)
    if drift["retrain_recommended"]:
        lines.append(f"drift: RETRAIN RECOMMENDED, {len(drift['reasons'])} reason(s), first: {drift['reasons'][0]} ({paths['drift']})")
    else:
        lines.append(f"drift: no retraining needed across {len(drift['windows'])} window(s) ({paths['drift']})")
    card = Path(paths["card"])
    lines += [
        f"model card: {card} (for tools: {card.with_suffix('.json')})"
        if card.exists()
        else f"model card: none yet at {card} (dvc repro card)",
        f"figures: {len(figures)} PNG in {paths['figures']}/; drift reports: {len(reports)} HTML in {paths['reports']}/",
        "every metric: dvc metrics show (changes: dvc metrics diff) · all plots offline: make plots · the verdict: make monitor",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evaluation", default=Path("metrics/evaluation.json"), type=Path, help="the evaluate stage's metrics")
    parser.add_argument("--drift", default=Path("metrics/drift.json"), type=Path, help="the drift stage's verdict")
    parser.add_argument("--quality", default=Path("metrics/data_quality.json"), type=Path, help="the validate stage's row counts")
    parser.add_argument("--figures", default=Path("reports/figures"), type=Path)
    parser.add_argument("--reports", default=Path("reports/drift"), type=Path)
    parser.add_argument("--card", default=Path("models/card.md"), type=Path, help="the model card")
    args = parser.parse_args(argv)
    from mlpipe.io import read_pipeline_json

    try:
        evaluation = read_pipeline_json(args.evaluation, "the evaluation metrics", "evaluate", keys=("threshold", "test"))
        drift = read_pipeline_json(args.drift, "the drift verdict", "drift", keys=("retrain_recommended", "reasons", "windows"))
        quality = (
            read_pipeline_json(args.quality, "the data quality metrics", "validate", keys=("rows_in", "rows_out", "rows_quarantined"))
            if args.quality.exists()
            else None
        )
        figures, reports = sorted(args.figures.glob("*.png")), sorted(args.reports.glob("*.html"))
        try:
            text = summary(evaluation, drift, quality, figures, reports, vars(args))
        except (KeyError, TypeError, ValueError, IndexError) as exc:  # valid JSON, but not what the stages write
            raise ArtifactError(f"a metrics file is corrupt ({type(exc).__name__}: {exc}): rebuild it with `dvc repro`") from None
    except PipelineError as exc:
        print(f"error: metrics: {exc}", file=sys.stderr)
        return exit_status(exc)
    print(text)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
