"""How long do `make init` and every stage take on a wide table? (A benchmark, not a test.)

Issue 28 found 500 rows x 5,000 columns taking over 10 minutes. For each shape of such a table
(generated, seeded: every column but the target is of the shape's kinds), in its own temporary
git+DVC snapshot of this repository (tracked files plus untracked, non-ignored ones, as the other
benchmarks take them):

1. `mlpipe init --data data/wide.csv --target outcome` (what `make init` runs): wall time;
2. `dvc repro` (every stage, drift reports included): each stage from DVC's "Running stage" line
   to its `done in` line (the stage's own time, start-up and imports included), DVC's time
   between stages, and the wall time.

Shapes: `numeric` (floats), `categorical` (five-level text columns), `mixed` (a quarter each of
floats, five-level text, text dates and unique text ids) and `text` (two words out of 200 each).
Each shape has a budget (--budget seconds for init + repro); a run cut by it is reported as
"over N s" at the stage it was in, and the next shape starts.

Writes bench/results/wide_table.json and wide_table.md (with the commit it ran on).

    .venv/bin/python bench/wide_table.py                          # every shape, about 10 minutes
    .venv/bin/python bench/wide_table.py --shapes mixed --keep    # one shape, keep the snapshot
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from pipeline_overhead import REPO, RESULTS, QuietGate, machine_facts, measure, scratch_folder, write_results

from mlpipe.tools.workspace import DONE_LINE, RUNNING_LINE, snapshot_repository

SHAPES = ("numeric", "categorical", "mixed", "text")
LEVELS = np.array(["red", "green", "blue", "amber", "violet"])
TARGET = "outcome"
TARGET_MINUTES = 10.0  # the figure: init + every stage of the pipeline


def wide_table(shape: str, rows: int, columns: int, seed: int) -> pd.DataFrame:
    """`columns` columns (the binary text target included) of the kinds `shape` names."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2020-01-01", periods=rows, freq="D").strftime("%Y-%m-%d").to_numpy()
    words = np.array([f"w{index}" for index in range(200)])
    kinds = {
        "numeric": ["number"],
        "categorical": ["level"],
        "mixed": ["number", "level", "date", "id"],
        "text": ["words"],
    }[shape]
    make = {
        "number": lambda: rng.normal(size=rows).round(3),
        "level": lambda: LEVELS[rng.integers(0, len(LEVELS), rows)],
        "date": lambda: rng.permutation(dates),
        "id": lambda: np.char.add("ID-", np.char.zfill(rng.permutation(rows).astype(str), 6)),
        "words": lambda: np.char.add(np.char.add(words[rng.integers(0, 200, rows)], " "), words[rng.integers(0, 200, rows)]),
    }
    data = {f"{kinds[index % len(kinds)]}{index}": make[kinds[index % len(kinds)]]() for index in range(columns - 1)}
    data[TARGET] = np.where(rng.random(rows) < 0.3, "yes", "no")
    return pd.DataFrame(data)


def stage_times(lines: list[tuple[float, str]], wall_s: float, timed_out: bool) -> tuple[list[dict], float]:
    """Each stage's time from its "Running stage" line to its `done in` line (the one a cut run was
    in: to the cut, marked `cut`), and DVC's time outside the stages."""
    stages: list[dict] = []
    for at, line in lines:
        if match := RUNNING_LINE.match(line):
            stages.append({"stage": match["stage"], "running_at": at})
        elif (match := DONE_LINE.match(line)) and stages and match["stage"] == stages[-1]["stage"]:
            stages[-1].update(seconds=round(at - stages[-1]["running_at"], 2), in_stage_s=float(match["seconds"]))
    for stage in stages:
        if "seconds" not in stage:  # the stage the budget (or a failure) stopped
            stage.update(seconds=round(wall_s - stage["running_at"], 2), cut=timed_out)
        del stage["running_at"]
    return stages, round(wall_s - sum(stage["seconds"] for stage in stages), 2)


def bench_shape(shape: str, args: argparse.Namespace, env: dict[str, str], gate: QuietGate, workdir: Path) -> dict:
    copy = workdir / shape
    copy.mkdir()
    commit = snapshot_repository(REPO, copy)["head"]
    wide_table(shape, args.rows, args.columns, args.seed).to_csv(copy / "data" / "wide.csv", index=False)
    result: dict = {"shape": shape, "rows": args.rows, "columns": args.columns, "commit": commit}
    budget = args.budget
    print(f"{shape}: mlpipe init ...", flush=True)
    gate.wait()
    init = measure(["mlpipe", "init", "--data", "data/wide.csv", "--target", TARGET, "--force"], copy, env, timeout_s=budget)
    result["init"] = {"wall_s": round(init.wall_s, 2), "exit": init.returncode, "cut": init.timed_out, "peak_rss_gib": _gib(init)}
    print(f"  init {_seconds(result['init'])}", flush=True)
    if init.returncode != 0:
        result["init"]["tail"] = init.tail(5)
        return result
    budget -= init.wall_s
    print(f"{shape}: dvc repro (budget {budget:.0f} s) ...", flush=True)
    repro = measure(["dvc", "repro"], copy, env, timeout_s=budget)
    stages, dvc_s = stage_times(repro.lines, repro.wall_s, repro.timed_out)
    result["repro"] = {
        "wall_s": round(repro.wall_s, 2),
        "exit": repro.returncode,
        "cut": repro.timed_out,
        "peak_rss_gib": _gib(repro),
        "other_cpu_cores": round(repro.other_cpu_cores, 2),
        "stages": stages,
        "dvc_outside_stages_s": dvc_s,
    }
    if repro.returncode != 0 and not repro.timed_out:
        result["repro"]["tail"] = repro.tail(5)
    for stage in stages:
        print(f"  {stage['stage']:<24} {_seconds(stage)}", flush=True)
    print(f"  dvc repro {_seconds(result['repro'])} (DVC outside the stages {dvc_s:.1f} s)", flush=True)
    return result


def _gib(run) -> float:
    return round(run.peak_tree_rss_mb / 1024, 2)


def _seconds(entry: dict) -> str:
    key = "seconds" if "seconds" in entry else "wall_s"
    return f"over {entry[key]:.0f} s (cut)" if entry.get("cut") else f"{entry[key]:.1f} s"


def markdown(report: dict) -> str:
    runs = report["runs"]
    names = list(dict.fromkeys(stage["stage"] for run in runs for stage in run.get("repro", {}).get("stages", [])))
    lines = [
        "# Wide tables: init and every stage",
        "",
        f"{report['machine']['timestamp_utc']} · {report['machine']['nproc']} CPUs · commit {report['commit'][:10]} · "
        f"{report['rows']:,} rows x {report['columns']:,} columns · budget {report['budget_s']:.0f} s a shape",
        "",
        "| step | " + " | ".join(run["shape"] for run in runs) + " |",
        "|---|" + "---:|" * len(runs),
        "| `mlpipe init` | " + " | ".join(_seconds(run["init"]) for run in runs) + " |",
    ]
    for name in names:
        cells = []
        for run in runs:
            stage = next((stage for stage in run.get("repro", {}).get("stages", []) if stage["stage"] == name), None)
            cells.append(_seconds(stage) if stage else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "| DVC outside the stages | "
        + " | ".join(f"{run['repro']['dvc_outside_stages_s']:.1f} s" if "repro" in run else "" for run in runs)
        + " |",
        "| **`dvc repro`** | " + " | ".join(_seconds(run["repro"]) if "repro" in run else "not run" for run in runs) + " |",
        "| **init + repro** | " + " | ".join(_total(run) for run in runs) + " |",
        "| peak memory (repro) | " + " | ".join(f"{run['repro']['peak_rss_gib']:.2f} GiB" if "repro" in run else "" for run in runs) + " |",
        "| other load | " + " | ".join(f"{run['repro']['other_cpu_cores']:.2f} cores" if "repro" in run else "" for run in runs) + " |",
        "",
        f"Target (issue 28): init + repro well under {TARGET_MINUTES:.0f} minutes for every shape. A stage's time runs from DVC's "
        '"Running stage" line to its `done in` line (start-up and imports included); *DVC outside the stages* is the rest '
        "(start-up, hashing, dvc.lock). *Other load*: CPU used outside the run, in cores (above about 0.2 the times are inflated).",
    ]
    failed = [run for run in runs if "tail" in run.get("repro", run["init"])]
    for run in failed:
        lines += ["", f"{run['shape']} failed:", "", "```", run.get("repro", run["init"])["tail"], "```"]
    return "\n".join(lines) + "\n"


def _total(run: dict) -> str:
    seconds = run["init"]["wall_s"] + run.get("repro", {}).get("wall_s", 0.0)
    cut = run["init"]["cut"] or run.get("repro", {}).get("cut", False)
    return f"over {seconds:.0f} s (cut)" if cut else f"{seconds:.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES))
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--columns", type=int, default=5000, help="the target included")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=600.0, help="seconds for init + repro of one shape; past it the run is cut")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--quiet-below", type=float, default=0.25)
    parser.add_argument("--max-wait", type=float, default=60.0)
    parser.add_argument("--keep", action="store_true", help="keep the snapshots (their path is printed)")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    gate = QuietGate(threshold=args.quiet_below, max_wait_s=args.max_wait)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1"}
    report = {
        "benchmark": "wide_table",
        "machine": machine_facts(bin_dir),
        "rows": args.rows,
        "columns": args.columns,
        "seed": args.seed,
        "budget_s": args.budget,
        "runs": [],
    }
    with scratch_folder("mlpipe-wide-", args.keep) as workdir:
        for shape in args.shapes:
            # The stages import mlpipe from the snapshot's src/ (as dvc.yaml's commands say), init too.
            run = bench_shape(shape, args, {**env, "PYTHONPATH": str(workdir / shape / "src")}, gate, workdir)
            report["runs"].append(run)
            report["commit"] = run["commit"]
            save(report, args.results_dir)
    report["quiet_gate"] = gate.summary()
    save(report, args.results_dir)
    print(markdown(report))
    print(f"wrote {args.results_dir / 'wide_table.json'} and wide_table.md")


def save(report: dict, results: Path) -> None:
    write_results("wide_table", report, markdown(report), results)


if __name__ == "__main__":
    main()
