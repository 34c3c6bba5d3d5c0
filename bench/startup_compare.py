"""Start-up of the LightGBM stages and of the service at two commits, side by side. (A benchmark, not a test.)

Issue 29 removed the trick that hid scikit-learn from `import lightgbm`; this measures what that
costs, or any other change to start-up, against an earlier commit. Each commit's `src/` is put
on PYTHONPATH in turn (interleaved, same machine conditions), with this checkout's `.venv`:

- `import lightgbm`: `import mlpipe.model.booster; mlpipe.model.booster.lightgbm_core()`, what `train`, `evaluate`,
  `predict` and the service pay once per process;
- the floor beside it: `import pandas, pyarrow`;
- `train`'s first log line: the stage as dvc.yaml runs it on `data/features/`, stopped at its first line;
- the service's start-up: `python -m mlpipe.tools.serve` until `/ready` answers.

Needs `data/features/` and a model: `models/model.txt` or `--model-dir` (a folder with model.txt and
schema.json, e.g. a `train` run into a temporary folder). Writes bench/results/startup_compare.{json,md}.

    .venv/bin/python bench/startup_compare.py --before 9fa7ee9 --repeats 10     # about five minutes
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from pipeline_overhead import REPO, write_results  # a sibling script: one way to write results

PYTHON = str(REPO / ".venv" / "bin" / "python")


def timed(command: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


def train_first_line(env: dict[str, str], out: Path) -> float:
    features = REPO / "data" / "features"
    command = [PYTHON, "src/stages/train.py", "--features", str(features / "train.parquet"), "--schema", str(features / "schema.json"),
               "--model", str(out / "model.txt"), "--model-schema", str(out / "schema.json"), "--record", str(out / "train"),
               "--tuning", str(out / "tuning.json"), "--tuning-plot", str(out / "tuning-plot.json")]  # fmt: skip
    started = time.perf_counter()
    stage = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stage.stdout.readline()
    elapsed = time.perf_counter() - started
    stage.kill()
    stage.wait()
    return elapsed


def service_ready(env: dict[str, str], cwd: Path) -> float:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [PYTHON, "-m", "mlpipe.tools.serve", "--params", "params.yaml", "--port", str(port),
               "--evaluation", "metrics/evaluation.json", "--training-params", "metrics/train/params.yaml"]  # fmt: skip
    started = time.perf_counter()
    service = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while True:
            if service.poll() is not None:
                raise SystemExit(f"the service did not start: {service.stderr.read().strip()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1):
                    return time.perf_counter() - started
            except OSError:
                time.sleep(0.05)
    finally:
        service.terminate()
        service.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the commit to compare with (this checkout's working tree is 'after')")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--model-dir", type=Path, default=REPO / "models")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="startup-compare-"))
    before = work / "before"
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(before), args.before], cwd=REPO, check=True)
    try:
        # The service runs in a folder of its own: the same params, metrics and model for both sides.
        served = work / "served"
        (served / "models").mkdir(parents=True)
        (served / "metrics" / "train").mkdir(parents=True)
        for name in ("params.yaml", "dvc.yaml", "metrics/evaluation.json", "metrics/train/params.yaml"):
            shutil.copy(REPO / name, served / name)
        for name in ("model.txt", "schema.json"):
            shutil.copy(args.model_dir / name, served / "models" / name)
        sides = {"before": before / "src", "after": REPO / "src"}
        runs: dict[str, dict[str, list[float]]] = {}
        for _ in range(args.repeats):
            for side, src in sides.items():
                env = {**os.environ, "PYTHONPATH": str(src)}
                measures = {
                    "import lightgbm (lightgbm_core)": timed(
                        [PYTHON, "-c", "import mlpipe.model.booster; mlpipe.model.booster.lightgbm_core()"], env, work
                    ),
                    "floor: import pandas, pyarrow": timed([PYTHON, "-c", "import pandas, pyarrow"], env, work),
                    "train's first log line": train_first_line(env, work),
                    "service start-up (until /ready)": service_ready(env, served),
                }
                for name, seconds in measures.items():
                    runs.setdefault(name, {}).setdefault(side, []).append(round(seconds, 3))
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=REPO, check=True)
        shutil.rmtree(work, ignore_errors=True)
    after = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    report = {
        "before": args.before,
        "after": f"{after} + working tree",
        "repeats": args.repeats,
        "measures": {
            name: {
                side: {"min_s": min(values), "median_s": statistics.median(values), "runs_s": values} for side, values in by_side.items()
            }
            for name, by_side in runs.items()
        },
    }
    lines = [
        f"# Start-up at {report['before']} (before) and {report['after']} (after)",
        "",
        f"{args.repeats} interleaved runs per side; `.venv/bin/python bench/startup_compare.py --before {args.before} --repeats {args.repeats}`.",
        "The fastest run is the start-up itself; the median also holds whatever else the machine was doing",
        "(the floor, whose code is the same on both sides, shows how much).",
        "",
        "| measure | before: fastest / median | after: fastest / median | after - before (fastest) |",
        "|---|---:|---:|---:|",
    ]
    for name, by_side in report["measures"].items():
        old, new = by_side["before"], by_side["after"]
        lines.append(
            f"| {name} | {old['min_s']:.2f} / {old['median_s']:.2f} s | {new['min_s']:.2f} / {new['median_s']:.2f} s | {new['min_s'] - old['min_s']:+.2f} s |"
        )
    write_results("startup_compare", report, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
