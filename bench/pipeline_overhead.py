"""How much does the DVC pipeline cost over a bare LightGBM script? (A benchmark, not a test.)

In one run, so that the ratios share the same machine conditions, it measures:

1. a full `dvc repro -f evaluate` (every stage the bare script mirrors: ingest to evaluate;
   predict and drift have no counterpart in it) of a temporary git+DVC snapshot of this
   repository, on the committed dataset: wall time, peak memory, per-stage times, and the DVC overhead
   (total wall time minus the time spent inside the stages' own `main`);
2. a no-op `dvc repro` right after it (median of --noop-repeats runs), taking turns with the
   no-op of a toy pipeline of as many `cat` stages;
3. bench/bare_lightgbm.py, the same model fitted by one plain script (the floor), run as a
   subprocess so that it pays interpreter start-up and imports like every stage does;
4. steps 1-3 again on a 1,000,000-row resample of the dataset (skip with --skip-1m).

The snapshot holds what `git add -A` would commit from the working tree (tracked files as
they are now, plus untracked files that are not ignored), so uncommitted edits are measured.
The stages import `mlpipe` from the snapshot's src/ (PYTHONPATH), not from the editable
install. Nothing in the repository itself is touched except bench/results/.

Memory is reported two ways: `max_rss_single_mb` is ru_maxrss from wait4(), i.e. the largest
resident set of any single process in the tree (DVC itself or one stage), and
`peak_tree_rss_mb` is the largest sum of RSS over the whole process tree seen by polling
with psutil every 50 ms (shared pages count once per process; very short peaks can be missed),
and `peak_tree_pss_mb` the largest sum of PSS in the same polls: a page shared by n processes
counts 1/n in each, so the drift stage's forked report workers, which share the parent's
imported Evidently, are not counted three times. The memory targets are checked on both.

`other_cpu_cores` is the CPU time that processes outside the measured tree used during a run,
in cores on average: on this 2-core machine anything above ~0.2 means the figures are noisy
(LightGBM's two OpenMP threads slow down many times over when a neighbour takes a core).
Before each run the benchmark therefore waits, up to --max-wait seconds, until other
processes use fewer than --quiet-below cores.

    .venv/bin/python bench/pipeline_overhead.py              # everything (a few minutes)
    .venv/bin/python bench/pipeline_overhead.py --skip-1m    # default size only
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import yaml

from mlpipe.tools.workspace import DONE_LINE, RUNNING_LINE, snapshot_repository

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_data import resample  # noqa: E402  (a sibling script: one resampler for every benchmark)

# The bare script reads, splits, trains and scores the test set: the stages up to `evaluate`.
# Batch scoring and drift monitoring (predict, drift) have no counterpart in it, so they are
# left out of the comparison (the no-op run still checks every stage).
TRAINING_PIPELINE = "evaluate"
REPO = Path(__file__).resolve().parents[1]
BARE_SCRIPT = Path(__file__).resolve().parent / "bare_lightgbm.py"
RESULTS = Path(__file__).resolve().parent / "results"


def write_results(name: str, report: dict, text: str, folder: Path = RESULTS) -> None:
    """A bench's results, as every script writes them: `<name>.json` (the figures) and `<name>.md` (`text`)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (folder / f"{name}.md").write_text(text, encoding="utf-8")


@contextlib.contextmanager
def scratch_folder(prefix: str, keep: bool) -> Iterator[Path]:
    """A new temporary folder for a bench's snapshots, removed on the way out (a failure and Ctrl-C
    included) unless `keep`: then its path is printed, to look at what the runs left there."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        if keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


RESAMPLED_SOURCE = "data/bench_resampled.parquet"

BARE_EVIDENTLY = Path(__file__).resolve().parent / "bare_evidently.py"
SMALL_TABLE_ROWS = 48_842  # the size of the public census table the issue tried (15 columns, text labels)

# Targets (issue 13): ratios to a floor measured in the same run.
TARGET_TRAINING_RATIO = {"default": 2.0, "1m": 1.2}  # dvc repro -f evaluate / bare LightGBM script
TARGET_FULL_RATIO = 3.0  # dvc repro -f (every stage) / bare LightGBM script, default size
TARGET_DRIFT_RATIO = 1.5  # drift stage / bare Evidently script (one report, 10,000-row sample)
TARGET_NOOP_RATIO = 1.2  # no-op dvc repro / no-op of a toy pipeline with as many stages
TARGET_FIRST_LINE_S, TARGET_FIRST_LINE_RATIO = 1.0, 1.5  # a stage's first log line: ≤ 1.0 s or ≤ 1.5x `import pandas, pyarrow`
TARGET_SMALL_RATIO = 3.0  # every stage on the 48,842-row table / bare script on it
TARGET_MEMORY_RATIO = 1.5  # peak memory of any stage / bare script's

UP_TO_DATE = "Data and pipelines are up to date."


# --------------------------------------------------------------------------- measuring


@dataclass
class Run:
    """One measured subprocess (and everything it started)."""

    command: list[str]
    returncode: int
    wall_s: float
    cpu_s: float  # user + system time of the whole tree
    max_rss_single_mb: float  # ru_maxrss via wait4: the largest single process of the tree
    peak_tree_rss_mb: float  # polled: the largest sum of RSS over the tree
    peak_tree_pss_mb: float  # polled: the largest sum of PSS over the tree (shared pages split between their processes)
    other_cpu_cores: float  # CPU used by processes outside the tree, averaged over the run
    lines: list[tuple[float, str]] = field(repr=False)  # (seconds since start, output line)
    timed_out: bool = False  # stopped (SIGTERM to its process group) at measure()'s `timeout_s`

    def summary(self) -> dict:
        return {
            key: round(value, 3) if isinstance(value, float) else value
            for key, value in vars(self).items()
            if key not in ("lines", "command")
        }

    def tail(self, count: int = 25) -> str:
        return "\n".join(line for _, line in self.lines[-count:])


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent not idle since boot."""
    times = psutil.cpu_times()
    return sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))


def tree_memory(pid: int) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) over the process tree under `pid`, in bytes."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, 0
    rss = pss = 0
    for process in processes:
        try:
            memory = process.memory_full_info()  # reads /proc/<pid>/smaps_rollup
        except psutil.Error:
            continue
        rss, pss = rss + memory.rss, pss + memory.pss
    return rss, pss


def measure(command: list[str], cwd: Path, env: dict[str, str], interval: float = 0.05, timeout_s: float | None = None) -> Run:
    """Run `command`, timestamping each output line and polling the tree's memory; past
    `timeout_s` seconds its whole process group is stopped and the run is marked `timed_out`.

    A thread blocks in wait4() so the wall time is exact and ru_maxrss covers the whole tree
    (every process's children are reaped into its own rusage); the main thread only polls.
    """
    lines: list[tuple[float, str]] = []
    outcome: dict = {}
    finished = threading.Event()
    busy_before, own_before = busy_cpu_seconds(), time.process_time()
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True
    )

    def reap() -> None:
        _, status, usage = os.wait4(process.pid, 0)
        outcome.update(ended=time.perf_counter(), status=status, usage=usage)
        finished.set()

    def read() -> None:
        for line in process.stdout:
            lines.append((time.perf_counter() - started, line.rstrip("\n")))

    reaper, reader = threading.Thread(target=reap, daemon=True), threading.Thread(target=read, daemon=True)
    reaper.start()
    reader.start()
    peak_rss = peak_pss = 0
    timed_out = False
    try:
        while not finished.wait(interval):
            rss, pss = tree_memory(process.pid)
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            if timeout_s is not None and not timed_out and time.perf_counter() - started > timeout_s:
                timed_out = True
                os.killpg(process.pid, signal.SIGTERM)
    except KeyboardInterrupt:
        os.killpg(process.pid, signal.SIGTERM)
        raise
    reader.join()
    process.returncode = os.waitstatus_to_exitcode(outcome["status"])
    wall = outcome["ended"] - started
    usage = outcome["usage"]
    tree_cpu = usage.ru_utime + usage.ru_stime
    others = busy_cpu_seconds() - busy_before - tree_cpu - (time.process_time() - own_before)
    return Run(
        command=command,
        returncode=process.returncode,
        wall_s=wall,
        cpu_s=tree_cpu,
        max_rss_single_mb=usage.ru_maxrss / 1024,
        peak_tree_rss_mb=peak_rss / 2**20,
        peak_tree_pss_mb=peak_pss / 2**20,
        other_cpu_cores=max(others, 0.0) / wall,
        lines=lines,
        timed_out=timed_out,
    )


@dataclass
class QuietGate:
    """Before each measured run, wait (up to `max_wait_s`) until processes outside the
    benchmark use less than `threshold` cores over a `window_s` window. On a 2-core machine a
    single busy neighbour slows LightGBM's 2 OpenMP threads many times over."""

    threshold: float
    max_wait_s: float
    window_s: float = 3.0
    waited_s: float = 0.0
    timeouts: int = 0

    def wait(self) -> None:
        if self.max_wait_s <= 0:
            return
        started = time.perf_counter()
        while True:
            busy, own = busy_cpu_seconds(), time.process_time()
            time.sleep(self.window_s)
            load = (busy_cpu_seconds() - busy - (time.process_time() - own)) / self.window_s
            elapsed = time.perf_counter() - started
            if load < self.threshold:
                break
            if elapsed >= self.max_wait_s:
                self.timeouts += 1
                print(f"    machine still busy ({load:.2f} other cores) after {elapsed:.0f} s; measuring anyway", flush=True)
                break
        self.waited_s += time.perf_counter() - started

    def summary(self) -> dict:
        return {
            "threshold_cores": self.threshold,
            "window_s": self.window_s,
            "max_wait_s": self.max_wait_s,
            "total_waited_s": round(self.waited_s, 1),
            "gave_up_waiting": self.timeouts,
        }


def checked(run: Run, what: str) -> Run:
    if run.returncode != 0:
        raise SystemExit(f"{what} failed (exit {run.returncode}); last lines:\n{run.tail()}")
    return run


# --------------------------------------------------------------------------- the snapshot


def set_data_source(params_file: Path, source: str) -> None:
    """Point data.source at `source`, editing only that line so comments survive."""
    text = params_file.read_text(encoding="utf-8")
    edited, count = re.subn(r"(?m)^(\s+source:\s*)\S+", lambda match: match.group(1) + source, text, count=1)
    if count != 1 or yaml.safe_load(edited)["data"]["source"] != source:
        raise SystemExit(f"could not set data.source in {params_file}")
    params_file.write_text(edited, encoding="utf-8")


def write_resampled(source: Path, target: Path, rows: int, seed: int, time_column: str, id_columns: list[str]) -> dict:
    """Resample `rows` rows with replacement, keeping each period's share; fresh unique ids (no jitter)."""
    resampled = resample(pd.read_parquet(source), rows, np.random.default_rng(seed), time_column, id_columns)
    target.parent.mkdir(parents=True, exist_ok=True)
    resampled.to_parquet(target, index=False, compression="zstd")
    by_period = resampled[time_column].value_counts().sort_index()
    return {"rows": len(resampled), "seed": seed, "rows_by_period": {str(k): int(v) for k, v in by_period.items()}}


# --------------------------------------------------------------------------- one dataset size


def stage_breakdown(run: Run) -> dict:
    """Split a `dvc repro` run's wall time using the timestamps of its output lines.

    in_stage_s: what the stage logs as `done in` (its main(), 0.1 s resolution);
    process_s: from DVC's "Running stage" line to the stage's `done in` line;
    startup_s: process_s - in_stage_s (interpreter start-up, imports, spawning the shell);
    dvc_after_s: from the `done in` line to the next stage (process exit, hashing and
    caching the outputs, writing dvc.lock, staging in git).
    """
    stages: list[dict] = []
    for at, line in run.lines:
        if match := RUNNING_LINE.match(line):
            stages.append({"stage": match["stage"], "running_at": at})
        elif (match := DONE_LINE.match(line)) and stages and match["stage"] == stages[-1]["stage"]:
            stages[-1].update(done_at=at, in_stage_s=float(match["seconds"]))
    missing = [stage["stage"] for stage in stages if "done_at" not in stage]
    if not stages or missing:
        raise SystemExit(f"no `done in` line for stage(s) {missing or 'any'}; last lines:\n{run.tail()}")
    rows = []
    for index, stage in enumerate(stages):
        next_start = stages[index + 1]["running_at"] if index + 1 < len(stages) else run.wall_s
        process = stage["done_at"] - stage["running_at"]
        rows.append(
            {
                "stage": stage["stage"],
                "in_stage_s": stage["in_stage_s"],
                "process_s": round(process, 3),
                "startup_s": round(process - stage["in_stage_s"], 3),
                "dvc_after_s": round(next_start - stage["done_at"], 3),
            }
        )
    in_stages = sum(row["in_stage_s"] for row in rows)
    startup = sum(row["startup_s"] for row in rows)
    return {
        "stages": rows,
        "sum_in_stage_s": round(in_stages, 3),
        "dvc_overhead_s": round(run.wall_s - in_stages, 3),
        "overhead_parts": {
            "dvc_startup_s": round(stages[0]["running_at"], 3),
            "stage_startup_and_imports_s": round(startup, 3),
            "dvc_between_and_after_stages_s": round(sum(row["dvc_after_s"] for row in rows), 3),
        },
    }


def bare_result(run: Run) -> dict:
    for _, line in run.lines:
        if line.startswith("BARE_RESULT "):
            return json.loads(line.removeprefix("BARE_RESULT "))
    raise SystemExit(f"bare script printed no BARE_RESULT line:\n{run.tail()}")


def quiet_runs(runs: list[Run], threshold: float) -> list[Run]:
    """The runs during which other processes stayed under `threshold` cores, or all if none did."""
    return [run for run in runs if run.other_cpu_cores <= threshold] or runs


def median_run(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda run: run.wall_s)[(len(runs) - 1) // 2]


def run_list(runs: list[Run]) -> list[dict]:
    return [{"wall_s": round(run.wall_s, 3), "other_cpu_cores": round(run.other_cpu_cores, 2)} for run in runs]


def stage_commands(copy: Path) -> dict[str, str]:
    """Each stage's shell command from dvc.yaml (foreach stages left out), in the file's order."""
    stages = yaml.safe_load((copy / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return {name: spec["cmd"] for name, spec in stages.items() if "cmd" in spec}


def stage_runs(copy: Path, env: dict[str, str], gate: QuietGate, python: str, repeats: int) -> dict:
    """Each stage run on its own, as DVC runs it (its command in a shell, outputs already in
    place), `repeats` times: when its first log line arrives, its wall time and its peak memory
    (medians; the largest memory). Each run comes right after a run of the floor, `python -c
    "import pandas, pyarrow"`, so that a stage's first line is compared with the floor measured
    next to it rather than minutes earlier (this machine's speed drifts by half over an hour)."""
    rows = {}
    for name, command in stage_commands(copy).items():
        floors, runs = [], []
        for _ in range(repeats):
            gate.wait()
            floors.append(start_floor(python, copy, env))
            runs.append(checked(measure(["bash", "-c", command], copy, env), f"stage {name}"))
        first = [run.lines[0][0] for run in runs if run.lines]
        rows[name] = {
            "first_line_s": round(statistics.median(first), 3) if first else None,
            "first_line_runs_s": [round(value, 3) for value in first],
            "floor_s": round(statistics.median(floors), 3),
            "wall_s": round(statistics.median(run.wall_s for run in runs), 3),
            "max_rss_single_mb": round(max(run.max_rss_single_mb for run in runs), 1),
            "peak_tree_rss_mb": round(max(run.peak_tree_rss_mb for run in runs), 1),
            "peak_tree_pss_mb": round(max(run.peak_tree_pss_mb for run in runs), 1),
            "other_cpu_cores": round(max(run.other_cpu_cores for run in runs), 2),
        }
        row = rows[name]
        print(
            f"    {name}: first line {row['first_line_s']} s (floor {row['floor_s']} s), {row['wall_s']:.1f} s, "
            f"{row['peak_tree_rss_mb']:.0f} MB RSS / {row['peak_tree_pss_mb']:.0f} MB PSS",
            flush=True,
        )
    return rows


def bench_size(
    copy: Path,
    env: dict[str, str],
    python: str,
    data_source: str,
    repeats: int,
    noop_repeats: int,
    gate: QuietGate,
    toy: Path,
    *,
    everything: bool,
    first_line_repeats: int = 1,
) -> dict:
    """The training path (`dvc repro -f evaluate`), no-op `dvc repro` (right after the first
    training run), the bare script, and each stage on its own; with `everything`, also the full
    `dvc repro -f` and the bare Evidently script."""
    full_runs, bare_runs, noop_runs, toy_runs = [], [], [], []
    # Every stage once first (unmeasured), so that after the forced training pipeline the
    # monitoring stages are up to date too and the no-op run really has nothing to do.
    print("  warm-up: dvc repro (all stages) ...", flush=True)
    checked(measure(["dvc", "repro"], copy, env), "warm-up dvc repro")
    for repeat in range(repeats):
        print(f"  dvc repro -f {TRAINING_PIPELINE} ({repeat + 1}/{repeats}) ...", flush=True)
        gate.wait()
        full_runs.append(checked(measure(["dvc", "repro", "-f", TRAINING_PIPELINE], copy, env), "dvc repro -f"))
        print(f"    {full_runs[-1].wall_s:.1f} s", flush=True)
        if repeat == 0:  # this pipeline's no-op and the toy's, taking turns: the ratio is side by side
            gate.wait()
            for _ in range(noop_repeats):
                toy_runs.append(checked(measure(["dvc", "repro"], toy, env), "toy no-op dvc repro"))
                noop_runs.append(checked(measure(["dvc", "repro"], copy, env), "no-op dvc repro"))
            print(f"  no-op dvc repro x{noop_repeats}: {[round(run.wall_s, 2) for run in noop_runs]}", flush=True)
            print(f"  toy no-op dvc repro x{noop_repeats}: {[round(run.wall_s, 2) for run in toy_runs]}", flush=True)
        print(f"  bare script ({repeat + 1}/{repeats}) ...", flush=True)
        gate.wait()
        bare_runs.append(
            checked(measure([python, str(BARE_SCRIPT), "--data", data_source, "--params", "params.yaml"], copy, env), "bare script")
        )
        print(f"    {bare_runs[-1].wall_s:.1f} s", flush=True)

    # The median over the runs the machine left alone (all runs if none was quiet).
    full, bare = median_run(quiet_runs(full_runs, gate.threshold)), median_run(quiet_runs(bare_runs, gate.threshold))
    noop = quiet_runs(noop_runs, gate.threshold)
    evaluation = json.loads((copy / "metrics/evaluation.json").read_text(encoding="utf-8"))
    trained = json.loads((copy / "metrics/train/metrics.json").read_text(encoding="utf-8"))
    bare_model = bare_result(bare)
    result = {
        "data_source": data_source,
        "full_repro": {**full.summary(), "runs": run_list(full_runs)},
        "breakdown": stage_breakdown(full),
        "noop_repro": {
            "median_s": round(statistics.median(run.wall_s for run in noop), 3),
            "runs": run_list(noop_runs),
            "all_up_to_date": all(any(UP_TO_DATE in line for _, line in run.lines) for run in noop_runs),
            "max_rss_single_mb": round(max(run.max_rss_single_mb for run in noop_runs), 1),
        },
        "toy_noop": {
            "stages": TOY_STAGES,
            "median_s": round(statistics.median(run.wall_s for run in toy_runs), 3),
            "runs_s": [round(run.wall_s, 3) for run in toy_runs],
        },
        "bare": {**bare.summary(), "runs": run_list(bare_runs), **bare_model},
        "pipeline_model": {
            "n_trees": trained.get("n_trees"),
            "roc_auc": evaluation["test"]["roc_auc"],
            "test_rows": evaluation["test"]["rows"],
        },
        "ratio": round(full.wall_s / bare.wall_s, 3),
    }
    if everything:
        print("  dvc repro -f (every stage) ...", flush=True)
        gate.wait()
        every = checked(measure(["dvc", "repro", "-f"], copy, env), "dvc repro -f (every stage)")
        print(f"    {every.wall_s:.1f} s", flush=True)
        print("  bare Evidently script ...", flush=True)
        gate.wait()
        report = copy.parent / "bare_report.html"
        drift_floor = checked(
            measure(
                [
                    python,
                    str(BARE_EVIDENTLY),
                    "--reference",
                    "data/predictions/reference.parquet",
                    "--current",
                    "data/predictions/current.parquet",
                    "--schema",
                    "models/schema.json",
                    "--out",
                    str(report),
                ],
                copy,
                env,
            ),
            "bare Evidently script",
        )
        print(f"    {drift_floor.wall_s:.1f} s", flush=True)
        breakdown = stage_breakdown(every)
        drift = next(row for row in breakdown["stages"] if row["stage"] == "drift")
        result["every_stage"] = {**every.summary(), "breakdown": breakdown, "ratio": round(every.wall_s / bare.wall_s, 3)}
        result["drift"] = {
            "stage_process_s": drift["process_s"],
            "bare_evidently": {**drift_floor.summary(), **bare_result(drift_floor)},
            "ratio": round(drift["process_s"] / drift_floor.wall_s, 3),
        }
    print("  each stage on its own ...", flush=True)
    result["stages"] = stage_runs(copy, env, gate, python, first_line_repeats)
    return result


def start_floor(python: str, cwd: Path, env: dict[str, str]) -> float:
    """Seconds for `python -c "import pandas, pyarrow"`: the least a stage that reads a table pays to start."""
    return measure([python, "-c", "import pandas, pyarrow"], cwd, env).wall_s


def python_floor(python: str, env: dict[str, str], repeats: int = 5) -> dict:
    """The start floor at the beginning of the run (median of `repeats`)."""
    walls = [start_floor(python, REPO, env) for _ in range(repeats)]
    return {"median_s": round(statistics.median(walls), 3), "runs_s": [round(wall, 3) for wall in walls]}


TOY_STAGES = 8


def make_toy(workdir: Path, env: dict[str, str]) -> Path:
    """A toy pipeline of as many stages, run once: each `cat`s the previous output and depends on
    its own params key. Its no-op `dvc repro` is the floor of DVC's own per-stage bookkeeping."""
    toy = workdir / "toy"
    toy.mkdir()
    (toy / "in.txt").write_text("x\n")
    (toy / "params.yaml").write_text("".join(f"s{i}:\n  value: {i}\n" for i in range(1, TOY_STAGES + 1)))
    stages = {
        f"s{i}": {
            "cmd": f"cat {'in.txt' if i == 1 else f'out{i - 1}.txt'} > out{i}.txt",
            "deps": ["in.txt" if i == 1 else f"out{i - 1}.txt"],
            "params": [f"s{i}.value"],
            "outs": [f"out{i}.txt"],
        }
        for i in range(1, TOY_STAGES + 1)
    }
    (toy / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "repro", "-q"]):
        checked(measure(command, toy, env), " ".join(command))
    return toy


def small_table(workdir: Path, env: dict[str, str], python: str, gate: QuietGate) -> dict:
    """A table the project has never seen, the size of the one the issue tried (48,842 rows,
    15 columns, text labels, no time column): `make init`'s tool writes params.yaml, then every
    stage (`dvc repro -f`) against the bare script fitting and scoring the same model on it."""
    copy = workdir / "small"
    copy.mkdir()
    snapshot_repository(REPO, copy, keep_lock=False)
    source = pd.read_parquet(copy / "data" / "employment_ma.parquet")
    table = source.sample(n=SMALL_TABLE_ROWS, random_state=7).drop(columns=["id", "year", "DREM", "DEYE"]).reset_index(drop=True)
    table["employed"] = table["employed"].map({1: "employed", 0: "not employed"})
    table.to_csv(copy / "data" / "small_table.csv", index=False)
    small_env = {**env, "PYTHONPATH": str(copy / "src")}
    init = [
        "python",
        "-m",
        "mlpipe.tools.init",
        "--data",
        "data/small_table.csv",
        "--target",
        "employed",
        "--positive",
        "employed",
        "--force",
    ]
    checked(measure(init, copy, small_env), "make init on the small table")
    checked(measure(["git", "add", "-A"], copy, small_env), "git add")
    checked(measure(["git", "commit", "-q", "-m", "small table"], copy, small_env), "git commit")
    print(f"  small table ({SMALL_TABLE_ROWS:,} rows x {table.shape[1]} columns): dvc repro (every stage) ...", flush=True)
    checked(measure(["dvc", "repro"], copy, small_env), "dvc repro on the small table")
    gate.wait()
    every = checked(measure(["dvc", "repro", "-f"], copy, small_env), "dvc repro -f on the small table")
    print(f"    {every.wall_s:.1f} s", flush=True)
    gate.wait()
    bare = checked(
        measure([python, str(BARE_SCRIPT), "--data", "data/small_table.csv", "--params", "params.yaml"], copy, small_env),
        "bare script on the small table",
    )
    print(f"    bare {bare.wall_s:.1f} s", flush=True)
    evaluation = json.loads((copy / "metrics/evaluation.json").read_text(encoding="utf-8"))
    return {
        "rows": SMALL_TABLE_ROWS,
        "columns": table.shape[1],
        "every_stage": {**every.summary(), "breakdown": stage_breakdown(every)},
        "bare": {**bare.summary(), **bare_result(bare)},
        "pipeline_roc_auc": evaluation["test"]["roc_auc"],
        "ratio": round(every.wall_s / bare.wall_s, 3),
    }


# --------------------------------------------------------------------------- reporting


def machine_facts(bin_dir: Path) -> dict:
    versions = {}
    for package in ("dvc", "lightgbm", "pandas", "pyarrow", "scikit-learn", "pydantic"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    cpu_model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), platform.processor())
    return {
        "timestamp_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_executable": str(bin_dir / "python"),
        "packages": versions,
        "env": {name: os.environ.get(name) for name in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "OMP_NUM_THREADS")},
        "loadavg_at_start": [round(value, 2) for value in os.getloadavg()],
    }


def _row(name: str, value: float, unit: str, target: float) -> dict:
    return {
        "name": name,
        "value": round(value, 3),
        "unit": unit,
        "target": target,
        "met": value <= target,
        "excess_pct": round(100 * (value / target - 1), 1),
    }


def targets(report: dict) -> list[dict]:
    """Every target of issue 13 that this benchmark measures, with its measured value."""
    sizes, rows = report["sizes"], []
    for size, limit in TARGET_TRAINING_RATIO.items():
        if size in sizes:
            rows.append(_row(f"training path `dvc repro -f evaluate` / bare script ({size})", sizes[size]["ratio"], "x", limit))
    default = sizes["default"]
    rows.append(_row("full `dvc repro -f` (every stage) / bare script (default)", default["every_stage"]["ratio"], "x", TARGET_FULL_RATIO))
    rows.append(
        _row("drift stage / bare Evidently script, one report on 10,000 rows (default)", default["drift"]["ratio"], "x", TARGET_DRIFT_RATIO)
    )
    rows.append(
        _row(
            f"no-op `dvc repro` / toy {TOY_STAGES}-stage pipeline",
            default["noop_repro"]["median_s"] / default["toy_noop"]["median_s"],
            "x",
            TARGET_NOOP_RATIO,
        )
    )
    for stage, measured in default["stages"].items():
        first, floor = measured["first_line_s"], measured["floor_s"]
        allowed = max(TARGET_FIRST_LINE_S, TARGET_FIRST_LINE_RATIO * floor)
        rows.append(
            _row(
                f"`{stage}` first log line (≤ 1.0 s or ≤ 1.5x `import pandas, pyarrow` run beside it = {TARGET_FIRST_LINE_RATIO * floor:.2f} s)",
                first,
                "s",
                round(allowed, 2),
            )
        )
    if "small_table" in report:
        rows.append(
            _row(f"{SMALL_TABLE_ROWS:,}-row table: every stage / bare script", report["small_table"]["ratio"], "x", TARGET_SMALL_RATIO)
        )
    for size, measured in sizes.items():
        for key, what in (("peak_tree_rss_mb", "sum of RSS"), ("peak_tree_pss_mb", "sum of PSS")):
            worst_stage = max(measured["stages"], key=lambda stage: measured["stages"][stage][key])
            ratio = measured["stages"][worst_stage][key] / measured["bare"][key]
            rows.append(_row(f"peak memory ({what}) of any stage ({worst_stage}) / bare script ({size})", ratio, "x", TARGET_MEMORY_RATIO))
    return rows


def _runs(count: int) -> str:
    return "one run" if count == 1 else f"medians of {count} runs"


def markdown(report: dict) -> str:
    machine, sizes = report["machine"], report["sizes"]
    snapshot = report["snapshot"]
    out = [
        "# Pipeline overhead benchmark",
        "",
        f"{machine['timestamp_utc']} · {machine['nproc']} CPUs ({machine['cpu_model']}) · {machine['memory_gb']} GB · "
        f"Python {machine['python']} · dvc {machine['packages']['dvc']} · lightgbm {machine['packages']['lightgbm']} · "
        f"load average at start {machine['loadavg_at_start']}",
        "",
        f"Snapshot of {snapshot['head'][:10]} with {len(snapshot['uncommitted_changes'])} uncommitted change(s).",
        "",
        "## Targets",
        "",
        "| measure | value | target | met |",
        "|---|---:|---:|---|",
    ]
    for row in report["targets"]:
        verdict = "met" if row["met"] else f"NOT met (+{row['excess_pct']}%)"
        out.append(f"| {row['name']} | {row['value']:.2f} {row['unit']} | ≤ {row['target']} {row['unit']} | {verdict} |")
    default = sizes["default"]
    out += [
        "",
        "## The floors, measured in the same run",
        "",
        f"- bare LightGBM script (`bench/bare_lightgbm.py`): {default['bare']['wall_s']:.1f} s at the default size",
        f"- bare Evidently script (`bench/bare_evidently.py`, one `DataDriftPreset` report on "
        f"{default['drift']['bare_evidently']['rows_per_side']:,} rows per side): {default['drift']['bare_evidently']['wall_s']:.1f} s; "
        f"the drift stage (Running → done): {default['drift']['stage_process_s']:.1f} s",
        f'- `python -c "import pandas, pyarrow"`: {report["python_floor"]["median_s"]:.2f} s (median of {len(report["python_floor"]["runs_s"])})',
        f"- no-op `dvc repro` of a toy {default['toy_noop']['stages']}-stage pipeline (`cat` stages with params), "
        f"the two taking turns: {default['toy_noop']['median_s']:.2f} s (median); this pipeline's: {default['noop_repro']['median_s']:.2f} s",
        f"- full `dvc repro -f` (every stage, HTML reports included): {default['every_stage']['wall_s']:.1f} s",
    ]
    if "small_table" in report:
        small = report["small_table"]
        out.append(
            f"- {small['rows']:,}-row table ({small['columns']} columns, text labels, no time column; `make init`'s params): "
            f"every stage {small['every_stage']['wall_s']:.1f} s, bare script {small['bare']['wall_s']:.1f} s; "
            f"ROC-AUC {small['pipeline_roc_auc']:.4f} / {small['bare']['roc_auc']:.4f}"
        )
    for name, size in sizes.items():
        out += [
            "",
            f"## Each stage on its own: {name} ({size['rows']:,} rows)",
            "",
            "Each stage's `dvc.yaml` command run alone, its inputs in place, each run right after a run of "
            '`python -c "import pandas, pyarrow"` (the floor): when its first log line arrived and its wall time '
            f"({_runs(len(next(iter(size['stages'].values()))['first_line_runs_s']))}), and its peak memory (the largest "
            "sums of RSS and of PSS over its processes; report workers included).",
            "",
            "| stage | first log line | floor beside it | wall | peak memory, RSS | peak memory, PSS |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for stage, row in size["stages"].items():
            out.append(
                f"| {stage} | {row['first_line_s']:.2f} s | {row['floor_s']:.2f} s | {row['wall_s']:.1f} s | "
                f"{row['peak_tree_rss_mb']:.0f} MB | {row['peak_tree_pss_mb']:.0f} MB |"
            )
        bare = size["bare"]
        out.append(
            f"| *bare script* | | | {bare['wall_s']:.1f} s | {bare['peak_tree_rss_mb']:.0f} MB | {bare['peak_tree_pss_mb']:.0f} MB |"
        )
    out += [
        "",
        "## Figures",
        "",
        "| size | rows | training path `dvc repro -f evaluate` | bare script | ratio | DVC overhead | no-op repro "
        "| peak RSS single / tree (pipeline) | peak RSS (bare) | other CPU load (pipeline / bare) "
        "| ROC-AUC pipeline / bare | trees pipeline / bare |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, size in sizes.items():
        full, bare, model = size["full_repro"], size["bare"], size["pipeline_model"]
        out.append(
            f"| {name} | {size['rows']:,} | {full['wall_s']:.1f} s | {bare['wall_s']:.1f} s | {size['ratio']:.2f}x | "
            f"{size['breakdown']['dvc_overhead_s']:.1f} s | {size['noop_repro']['median_s']:.2f} s | "
            f"{full['max_rss_single_mb']:.0f} / {full['peak_tree_rss_mb']:.0f} MB | {bare['max_rss_single_mb']:.0f} MB | "
            f"{full['other_cpu_cores']:.2f} / {bare['other_cpu_cores']:.2f} cores | "
            f"{model['roc_auc']:.4f} / {bare['roc_auc']:.4f} | {model['n_trees']} / {bare['n_trees']} |"
        )
    gate = report["quiet_gate"]
    noisy = [
        f"{name} {what}"
        for name, size in sizes.items()
        for what in ("full_repro", "bare")
        if size[what]["other_cpu_cores"] > gate["threshold_cores"]
    ]
    out += [
        "",
        f"Before each run the benchmark waited for other processes to use < {gate['threshold_cores']} cores "
        f"(waited {gate['total_waited_s']:.0f} s in total, gave up {gate['gave_up_waiting']} time(s)). "
        + (
            f"**Noisy** (other load above the threshold during the run): {', '.join(noisy)}."
            if noisy
            else "No measured run saw other load above the threshold."
        ),
    ]
    for name, size in sizes.items():
        breakdown = size["breakdown"]
        total = size["full_repro"]["wall_s"]
        out += [
            "",
            f"## Where the time goes: {name} ({size['rows']:,} rows, training path {total:.1f} s)",
            "",
            "| stage | in-stage (`done in`) | process (Running → done) | start-up + imports | DVC after the stage |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in breakdown["stages"]:
            out.append(
                f"| {row['stage']} | {row['in_stage_s']:.1f} s | {row['process_s']:.1f} s | "
                f"{row['startup_s']:.1f} s | {row['dvc_after_s']:.2f} s |"
            )
        parts = breakdown["overhead_parts"]
        out += [
            "",
            f"DVC overhead = total − Σ in-stage = {total:.1f} − {breakdown['sum_in_stage_s']:.1f} = "
            f"**{breakdown['dvc_overhead_s']:.1f} s**: DVC start-up {parts['dvc_startup_s']:.1f} s, "
            f"stage start-up + imports {parts['stage_startup_and_imports_s']:.1f} s, "
            f"DVC between/after stages {parts['dvc_between_and_after_stages_s']:.1f} s.",
            "",
            f"Bare script in-process timings (s): {size['bare']['timings']}",
            "",
            "All runs (wall s @ other cores): "
            + "; ".join(
                f"{label} " + ", ".join(f"{run['wall_s']:.2f} @ {run['other_cpu_cores']:.2f}" for run in size[key]["runs"])
                for label, key in (("training path", "full_repro"), ("bare", "bare"), ("no-op", "noop_repro"))
            ),
        ]
    if report["snapshot"]["git_tracked_dvc_outputs_left_out"]:
        out += [
            "",
            "## Warning",
            "",
            "These cached DVC outputs are tracked by git, so `dvc repro` fails in a fresh clone "
            '("output ... is already tracked by SCM"); the benchmark left them out of its snapshot: '
            + ", ".join(f"`{path}`" for path in report["snapshot"]["git_tracked_dvc_outputs_left_out"]),
        ]
    out += [
        "",
        "Memory: *single* is ru_maxrss (largest single process of the tree, via wait4); *tree* is the largest "
        "polled sum of RSS over the process tree; PSS splits each shared page between the processes that share it. *Other CPU load* is CPU used by processes outside the benchmark "
        "during the run (noise indicator).",
    ]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-1m", action="store_true", help="skip the 1,000,000-row part")
    parser.add_argument("--skip-small", action="store_true", help=f"skip the {SMALL_TABLE_ROWS:,}-row table")
    parser.add_argument(
        "--repeats", type=int, default=1, help="full repro + bare runs per size; the median of the quiet runs is reported (default 1)"
    )
    parser.add_argument("--noop-repeats", type=int, default=5, help="no-op repro runs; the median is reported (default 5)")
    parser.add_argument(
        "--first-line-repeats",
        type=int,
        default=3,
        help="runs of each stage on its own at the default size, each after a run of the floor; medians are reported (default 3)",
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the resampled dataset (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=20240601, help="seed for the resample")
    parser.add_argument(
        "--quiet-below",
        type=float,
        default=0.25,
        help="before each run, wait until other processes use fewer cores than this (default 0.25)",
    )
    parser.add_argument(
        "--max-wait",
        type=float,
        default=600,
        help="seconds to wait for a quiet machine before measuring anyway; 0 never waits (default 600)",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (the snapshot is its repo/) and print its path")
    args = parser.parse_args()
    if args.repeats < 1 or args.noop_repeats < 1:
        parser.error("--repeats and --noop-repeats must be at least 1")
    return args


def main() -> None:
    args = parse_args()
    bin_dir = Path(sys.executable).parent  # the venv's bin/, not resolved: it holds dvc and python
    if not (bin_dir / "dvc").exists():
        raise SystemExit(f"no dvc next to {sys.executable}: run this with the project's venv python (.venv/bin/python)")
    report = {"benchmark": "pipeline_overhead", "machine": machine_facts(bin_dir)}
    gate = QuietGate(threshold=args.quiet_below, max_wait_s=args.max_wait)
    with scratch_folder("mlpipe-bench-", args.keep) as workdir:
        copy = workdir / "repo"
        print(f"snapshot of {REPO} -> {copy}", flush=True)
        report["snapshot"] = snapshot_repository(REPO, copy)
        env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "DVC_NO_ANALYTICS": "1",
            "PYTHONPATH": str(copy / "src"),
        }
        python = str(bin_dir / "python")
        data = yaml.safe_load((copy / "params.yaml").read_text(encoding="utf-8"))["data"]
        default_rows = len(pd.read_parquet(copy / data["source"], columns=[data["target"]]))

        report["python_floor"] = python_floor(python, env)
        print(f"python -c 'import pandas, pyarrow': {report['python_floor']['median_s']} s", flush=True)
        toy = make_toy(workdir, env)
        print(f"default size ({default_rows:,} rows, {data['source']})", flush=True)
        default = bench_size(
            copy,
            env,
            python,
            data["source"],
            args.repeats,
            args.noop_repeats,
            gate,
            toy,
            everything=True,
            first_line_repeats=args.first_line_repeats,
        )
        report["sizes"] = {"default": {"rows": default_rows, **default}}
        if not args.skip_small:
            report["small_table"] = small_table(workdir, env, python, gate)
        if not args.skip_1m:
            print(f"resampling {args.rows:,} rows into {RESAMPLED_SOURCE}", flush=True)
            resample = write_resampled(
                copy / data["source"], copy / RESAMPLED_SOURCE, args.rows, args.seed, data["time_column"], data.get("id_columns") or []
            )
            set_data_source(copy / "params.yaml", RESAMPLED_SOURCE)
            print(f"{args.rows:,} rows", flush=True)
            report["sizes"]["1m"] = {
                "rows": resample["rows"],
                "resample": resample,
                **bench_size(copy, env, python, RESAMPLED_SOURCE, args.repeats, args.noop_repeats, gate, toy, everything=False),
            }
    report["machine"]["loadavg_at_end"] = [round(value, 2) for value in os.getloadavg()]
    report["quiet_gate"] = gate.summary()
    report["targets"] = targets(report)
    report["commit"] = report["snapshot"]["head"]

    text = markdown(report)
    write_results("pipeline_overhead", report, text, args.results_dir)
    print()
    print(text)
    print(f"wrote {args.results_dir / 'pipeline_overhead.json'} and {args.results_dir / 'pipeline_overhead.md'}")


if __name__ == "__main__":
    main()
