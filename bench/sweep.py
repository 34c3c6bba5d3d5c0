"""Sweep benchmark: four queued experiments run two at a time versus one after another. (A benchmark, not a test.)

On a temporary git+DVC snapshot of this repository with the committed dataset:

1. `dvc repro` once (the baseline every experiment starts from), timing each stage;
2. the 2x2 grid of `make sweep` (train.learning_rate=0.03,0.1 x train.num_leaves=31,127)
   queued with `dvc exp run --queue` and run with `dvc queue start -j 1`: wall time until
   all four finish;
3. the same grid queued again and run with `-j 2`;
4. before both, `dvc repro -f --downstream train` three times (the median): what the stages an experiment reruns
   cost on their own, so that the rest of the `-j 1` wall time is the queue's bookkeeping.

DVC's run-cache is emptied before each batch, so the second cannot restore the first's results.
From each experiment's `dvc queue logs` it collects which stages ran, which were skipped and
each stage's own time ("done in"), which shows that the upstream stages (ingest, validate,
split, featurize) are paid once, in step 1, and never inside an experiment.
Writes bench/results/sweep.{json,md}.

    .venv/bin/python bench/sweep.py          # about five minutes
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline_overhead import REPO, write_results  # a sibling script: one way to write results

from mlpipe.tools.dvc_cli import dvc
from mlpipe.tools.experiments import queued_names, start_queue, wait_for
from mlpipe.tools.workspace import snapshot_repository, stage_seconds, stages_run

GRID = ["-S", "train.learning_rate=0.03,0.1", "-S", "train.num_leaves=31,127"]
UPSTREAM = ["ingest", "validate", "split", "featurize"]
DOWNSTREAM_RUNS = 3
BOOKKEEPING_TARGET = 0.30  # issue 13: the queue's own work at most this share of a 4-point sweep's wall time


def run_batch(jobs: int, copy: Path, env: dict[str, str]) -> dict:
    # Forget earlier results of the same params, so that every experiment really trains.
    shutil.rmtree(copy / ".dvc" / "cache" / "runs", ignore_errors=True)
    names = queued_names(dvc("exp", "run", "--queue", *GRID, cwd=copy, env=env))
    started = time.perf_counter()
    start_queue(jobs, cwd=copy, env=env)  # as `make sweep` starts and waits for them
    statuses = wait_for(names, cwd=copy, env=env)
    wall = time.perf_counter() - started
    experiments = {}
    for name in names:
        log = dvc("queue", "logs", name, cwd=copy, env=env)
        experiments[name] = {
            "status": statuses.get(name),
            "ran": stages_run(log),
            "skipped": re.findall(r"Stage '([^']+)' didn't change, skipping", log),
            "stage_seconds": stage_seconds(log),
        }
    print(f"-j {jobs}: {wall:.1f} s for {len(names)} experiments", flush=True)
    # The workers linger idle for DVC's 10 s before they exit; the next batch must start its own
    # (a lingering one would keep this batch's environment).
    while "Worker status: 0 active, 0 idle" not in dvc("queue", "status", cwd=copy, env=env):
        time.sleep(2)
    return {"jobs": jobs, "wall_s": wall, "experiments": experiments}


def main() -> None:
    started_utc = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    work = Path(tempfile.mkdtemp(prefix="mlpipe-sweep-"))
    copy = work / "repo"
    copy.mkdir()
    snapshot = snapshot_repository(REPO, copy)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@localhost",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@localhost",
    }
    env.pop("PYTHONPATH", None)
    print(f"snapshot of {snapshot['head'][:12]} in {copy}", flush=True)

    started = time.perf_counter()
    baseline_log = dvc("repro", cwd=copy, env=env)
    baseline = {"wall_s": time.perf_counter() - started, "stage_seconds": stage_seconds(baseline_log)}
    subprocess.run(["git", "add", "-A"], cwd=copy, check=True)
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "baseline"], cwd=copy, env=env, check=True)
    print(f"baseline dvc repro: {baseline['wall_s']:.1f} s", flush=True)

    # What the stages an experiment reruns cost on their own, DVC's per-stage work included:
    # the part of a sweep that is not the queue's bookkeeping.
    runs, reran = [], []
    for _ in range(DOWNSTREAM_RUNS):  # one run of it took 23.7 s in one bench run, 29.1 s in the next
        started = time.perf_counter()
        reran = stages_run(dvc("repro", "-f", "--downstream", "train", cwd=copy, env=env))
        runs.append(time.perf_counter() - started)
    downstream_once = {"wall_s": statistics.median(runs), "runs_s": runs, "stages": reran}
    print(
        f"dvc repro -f --downstream train: {downstream_once['wall_s']:.1f} s, median of {', '.join(f'{run:.1f}' for run in runs)} "
        f"({', '.join(reran)})",
        flush=True,
    )

    serial, parallel = run_batch(1, copy, env), run_batch(2, copy, env)
    experiments = len(serial["experiments"])
    bookkeeping_share = 1 - experiments * downstream_once["wall_s"] / serial["wall_s"]
    upstream_paid = sum(baseline["stage_seconds"].get(stage, 0.0) for stage in UPSTREAM)
    upstream_in_experiments = sum(
        seconds
        for batch in (serial, parallel)
        for exp in batch["experiments"].values()
        for stage, seconds in exp["stage_seconds"].items()
        if stage in UPSTREAM
    )
    result = {
        "started_utc": started_utc,
        "machine": {"cpus": os.cpu_count()},
        "snapshot": snapshot,
        "grid": " ".join(GRID),
        "baseline": baseline,
        "serial": serial,
        "parallel": parallel,
        "speedup_j2_over_j1": serial["wall_s"] / parallel["wall_s"],
        "downstream_once": downstream_once,
        "bookkeeping_share_j1": bookkeeping_share,
        "bookkeeping_target": BOOKKEEPING_TARGET,
        "upstream_seconds_in_baseline": upstream_paid,
        "upstream_seconds_in_experiments": upstream_in_experiments,
        "every_experiment_skipped_upstream": all(
            exp["skipped"] == UPSTREAM for batch in (serial, parallel) for exp in batch["experiments"].values()
        ),
    }

    downstream = [stage for stage in baseline["stage_seconds"] if stage not in UPSTREAM]
    lines = [
        "# Sweep: four queued experiments, one at a time vs two at a time",
        "",
        f"Started {started_utc} on a snapshot of commit {snapshot['head'][:10]} with {len(snapshot['uncommitted_changes'])} uncommitted change(s).",
        "",
        f"Grid `{result['grid']}` on the default dataset; {os.cpu_count()} CPUs; run-cache emptied before each batch.",
        "",
        "| | wall time |",
        "|---|---:|",
        f"| baseline `dvc repro` (all 8 stages) | {baseline['wall_s']:.1f} s |",
        f"| 4 experiments, `dvc queue start -j 1` | {serial['wall_s']:.1f} s |",
        f"| 4 experiments, `dvc queue start -j 2` | {parallel['wall_s']:.1f} s |",
        f"| speed-up of -j 2 | **{result['speedup_j2_over_j1']:.2f}x** |",
        f"| the stages one experiment reruns, alone (`dvc repro -f --downstream train`, median of "
        f"{', '.join(f'{run:.1f}' for run in downstream_once['runs_s'])} s) | {downstream_once['wall_s']:.1f} s |",
        "",
        f"The queue's own bookkeeping with `-j 1` (queueing, workers, a workspace per experiment, recording it): "
        f"1 − {experiments} × {downstream_once['wall_s']:.1f} s / {serial['wall_s']:.1f} s = **{bookkeeping_share:.0%}** of the wall time "
        f"(target ≤ {BOOKKEEPING_TARGET:.0%}: {'met' if bookkeeping_share <= BOOKKEEPING_TARGET else 'NOT met'}).",
        "",
        f"Upstream stages ({', '.join(UPSTREAM)}): {upstream_paid:.1f} s in the baseline, "
        f"{upstream_in_experiments:.1f} s inside the 8 experiments (every experiment skipped them: "
        f"{result['every_experiment_skipped_upstream']}).",
        "",
        'Per-stage time inside each stage ("done in", from the logs; median over the four experiments):',
        "",
        "| stage | baseline | -j 1 | -j 2 |",
        "|---|---:|---:|---:|",
    ]
    for stage in UPSTREAM + downstream:
        cells = [f"{baseline['stage_seconds'].get(stage, 0):.1f} s"]
        for batch in (serial, parallel):
            times = [exp["stage_seconds"][stage] for exp in batch["experiments"].values() if stage in exp["stage_seconds"]]
            cells.append(f"{statistics.median(times):.1f} s" if times else "skipped")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    write_results("sweep", result, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
