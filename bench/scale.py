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

    .venv/bin/python bench/scale.py                                   # 100k, 1m, 5m local; 100k, 1m, 5m, 10m dask
    .venv/bin/python bench/scale.py --local 100k 1m --dask 100k 1m --multi-size 100k   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import yaml
from make_data import SIZES, make_size, parse_size, write_parts
from pipeline_overhead import REPO, RESULTS, QuietGate, checked, machine_facts, measure, scratch_folder, set_data_source, write_results

from mlpipe.config import load_params
from mlpipe.data.sources import read_source
from mlpipe.tools.workspace import snapshot_repository, stage_seconds

UP_TO_DATE = "Data and pipelines are up to date."
PART_WORK = re.compile(r"^\S+ mlpipe\.partitioned: .*: \d+ parts in [\d.]+ s \(([\d.]+) s of work in the parts\)", re.M)
CLUSTER_FIT = re.compile(r"^\S+ mlpipe\.model: .* on \d+ workers in ([\d.]+)s", re.M)
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
    args = parser.parse_args()
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
