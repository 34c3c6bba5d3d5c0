"""How fast is the prediction service? (A benchmark, not a test; loopback only, bounded.)

Starts the service as `make serve` does (`python -m mlpipe.tools.serve`, uvicorn) on this
repository's trained model, with its prediction log in a temporary folder, and drives it from
this process with an asyncio load generator (aiohttp), which shares the machine:

1. one service process (serve.workers: 1), single-record requests at concurrency 1, 8 and 32:
   p50 and p99 latency, requests per second;
2. 1,000-record requests on 1, 2 and 4 service processes (serve.workers), two requests in
   flight per process, each on a new connection: rows per second end to end. (A kept-alive
   connection stays with the process that accepted it; with a few of them, one process can get
   them all while another idles. A new connection goes to a process that is accepting.)
3. in process, on the same bodies: where a 1,000-record request's time goes (JSON parsing,
   validation against the request contract, encoding, LightGBM, the log, the response);
4. the floor: a bare in-process LightGBM `predict` on the same rows (one row per call, and
   1,000 rows per call).

Each level stops after --requests requests or --seconds seconds, whichever comes first. The
CPU used by the load generator (this process) and by the service is reported for each level.
Writes bench/results/serving.{json,md}.

    make repro                               # a trained model first
    .venv/bin/python bench/serving.py        # about three minutes
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil
import yaml

from mlpipe.config import load_params
from mlpipe.tools.serve import model_artifact

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_overhead import REPO, machine_facts, write_results  # noqa: E402  (a sibling script, shared rather than copied)

# Targets (issue 14), on this 2-core machine with the load generator on it too.
TARGET_P99_MS_AT_8 = 20.0
TARGET_RPS_AT_32 = 1000.0
TARGET_BATCH_ROWS_PER_S = 50_000.0


def start_service(port: int, params_path: Path) -> subprocess.Popen:
    service = subprocess.Popen(
        [sys.executable, "-m", "mlpipe.tools.serve", "--params", str(params_path), "--port", str(port),
         "--evaluation", "metrics/evaluation.json", "--training-params", "metrics/train/params.yaml"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    import urllib.request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if service.poll() is not None:
            raise SystemExit(f"the service did not start: {service.stderr.read().strip()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1):
                return service
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the service was not ready within 60 s")


async def drive(
    url: str, bodies: list[bytes], concurrency: int, max_requests: int, max_seconds: float, new_connections: bool = False
) -> dict:
    """Send bodies round-robin from `concurrency` workers; latency per request, as the client sees
    it. With `new_connections`, each request opens its own connection (none is kept alive)."""
    import aiohttp

    latencies: list[float] = []
    failures = 0
    sent = 0
    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=new_connections)
    async with aiohttp.ClientSession(connector=connector, headers={"content-type": "application/json"}) as session:

        async def worker() -> None:
            nonlocal sent, failures
            while sent < max_requests and time.perf_counter() - started < max_seconds:
                body = bodies[sent % len(bodies)]
                sent += 1
                begun = time.perf_counter()
                async with session.post(url, data=body) as response:
                    await response.read()
                    if response.status != 200:
                        failures += 1
                latencies.append(time.perf_counter() - begun)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "failures": failures,
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 2),
    }


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def measured(url: str, bodies: list[bytes], concurrency: int, limits: tuple[int, float], service: psutil.Process, **options) -> dict:
    """One level of load; the CPU the load generator (this process) and the service (all its processes) used meanwhile."""
    processes = [service, *service.children(recursive=True)]
    own, theirs = resource.getrusage(resource.RUSAGE_SELF), cpu_seconds(processes)
    result = asyncio.run(drive(url, bodies, concurrency, *limits, **options))
    after, theirs_after = resource.getrusage(resource.RUSAGE_SELF), cpu_seconds(processes)
    result["load_generator_cores"] = round((after.ru_utime + after.ru_stime - own.ru_utime - own.ru_stime) / result["seconds"], 2)
    result["service_cores"] = round((theirs_after - theirs) / result["seconds"], 2)
    return result


def phases(records: list[dict], params, batch: int = 1000, repeats: int = 20) -> dict:
    """Where a `batch`-record request's time goes, in process (milliseconds per request)."""
    import orjson
    from pydantic import TypeAdapter
    from pydantic_core import from_json

    from mlpipe.serving.app import ServiceMetrics
    from mlpipe.serving.prediction_log import PredictionLog
    from mlpipe.serving.scorer import load_served_model, record_model

    model_path, schema_path, calibration_path = model_artifact(REPO / "dvc.yaml", None)
    model = load_served_model(REPO / model_path, REPO / schema_path, calibration_path=REPO / calibration_path)
    contract = TypeAdapter(list[record_model(model.schema, params)])
    body = orjson.dumps(records[:batch])
    names = ("JSON parsing", "validation", "encoding", "LightGBM predict", "probability histogram", "log append", "response JSON")
    metrics = ServiceMetrics()
    timings: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as folder:
        log = PredictionLog(folder, rows_per_file=10**9, flush_seconds=3600, background=False)
        for _ in range(repeats):
            t0 = time.perf_counter()
            from_json(body)
            t1 = time.perf_counter()
            valid = contract.validate_json(body)  # parses again: validation = this minus parsing
            t2 = time.perf_counter()
            rows = model.encoder.encode(valid)
            t3 = time.perf_counter()
            probability = model.booster.predict(rows)
            t4 = time.perf_counter()
            metrics.observe_probabilities(probability)
            t4a = time.perf_counter()
            log.append(valid, {"probability": probability, "model_version": model.version})
            t5 = time.perf_counter()
            orjson.dumps(
                {"predictions": [{"probability": value, "label": "1", "model_version": model.version} for value in probability.tolist()]}
            )
            t6 = time.perf_counter()
            for name, seconds in zip(timings, (t1 - t0, (t2 - t1) - (t1 - t0), t3 - t2, t4 - t3, t4a - t4, t5 - t4a, t6 - t5), strict=True):
                timings[name].append(seconds)
        # The log's writer thread, per request: one file of serve.log_rows_per_file rows made and written.
        timings["log file, in its writer thread"] = []
        per_file = max(1, params.serve.log_rows_per_file // batch)
        for _ in range(3):
            for _ in range(per_file):
                log.append(valid, {"probability": probability, "model_version": model.version})
            started = time.perf_counter()
            log.flush()
            timings["log file, in its writer thread"].append((time.perf_counter() - started) / per_file)
        log.close()
    return {name: round(1000 * statistics.median(values), 2) for name, values in timings.items()}


def floor(records: list[dict], params) -> dict:
    """A bare in-process LightGBM predict on the same rows, already encoded."""
    from mlpipe.serving.scorer import load_served_model

    model_path, schema_path, calibration_path = model_artifact(REPO / "dvc.yaml", None)
    model = load_served_model(REPO / model_path, REPO / schema_path, calibration_path=REPO / calibration_path)
    single = [model.encoder.encode([record]) for record in records[:2000]]
    started = time.perf_counter()
    for rows in single:
        model.booster.predict(rows)
    per_row_ms = 1000 * (time.perf_counter() - started) / len(single)
    batch = model.encoder.encode(records[:1000])
    started = time.perf_counter()
    for _ in range(20):
        model.booster.predict(batch)
    return {"single_row_ms": round(per_row_ms, 3), "rows_per_s_at_1000": round(20 * 1000 / (time.perf_counter() - started))}


BATCH_WORKERS = (1, 2, 4)


def batch_level(workers: int) -> str:
    return f"1,000-record batches, {workers} service process{'es' if workers > 1 else ''}, concurrency {2 * workers}"


@contextlib.contextmanager
def service_running(workers: int, warm_up: bytes | None, **serve):
    """(the /predict URL, the service's process) for a service of `workers` processes, its log in a
    temporary folder, after `warm_up` (if any) was sent to every process. `serve` overrides
    further serve.* keys (bench/log_kill.py: its own log folder, file size and flush interval)."""
    with tempfile.TemporaryDirectory() as folder:
        raw = yaml.safe_load((REPO / "params.yaml").read_text())
        raw["serve"].update({"log_folder": str(Path(folder) / "served"), "workers": workers, **serve})
        params_path = Path(folder) / "params.yaml"
        params_path.write_text(yaml.safe_dump(raw, sort_keys=False))
        port = free_port()
        service = start_service(port, params_path)
        try:
            url = f"http://127.0.0.1:{port}/predict"
            if warm_up:
                asyncio.run(drive(url, [warm_up], 2 * workers, 20 * workers, 10, new_connections=True))  # not measured
            yield url, psutil.Process(service.pid)
        finally:
            service.terminate()
            service.wait(timeout=30)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _commit() -> dict:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True).stdout
    return {"head": head, "uncommitted_changes": len(dirty.splitlines())}


def trained_model() -> tuple[Path, Path]:
    """The paths of this repository's model and its schema, as `make serve` takes them."""
    model_path, schema_path, _ = model_artifact(REPO / "dvc.yaml", None)
    if not (REPO / model_path).exists():
        raise SystemExit(f"no model at {model_path}: run `make repro` first")
    return model_path, schema_path


def served_records(params, model_path: Path, schema_path: Path, rows: int = 20_000) -> list[dict]:
    """The first `rows` rows of monitor.current_source as request records (the fields the service takes)."""
    from mlpipe.serving.scorer import load_served_model, record_model

    contract = record_model(load_served_model(REPO / model_path, REPO / schema_path).schema, params)
    table = pd.read_parquet(REPO / params.monitor.current_source).head(rows)
    return json.loads(table[[column for column in table.columns if column in contract.__annotations__]].to_json(orient="records"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000, help="most requests per level")
    parser.add_argument("--seconds", type=float, default=15, help="most seconds per level")
    args = parser.parse_args()
    params = load_params(REPO / "params.yaml")
    model_path, schema_path = trained_model()
    records = served_records(params, model_path, schema_path)
    singles = [json.dumps(record).encode() for record in records[:5000]]
    batches = [json.dumps(records[start : start + 1000]).encode() for start in range(0, len(records), 1000)]

    results: dict = {"machine": machine_facts(Path(sys.executable).parent), "commit": _commit(), "levels": {}}
    limits = (args.requests, args.seconds)
    batch_limits = (max(40, args.requests // 10), args.seconds)
    for workers in BATCH_WORKERS:
        with service_running(workers, batches[0]) as (url, process):
            if workers == 1:
                for concurrency in (1, 8, 32):
                    results["levels"][f"single, concurrency {concurrency}"] = level = measured(url, singles, concurrency, limits, process)
                    print(f"single records, concurrency {concurrency}: {level}")
            concurrency = 2 * workers
            level = measured(url, batches, concurrency, batch_limits, process, new_connections=True)
            level["rows_per_s"] = round(1000 * level["requests_per_s"])
            results["levels"][batch_level(workers)] = level
            print(f"{batch_level(workers)}: {level}")
    results["phases_ms_per_1000_records"] = phases(records, params)
    results["floor"] = floor(records, params)
    print(f"phases: {results['phases_ms_per_1000_records']}\nfloor: {results['floor']}")
    results["targets"] = targets(results)
    write_results("serving", results, report(results))
    print(report(results))


def targets(results: dict) -> list[dict]:
    levels = results["levels"]
    best_workers = max(BATCH_WORKERS, key=lambda workers: levels[batch_level(workers)]["rows_per_s"])
    best_batch = levels[batch_level(best_workers)]["rows_per_s"]
    rows = [
        ("single-record p99 at concurrency 8 (ms)", levels["single, concurrency 8"]["p99_ms"], TARGET_P99_MS_AT_8, "<="),
        ("single-record requests/s at concurrency 32", levels["single, concurrency 32"]["requests_per_s"], TARGET_RPS_AT_32, ">="),
        (f"1,000-record batches, rows/s end to end (best: {best_workers} service process(es))", best_batch, TARGET_BATCH_ROWS_PER_S, ">="),
    ]
    return [
        {"name": name, "value": value, "target": target, "met": value <= target if sense == "<=" else value >= target, "sense": sense}
        for name, value, target, sense in rows
    ]


def report(results: dict) -> str:
    machine, commit = results["machine"], results["commit"]
    lines = [
        "# Prediction service benchmark",
        "",
        f"{machine['timestamp_utc']} · {machine['nproc']} CPUs ({machine['cpu_model']}) · Python {machine['python']} · "
        f"commit {commit['head'][:10]} with {commit['uncommitted_changes']} uncommitted change(s)",
        "",
        "The service (`python -m mlpipe.tools.serve`: uvicorn; `serve.workers` processes) and the load generator "
        "(aiohttp, this process) share the machine; loopback only. Single records go to one process over kept-alive "
        "connections; 1,000-record batches each open a new connection, which goes to a process that is accepting.",
        "",
        "## Targets",
        "",
        "| measure | value | target | met |",
        "|---|---:|---:|---|",
        *(
            f"| {row['name']} | {row['value']:,} | {row['sense']} {row['target']:,} | {'met' if row['met'] else 'NOT met'} |"
            for row in results["targets"]
        ),
        "",
        "## Levels",
        "",
        "| load | requests | failures | requests/s | rows/s | p50 | p99 | load generator CPU | service CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, level in results["levels"].items():
        rows_per_s = level.get("rows_per_s", level["requests_per_s"])
        lines.append(
            f"| {name} | {level['requests']:,} | {level['failures']} | {level['requests_per_s']:,} | {rows_per_s:,.0f} | "
            f"{level['p50_ms']} ms | {level['p99_ms']} ms | {level['load_generator_cores']} cores | {level['service_cores']} cores |"
        )
    phases_ms = dict(results["phases_ms_per_1000_records"])
    writer = {name: phases_ms.pop(name) for name in list(phases_ms) if "writer thread" in name}
    request_ms = sum(phases_ms.values())
    batch = results["levels"][batch_level(1)]
    lines += [
        "",
        "## Where a 1,000-record request's time goes",
        "",
        "Measured in process on the same bodies (median of 20), beside the service's time and CPU per request with one "
        "process. The log's writer thread runs beside the requests, but holds the interpreter's lock for part of its time:",
        "",
        "| phase | ms |",
        "|---|---:|",
        *(f"| {name} | {value} |" for name, value in phases_ms.items()),
        f"| **sum of the request's phases** | **{request_ms:.2f}** |",
        f"| wall time per request, one process (1 / its requests per second) | {1000 / batch['requests_per_s']:.2f} |",
        f"| the rest: HTTP, ASGI, routing, metrics, the writer thread's share, waiting | {1000 / batch['requests_per_s'] - request_ms:.2f} |",
        *(f"| beside the request: {name} | {value} |" for name, value in writer.items()),
        *(
            f"| service CPU per request, {workers} process(es) (all threads and processes) | "
            f"{1000 * level['service_cores'] / level['requests_per_s']:.2f} |"
            for workers in BATCH_WORKERS
            for level in [results["levels"][batch_level(workers)]]
        ),
        "",
        "## The floor: a bare in-process LightGBM predict on the same rows",
        "",
        f"- one row per call: {results['floor']['single_row_ms']} ms",
        f"- 1,000 rows per call: {results['floor']['rows_per_s_at_1000']:,} rows/s",
        "",
        "The service's best batch rate is "
        f"{best_batch_share(results):.2f} of the floor's in this run. This machine's speed drifts by half over hours: "
        "that share, measured side by side, is what compares runs.",
        "",
    ]
    return "\n".join(lines)


def best_batch_share(results: dict) -> float:
    """The best batch level's rows/s over the bare in-process LightGBM's at 1,000 rows per call."""
    best = max(results["levels"][batch_level(workers)]["rows_per_s"] for workers in BATCH_WORKERS)
    return best / results["floor"]["rows_per_s_at_1000"]


if __name__ == "__main__":
    main()
