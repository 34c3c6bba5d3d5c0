"""The fairness report's time: `mlpipe.model.fairness.fairness_report` against the way it was
computed before (a benchmark, not a test).

Generates N scored test rows (default 208,892, the default data's test rows) with three
sensitive attributes shaped like the default data's (sex: 2 groups; race: 9 codes, a few of them
rare; age: 8 bands, the youngest never positive), then, in one run so that the figures share the
machine's conditions, times on the same rows:

1. now: `fairness_report` as the stage calls it (rates by fairlearn's MetricFrame on the rows
   counted by group, label and predicted label, weighted by the counts; ROC-AUC by MetricFrame on
   the rows; fairlearn's difference functions on the compared groups' counts);
2. before (the code up to this benchmark): per attribute one MetricFrame over the rows with all
   six metrics (count, positives, ROC-AUC with the probability as a sample parameter, selection
   rate, true and false positive rate), and fairlearn's `demographic_parity_difference` and
   `equalized_odds_difference` on the compared groups' rows.

Both give a whole report; it prints whether the two are equal (as JSON text, to the last digit),
the times, and writes bench/results/fairness.{json,md} with the commit.

    .venv/bin/python bench/fairness.py                  # about a minute and a half
    .venv/bin/python bench/fairness.py --rows 1000000 --before-repeats 0
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from pipeline_overhead import write_results  # noqa: E402  (a sibling script: one way to write results)
from serving import _commit  # noqa: E402

from mlpipe.config import SensitiveGroups  # noqa: E402
from mlpipe.model import fairness  # noqa: E402

TARGET_SECONDS = 5.0
MIN_GROUP_ROWS = 100
RACES = {1: "White", 2: "Black", 3: "American Indian", 4: "Alaska Native", 5: "American Indian or Alaska Native"}
RACES |= {6: "Asian", 7: "Pacific Islander", 8: "some other race", 9: "two or more races"}
RACE_SHARES = [0.816, 0.061, 0.0011, 0.00003, 0.00066, 0.063, 0.00036, 0.0298, 0.02827]  # the default data's test rows
GROUPS = {
    "sex": SensitiveGroups(column="SEX", labels={1: "male", 2: "female"}),
    "race": SensitiveGroups(column="RAC1P", labels=RACES),
    "age": SensitiveGroups(column="AGEP", bins=[16.0, 25.0, 35.0, 45.0, 55.0, 65.0, 75.0]),
}


def scored_rows(rows: int, seed: int) -> fairness.Scored:
    rng = np.random.default_rng(seed)
    columns = pd.DataFrame(
        {
            "SEX": rng.integers(1, 3, rows),
            "RAC1P": rng.choice(list(RACES), rows, p=np.array(RACE_SHARES) / sum(RACE_SHARES)),
            "AGEP": rng.integers(0, 95, rows),
        }
    )
    proba = np.round(rng.beta(2, 2, rows), 5)  # repeated values, as a model's probabilities have
    y = (rng.random(rows) < proba) & (columns["AGEP"] >= 16).to_numpy()  # nobody under 16 is positive
    return fairness.Scored(y.astype(np.int8), (proba >= 0.41).astype(np.int8), proba, columns)


def _auc_with_score(y_true, y_pred, *, y_score) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y_true, y_score)) if len(np.unique(y_true)) == 2 else float("nan")


def report_before(scored: fairness.Scored, groups: dict[str, SensitiveGroups], min_group_rows: int) -> dict:
    """The report as it was computed before: every metric and both differences on the rows."""
    from fairlearn.metrics import (
        MetricFrame,
        count,
        demographic_parity_difference,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    metrics = {
        "rows": count,
        "positives": lambda y_true, y_pred: int(np.sum(y_true)),
        "roc_auc": _auc_with_score,
        "selection_rate": selection_rate,
        "true_positive_rate": functools.partial(true_positive_rate, pos_label=1),
        "false_positive_rate": functools.partial(false_positive_rate, pos_label=1),
    }
    overall, sensitive = None, {}
    for name, spec in groups.items():
        rows, order = fairness.group_names(scored.columns[spec.column], spec)
        frame = MetricFrame(
            metrics=metrics,
            y_true=scored.y,
            y_pred=scored.predicted,
            sensitive_features=rows.rename("group"),
            sample_params={"roc_auc": {"y_score": scored.proba}},
        )
        overall = dict(frame.overall)
        table = {group: fairness.group_entry(frame.by_group.loc[group].to_dict(), min_group_rows) for group in order}
        compared = [group for group, entry in table.items() if entry["rows"] >= min_group_rows and 0 < entry["positives"] < entry["rows"]]
        for group, entry in table.items():
            entry["in_differences"] = group in compared
        found = {"demographic_parity_difference": None, "equalized_odds_difference": None}
        if len(compared) >= 2:
            kept = rows.isin(compared).to_numpy()
            arguments = {"y_true": scored.y[kept], "y_pred": scored.predicted[kept], "sensitive_features": rows[kept].to_numpy()}
            found = {
                "demographic_parity_difference": float(demographic_parity_difference(**arguments)),
                "equalized_odds_difference": float(equalized_odds_difference(**arguments)),
            }
        sensitive[name] = {"column": spec.column, **found, "groups": table}
    return {"rows": len(scored.y), "min_group_rows": min_group_rows, "overall": fairness.group_entry(overall), "sensitive": sensitive}


def timed(function, *args) -> tuple[float, dict]:
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=208_892)
    parser.add_argument("--repeats", type=int, default=3, help="runs of the report as it is now (median reported)")
    parser.add_argument("--before-repeats", type=int, default=1, help="runs of the report as it was (about 35-55 s each)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    scored = scored_rows(args.rows, args.seed)
    fairness.fairness_report(scored_rows(1000, args.seed), GROUPS, MIN_GROUP_ROWS)  # imports fairlearn and scikit-learn: not timed
    now_times, before_times, now_report, before_report = [], [], None, None
    for run in range(max(args.repeats, args.before_repeats)):  # taking turns: both see the same conditions
        if run < args.repeats:
            seconds, (now_report, _) = timed(fairness.fairness_report, scored, GROUPS, MIN_GROUP_ROWS)
            now_times.append(seconds)
            print(f"now:    {seconds:6.2f} s", flush=True)
        if run < args.before_repeats:
            seconds, before_report = timed(report_before, scored, GROUPS, MIN_GROUP_ROWS)
            before_times.append(seconds)
            print(f"before: {seconds:6.2f} s", flush=True)
    now_s = statistics.median(now_times)
    before_s = statistics.median(before_times) if before_times else None
    equal = json.dumps(now_report) == json.dumps(before_report) if before_report else None
    result = {
        "benchmark": "fairness",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_average_1m_at_end": os.getloadavg()[0]},
        "commit": _commit(),
        "timestamp_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rows": args.rows,
        "attributes": {name: len(report["groups"]) for name, report in now_report["sensitive"].items()},
        "now_s": now_s,
        "now_runs_s": now_times,
        "before_s": before_s,
        "before_runs_s": before_times,
        "speedup": before_s / now_s if before_s else None,
        "reports_equal": equal,
        "target_s": TARGET_SECONDS,
        "target_met": now_s <= TARGET_SECONDS,
    }
    groups = ", ".join(f"{name} {count}" for name, count in result["attributes"].items())
    commit = result["commit"]
    lines = [
        "# The fairness report's time",
        "",
        f"`fairness_report` on {args.rows:,} generated scored rows, 3 sensitive attributes (groups: {groups}); "
        f"{os.cpu_count()} CPUs, load average {result['machine']['load_average_1m_at_end']:.1f} at the end; "
        f"commit {commit['head'][:10]} with {commit['uncommitted_changes']} uncommitted change(s); {result['timestamp_utc']}.",
        "",
        "| | wall time (median) | runs |",
        "|---|---:|---|",
        f"| now: rates by MetricFrame on counted cells, ROC-AUC by MetricFrame on the rows | {now_s:.2f} s | {', '.join(f'{t:.2f}' for t in now_times)} s |",
    ]
    if before_s:
        lines.append(
            f"| before: one MetricFrame of six metrics on the rows, fairlearn's differences on the rows | {before_s:.2f} s | "
            f"{', '.join(f'{t:.2f}' for t in before_times)} s |"
        )
    lines += [
        "",
        f"Target ≤ {TARGET_SECONDS:.0f} s: {'met' if result['target_met'] else 'NOT met'}."
        + (
            f" Speed-up {result['speedup']:.1f}x. The two reports are {'equal' if equal else 'NOT equal'} (as JSON text)."
            if before_s
            else ""
        ),
        "",
    ]
    write_results("fairness", result, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
