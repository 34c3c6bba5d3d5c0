"""How do time and memory grow with rows, on each engine? (A benchmark, not a test.)

For each size (rows from bench/make_data.py: resampled real rows with seeded jitter) and each
engine, in a temporary git+DVC snapshot of this repository with `data.source` pointed at the
size's folder of parts:

1. a full `dvc repro` (every stage, drift reports included): wall time, each stage's time, and
   the peak memory of the whole run: the largest sum of RSS over every process of the tree, the
   Dask workers included (polled every 50 ms);
2. a no-op `dvc repro` right after it.

Then the simulated multi-machine run: the dask engine at --multi-size rows on a LocalCluster of
1 single-thread worker and of 4, each a forced `dvc repro -f`. Every data stage logs the time its
parts took on the workers (`N parts in W s (X s of work in the parts)`) and train logs its
cluster fits; that work is what more machines share, the rest stays in the stage's process.
From the 1-worker run, the expected time on N machines is (wall − work) + work / N.

Writes bench/results/scale.json (after every run, so a long run that is stopped keeps what it
measured), scale.md and scale.png (log-log time and peak memory against rows, per engine).

With --stage-memory SIZES, it measures instead what issue 29 asks of the dask engine: the peak
memory of the train and evaluate stage processes, and of their Dask workers separately, at each
size. The feature tables are the repository's data/features rows resampled to SIZE rows in all
(train and test in their shares), in parts of --rows-per-part rows; each stage runs as `dvc
repro` runs it (`python src/stages/<stage>.py`, this working tree's code) with compute.engine
dask. A process's peak is its kernel high-water mark (VmHWM in /proc/<pid>/status), read every
50 ms. Writes bench/results/scale_memory.json and scale_memory.md.

    .venv/bin/python bench/scale.py --stage-memory 1m 5m 10m

    .venv/bin/python bench/scale.py                                   # 100k, 1m, 5m local; 100k, 1m, 5m, 10m dask
    .venv/bin/python bench/scale.py --local 100k 1m --dask 100k 1m --multi-size 100k   # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import yaml
from make_data import SIZES, make_size, parse_size, write_parts
from pipeline_overhead import REPO, RESULTS, QuietGate, checked, machine_facts, measure, scratch_folder, set_data_source, write_results

from mlpipe.config import load_params
from mlpipe.data.sources import read_source
from mlpipe.engine.parts import part_files
from mlpipe.tools.workspace import snapshot_repository, stage_seconds

UP_TO_DATE = "Data and pipelines are up to date."
PART_WORK = re.compile(r"^\S+ mlpipe\.engine\.parts: .*: \d+ parts in [\d.]+ s \(([\d.]+) s of work in the parts\)", re.M)
CLUSTER_FIT = re.compile(r"^\S+ mlpipe\.model\.training: .* on \d+ workers in ([\d.]+)s", re.M)
TARGETS = {"local_1m_seconds": 180.0, "local_1m_peak_gib": 4.0, "dask_peak_gib": 24.0, "slope": 1.15, "dask_over_local_1m": 1.5}


def set_params(params_file: Path, section: str, values: dict[str, object]) -> None:
    """Set `section.key: value` lines in place, so that comments survive (a missing key is an error)."""
    text = params_file.read_text(encoding="utf-8")
    start = re.search(rf"(?m)^{section}:\s*$", text).end()
    end = next((match.start() + start for match in [re.search(r"(?m)^\S", text[start:])] if match), len(text))
    block = text[start:end]
    for key, value in values.items():
        block, count = re.subn(rf"(?m)^(\s+{key}:\s*)\S+", lambda match, value=value: match.group(1) + str(value), block, count=1)
        if count != 1:
            raise SystemExit(f"{section}.{key} is not in {params_file}")
    text = text[:start] + block + text[end:]
    loaded = yaml.safe_load(text)[section]
    assert all(str(loaded[key]) == str(value) for key, value in values.items()), (section, values)
    params_file.write_text(text, encoding="utf-8")


def make_sizes(copy: Path, sizes: list[int], rows_per_part: int) -> dict[int, str]:
    """Each size's folder of parts inside the snapshot, from bench/make_data.py's recipe."""
    params = load_params(copy / "params.yaml")
    real = read_source(copy / params.data.source, params.data.format, params.data.pattern, params.data.csv)
    folders = {}
    for rows in sorted(set(sizes)):
        name = next((label for label, count in SIZES.items() if count == rows), str(rows))
        folder = f"data/scale/{name}"
        print(f"writing {rows:,} rows to {folder}", flush=True)
        table, _ = make_size(real, params, rows, seed=0, min_distinct=10)
        write_parts(table, copy / folder, rows_per_part)
        del table
        folders[rows] = folder
    return folders


def run_pipeline(copy: Path, env: dict[str, str], gate: QuietGate, command: list[str]) -> dict:
    gate.wait()
    run = checked(measure(command, copy, env), " ".join(command))
    log = "\n".join(line for _, line in run.lines)
    evaluation = json.loads((copy / "metrics/evaluation.json").read_text(encoding="utf-8"))
    return {
        "wall_s": round(run.wall_s, 2),
        "peak_tree_rss_gib": round(run.peak_tree_rss_mb / 1024, 3),
        "cpu_s": round(run.cpu_s, 1),
        "other_cpu_cores": round(run.other_cpu_cores, 3),
        "stages_s": stage_seconds(log),
        "parts_work_s": round(sum(map(float, PART_WORK.findall(log))), 2),
        "cluster_fit_s": round(sum(map(float, CLUSTER_FIT.findall(log))), 2),
        "roc_auc": evaluation["test"]["roc_auc"],
        "n_trees": json.loads((copy / "metrics/train/metrics.json").read_text(encoding="utf-8")).get("n_trees"),
        "up_to_date": UP_TO_DATE in log,
    }


def slope(points: list[tuple[int, float]]) -> float | None:
    """The least-squares slope of log(time) against log(rows)."""
    if len(points) < 2:
        return None
    x, y = np.log([rows for rows, _ in points]), np.log([value for _, value in points])
    return round(float(np.polyfit(x, y, 1)[0]), 3)


def summarise(report: dict) -> dict:
    runs = report["runs"]
    found = {}
    for engine in ("local", "dask"):
        points = sorted((run["rows"], run["full"]["wall_s"]) for run in runs if run["engine"] == engine)
        found[f"{engine}_slope_all_sizes"] = slope(points)
        found[f"{engine}_slope_from_1m"] = slope([point for point in points if point[0] >= 1_000_000])
    by = {(run["engine"], run["rows"]): run for run in runs}
    if ("local", 1_000_000) in by:
        found["local_1m_seconds"] = by["local", 1_000_000]["full"]["wall_s"]
        found["local_1m_peak_gib"] = by["local", 1_000_000]["full"]["peak_tree_rss_gib"]
    if ("local", 1_000_000) in by and ("dask", 1_000_000) in by:
        found["dask_over_local_1m"] = round(by["dask", 1_000_000]["full"]["wall_s"] / by["local", 1_000_000]["full"]["wall_s"], 3)
    dask_runs = [run for run in runs if run["engine"] == "dask"]
    if dask_runs:
        largest = max(dask_runs, key=lambda run: run["rows"])
        found["dask_largest_rows"], found["dask_largest_peak_gib"] = largest["rows"], largest["full"]["peak_tree_rss_gib"]
    multi = report.get("multi")
    if multi and "1" in multi and "4" in multi:
        one = multi["1"]
        work = one["parts_work_s"] + one["cluster_fit_s"]
        found["multi_measured_speedup_4_vs_1"] = round(one["wall_s"] / multi["4"]["wall_s"], 3)
        found["multi_expected"] = {
            str(machines): round(one["wall_s"] / (one["wall_s"] - work + work / machines), 2) for machines in (2, 4, 8, 16)
        }
        found["multi_parallel_share"] = round(work / one["wall_s"], 3)
    return found


def markdown(report: dict) -> str:
    facts, found = report["machine"], report["summary"]
    lines = [
        "# Scale benchmark",
        "",
        f"{facts['timestamp_utc']} · {facts['nproc']} CPUs · {facts['memory_gb']} GB · each run on a snapshot of the commit it names",
        "",
        "| engine | rows | full `dvc repro` | no-op | peak memory (tree) | ROC-AUC | trees | slowest stages | other load | commit |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for run in sorted(report["runs"], key=lambda run: (run["engine"], run["rows"])):
        stages = sorted(run["full"]["stages_s"].items(), key=lambda item: -item[1])[:3]
        lines.append(
            f"| {run['engine']} | {run['rows']:,} | {run['full']['wall_s']:.1f} s | {run['noop']['wall_s']:.2f} s | "
            f"{run['full']['peak_tree_rss_gib']:.2f} GiB | {run['full']['roc_auc']:.4f} | {run['full'].get('n_trees') or ''} | "
            + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in stages)
            + f" | {run['full']['other_cpu_cores']:.2f} cores | {run.get('commit', report['commit'])[:10]} |"
        )
    lines += [
        "",
        "Peak memory is the largest sum of RSS over every process of the run (DVC, the stage, its Dask workers), polled every 50 ms. "
        "*Other load* is the CPU that processes outside the run used meanwhile, in cores: above about 0.2 the run's time is inflated.",
    ]
    lines += ["", "## Targets", "", "| measure | value | target |", "|---|---:|---:|"]
    rows = [
        ("local engine, 1M rows end to end", found.get("local_1m_seconds"), "s", "≤ 180 s"),
        ("local engine, 1M rows peak memory", found.get("local_1m_peak_gib"), "GiB", "≤ 4 GiB"),
        (f"dask engine, {found.get('dask_largest_rows', 0):,} rows peak memory", found.get("dask_largest_peak_gib"), "GiB", "≤ 24 GiB"),
        ("log-log slope of time, local (sizes ≥ 1M)", found.get("local_slope_from_1m"), "", "≤ 1.15"),
        ("log-log slope of time, dask (sizes ≥ 1M)", found.get("dask_slope_from_1m"), "", "≤ 1.15"),
        ("dask / local at 1M rows", found.get("dask_over_local_1m"), "x", "≤ 1.5"),
    ]
    lines += [f"| {name} | {'n/a' if value is None else f'{value} {unit}'.strip()} | {target} |" for name, value, unit, target in rows]
    if "multi_expected" in found:
        multi = report["multi"]
        lines += [
            "",
            f"## Simulated machines: dask engine, {report['multi_rows']:,} rows (commit {multi['1'].get('commit', report['commit'])[:10]})",
            "",
            f"1 single-thread worker: {multi['1']['wall_s']:.1f} s, of which {multi['1']['parts_work_s'] + multi['1']['cluster_fit_s']:.1f} s "
            f"is work on the workers ({found['multi_parallel_share']:.0%}); 4 single-thread workers on this "
            f"{facts['nproc']}-core machine: {multi['4']['wall_s']:.1f} s (speed-up {found['multi_measured_speedup_4_vs_1']}x).",
            "",
            "Expected speed-up on N machines, (wall − work) + work / N: "
            + ", ".join(f"{machines} machines {value}x" for machines, value in found["multi_expected"].items()),
        ]
    return "\n".join(lines) + "\n"


def plot(report: dict, target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for engine, marker in (("local", "o"), ("dask", "s")):
        runs = sorted((run for run in report["runs"] if run["engine"] == engine), key=lambda run: run["rows"])
        if not runs:
            continue
        rows = [run["rows"] for run in runs]
        time_axis.plot(rows, [run["full"]["wall_s"] for run in runs], marker=marker, label=f"{engine} engine")
        memory_axis.plot(rows, [run["full"]["peak_tree_rss_gib"] for run in runs], marker=marker, label=f"{engine} engine")
    if report["runs"]:
        smallest = min(run["rows"] for run in report["runs"])
        first = min((run for run in report["runs"] if run["rows"] == smallest), key=lambda run: run["full"]["wall_s"])
        reference = [smallest, max(run["rows"] for run in report["runs"])]
        time_axis.plot(
            reference, [first["full"]["wall_s"], first["full"]["wall_s"] * reference[1] / smallest], ":", color="grey", label="linear"
        )
    for axis, label in ((time_axis, "full dvc repro (s)"), (memory_axis, "peak memory of the run (GiB)")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("rows")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.suptitle(f"Time and memory against rows ({report['machine']['nproc']} cores; bench/results/scale.md names each run's commit)")
    figure.tight_layout()
    figure.savefig(target, dpi=110)


def save(report: dict, results: Path) -> None:
    report["summary"] = summarise(report)
    write_results("scale", report, markdown(report), results)
    plot(report, results / "scale.png")


def high_water_mark(pid: int) -> int:
    """The most resident memory process `pid` has held (VmHWM), in bytes; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return 0


def run_stage_measured(command: list[str], env: dict[str, str], interval: float = 0.05) -> dict:
    """Run a stage; the peak memory of its own process and of each process under it (the local
    cluster's nannies and workers), each read from its high-water mark until it ends."""
    import psutil

    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks: dict[int, int] = {}
    names: dict[int, str] = {}
    root = psutil.Process(process.pid)
    while process.poll() is None:
        peaks[process.pid] = max(peaks.get(process.pid, 0), high_water_mark(process.pid))
        try:
            below = root.children(recursive=True)
        except psutil.Error:
            below = []
        for child in below:
            peaks[child.pid] = max(peaks.get(child.pid, 0), high_water_mark(child.pid))
            if child.pid not in names:
                with contextlib.suppress(psutil.Error):
                    names[child.pid] = " ".join(child.cmdline())
        time.sleep(interval)
    output = process.stdout.read()
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{output[-3000:]}")
    # The nannies start the workers: the workers are the busy, large ones; the resource tracker is tiny.
    workers = {pid: peak for pid, peak in peaks.items() if pid != process.pid and "resource_tracker" not in names.get(pid, "")}
    mib = 2**20
    return {
        "wall_s": round(time.perf_counter() - started, 1),
        "stage_peak_mib": round(peaks.get(process.pid, 0) / mib, 1),
        "worker_processes": len(workers),
        "largest_worker_peak_mib": round(max(workers.values(), default=0) / mib, 1),
        "workers_peak_sum_mib": round(sum(workers.values()) / mib, 1),
        "log_tail": output.strip().splitlines()[-3:],
    }


def measured_stage(stage: str, params: Path, env: dict[str, str], **options: Path) -> dict:
    """`python src/stages/<stage>.py --params ... --<option> ...`, measured; prints its peaks."""
    command = [sys.executable, f"src/stages/{stage}.py", "--params", str(params)]
    for name, value in options.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    found = run_stage_measured(command, env)
    print(
        f"  {stage}: stage {found['stage_peak_mib']:.0f} MiB, largest worker {found['largest_worker_peak_mib']:.0f} MiB, {found['wall_s']} s",
        flush=True,
    )
    return found


def write_feature_parts(source: Path, folder: Path, rows: int, rows_per_part: int, seed: int) -> int:
    """`rows` rows drawn with replacement from the table at `source`, as parts; returns the parts."""
    table = pd.read_parquet(source)
    rng = np.random.default_rng([seed, rows])
    folder.mkdir(parents=True, exist_ok=True)
    parts = 0
    for parts, start in enumerate(range(0, rows, rows_per_part), start=1):
        chosen = rng.integers(0, len(table), min(rows_per_part, rows - start))
        table.iloc[chosen].to_parquet(folder / f"part-{parts - 1:05d}-0000.parquet", index=False)
    return parts


def stage_memory(args: argparse.Namespace) -> None:
    """The train and evaluate stages under the dask engine at each size: peak memory of the stage
    process and of the workers (issue 29: the stage's at 10M rows within 20 % of its at 1M)."""
    bin_dir = Path(sys.executable).parent
    features = REPO / "data" / "features"
    shares = {name: sum(pq.read_metadata(part).num_rows for part in part_files(features / f"{name}.parquet")) for name in ("train", "test")}
    report = {
        "benchmark": "scale_memory",
        "machine": machine_facts(bin_dir),
        "rows_per_part": args.rows_per_part,
        "workers": args.workers,
        "memory_limit": args.memory_limit,
        "n_estimators": args.n_estimators,
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip(),
        "runs": [],
    }
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": str(REPO / "src")}
    with scratch_folder("mlpipe-scale-memory-", args.keep) as workdir:
        params = workdir / "params.yaml"
        params.write_text((REPO / "params.yaml").read_text(encoding="utf-8"), encoding="utf-8")
        set_params(
            params, "compute", {"engine": "dask", "workers": args.workers, "threads_per_worker": 1, "memory_limit": args.memory_limit}
        )
        set_params(params, "train", {"n_estimators": args.n_estimators})
        for rows in sorted(args.stage_memory):
            size = workdir / str(rows)
            counts = {name: round(rows * share / sum(shares.values())) for name, share in shares.items()}
            parts = {
                name: write_feature_parts(features / f"{name}.parquet", size / f"{name}.parquet", count, args.rows_per_part, 0)
                for name, count in counts.items()
            }
            out = size / "out"
            print(
                f"{rows:,} rows ({counts['train']:,} train in {parts['train']} parts, {counts['test']:,} test in {parts['test']})",
                flush=True,
            )
            model = {"model": out / "model.txt", "model_schema": out / "schema.json"}
            train = measured_stage("train", params, env, features=size / "train.parquet", schema=features / "schema.json", **model,
                                   record=out / "train", tuning=out / "tuning.json", tuning_plot=out / "tuning_plot.json")  # fmt: skip
            evaluate = measured_stage("evaluate", params, env, **model, features=size / "test.parquet", train_record=out / "train",
                                      metrics=out / "metrics" / "evaluation.json", plots_dir=out / "metrics" / "plots", figures_dir=out / "figures")  # fmt: skip
            metrics = json.loads((out / "metrics" / "evaluation.json").read_text(encoding="utf-8"))["test"]
            report["runs"].append({"rows": rows, **{f"{name}_rows": count for name, count in counts.items()}, "parts": parts,
                                   "train": train, "evaluate": evaluate, "roc_auc": metrics["roc_auc"]})  # fmt: skip
            report["summary"] = memory_summary(report["runs"])
            write_results("scale_memory", report, memory_markdown(report), args.results_dir)
            shutil.rmtree(size, ignore_errors=True)
    print(memory_markdown(report))


def memory_summary(runs: list[dict]) -> dict:
    """Each stage's peak at the largest size over its peak at the smallest (target: at most 1.2)."""
    if len(runs) < 2:
        return {}
    first, last = min(runs, key=lambda run: run["rows"]), max(runs, key=lambda run: run["rows"])
    return {
        f"{stage}_stage_peak_ratio_{last['rows']}_over_{first['rows']}": round(
            last[stage]["stage_peak_mib"] / first[stage]["stage_peak_mib"], 3
        )
        for stage in ("train", "evaluate")
    }


def memory_markdown(report: dict) -> str:
    facts = report["machine"]
    lines = [
        "# Stage-process memory against rows: train and evaluate on the dask engine",
        "",
        f"{facts['timestamp_utc']} · {facts['nproc']} CPUs · {facts['memory_gb']} GB · commit {report['commit'][:10]} (and its working tree) · "
        f"{report['workers']} workers of {report['memory_limit']}, 1 thread each · parts of {report['rows_per_part']:,} rows · train.n_estimators {report['n_estimators']}",
        "",
        "| rows | train rows (parts) | test rows (parts) | train: stage peak | train: largest worker | train: workers, sum | train time "
        "| evaluate: stage peak | evaluate: largest worker | evaluate time | ROC-AUC |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in sorted(report["runs"], key=lambda run: run["rows"]):
        train, evaluate = run["train"], run["evaluate"]
        lines.append(
            f"| {run['rows']:,} | {run['train_rows']:,} ({run['parts']['train']}) | {run['test_rows']:,} ({run['parts']['test']}) | "
            f"{train['stage_peak_mib']:.0f} MiB | {train['largest_worker_peak_mib']:.0f} MiB | {train['workers_peak_sum_mib']:.0f} MiB | {train['wall_s']:.0f} s | "
            f"{evaluate['stage_peak_mib']:.0f} MiB | {evaluate['largest_worker_peak_mib']:.0f} MiB | {evaluate['wall_s']:.0f} s | {run['roc_auc']:.4f} |"
        )
    lines += [
        "",
        "A peak is the process's kernel high-water mark (VmHWM). *Stage peak*: the stage's own process (it also runs the "
        "local cluster's scheduler); *workers*: the cluster's worker and nanny processes, each measured on its own.",
        "",
        "Target (issue 29): each stage's peak at 10M rows within 20 % of its peak at 1M. Found: "
        + (", ".join(f"{key} = {value}" for key, value in report.get("summary", {}).items()) or "n/a (one size)"),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--local", nargs="*", type=parse_size, default=[SIZES["100k"], SIZES["1m"], SIZES["5m"]], help="sizes for the local engine"
    )
    parser.add_argument("--dask", nargs="*", type=parse_size, default=list(SIZES.values()), help="sizes for the dask engine")
    parser.add_argument("--multi-size", type=parse_size, default=SIZES["1m"], help="rows for the 1-vs-4-worker run (0 skips it)")
    parser.add_argument("--rows-per-part", type=int, default=250_000, help="source parts, and data.partition_rows")
    parser.add_argument("--workers", type=int, default=2, help="compute.workers of the dask runs")
    parser.add_argument("--memory-limit", default="8GiB", help="compute.memory_limit of the dask runs")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--quiet-below", type=float, default=0.25)
    parser.add_argument("--max-wait", type=float, default=120.0)
    parser.add_argument("--keep", action="store_true", help="keep the snapshot (its path is printed)")
    parser.add_argument("--merge", action="store_true", help="keep the runs of the existing scale.json that this one does not repeat")
    parser.add_argument(
        "--stage-memory", nargs="*", type=parse_size, help="measure only train and evaluate's memory on the dask engine at these sizes"
    )
    parser.add_argument("--n-estimators", type=int, default=1000, help="train.n_estimators of the --stage-memory runs")
    args = parser.parse_args()
    if args.stage_memory:
        stage_memory(args)
        return
    bin_dir = Path(sys.executable).parent
    gate = QuietGate(threshold=args.quiet_below, max_wait_s=args.max_wait)
    report = {"benchmark": "scale", "machine": machine_facts(bin_dir), "runs": [], "rows_per_part": args.rows_per_part}
    if args.merge and (args.results_dir / "scale.json").exists():
        # Runs measured by an earlier invocation (on its own snapshot: each run records its commit).
        earlier = json.loads((args.results_dir / "scale.json").read_text(encoding="utf-8"))
        repeated = {("local", rows) for rows in args.local} | {("dask", rows) for rows in args.dask}
        report["runs"] = [{"commit": earlier["commit"], **run} for run in earlier["runs"] if (run["engine"], run["rows"]) not in repeated]
        if not args.multi_size and "multi" in earlier:
            report["multi"] = {workers: {"commit": earlier["commit"], **run} for workers, run in earlier["multi"].items()}
            report["multi_rows"] = earlier["multi_rows"]
    with scratch_folder("mlpipe-scale-", args.keep) as workdir:
        copy = workdir / "repo"
        report["snapshot"] = snapshot_repository(REPO, copy)
        report["commit"] = report["snapshot"]["head"]
        env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "DVC_NO_ANALYTICS": "1",
            "PYTHONPATH": str(copy / "src"),
        }
        folders = make_sizes(copy, [*args.local, *args.dask, *([args.multi_size] if args.multi_size else [])], args.rows_per_part)
        params = copy / "params.yaml"
        compute = {
            "workers": args.workers,
            "threads_per_worker": 1,
            "memory_limit": args.memory_limit,
        }
        set_params(params, "compute", compute)
        set_params(params, "data", {"partition_rows": args.rows_per_part})
        for engine, sizes in (("local", args.local), ("dask", args.dask)):
            set_params(params, "compute", {"engine": engine})
            for rows in sorted(sizes):
                set_data_source(params, folders[rows])
                print(f"{engine} engine, {rows:,} rows: dvc repro ...", flush=True)
                full = run_pipeline(copy, env, gate, ["dvc", "repro"])
                noop = run_pipeline(copy, env, gate, ["dvc", "repro"])
                print(f"  {full['wall_s']:.1f} s, peak {full['peak_tree_rss_gib']:.2f} GiB; no-op {noop['wall_s']:.2f} s", flush=True)
                report["runs"].append(
                    {"engine": engine, "rows": rows, "full": full, "noop": {"wall_s": noop["wall_s"], "up_to_date": noop["up_to_date"]}}
                )
                save(report, args.results_dir)
        if args.multi_size:
            report["multi_rows"], report["multi"] = args.multi_size, {}
            set_data_source(params, folders[args.multi_size])
            for workers in (1, 4):
                set_params(params, "compute", {"engine": "dask", "workers": workers, "memory_limit": "4GiB"})
                print(f"dask engine, {workers} single-thread worker(s), {args.multi_size:,} rows: dvc repro -f ...", flush=True)
                report["multi"][str(workers)] = {**run_pipeline(copy, env, gate, ["dvc", "repro", "-f"]), "commit": report["commit"]}
                print(f"  {report['multi'][str(workers)]['wall_s']:.1f} s", flush=True)
                save(report, args.results_dir)
    report["quiet_gate"] = gate.summary()
    save(report, args.results_dir)
    print(markdown(report))
    print(f"wrote {args.results_dir / 'scale.json'}, scale.md and scale.png")


if __name__ == "__main__":
    main()
