"""Run a parameter sweep through DVC's experiment queue and wait for it: what `make sweep` runs.

    python -m mlpipe.tools.experiments train.learning_rate=0.03,0.1 train.num_leaves=31,127 --jobs 2

Each argument becomes one `-S` of `dvc exp run --queue` (DVC expands the grid), then
`dvc queue start -j N` runs them in background workers. This waits for exactly the
experiments it queued (`wait_for`), showing progress, then prints a table of them from
`dvc exp show --json` (each one's state, the swept params and the headline metrics), and for each
failed one the tail of `dvc queue logs`, where the stage's one-line `error: <stage>: ...` says why. It warns first
about untracked files, which queued experiments do not see.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlpipe.errors import EXIT_FINDING, EXIT_OK, PipelineError, exit_status
from mlpipe.tools.dvc_cli import dvc

ACTIVE = {"Queued", "Running"}
HEADLINE = ["test.roc_auc", "test.log_loss", "best_iteration", "retrain_recommended"]


def worker_env(jobs: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment to start `jobs` queue workers with.

    LightGBM's OpenMP threads spin while they wait for work. Two experiments training at once
    on a machine with as many cores as one of them uses then spin against each other: training
    took 64 s instead of 5 s in bench/sweep.py. Passive waiting removes that (results are
    byte-identical) but costs a single run about a second, so it is set only for parallel workers.
    """
    env = dict(os.environ if base is None else base)
    if jobs > 1:
        env.setdefault("OMP_WAIT_POLICY", "passive")
    return env


def untracked_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "--others", "--exclude-standard"], capture_output=True, text=True, check=True)
    return listed.stdout.split()


def queued_names(output: str) -> list[str]:
    return re.findall(r"Queued experiment '([^']+)'", output)


def queue_statuses(output: str) -> dict[str, str]:
    """Experiment name -> status, from `dvc queue status` (columns: task, name, created, status)."""
    statuses = {}
    for line in output.splitlines():
        fields = line.split()
        if len(fields) >= 4 and not line.startswith(("Task", "Worker")):
            statuses[fields[1]] = fields[-1]
    return statuses


def queue_signature(cwd: str | Path | None = None) -> tuple:
    """What changes when a queued experiment ends, read in milliseconds: DVC's experiment git refs
    (`refs/exps/<baseline>/<name>`, one per success) and the files of its task queue's result
    store (one per ended task, failed ones too). Only a cue to ask `dvc queue status`: if another
    DVC version keeps its queue elsewhere, the answer waits for the next regular check."""
    refs = subprocess.run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], cwd=cwd, capture_output=True, text=True, check=True)
    results = Path(cwd or ".") / ".dvc" / "tmp" / "exps" / "celery" / "result"
    try:
        ended = sorted((entry.name, entry.stat().st_mtime_ns) for entry in os.scandir(results))
    except FileNotFoundError:
        ended = []
    return tuple(refs.stdout.split()), tuple(ended)


def start_queue(jobs: int, cwd: str | Path | None = None, env: dict[str, str] | None = None) -> None:
    """`dvc queue start -j N`, returning once its workers are started (they run in the background)."""
    dvc("queue", "start", "-j", str(jobs), cwd=cwd, env=worker_env(jobs, env), leaves_processes=True)


def wait_for(
    names: list[str],
    cwd: str | Path | None = None,
    env: dict[str, str] | None = None,
    on_status: Callable[[dict[str, str]], None] = lambda statuses: None,
    poll_seconds: float = 1.0,
    recheck_seconds: float = 15.0,
) -> dict[str, str]:
    """Wait until none of the experiments `names` is queued or running; their last statuses.

    `dvc queue status` is a DVC process of about a CPU-second: asked every few seconds, it takes
    a core's share from the experiments on a small machine. So it is asked when
    `queue_signature` (read every `poll_seconds`) changes, and every `recheck_seconds` in any
    case. `on_status` gets each status read (for progress).
    """
    statuses: dict[str, str] = {}
    asked, signature = -math.inf, None
    while True:
        now = queue_signature(cwd)
        if now != signature or time.monotonic() - asked >= recheck_seconds:
            statuses, asked, signature = queue_statuses(dvc("queue", "status", cwd=cwd, env=env)), time.monotonic(), now
            on_status(statuses)
            if not any(statuses.get(name) in ACTIVE for name in names):
                return statuses
        time.sleep(poll_seconds)


def failure_reason(log: str) -> str:
    """The stage's own one-line error when there is one, else the log's last line."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    own = [line for line in lines if line.startswith("error: ")]
    return own[-1] if own else (lines[-1] if lines else "no log")


def comparison_table(shown: list[dict[str, Any]], names: list[str], overrides: list[str]) -> str:
    """The experiments `names` beside their baseline, as a Markdown table: a state column, the swept
    params and the headline metrics, best ROC-AUC first. Built from `dvc exp show --json`, whose
    failed experiments carry their baseline's metrics files (they never wrote their own): those
    are not shown, a failed experiment has no metrics."""
    swept = [override.split("=", 1)[0].split(":")[-1] for override in overrides]
    rows = []
    for baseline in shown:
        if baseline.get("rev") == "workspace" or not baseline.get("experiments"):
            continue
        rows.append((baseline.get("name") or baseline["rev"][:7], "baseline", baseline.get("data") or {}))
        for experiment in baseline["experiments"]:
            if experiment.get("name") in names:
                state = (experiment.get("executor") or {}).get("state") or "success"
                rows.append((experiment["name"], state, (experiment.get("revs") or [{}])[0].get("data") or {}))
    table = []
    for name, state, data in rows:
        params = (data.get("params") or {}).get("params.yaml", {}).get("data") or {}
        metrics = [file.get("data") or {} for file in (data.get("metrics") or {}).values()] if state in ("success", "baseline") else []
        headline = [next((value for value in (_dotted(file, key) for file in metrics) if value is not None), None) for key in HEADLINE]
        table.append([name, state, *(_dotted(params, key) for key in swept), *headline])

    def order(row: list[Any]) -> tuple:  # the baseline, then the best test ROC-AUC, then those without one
        auc = row[2 + len(swept) + HEADLINE.index("test.roc_auc")]
        scored = isinstance(auc, (int, float))
        return row[1] != "baseline", not scored, -auc if scored else 0

    header = ["Experiment", "State", *swept, *HEADLINE]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join("—" if cell is None else str(cell) for cell in row) + " |" for row in sorted(table, key=order)]
    return "\n".join(lines)


def _dotted(values: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        if not isinstance(values, dict) or part not in values:
            return None
        values = values[part]
    return values


def sweep(overrides: list[str], jobs: int) -> int:
    untracked = untracked_files()
    if untracked:
        print(
            f"warning: {len(untracked)} untracked files are invisible to queued experiments "
            f"(git add them, or pass them with `dvc exp run --copy-paths`): {', '.join(untracked[:5])}",
            file=sys.stderr,
        )
    names = queued_names(dvc("exp", "run", "--queue", *(arg for override in overrides for arg in ("-S", override))))
    print(f"queued {len(names)} experiments: {', '.join(names)}")
    start_queue(jobs)
    started, reported = time.monotonic(), ""

    def show_progress(statuses: dict[str, str]) -> None:
        nonlocal reported
        progress = ", ".join(f"{sum(statuses.get(n) == s for n in names)} {s.lower()}" for s in ("Success", "Failed", "Running", "Queued"))
        if progress != reported:
            print(f"[{time.monotonic() - started:5.0f}s] {progress}", flush=True)
            reported = progress

    statuses = wait_for(names, on_status=show_progress)
    print(comparison_table(json.loads(dvc("exp", "show", "--json", "--hide-queued") or "[]"), names, overrides))
    failed = [name for name in names if statuses.get(name) != "Success"]
    for name in failed:
        print(
            f"experiment {name} {statuses.get(name, 'vanished').lower()}: {failure_reason(dvc('queue', 'logs', name, check=False))}"
            f" (full log: dvc queue logs {name})",
            file=sys.stderr,
        )
    return EXIT_FINDING if failed else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Queue a parameter grid as DVC experiments, run it, and wait.")
    parser.add_argument(
        "overrides",
        nargs="+",
        help="params.yaml overrides, e.g. train.learning_rate=0.03,0.1 (one argument may hold several, space-separated)",
    )
    parser.add_argument("--jobs", "-j", type=int, default=2, help="experiments run in parallel (dvc queue start -j)")
    args = parser.parse_args(argv)
    try:
        # `make sweep GRID="a=1,2 b=3"` passes the grid as one argument: the overrides hold no spaces.
        return sweep([word for argument in args.overrides for word in argument.split()], args.jobs)
    except PipelineError as exc:
        print(f"error: sweep: {exc}", file=sys.stderr)
        return exit_status(exc)


if __name__ == "__main__":
    sys.exit(main())
