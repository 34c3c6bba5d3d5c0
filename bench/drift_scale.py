"""Drift at scale: the `drift` stage against Evidently's DataDriftPreset run as-is. (A benchmark, not a test.)

Generates 1,000,000 reference and 1,000,000 current rows x 20 feature columns (15 numeric,
5 categorical) plus the model's probability, with known shifts in four columns. Then, in one
run so the figures share the machine's conditions:

1. the real stage script, `python src/stages/drift.py`, as a subprocess on Parquet files
   (interpreter start-up, imports, reading, verdicts and the HTML report included), three times;
2. plain Evidently: `Report([DataDriftPreset()])` on every row of both tables, in a subprocess.

It prints wall time and peak memory of each, and whether each column gets the same
drifted/not-drifted verdict, and writes bench/results/drift_scale.{json,md}.

    .venv/bin/python bench/drift_scale.py              # about two minutes
    .venv/bin/python bench/drift_scale.py --rows 100000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import yaml
from pipeline_overhead import REPO, scratch_folder, write_results  # a sibling script: one way to write results
from serving import _commit

TARGET_SECONDS = 10.0
NUMERIC, CATEGORICAL = [f"num_{i:02d}" for i in range(15)], [f"cat_{i}" for i in range(5)]
SHIFTED = {"num_00": "mean +0.3 sd", "num_01": "scale x1.4", "num_02": "mean +0.05 sd (small)", "cat_0": "frequencies changed"}

EVIDENTLY_AS_IS = """
import json, sys
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset
numeric, categorical = json.loads(sys.argv[3]), json.loads(sys.argv[4])
definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
def load(path):
    table = pd.read_parquet(path)
    table[categorical] = table[categorical].astype(str)
    return Dataset.from_pandas(table, data_definition=definition)
snapshot = Report([DataDriftPreset()]).run(current_data=load(sys.argv[2]), reference_data=load(sys.argv[1]))
verdicts = {m["config"]["column"]: {"score": float(m["value"]), "drifted": bool(m["value"] >= m["config"]["threshold"])}
            for m in snapshot.dict()["metrics"] if m["config"]["type"].endswith("ValueDrift")}
print("VERDICTS " + json.dumps(verdicts))
"""


def make_table(rows: int, seed: int, shifted: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    columns = {}
    for i, name in enumerate(NUMERIC):
        values = rng.normal(10 * i, 1 + i, rows)
        if i % 3 == 2:  # some integer-valued columns, like ages and codes
            values = np.round(values)
        columns[name] = values
    for i, name in enumerate(CATEGORICAL):
        levels = [f"L{j}" for j in range(4 + 3 * i)]
        weights = np.linspace(1, 2, len(levels))
        columns[name] = rng.choice(levels, rows, p=weights / weights.sum())
    table = pd.DataFrame(columns)
    if shifted:
        table["num_00"] += 0.3 * 1
        table["num_01"] = 10 + (table["num_01"] - 10) * 1.4
        table["num_02"] += 0.05 * 3
        levels = [f"L{j}" for j in range(4)]
        table["cat_0"] = rng.choice(levels, rows, p=[0.55, 0.15, 0.15, 0.15])
    table["probability"] = rng.beta(2, 2, rows)
    table["id"] = np.arange(rows)
    return table


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MB of the child, and its stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{command[:3]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="runs of the drift stage (median reported); Evidently runs once")
    args = parser.parse_args()

    with scratch_folder("mlpipe-drift-", keep=False) as work:
        reference, current = make_table(args.rows, args.seed, False), make_table(args.rows, args.seed + 1, True)
        reference.to_parquet(work / "reference.parquet", index=False)
        current.to_parquet(work / "current.parquet", index=False)
        schema = {
            "target": "y",
            "positive_label": 1,
            "negative_label": 0,
            "time_column": None,
            "id_columns": ["id"],
            "derived": {},
            "features": [{"name": n, "kind": "numeric", "dtype": "float64", "categories": []} for n in NUMERIC]
            + [{"name": n, "kind": "categorical", "dtype": "object", "categories": sorted(set(reference[n]))} for n in CATEGORICAL],
        }
        (work / "schema.json").write_text(json.dumps(schema))
        (work / "evaluation.json").write_text(json.dumps({"test": {"roc_auc": None}}))
        (work / "quality.json").write_text(
            json.dumps({"rows_in": args.rows, "rows_quarantined": 0, "bad_row_share": 0.0, "failures_by_rule": {}})
        )
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        params["drift"]["windows"] = {"all": {}}
        (work / "params.yaml").write_text(yaml.safe_dump(params))
        print(
            f"{args.rows:,} + {args.rows:,} rows x {len(NUMERIC)} numeric + {len(CATEGORICAL)} categorical columns + probability in {work}"
        )

        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        stage_command = [
            sys.executable,
            "src/stages/drift.py",
            "--params",
            str(work / "params.yaml"),
            "--reference",
            str(work / "reference.parquet"),
            "--current",
            str(work / "current.parquet"),
            "--model-schema",
            str(work / "schema.json"),
            "--evaluation",
            str(work / "evaluation.json"),
            "--current-quality",
            str(work / "quality.json"),
            "--metrics",
            str(work / "drift.json"),
            "--plot",
            str(work / "scores.json"),
            "--reports-dir",
            str(work / "reports"),
        ]
        # The stage is short enough to repeat: the median is steadier than one run on a noisy machine.
        runs = [timed(stage_command, env) for _ in range(args.repeats)]
        stage_times = sorted(wall for wall, _, _ in runs)
        stage_s, stage_mb = statistics.median(stage_times), max(peak for _, peak, _ in runs)
        ours = json.loads((work / "drift.json").read_text())["windows"]["all"]
        ours_columns = {**ours["columns"], "probability": ours["prediction_drift"]}
        print(f"drift stage: median {stage_s:.1f} s of {', '.join(f'{t:.1f}' for t in stage_times)}, peak {stage_mb:.0f} MB")

        plain_s, plain_mb, out = timed(
            [
                sys.executable,
                "-c",
                EVIDENTLY_AS_IS,
                str(work / "reference.parquet"),
                str(work / "current.parquet"),
                json.dumps(NUMERIC + ["probability"]),
                json.dumps(CATEGORICAL),
            ],
            env,
        )
        theirs = json.loads(out.split("VERDICTS ", 1)[1])
        print(f"Evidently as-is: {plain_s:.1f} s, peak {plain_mb:.0f} MB")

    rows = []
    for column in NUMERIC + CATEGORICAL + ["probability"]:
        rows.append(
            {
                "column": column,
                "injected": SHIFTED.get(column, ""),
                "stage_score": ours_columns[column]["score"],
                "evidently_score": theirs[column]["score"],
                "stage_drifted": ours_columns[column]["drifted"],
                "evidently_drifted": theirs[column]["drifted"],
            }
        )
    agree = sum(r["stage_drifted"] == r["evidently_drifted"] for r in rows)
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "commit": _commit(),
        "rows_per_side": args.rows,
        "drift_stage_s": stage_s,
        "drift_stage_runs_s": stage_times,
        "drift_stage_peak_mb": stage_mb,
        "evidently_as_is_s": plain_s,
        "evidently_as_is_peak_mb": plain_mb,
        "speedup": plain_s / stage_s,
        "target_s": TARGET_SECONDS,
        "target_met": stage_s <= TARGET_SECONDS,
        "verdict_agreement": f"{agree}/{len(rows)}",
        "columns": rows,
    }
    lines = [
        "# Drift at scale",
        "",
        f"{args.rows:,} reference + {args.rows:,} current rows, 20 features + probability; {os.cpu_count()} CPUs; "
        f"commit {result['commit']['head'][:10]} with {result['commit']['uncommitted_changes']} uncommitted change(s).",
        "",
        "| | wall time | peak memory |",
        "|---|---:|---:|",
        f"| `drift` stage (whole process; median of {len(stage_times)} runs: {', '.join(f'{t:.1f}' for t in stage_times)} s) | {stage_s:.1f} s | {stage_mb:.0f} MB |",
        f"| Evidently DataDriftPreset as-is | {plain_s:.1f} s | {plain_mb:.0f} MB |",
        "",
        f"Target ≤ {TARGET_SECONDS:.0f} s: {'met' if stage_s <= TARGET_SECONDS else 'NOT met'}. "
        f"Verdict agreement: {agree}/{len(rows)} columns.",
        "",
        "| column | injected shift | stage score | Evidently score | stage drifted | Evidently drifted |",
        "|---|---|---:|---:|---|---|",
        *(
            f"| {r['column']} | {r['injected']} | {r['stage_score']:.5f} | {r['evidently_score']:.5f} | {r['stage_drifted']} | {r['evidently_drifted']} |"
            for r in rows
        ),
    ]
    write_results("drift_scale", result, "\n".join(lines) + "\n")
    print("\n".join(lines[4:9]))


if __name__ == "__main__":
    main()
