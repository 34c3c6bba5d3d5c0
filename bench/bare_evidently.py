"""The floor for the drift stage in bench/pipeline_overhead.py: one Evidently report in one plain script.

Imports Evidently, reads the scored reference and current tables the `predict` stage wrote,
draws a seeded sample of --sample rows per side of the columns the drift stage monitors
(features, predicted probability, label) and writes Evidently's `DataDriftPreset` report as HTML,
the way Evidently's own documentation shows. No verdicts on every row, no windows, no escaping.

    python bench/bare_evidently.py --reference data/predictions/reference.parquet \\
        --current data/predictions/current.parquet --schema models/schema.json --out /tmp/report.html
"""

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402

import pandas as pd  # noqa: E402
from evidently import Report  # noqa: E402
from evidently.presets import DataDriftPreset  # noqa: E402

from mlpipe.data.schema import FeatureSchema  # noqa: E402
from mlpipe.monitor.drift import monitored_columns  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", required=True)
    parser.add_argument("--current", required=True)
    parser.add_argument("--schema", required=True, help="the model's feature schema (models/schema.json)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--sample", type=int, default=10_000)
    args = parser.parse_args()
    timings = {"imports": time.perf_counter() - STARTED}

    clock = time.perf_counter()
    reference, current = pd.read_parquet(args.reference), pd.read_parquet(args.current)
    columns = monitored_columns(FeatureSchema.read(args.schema), current).all
    samples = [table[columns].sample(n=min(args.sample, len(table)), random_state=42) for table in (reference, current)]
    timings["read_and_sample"] = time.perf_counter() - clock

    clock = time.perf_counter()
    Report([DataDriftPreset()]).run(*samples).save_html(args.out)
    timings["report"] = time.perf_counter() - clock
    timings["total_in_process"] = time.perf_counter() - STARTED
    print("BARE_RESULT " + json.dumps({"columns": len(columns), "rows_per_side": len(samples[0]), "timings": timings}))


if __name__ == "__main__":
    main()
