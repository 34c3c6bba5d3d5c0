"""How many acknowledged rows does a `kill -9` of the service lose from its prediction log? (A
benchmark, not a test; loopback only, bounded.)

For each setting of the log (serve.log_rows_per_file, serve.log_flush_seconds), --repeats times:
start the service as `make serve` does (bench/serving.py's helpers) with its log in a temporary
folder, send `--records`-record requests at a steady --rate (requests per second, each sent on
its tick whatever the answers do) for --seconds, wait for the answers, `kill -9` it at once, and
count the rows the log's files hold against the rows acknowledged (answered 200). A row lost is
an acknowledged row that is in no file; its seconds of traffic are the lost rows over the rows
acknowledged per second. docs/serving.md's bound: at most serve.log_max_buffered_rows rows and,
while the writer keeps up with the traffic, less than serve.log_flush_seconds of it.
Writes bench/results/log_kill.{json,md}.

    make repro                               # a trained model first
    .venv/bin/python bench/log_kill.py       # about two minutes
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from mlpipe.config import load_params

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_overhead import machine_facts, write_results  # noqa: E402  (sibling scripts, shared rather than copied)
from serving import REPO, _commit, served_records, service_running, trained_model  # noqa: E402

# (serve.log_rows_per_file, serve.log_flush_seconds): issue 28's tiny files, the defaults, a shorter flush.
SETTINGS = ((20, 2.0), (10_000, 2.0), (10_000, 0.5))


async def steady(url: str, bodies: list[bytes], rate: float, seconds: float) -> dict:
    """Send one body every 1/rate s for `seconds` (a request does not wait for the one before it),
    then wait for every answer; the requests answered 200 are the acknowledged ones."""
    import aiohttp

    answered: list[int] = []

    async with aiohttp.ClientSession(headers={"content-type": "application/json"}) as session:

        async def send(body: bytes) -> None:
            async with session.post(url, data=body) as response:
                await response.read()
                answered.append(response.status)

        started, pending, sent = time.perf_counter(), [], 0
        while (now := time.perf_counter() - started) < seconds:
            if now >= sent / rate:
                pending.append(asyncio.create_task(send(bodies[sent % len(bodies)])))
                sent += 1
            else:
                await asyncio.sleep(sent / rate - now)
        await asyncio.gather(*pending)
        elapsed = time.perf_counter() - started
    return {"sent": sent, "acknowledged": answered.count(200), "seconds": round(elapsed, 2)}


def logged_rows(folder: Path) -> int:
    """The rows in the log's files; hidden files (a write under way) are not the log's, as for its readers."""
    files = [path for path in folder.rglob("*.parquet") if not any(part.startswith(".") for part in path.relative_to(folder).parts)]
    return sum(pq.ParquetFile(path).metadata.num_rows for path in files)


def one_kill(bodies: list[bytes], records: int, rows_per_file: int, flush_seconds: float, args) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        log_folder = Path(folder) / "served"
        settings = {"log_folder": str(log_folder), "log_rows_per_file": rows_per_file, "log_flush_seconds": flush_seconds}
        with service_running(1, None, **settings) as (url, process):
            traffic = asyncio.run(steady(url, bodies, args.rate, args.seconds))
            os.kill(process.pid, signal.SIGKILL)  # right after the last answer: nothing may finish writing
            process.wait(30)
        acknowledged = traffic["acknowledged"] * records
        found = logged_rows(log_folder) if log_folder.exists() else 0
    rows_per_s = acknowledged / traffic["seconds"]
    lost = acknowledged - found
    return {
        **traffic,
        "acknowledged_rows": acknowledged,
        "rows_in_log": found,
        "lost_rows": lost,
        "lost_seconds": round(lost / rows_per_s, 3),
    }


def summary(runs: list[dict], flush_seconds: float, max_buffered: int) -> dict:
    lost, seconds = [run["lost_rows"] for run in runs], [run["lost_seconds"] for run in runs]
    return {
        "lost_rows": {"min": min(lost), "median": statistics.median(lost), "max": max(lost)},
        "lost_share_pct": round(100 * max(lost) / min(run["acknowledged_rows"] for run in runs), 2),
        "lost_seconds": {"min": min(seconds), "median": statistics.median(seconds), "max": max(seconds)},
        "within_bound": max(seconds) <= flush_seconds and max(lost) <= max_buffered,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100, help="requests per second")
    parser.add_argument("--records", type=int, default=10, help="records per request")
    parser.add_argument("--seconds", type=float, default=5, help="seconds of traffic before the kill")
    parser.add_argument("--repeats", type=int, default=3, help="kills per setting")
    args = parser.parse_args()
    params = load_params(REPO / "params.yaml")
    records = served_records(params, *trained_model(), rows=args.records * 100)
    bodies = [json.dumps(records[start : start + args.records]).encode() for start in range(0, len(records), args.records)]
    results: dict = {
        "machine": machine_facts(Path(sys.executable).parent),
        "commit": _commit(),
        "traffic": {"requests_per_s": args.rate, "records_per_request": args.records, "seconds": args.seconds},
        "log_max_buffered_rows": params.serve.log_max_buffered_rows,
        "settings": [],
    }
    for rows_per_file, flush_seconds in SETTINGS:
        runs = [one_kill(bodies, args.records, rows_per_file, flush_seconds, args) for _ in range(args.repeats)]
        setting = {"log_rows_per_file": rows_per_file, "log_flush_seconds": flush_seconds, "runs": runs}
        setting.update(summary(runs, flush_seconds, params.serve.log_max_buffered_rows))
        results["settings"].append(setting)
        print(f"log_rows_per_file {rows_per_file}, log_flush_seconds {flush_seconds}: {setting}")
    write_results("log_kill", results, report(results))
    print(report(results))


def report(results: dict) -> str:
    machine, commit, traffic = results["machine"], results["commit"], results["traffic"]
    lines = [
        "# What a `kill -9` of the service loses from the prediction log",
        "",
        f"{machine['timestamp_utc']} · {machine['nproc']} CPUs ({machine['cpu_model']}) · Python {machine['python']} · "
        f"commit {commit['head'][:10]} with {commit['uncommitted_changes']} uncommitted change(s)",
        "",
        f"One service process (`python -m mlpipe.tools.serve`), {traffic['records_per_request']}-record requests at a steady "
        f"{traffic['requests_per_s']:g} requests/s ({traffic['records_per_request'] * traffic['requests_per_s']:,.0f} rows/s) for "
        f"{traffic['seconds']:g} s over loopback, then `kill -9` right after the last answer; rows acknowledged (answered 200) "
        "against rows in the log's files. Bound (docs/serving.md): at most serve.log_max_buffered_rows "
        f"({results['log_max_buffered_rows']:,}) rows and, while the writer keeps up, less than serve.log_flush_seconds of traffic.",
        "",
        "| log_rows_per_file | log_flush_seconds | runs | acknowledged rows (per run) | lost rows min / median / max | "
        "lost seconds of traffic min / median / max | worst share lost | within the bound |",
        "|---:|---:|---:|---|---|---|---:|---|",
    ]
    for setting in results["settings"]:
        lost, seconds = setting["lost_rows"], setting["lost_seconds"]
        lines.append(
            f"| {setting['log_rows_per_file']:,} | {setting['log_flush_seconds']:g} | {len(setting['runs'])} | "
            f"{', '.join(format(run['acknowledged_rows'], ',') for run in setting['runs'])} | "
            f"{lost['min']:,} / {lost['median']:,} / {lost['max']:,} | {seconds['min']} / {seconds['median']} / {seconds['max']} s | "
            f"{setting['lost_share_pct']} % | {'yes' if setting['within_bound'] else 'NO'} |"
        )
    return "\n".join([*lines, ""])


if __name__ == "__main__":
    main()
