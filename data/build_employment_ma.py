"""Rebuild data/employment_ma.parquet from the nannyml 0.13.1 wheel (provenance record).

Not run by the pipeline; the Parquet file it writes is committed. To reproduce it:

    pip download --no-deps nannyml==0.13.1 -d /tmp/nannyml
    unzip -q /tmp/nannyml/nannyml-0.13.1-py3-none-any.whl 'nannyml/datasets/data/employment_MA_*' -d /tmp/nannyml
    python data/build_employment_ma.py /tmp/nannyml/nannyml/datasets/data
"""

import sys
from pathlib import Path

import pandas as pd

# ACS PUMS codes are integers; nannyml ships them as string categories.
CODE_COLUMNS = ["SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC",
                "NATIVITY", "DEAR", "DEYE", "DREM", "SEX", "RAC1P"]


def build(folder: Path) -> pd.DataFrame:
    reference = pd.read_parquet(folder / "employment_MA_reference.pq")
    analysis = pd.read_parquet(folder / "employment_MA_analysis.pq").merge(
        pd.read_parquet(folder / "employment_MA_analysis_target.pq"), on="id", validate="one_to_one")
    table = pd.concat([reference, analysis], ignore_index=True)
    table = table.drop(columns=["prediction", "predicted_probability"])
    table["AGEP"] = table["AGEP"].astype("int16")
    for column in CODE_COLUMNS:
        table[column] = table[column].astype(str).astype("int16")
    table["employed"] = table["employed"].astype("int8")
    table["year"] = table["year"].astype("int16")
    columns = ["id", "year", "AGEP", *CODE_COLUMNS, "employed"]
    return table[columns].sort_values("id").reset_index(drop=True)


if __name__ == "__main__":
    table = build(Path(sys.argv[1]))
    table.to_parquet(Path(__file__).parent / "employment_ma.parquet", index=False,
                     compression="zstd", compression_level=19)
    print(f"{len(table):,} rows; by year: {table['year'].value_counts().sort_index().to_dict()}")
