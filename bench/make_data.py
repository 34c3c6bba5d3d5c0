"""Scale data: N-row versions of the default dataset, as partitioned Parquet, for benchmarks.

Each size resamples the real rows of `data.source` with replacement, keeping each period's share
of the rows exactly (largest remainders), gives every row a fresh unique id, and adds small
seeded jitter to the continuous numeric features: a numeric feature with at least
`--min-distinct` distinct values and no `allowed` list in the data contract moves by -1, 0 or +1
(an integer column; 1 % of its standard deviation for a float one), clipped to the range it
has in the real data, so every row still meets the contract. Codes, categoricals, ids, the time
column and the target are copied as they are.

The same arguments give the same bytes: one seeded generator per size, files written in order.
Each size is a folder of `part-NNNNN.parquet` files of `--rows-per-part` rows, which the
pipeline reads as one table when `data.source` names the folder:

    data/scale/1m/part-00000.parquet ...

    .venv/bin/python bench/make_data.py                       # 100k, 1m, 5m and 10m rows into data/scale/
    .venv/bin/python bench/make_data.py --sizes 100k 1m --out /tmp/scale
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mlpipe.config import Params, load_params
from mlpipe.data.sources import read_source
from mlpipe.errors import PipelineError
from mlpipe.io import atomic_dir, write_json

REPO = Path(__file__).resolve().parents[1]
SIZES = {"100k": 100_000, "1m": 1_000_000, "5m": 5_000_000, "10m": 10_000_000}


def resample(table: pd.DataFrame, rows: int, rng: np.random.Generator, time_column: str | None, id_columns: list[str]) -> pd.DataFrame:
    """`rows` rows drawn with replacement, each period keeping its share; fresh unique ids."""
    if time_column is None:
        resampled = table.sample(n=rows, replace=True, random_state=rng).reset_index(drop=True)
    else:
        shares = table[time_column].value_counts(normalize=True).sort_index()
        counts = np.floor(shares.to_numpy() * rows).astype(int)
        remainders = shares.to_numpy() * rows - counts
        counts[np.argsort(-remainders, kind="stable")[: rows - counts.sum()]] += 1  # largest remainders
        parts = [
            table[table[time_column] == period].sample(n=int(count), replace=True, random_state=rng)
            for period, count in zip(shares.index, counts, strict=True)
        ]
        resampled = pd.concat(parts, ignore_index=True)
    for column in id_columns:
        resampled[column] = np.arange(len(resampled), dtype=table[column].dtype)
    return resampled


def jittered_columns(table: pd.DataFrame, params: Params, min_distinct: int) -> list[str]:
    """The continuous numeric features: numeric, not a code the contract lists, not a role column."""
    data, contract = params.data, params.validate.columns
    roles = {data.target, data.time_column, *data.id_columns, *(data.categorical_columns or []), *data.drop_columns, *data.personal_columns}
    return [
        column
        for column in table.columns
        if column not in roles
        and pd.api.types.is_numeric_dtype(table[column])
        and not pd.api.types.is_bool_dtype(table[column])
        and (column not in contract or contract[column].allowed is None)
        and table[column].nunique() >= min_distinct
    ]


def jitter(resampled: pd.DataFrame, real: pd.DataFrame, columns: list[str], rng: np.random.Generator) -> pd.DataFrame:
    """Each column nudged by a seeded step and clipped to the range it has in the real data."""
    for column in columns:
        values, low, high = resampled[column], real[column].min(), real[column].max()
        if pd.api.types.is_integer_dtype(values):
            steps = rng.integers(-1, 2, size=len(values))
        else:
            steps = rng.normal(0.0, 0.01 * float(real[column].std()), size=len(values))
        moved = (values.to_numpy(dtype=float, na_value=np.nan) + steps).clip(low, high)
        resampled[column] = pd.Series(moved, index=values.index).where(values.notna()).astype(values.dtype)
    return resampled


def write_parts(table: pd.DataFrame, folder: Path, rows_per_part: int, progress=None) -> list[Path]:
    """The table as part-NNNNN.parquet files in a fresh `folder` (written beside it, then swapped in)."""
    with atomic_dir(folder) as staging:
        for index, start in enumerate(range(0, len(table), rows_per_part)):
            table.iloc[start : start + rows_per_part].to_parquet(staging / f"part-{index:05d}.parquet", index=False, compression="zstd")
            if progress:
                progress(index, min(start + rows_per_part, len(table)))
    return sorted(folder.glob("part-*.parquet"))


def make_size(real: pd.DataFrame, params: Params, rows: int, seed: int, min_distinct: int) -> tuple[pd.DataFrame, list[str]]:
    """One size's table (before it is written) and the columns that were jittered."""
    rng = np.random.default_rng([seed, rows])
    table = resample(real, rows, rng, params.data.time_column, params.data.id_columns)
    columns = jittered_columns(real, params, min_distinct)
    return jitter(table, real, columns, rng), columns


def parse_size(text: str) -> int:
    if text.lower() in SIZES:
        return SIZES[text.lower()]
    try:
        return int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: give {', '.join(SIZES)} or a number of rows") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=list(SIZES.values()), help="row counts, or 100k 1m 5m 10m")
    parser.add_argument("--out", type=Path, default=REPO / "data" / "scale", help="one folder per size is written in here")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml", help="data.source and the column roles")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows-per-part", type=int, default=1_000_000)
    parser.add_argument("--min-distinct", type=int, default=10, help="a numeric feature with fewer distinct values is a code: no jitter")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
        source = params.data.source if "://" in params.data.source else str(args.params.parent / params.data.source)
        real = read_source(source, params.data.format, params.data.pattern, params.data.csv)
    except PipelineError as exc:
        print(f"error: make_data: {exc}", file=sys.stderr)
        return 1
    print(f"{len(real):,} real rows from {source}")
    summary = {}
    for rows in args.sizes:
        started = time.perf_counter()
        table, columns = make_size(real, params, rows, args.seed, args.min_distinct)
        name = next((label for label, count in SIZES.items() if count == rows), str(rows))
        folder = args.out / name

        def progress(index: int, done: int, rows: int = rows, name: str = name) -> None:
            print(f"  {name}: part {index:05d} written, {done:,} of {rows:,} rows", flush=True)

        parts = write_parts(table, folder, args.rows_per_part, progress)
        summary[name] = {
            "rows": rows,
            "parts": len(parts),
            "seed": args.seed,
            "jittered": columns,
            "bytes": sum(p.stat().st_size for p in parts),
        }
        print(f"{name}: {rows:,} rows in {len(parts)} parts ({summary[name]['bytes'] / 2**20:,.0f} MiB) in {folder}, "
              f"jittered {columns}, {time.perf_counter() - started:.1f} s")  # fmt: skip
    write_json(summary, args.out / "sizes.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
