"""A real-looking messy table of people with a later outcome, as public tables of that kind come
(shaped like a criminal-justice risk-assessment export): a few thousand rows, about fifty columns.

What makes it messy, each on purpose (`LEAKS`, `PERSONAL`, ... name them for the tests):
- columns recorded *after* the outcome: a flag equal to the target in 97% of rows, dates, charges
  and case numbers of the later event (present only when it happened), survival columns;
- first and last names, a full name and a birth date stored as text;
- a dozen dates and timestamps stored as text (`2013-08-14 06:03:42`);
- case numbers (`13011352CM10A`), unique per row;
- columns 84-100% null, two constant columns;
- as a CSV file (`write_messy_people_csv`), a header that repeats two names.

The outcome depends on a handful of honest columns only, so a model without the leaks lands in an
honest range (ROC-AUC about 0.70-0.78), while one with them scores near 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TARGET = "two_year_recid"
# Known only after the outcome: a model must never see them.
LEAKS = ["is_recid", "r_case_number", "r_charge_degree", "r_days_from_arrest", "r_offense_date", "r_charge_desc", "r_jail_in"]
LEAKS += ["is_violent_recid", "vr_case_number", "vr_offense_date", "event", "end"]
PERSONAL = ["name", "first", "last", "dob"]
TEXT_DATES = ["compas_screening_date", "c_jail_in", "c_jail_out", "c_offense_date", "c_arrest_date", "screening_date"]
TEXT_DATES += ["v_screening_date", "in_custody", "out_custody", "r_offense_date", "r_jail_in", "vr_offense_date"]
CASE_NUMBERS = ["c_case_number", "r_case_number", "vr_case_number"]
ALL_NULL = ["violent_recid"]
CONSTANT = ["type_of_assessment", "v_type_of_assessment"]
HONEST = ["sex", "age", "age_cat", "race", "juv_fel_count", "juv_misd_count", "juv_other_count", "priors_count"]
HONEST += ["c_charge_degree", "c_charge_desc", "decile_score", "score_text", "v_decile_score", "v_score_text"]
HONEST += ["days_b_screening_arrest", "c_days_from_compas", "start"]

FIRST_NAMES = ["james", "mary", "robert", "patricia", "john", "jennifer", "michael", "linda", "david", "elizabeth", "kevin"]
FIRST_NAMES += ["sandra", "jose", "maria", "tyrone", "keisha", "luis", "ana", "marcus", "tanya", "brian", "crystal", "omar"]
LAST_NAMES = ["smith", "johnson", "williams", "brown", "jones", "garcia", "miller", "davis", "rodriguez", "martinez", "lee"]
LAST_NAMES += ["wilson", "anderson", "thomas", "taylor", "moore", "jackson", "martin", "thompson", "white", "harris", "clark"]
CHARGES = ["Battery", "Grand Theft in the 3rd Degree", "Possession of Cocaine", "Driving While License Revoked"]
CHARGES += ["Resist/Obstruct W/O Violence", "Petit Theft", "Aggravated Assault W/Firearm", "Possession of Cannabis"]
CHARGES += ["Burglary Unoccupied Dwelling", "Felony Driving While Lic Suspd", "Criminal Mischief", "Tampering With Physical Evidence"]


def messy_people_table(rows: int = 4000, seed: int = 0) -> pd.DataFrame:
    """The table described in the module docstring; deterministic for a (rows, seed)."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 75, rows)
    sex = rng.choice(["Male", "Female"], rows, p=[0.8, 0.2])
    race = rng.choice(
        ["African-American", "Caucasian", "Hispanic", "Other", "Asian", "Native American"], rows, p=[0.5, 0.34, 0.09, 0.05, 0.01, 0.01]
    )
    juv_fel = rng.poisson(0.07, rows)
    juv_misd = rng.poisson(0.09, rows)
    juv_other = rng.poisson(0.1, rows)
    priors = rng.negative_binomial(1, 0.3, rows)
    degree = rng.choice(["F", "M"], rows, p=[0.65, 0.35])
    risk = -0.3 - 0.06 * (age - 35) + 0.25 * priors + 0.5 * (juv_fel + juv_misd) + 0.25 * (sex == "Male") + 0.2 * (degree == "F")
    outcome = rng.random(rows) < 1 / (1 + np.exp(-risk))
    decile = np.clip(np.round(1 + 9 / (1 + np.exp(-(risk + rng.normal(0, 0.9, rows))))), 1, 10).astype(int)
    v_decile = np.clip(decile + rng.integers(-2, 3, rows), 1, 10)

    screening = pd.Timestamp("2013-01-01") + pd.to_timedelta(rng.integers(0, 730, rows), unit="D")
    jail_in = screening - pd.to_timedelta(rng.integers(0, 3, rows), unit="D") + pd.to_timedelta(rng.integers(0, 86_400, rows), unit="s")
    jail_out = jail_in + pd.to_timedelta(rng.integers(3_600, 20 * 86_400, rows), unit="s")
    offense = screening - pd.to_timedelta(rng.integers(0, 60, rows), unit="D")
    has_arrest_date = rng.random(rows) < 0.16  # 84% null, as the real export has
    birth = screening - pd.to_timedelta(age * 365 + rng.integers(0, 365, rows), unit="D")
    later = screening + pd.to_timedelta(rng.integers(10, 730, rows), unit="D")
    violent = outcome & (rng.random(rows) < 0.25)
    # The post-outcome flag: the target in 97% of rows (recorded later, with its own errors).
    is_recid = np.where(rng.random(rows) < 0.97, outcome, ~outcome)
    first = rng.choice(FIRST_NAMES, rows)
    last = rng.choice(LAST_NAMES, rows)

    def text(times: pd.DatetimeIndex, keep: np.ndarray | None = None, date_only: bool = False) -> list:
        shown = pd.Series(times.strftime("%Y-%m-%d" if date_only else "%Y-%m-%d %H:%M:%S"))
        return shown.where(np.ones(rows, dtype=bool) if keep is None else keep, None).tolist()

    def case_numbers(prefix: str, keep: np.ndarray) -> list:
        numbers = rng.permutation(rows) + 10_000_000
        kinds = rng.choice(["CF10A", "MM10A", "CM10A", "MO10A"], rows)
        return [f"{prefix}{number}{kind}" if kept else None for number, kind, kept in zip(numbers, kinds, keep, strict=True)]

    every = np.ones(rows, dtype=bool)
    table = {
        "id": np.arange(1, rows + 1),
        "name": [f"{a} {b}" for a, b in zip(first, last, strict=True)],
        "first": first,
        "last": last,
        "compas_screening_date": text(screening, date_only=True),
        "sex": sex,
        "dob": text(birth, date_only=True),
        "age": age,
        "age_cat": np.select([age < 25, age > 45], ["Less than 25", "Greater than 45"], "25 - 45"),
        "race": race,
        "juv_fel_count": juv_fel,
        "decile_score": decile,
        "juv_misd_count": juv_misd,
        "juv_other_count": juv_other,
        "priors_count": priors,
        "days_b_screening_arrest": np.where(rng.random(rows) < 0.04, np.nan, rng.integers(-30, 2, rows)),
        "c_jail_in": text(jail_in),
        "c_jail_out": text(jail_out),
        "c_case_number": case_numbers("", every),
        "c_offense_date": text(offense, ~has_arrest_date, date_only=True),
        "c_arrest_date": text(offense, has_arrest_date, date_only=True),
        "c_days_from_compas": (screening - offense).days.astype(float),
        "c_charge_degree": degree,
        "c_charge_desc": rng.choice(CHARGES, rows),
        "is_recid": is_recid.astype(int),
        "r_case_number": case_numbers("", outcome),
        "r_charge_degree": np.where(outcome, rng.choice(["(F3)", "(M1)", "(M2)", "(F2)"], rows), None),
        "r_days_from_arrest": np.where(outcome & (rng.random(rows) < 0.7), rng.integers(0, 30, rows), np.nan),
        "r_offense_date": text(later, outcome, date_only=True),
        "r_charge_desc": np.where(outcome, rng.choice(CHARGES, rows), None),
        "r_jail_in": text(later, outcome & (rng.random(rows) < 0.7), date_only=True),
        "violent_recid": np.full(rows, np.nan),
        "is_violent_recid": violent.astype(int),
        "vr_case_number": case_numbers("", violent),
        "vr_offense_date": text(later, violent, date_only=True),
        "type_of_assessment": "Risk of Recidivism",
        "score_text": np.select([decile <= 4, decile >= 8], ["Low", "High"], "Medium"),
        "screening_date": text(screening, date_only=True),
        "v_type_of_assessment": "Risk of Violence",
        "v_decile_score": v_decile,
        "v_score_text": np.select([v_decile <= 4, v_decile >= 8], ["Low", "High"], "Medium"),
        "v_screening_date": text(screening, date_only=True),
        "in_custody": text(jail_in, date_only=True),
        "out_custody": text(jail_out, date_only=True),
        "start": rng.integers(0, 10, rows),
        "end": np.where(outcome, (later - screening).days, 1_000 + rng.integers(0, 200, rows)),
        "event": np.where(rng.random(rows) < 0.95, outcome, ~outcome).astype(int),
        TARGET: outcome.astype(int),
    }
    return pd.DataFrame(table)


REPEATED = ["decile_score", "priors_count"]


def write_messy_people_csv(path, rows: int = 4000, seed: int = 0) -> None:
    """The table as the public export writes it: its header repeats two names (`REPEATED`), each
    copy a second column with the same values."""
    table = messy_people_table(rows, seed)
    for position, column in enumerate(REPEATED):
        table.insert(len(table.columns) - 1 - position, column, table[column], allow_duplicates=True)
    table.to_csv(path, index=False)
