"""The few lines `make repro` ends with: headline test metrics, the drift verdict, where to look next.

    python -m mlpipe.tools.summary --evaluation metrics/evaluation.json --drift metrics/drift.json \\
        --figures reports/figures --reports reports/drift
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def summary(evaluation: dict, drift: dict, figures: list[Path], reports: list[Path], paths: dict[str, Path]) -> str:
    test = evaluation["test"]
    auc = "n/a (one class)" if test["roc_auc"] is None else f"{test['roc_auc']:.4f}"
    lines = [
        "",
        "Pipeline up to date.",
        f"  test set: ROC-AUC {auc}, log-loss {test['log_loss']:.4f}, accuracy {test['accuracy']:.3f} at threshold "
        f"{evaluation['threshold']} on {test['rows']:,} rows ({paths['evaluation']})",
    ]
    if drift["retrain_recommended"]:
        lines.append(f"  drift: RETRAIN RECOMMENDED, {len(drift['reasons'])} reason(s), first: {drift['reasons'][0]} ({paths['drift']})")
    else:
        lines.append(f"  drift: no retraining needed across {len(drift['windows'])} window(s) ({paths['drift']})")
    lines += [
        f"  figures: {len(figures)} PNG in {paths['figures']}/; drift reports: {len(reports)} HTML in {paths['reports']}/",
        "  next: make plots (every plot on one offline page) · make monitor · dvc metrics diff · make init DATA=... TARGET=... for your table",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evaluation", required=True, type=Path)
    parser.add_argument("--drift", required=True, type=Path)
    parser.add_argument("--figures", required=True, type=Path)
    parser.add_argument("--reports", required=True, type=Path)
    args = parser.parse_args(argv)
    missing = [path for path in (args.evaluation, args.drift) if not path.exists()]
    if missing:
        print(f"error: summary: {missing[0]} does not exist: run `dvc repro` first", file=sys.stderr)
        return 1
    evaluation, drift = (json.loads(path.read_text(encoding="utf-8")) for path in (args.evaluation, args.drift))
    figures, reports = sorted(args.figures.glob("*.png")), sorted(args.reports.glob("*.html"))
    print(summary(evaluation, drift, figures, reports, vars(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
