"""`make replay`: send real rows through the running prediction service, to fill its log.

    python -m mlpipe.tools.replay --url http://127.0.0.1:8000                    # the latest period of monitor.current_source
    python -m mlpipe.tools.replay --url ... --where "year == 2018 and AGEP < 30"  # a shifted variant: only people under 30

The rows come from `--source` (default: monitor.current_source), read as the predict stage reads
it. Without `--where` they are the latest period of data.time_column (every row when the table
has no time column). `--where` takes the derived-feature grammar (docs/params.md): it is parsed and
walked, never evaluated as Python. Each row is sent with the fields the service's request contract
has (its /openapi.json), in batches. The API key, when the service needs one, is read from the
variable serve.api_key_env names.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from mlpipe.config import Params, load_params
from mlpipe.errors import EXIT_OK, EXIT_USAGE, ConfigError, DataError, PipelineError, exit_status


def rows_to_replay(table: pd.DataFrame, params: Params, where: str | None) -> tuple[pd.DataFrame, str]:
    """The rows `where` selects, or the latest period's; with a description of the choice."""
    if where:
        from mlpipe.data.expressions import parse_expression

        expression = parse_expression(where, "--where")
        missing = [column for column in expression.columns if column not in table.columns]
        if missing:
            raise ConfigError(f"--where names {missing}, which the table does not have (it has {list(table.columns)[:12]})")
        selected = pd.Series(expression.evaluate(table), index=table.index).fillna(False).astype(bool)
        return table[selected], f"rows where {where}"
    time_column = params.data.time_column
    if not time_column or time_column not in table.columns:
        return table, "every row (no time column)"
    from mlpipe.data.times import time_values

    values = time_values(table[time_column])
    if pd.api.types.is_datetime64_any_dtype(values):
        values = values.dt.to_period(params.evaluate.period)  # the latest evaluate.period (a year by default)
    latest = values.max()
    return table[values == latest], f"the latest period, {time_column} {latest}"


def answer(response, url: str, key_env: str, keys: tuple[str, ...]) -> Any:
    """The part of a JSON answer at `keys`, or a one-line `DataError`: a refused API key (401,
    403: every further batch would be refused too), or an answer that is not the service's JSON
    (another server on the port, a proxy's error page)."""
    where = f"{response.request.method} {url}{response.request.url.path}"
    if response.status_code in (401, 403):
        raise DataError(
            f"{where} answered {response.status_code}: the service refuses the API key; "
            f"export the service's key in {key_env} (serve.api_key_env) and replay again"
        )
    try:
        found = response.json()
        for key in keys:
            found = found[key]
    except (ValueError, KeyError, TypeError, IndexError):
        shown = " ".join(response.text[:80].split())
        raise DataError(
            f"{where} answered {response.status_code} with {shown!r}, not the prediction service's JSON: "
            "is the service of `make serve` on that port? (set --url, or HOST and PORT)"
        ) from None
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running service")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--source", help="a file or folder of rows (default: monitor.current_source)")
    parser.add_argument("--where", help='which rows to send, e.g. "AGEP < 30" (default: the latest period)')
    parser.add_argument("--batch-rows", type=int, default=500, help="records per request")
    args = parser.parse_args(argv)
    try:
        import httpx

        from mlpipe.data.sources import normalise_columns, read_batches

        params = load_params(args.params)
        source = args.source or params.monitor.current_source
        table = normalise_columns(read_batches(source, csv_options=params.data.csv), origin=source)
        rows, chosen = rows_to_replay(table, params, args.where)
        if rows.empty:
            raise DataError(f"{chosen} of '{source}' selects no rows: nothing to send")
        key = os.environ.get(params.serve.api_key_env)
        headers = {"X-API-Key": key} if key else {}
        with httpx.Client(base_url=args.url, headers=headers, timeout=60) as client:
            try:
                contract = answer(
                    client.get("/openapi.json"), args.url, params.serve.api_key_env, ("components", "schemas", "Record", "properties")
                )
                fields = [column for column in rows.columns if column in contract]
                records = json.loads(rows[fields].to_json(orient="records", date_format="iso"))
                scored, rejected, probabilities = 0, [], []
                for start in range(0, len(records), args.batch_rows):
                    response = client.post("/predict", json=records[start : start + args.batch_rows])
                    if response.status_code == 200:
                        predictions = answer(response, args.url, params.serve.api_key_env, ("predictions",))
                        scored += len(predictions)
                        probabilities += [p["probability"] for p in predictions]
                    else:
                        answer(response, args.url, params.serve.api_key_env, ())  # a refused key ends the replay
                        rejected.append(f"{response.status_code} {response.text[:300]}")
            except httpx.TransportError as exc:
                raise DataError(f"no prediction service at {args.url} ({exc}): start it with `make serve`") from None
    except PipelineError as exc:
        print(f"error: replay: {exc}", file=sys.stderr)
        return exit_status(exc)
    mean = f", mean probability {sum(probabilities) / len(probabilities):.4f}" if probabilities else ""
    print(f"replay: sent {len(records):,} rows ({chosen}) of {source} to {args.url}: {scored:,} scored{mean}")
    for problem in rejected[:3]:
        print(f"replay: a batch was refused: {problem}", file=sys.stderr)
    return EXIT_USAGE if rejected else EXIT_OK  # the service refused rows: they or the key do not fit it


if __name__ == "__main__":
    sys.exit(main())
