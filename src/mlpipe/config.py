"""One typed, validated view of params.yaml.

Each section is a frozen pydantic model that rejects unknown keys, so a misspelt key fails
with its full dotted name instead of silently falling back to a default. Unrelated top-level
sections are allowed (users keep notes and tool settings there) unless they look like a typo
of a known section.
"""

from __future__ import annotations

import copy
import difflib
import re
import types
import typing
import warnings
from collections.abc import Hashable
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlpipe.errors import ConfigError

Scalar = bool | int | float | str


def _is_number_annotation(annotation: Any) -> bool:
    """int, float, or an optional one (not a Scalar, which admits booleans on purpose)."""
    options = set(typing.get_args(annotation)) if typing.get_origin(annotation) in (Union, types.UnionType) else {annotation}
    return bool(options) and options <= {int, float, type(None)} and bool(options - {type(None)})


ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
SNAPSHOT_NAME = r"^[A-Za-z0-9_-]+$"


# A model-level check names its field by starting its message with this mark and the field's name.
FIELD_MARK = "@field:"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, raw: Any) -> Any:
        # pydantic's lax mode reads `true` as 1 for an int or float field; strict mode would also
        # refuse "1e-3", which is how PyYAML reads an exponent without a dot. Refuse only bools.
        if isinstance(raw, dict):
            for name, field in cls.model_fields.items():
                value = raw.get(field.alias or name)
                if isinstance(value, bool) and _is_number_annotation(field.annotation):
                    raise ValueError(f"{FIELD_MARK}{field.alias or name}: expected a number, got {value!r}")
        return raw


CSV_SEPARATOR_WORDS = {"tab": "\t", "whitespace": None}  # None: any run of spaces and tabs


class CsvParams(Section):
    """How a CSV source is read (ingest, make init, and the batches predict scores); Parquet ignores it."""

    sep: str = Field(
        ",",
        description="the separator: one character such as ',' ';' '|', or the word tab, or whitespace (any run of spaces and tabs, as in space-aligned text files)",
    )
    header: bool = Field(True, description="true: the first line names the columns; false: every line is data")
    names: list[str] | None = Field(
        None,
        description="the column names, in file order: they replace the header line's names (or name a file without one); null: the header's names, or column_1, column_2, ... without a header",
    )

    @model_validator(mode="after")
    def _readable(self) -> CsvParams:
        if self.sep not in CSV_SEPARATOR_WORDS and (len(self.sep) != 1 or self.sep in '"\r\n'):
            raise ValueError(
                f"{FIELD_MARK}sep: {self.sep!r} is not a separator: give one character such as ',' or ';', or tab, or whitespace"
            )
        if self.names is not None:
            repeated = sorted({name for name in self.names if self.names.count(name) > 1})
            if repeated:
                raise ValueError(f"{FIELD_MARK}names: {repeated} named twice: a column name is given once")
            if not self.names or any(not name.strip() for name in self.names):
                raise ValueError(f"{FIELD_MARK}names: give one non-empty name per column, or null to read the names from the header")
        return self

    @property
    def pandas_sep(self) -> str:
        """What pandas.read_csv gets: the character itself, never the user's text as a regular
        expression (pandas reads a longer sep as one); whitespace is this module's own pattern."""
        return CSV_SEPARATOR_WORDS.get(self.sep, self.sep) or r"\s+"


def _refuse_credentials_in_source(source: str, field: str) -> None:
    """A source URL in params (committed, and recorded in dvc.lock) may carry no secret; the message never quotes it."""
    from mlpipe.credentials import source_credentials_problem

    problem = source_credentials_problem(source)
    if problem:
        raise ValueError(f"{FIELD_MARK}{field}: {problem}")


class DataParams(Section):
    """The table and the role of its columns. `make init` writes this section for your table."""

    source: str = Field(
        min_length=1,
        description="the table: a CSV or Parquet file or a folder of them (a path relative to the repository root), or an s3:// or http(s):// URL",
    )
    format: Literal["csv", "parquet"] | None = Field(
        None, description="csv or parquet; null infers it from the file suffix (.csv, .csv.gz, .parquet, .pq)"
    )
    csv: CsvParams = Field(CsvParams(), description="how CSV files are read: {sep, header, names} (below)")
    pattern: str | None = Field(
        None,
        description="for a folder source: a glob of the partition files to read, such as 'part-*.parquet'; null reads every CSV/Parquet file. Partitions are read in name order and must have the same columns; the glob may not leave the folder",
    )
    target: str = Field(min_length=1, description="the binary column to predict")
    positive_label: Scalar = Field(
        description="the target value counted as positive: 1, true, 'yes', 'malignant'... (quote text: a bare yes is a boolean in YAML)"
    )
    time_column: str | None = Field(
        None, description="orders rows for a time split and per-period metrics: numbers (years) or dates; null for a table without time"
    )
    id_columns: list[str] = Field([], description="row identifiers: duplicates are quarantined (id:unique), never used as features")
    drop_columns: list[str] = Field(
        [],
        description="columns never used as features; validate applies to them only the rules declared under validate.columns (no null limit, no implied finite or text-length rule)",
    )
    categorical_columns: list[str] | None = Field(
        None, description="columns LightGBM treats as categorical; null infers them (text and boolean columns)"
    )
    personal_columns: dict[str, Literal["drop", "hash"]] = Field(
        {},
        description="column: drop | hash (salted SHA-256), applied wherever rows enter (ingest, SQL snapshots, scored batches) before anything is cached, e.g. {email: hash, name: drop}",
    )
    salt_env: str = Field(
        "MLPIPE_PII_SALT", pattern=ENV_NAME, description="the environment variable holding the hashing salt (a secret: never in a file)"
    )
    partition_rows: int = Field(
        1_000_000,
        ge=1000,
        description="ingest cuts each source file into parts of at most this many rows (data/raw/dataset.parquet/part-NNNNN-NNNN.parquet); every later data stage works part by part, under either engine, so a part is what a data step holds in one process at a time (train under the local engine reads every training part; the validation slice is chosen per part, so the layout can change the model)",
    )

    @model_validator(mode="after")
    def _roles_do_not_clash(self) -> DataParams:
        dropped_personal = [column for column, action in self.personal_columns.items() if action == "drop"]
        clashes = [
            ("target", [self.target], "id_columns", self.id_columns),
            ("target", [self.target], "drop_columns", self.drop_columns),
            ("target", [self.target], "categorical_columns", self.categorical_columns or []),
            ("target", [self.target], "personal_columns (drop)", dropped_personal),
            ("time_column", [self.time_column] if self.time_column else [], "id_columns", self.id_columns),
            ("time_column", [self.time_column] if self.time_column else [], "personal_columns (drop)", dropped_personal),
            ("id_columns", self.id_columns, "categorical_columns", self.categorical_columns or []),
        ]
        for first, first_columns, second, second_columns in clashes:
            both = [column for column in first_columns if column in second_columns]
            if both:
                raise ValueError(f"column '{both[0]}' is both data.{first} and data.{second}: a column plays one role; remove it from one")
        return self

    @model_validator(mode="after")
    def _no_credentials_in_the_source(self) -> DataParams:
        _refuse_credentials_in_source(self.source, "source")
        return self

    @model_validator(mode="after")
    def _pattern_stays_in_the_folder(self) -> DataParams:
        # A pattern that leaves data.source would read files DVC does not track as this stage's input.
        if self.pattern is not None and (
            PurePosixPath(self.pattern).is_absolute() or ".." in PurePosixPath(self.pattern).parts or "\\" in self.pattern
        ):
            raise ValueError(f"{FIELD_MARK}pattern: {self.pattern!r} must match files inside data.source (no absolute path, no '..')")
        return self

    @property
    def declared_columns(self) -> dict[str, list[str]]:
        """Every column the params name, keyed by the params key that names it."""
        named = {
            "data.target": [self.target],
            "data.time_column": [self.time_column] if self.time_column else [],
            "data.id_columns": self.id_columns,
            "data.drop_columns": self.drop_columns,
            "data.categorical_columns": self.categorical_columns or [],
        }
        return {key: columns for key, columns in named.items() if columns}


class InitParams(Section):
    """The leakage guard of `make init` (no stage reads this section). Every candidate feature is scored
    alone against the target on the training rows: its values (rank ROC-AUC; for text, an out-of-fold
    target-rate encoding), whether it is empty, and whether a value settles the target. A column the
    rule below flags goes to data.drop_columns with the reason beside it, and init prints a warning."""

    max_feature_auc: float = Field(
        0.99,
        gt=0.5,
        le=1,
        description="drop any column that alone predicts the target with a ROC-AUC above this (1 turns it off): an honest single column of a real outcome rarely ranks 99% of pairs right (the best of scikit-learn's breast-cancer table: 0.975)",
    )
    suspect_feature_auc: float = Field(
        0.9,
        gt=0.5,
        le=1,
        description="also drop a column scoring above this when it stands at least min_auc_gap above every column that stays (so do the columns between them): leaks stand far above a table's honest columns, which come in a continuum",
    )
    min_auc_gap: float = Field(
        0.1,
        ge=0,
        le=0.5,
        description="the gap for suspect_feature_auc (0 drops every column above suspect_feature_auc)",
    )
    min_settled_share: float = Field(
        0.05,
        gt=0,
        le=1,
        description="drop a column one of whose values (or its being empty) comes with a single target class in every training row holding it, when those rows are at least this share and an unrelated column would show 10 or more of the other class there (1 turns it off)",
    )
    keep_columns: list[str] = Field(
        [],
        description="columns init keeps as features, known at prediction time: the guard never drops them, nor does init's guess of an id, free text or a date (a column with one value or a datetime aside)",
    )

    @model_validator(mode="after")
    def _suspect_below_the_limit(self) -> InitParams:
        if self.suspect_feature_auc > self.max_feature_auc:
            raise ValueError(f"{FIELD_MARK}suspect_feature_auc: must not exceed init.max_feature_auc={self.max_feature_auc:g}")
        return self


class SqlSnapshot(Section):
    """A SQL query (or a whole table) whose rows the snapshot stage writes to Parquet on every `dvc repro`."""

    url: str = Field(
        min_length=1,
        description="SQLAlchemy URL without a password anywhere (user part, query or connection string), e.g. sqlite:///data/app.db, postgresql+psycopg://analyst@db:5432/sales",
    )
    query: str | None = Field(None, description="an SQL SELECT (give query or table)")
    table: str | None = Field(None, description="a table to read whole (give query or table)")
    order_by: list[str] | None = Field(
        None, description="columns to sort rows by (then every other column, to break ties); null sorts by every column"
    )
    password_env: str | None = Field(None, pattern=ENV_NAME, description="the environment variable holding the password, e.g. PGPASSWORD")

    @model_validator(mode="after")
    def _query_or_table_and_no_password(self) -> SqlSnapshot:
        if (self.query is None) == (self.table is None):
            raise ValueError("give exactly one of query (an SQL SELECT) or table (a table name)")
        from mlpipe.credentials import credentials_in_url

        try:
            found = credentials_in_url(self.url)  # messages never quote the url: it may hold the secret
        except ValueError as exc:
            raise ValueError(f"url {exc}") from None
        if found:
            raise ValueError(
                f"the url holds a secret ({', '.join(found)}), and params.yaml is committed: remove it "
                "and name the environment variable that holds the password in password_env"
            )
        return self


class ColumnContract(Section):
    """What one column must look like. dtype, min/max, allowed, nullable and unique are checked row
    by row (failing rows are quarantined); max_null_share is checked on the whole column (fatal)."""

    dtype: str | None = Field(
        None,
        description="a pandas dtype (int64, float64, bool, str, datetime64[ns], ...): the column is cast to it; rows that cannot take it, or would change (2.5 as an integer), are quarantined",
    )
    min: float | None = Field(
        None, description="inclusive lower bound; rows below are quarantined (a ranged text column is read as numbers)"
    )
    max: float | None = Field(None, description="inclusive upper bound; rows above are quarantined")
    allowed: list[Scalar] | None = Field(None, description="the allowed values; rows with others are quarantined")
    nullable: bool = Field(True, description="false: rows with a missing value are quarantined")
    unique: bool = Field(False, description="true: repeats of an earlier value are quarantined")
    max_null_share: float | None = Field(
        None, ge=0, le=1, description="fatal: this column more null than this share (null: validate.max_null_share)"
    )
    finite: bool = Field(True, description="float columns: inf and -inf are quarantined; false lets them through")
    max_length: int | None = Field(None, ge=1, description="the longest text allowed, in characters (null: validate.max_text_length)")

    @model_validator(mode="after")
    def _consistent(self) -> ColumnContract:
        if self.dtype is not None:
            import pandas as pd

            try:
                pd.api.types.pandas_dtype(self.dtype)
            except TypeError:
                raise ValueError(f"dtype {self.dtype!r} is not a pandas dtype (int64, float64, str, bool, datetime64[ns], ...)") from None
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        if self.allowed is not None and not self.allowed:
            raise ValueError("allowed needs at least one value")
        return self


class RowCountBounds(Section):
    min: int | None = Field(None, ge=0, description="fatal: fewer rows than this (null: no bound)")
    max: int | None = Field(None, ge=1, description="fatal: more rows than this (null: no bound)")


class ValidateParams(Section):
    """The data contract the raw table meets (enforced with pandera by the validate stage; scored
    batches meet its row rules too). Whole-table rules are fatal: the stage fails with one line.
    Row rules quarantine the rows that break them, with the rule names, and count them in the data
    quality metrics. `data.*` adds rules of its own: the target and the time column are never null
    and the id columns are unique. `make init` infers a contract for your table."""

    max_bad_row_share: float = Field(0.01, ge=0, le=1, description="fatal: more than this share of rows quarantined")
    max_null_share: float = Field(
        0.5, ge=0, le=1, description="fatal: any column more null than this share (columns.<name>.max_null_share overrides)"
    )
    max_text_length: int = Field(
        1000,
        ge=1,
        description="text longer than this many characters is quarantined (columns.<name>.max_length overrides), so one huge cell cannot exhaust memory downstream",
    )
    rows: RowCountBounds = Field(RowCountBounds(), description="fatal: the table's row count outside {min, max}")
    columns: dict[str, ColumnContract] = Field({}, description="column: {rules}, every rule optional; every column named must exist")


class SplitParams(Section):
    """How rows are divided into the training and the test set. `make init` chooses a time split
    that keeps about the last quarter of periods for testing when the table has a time column."""

    strategy: Literal["time", "random"] = Field("random", description="time (train on the past, test on the future) or random (stratified)")
    train_until: Scalar | None = Field(None, description="time: train on rows whose time is at or before this (a number or a date)")
    test_from: Scalar | None = Field(
        None,
        description="time: test on rows whose time is at or after this (null: everything after train_until); rows between the two are in neither set",
    )
    test_size: float = Field(0.2, gt=0, lt=1, description="random: the share of rows in the test set")
    stratify: bool = Field(True, description="random: keep the target's class balance in both sets")
    seed: int = Field(42, description="random: the shuffle seed")

    @model_validator(mode="after")
    def _time_needs_cutoff(self) -> SplitParams:
        if self.strategy == "time" and self.train_until is None:
            raise ValueError("split.strategy 'time' needs split.train_until (the last period used for training)")
        return self


class FeaturesParams(Section):
    """Columns computed from others, identically at training and scoring time, and category levels.
    Expressions are a declared grammar, never Python (see docs/security.md)."""

    derived: dict[str, str] = Field(
        {},
        description="name: expression over columns in a declared grammar (arithmetic, comparisons, and/or/not, abs ceil clip exp expm1 floor isnull log log10 log1p log2 maximum minimum notnull round sign sqrt where; `odd name` in backticks), e.g. AGE_SQUARED: AGEP ** 2",
    )
    max_categories: int = Field(
        100, ge=2, description="levels kept per categorical column (the most frequent in training); rarer ones share one __other__ level"
    )

    @model_validator(mode="after")
    def _derived_in_the_grammar(self) -> FeaturesParams:
        from mlpipe.data.expressions import check_derived

        check_derived(self.derived, "features.derived")
        return self


class TrainParams(Section):
    """LightGBM: early stopping on a stratified validation slice of the training period, then a refit
    on the whole period with the chosen number of trees."""

    n_estimators: int = Field(1000, ge=1, description="upper bound on the number of trees; early stopping picks the number")
    learning_rate: float = Field(0.05, gt=0, le=1, description="shrinkage per tree")
    num_leaves: int = Field(31, ge=2, le=131072, description="leaves per tree")
    max_depth: int = Field(-1, ge=-1, description="depth limit per tree; -1 for none")
    min_child_samples: int = Field(100, ge=1, description="minimum rows per leaf")
    reg_alpha: float = Field(0.0, ge=0, description="L1 regularisation")
    reg_lambda: float = Field(1.0, ge=0, description="L2 regularisation")
    subsample: float = Field(1.0, gt=0, le=1, description="row sampling per tree (active when subsample_freq > 0)")
    subsample_freq: int = Field(0, ge=0, description="resample rows every this many trees; 0 disables row sampling")
    colsample_bytree: float = Field(1.0, gt=0, le=1, description="feature sampling per tree")
    early_stopping_rounds: int = Field(
        50, ge=0, description="stop after this many rounds without improvement of the validation log-loss; 0 disables"
    )
    validation_fraction: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="stratified slice of the training period held out for early stopping; 0 trains on everything for n_estimators trees",
    )
    refit_full: bool = Field(True, description="after early stopping, refit on the whole training period with the chosen number of trees")
    seed: int = Field(42, description="every LightGBM seed and the validation slice")
    num_threads: int = Field(
        2,
        ge=1,
        description="fixed on purpose: LightGBM is deterministic for a given thread count, so results are byte-identical run to run",
    )
    leak_warning_gain_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="warn (stage log and metrics/train/metrics.json) when one feature carries at least this share of the gain while the validation ROC-AUC is at least leak_warning_validation_auc: a leak looks like that (a post-outcome flag: 95% at 0.992), honest data rarely (people's outcomes: 55% at 0.76; breast cancer: 31% at 0.97)",
    )
    leak_warning_validation_auc: float = Field(
        0.97, gt=0.5, le=1, description="the near-perfect validation ROC-AUC of that warning (1 turns the warning off)"
    )

    @model_validator(mode="after")
    def _early_stopping_needs_validation(self) -> TrainParams:
        if self.early_stopping_rounds and not self.validation_fraction:
            raise ValueError("train.early_stopping_rounds > 0 needs train.validation_fraction > 0")
        return self


TUNABLE = ("learning_rate", "num_leaves", "max_depth", "min_child_samples", "reg_alpha", "reg_lambda", "subsample", "colsample_bytree")
INTEGER_PARAMS = {"num_leaves", "max_depth", "min_child_samples"}


class SearchRange(Section):
    """One dimension of the search: a range (sampled on a log scale with `log: true`) or a list of choices."""

    low: float | None = Field(None, description="a range's lower end")
    high: float | None = Field(None, description="a range's upper end")
    log: bool = Field(False, description="sample the range on a log scale")
    choices: list[Scalar] | None = Field(None, description="a list of values to choose from, instead of a range")

    @model_validator(mode="after")
    def _range_or_choices(self) -> SearchRange:
        if self.choices is not None:
            if self.low is not None or self.high is not None or not self.choices:
                raise ValueError("give either choices (a non-empty list) or low/high, not both")
        elif self.low is None or self.high is None or self.low >= self.high:
            raise ValueError("a range needs low < high")
        elif self.log and self.low <= 0:
            raise ValueError("a log-scale range needs low > 0")
        return self


class TuneParams(Section):
    """Optional search before training (off by default, so `make repro` stays quick): Optuna's seeded
    TPE sampler scores each candidate by k-fold cross-validation on the training period, one trial
    after another, so the same data and params give the same winner. The winner overrides the same
    keys of `train`; the parameters really used are in metrics/train/params.yaml."""

    enabled: bool = Field(False, description="true: search tune.space by cross-validation before training; the winner overrides train.*")
    n_trials: int = Field(20, ge=1, description="candidates tried")
    folds: int = Field(
        3,
        ge=2,
        le=20,
        description="k of k-fold CV on the training period: time-ordered, expanding folds when data.time_column is set, stratified otherwise",
    )
    metric: Literal["roc_auc", "log_loss"] = Field(
        "roc_auc", description="roc_auc (maximised) or log_loss (minimised), averaged over folds"
    )
    seed: int = Field(42, description="seeds Optuna's TPE sampler and the stratified folds: the same search every run")
    space: dict[str, SearchRange] = Field(
        {
            "learning_rate": SearchRange(low=0.01, high=0.2, log=True),
            "num_leaves": SearchRange(low=15, high=255, log=True),
            "min_child_samples": SearchRange(low=20, high=500, log=True),
            "reg_lambda": SearchRange(low=0.001, high=10.0, log=True),
            "colsample_bytree": SearchRange(low=0.5, high=1.0),
        },
        description="train.* keys to search: {low, high, log} ranges or {choices: [...]}",
    )

    @model_validator(mode="after")
    def _space_names_train_keys(self) -> TuneParams:
        for name in self.space:
            if name not in TUNABLE:
                raise ValueError(f"space.{name} is not tunable; choose from {', '.join(TUNABLE)}")
        if self.enabled and not self.space:
            raise ValueError("enabled: true needs at least one entry in space")
        return self


class ThresholdParams(Section):
    """How the decision threshold is chosen on the calibration slice's calibrated probabilities (a
    row is positive at or above it); models/calibration.json keeps the result for evaluate, predict
    and the service."""

    objective: Literal["f1", "cost", "precision", "recall", "fixed"] = Field(
        "f1",
        description="f1: the highest F1; cost: the least false_positive_cost * FP + false_negative_cost * FN; precision: the highest recall at precision >= target; recall: the highest precision at recall >= target; fixed: value as it is",
    )
    value: float = Field(0.5, gt=0, lt=1, description="objective fixed: the threshold itself")
    false_positive_cost: float = Field(1.0, gt=0, description="objective cost: what a false positive costs")
    false_negative_cost: float = Field(
        1.0, gt=0, description="objective cost: what a false negative costs (only the ratio of the two matters)"
    )
    target: float | None = Field(
        None, gt=0, le=1, description="objective precision or recall: the least precision (or recall) the threshold must reach on the slice"
    )

    @model_validator(mode="after")
    def _target_when_needed(self) -> ThresholdParams:
        if self.objective in ("precision", "recall") and self.target is None:
            raise ValueError(f"{FIELD_MARK}target: objective {self.objective} needs a target, e.g. target: 0.8")
        return self


class CalibrationParams(Section):
    """Calibration of the model's probabilities and the decision threshold, both fitted on a seeded
    stratified slice of the training period that the model never fits (docs/trust.md#calibration-and-the-decision-threshold)."""

    method: Literal["isotonic", "sigmoid", "none"] = Field(
        "sigmoid",
        description="sigmoid (Platt's a, b on the log-odds: keeps the ranking exactly), isotonic (scikit-learn's IsotonicRegression: any monotone distortion, needs more rows: on the default data it raised the test log-loss 0.378 -> 0.388) or none (the model's probability)",
    )
    fraction: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="share of each training part held out (stratified, seeded by train.seed) to fit the calibration and choose the threshold; 0 needs method none and threshold.objective fixed",
    )
    bins: int = Field(10, ge=2, description="equal-width probability bins of the slice's reliability curve (before and after)")
    threshold: ThresholdParams = Field(ThresholdParams(), description="how the decision threshold is chosen (below)")

    @model_validator(mode="after")
    def _slice_when_needed(self) -> CalibrationParams:
        if not self.fraction and (self.method != "none" or self.threshold.objective != "fixed"):
            raise ValueError(
                f"{FIELD_MARK}fraction: 0 holds out no slice to fit method {self.method} or choose threshold.objective "
                f"{self.threshold.objective} on: set calibration.fraction: 0.1, or method: none and threshold.objective: fixed"
            )
        return self


class EvaluateParams(Section):
    """Metrics and plot data on the test set, overall and per period."""

    calibration_bins: int = Field(10, ge=2, description="equal-width probability bins of the calibration plot")
    curve_points: int = Field(101, ge=11, description="resolution of the ROC and precision-recall plot data")
    period: Literal["Y", "Q", "M", "W", "D"] = Field(
        "Y", description="for a date time column: per-period metrics by Y, Q, M, W or D (numeric time columns are grouped by value)"
    )
    max_periods: int = Field(50, ge=1, description="skip per-period metrics when there are more periods than this")
    explain_rows: int | None = Field(
        5_000,
        ge=1,
        description="test rows, evenly spaced, whose TreeSHAP contributions the feature-importance table averages (mean |contribution| beside gain); TreeSHAP costs over 100x a plain prediction (docs/trust.md#explanations); null: every test row",
    )


class SensitiveGroups(Section):
    """One sensitive attribute: a column of the test rows and how its values form groups."""

    column: str = Field(
        min_length=1,
        description="a column of the split's test rows; it need not be a model feature (list it in data.drop_columns to keep the model from using it)",
    )
    bins: list[float] | None = Field(
        None,
        description="a numeric column cut into bands at these ascending edges: [16, 25, 65] gives under 16, 16-24, 25-64, 65 and over; null: one group per value",
    )
    labels: dict[Scalar, str] = Field(
        {},
        description="value: group name, e.g. {1: male, 2: female} (several values may share a name); a value not listed is named by itself",
    )

    @model_validator(mode="after")
    def _bands_or_labels(self) -> SensitiveGroups:
        if self.bins is not None:
            if self.labels:
                raise ValueError(f"{FIELD_MARK}labels: a column cut into bins has no values to label: give bins or labels, not both")
            if not self.bins or any(low >= high for low, high in zip(self.bins, self.bins[1:], strict=False)):
                raise ValueError(
                    f"{FIELD_MARK}bins: give at least one edge, in strictly ascending order, e.g. [16, 25, 65] (got {self.bins})"
                )
        if any(not name.strip() for name in self.labels.values()):
            raise ValueError(f"{FIELD_MARK}labels: a group name may not be empty")
        return self


class FairnessParams(Section):
    """The fairness stage: the model's metrics per group of people on the test rows (fairlearn's
    MetricFrame), and how far the groups differ (demographic parity and equalised odds)."""

    groups: dict[str, SensitiveGroups] = Field(
        {},
        description="report name: {column, bins | labels}, one entry per sensitive attribute, e.g. sex: {column: SEX, labels: {1: male, 2: female}}; {} writes an empty report",
    )
    min_group_rows: int = Field(
        100,
        ge=1,
        description="a group with fewer test rows, or with one class only, gets its counts but stays out of the differences (its rates are noise or undefined)",
    )

    @model_validator(mode="after")
    def _names_fit_metric_keys(self) -> FairnessParams:
        for name in self.groups:
            if not re.fullmatch(SNAPSHOT_NAME, name):
                # The name is a step of the metric's dotted key (review.guards, dvc metrics diff).
                raise ValueError(
                    f"{FIELD_MARK}groups: name {name!r} must use only letters, digits, '_' and '-' (it is part of a metric key)"
                )
        return self


class ExplainParams(Section):
    """Per-record explanations: a row's features of largest contribution to its raw score (LightGBM's own TreeSHAP), in the service on request and, when asked, in the batch predictions (docs/trust.md#explanations)."""

    top_k: int = Field(
        3,
        ge=0,
        description="features an explanation lists, largest |contribution| first: the service's POST /predict?explain=true and, with batch, the predict stage's columns; 0 turns explanations off (?explain=true gets 422)",
    )
    batch: bool = Field(
        False,
        description="true: the predict stage adds contribution_<i>_feature and contribution_<i>_value (i = 1..top_k) and contribution_base_value to each scored current row; TreeSHAP costs over 100x the plain prediction (about 8 minutes for the default data's 209k current rows)",
    )


class MonitorParams(Section):
    """What the predict stage scores and the drift stage monitors."""

    current_source: str = Field(
        min_length=1,
        description="the table to score and monitor: a file, or a folder of batch files (their rows meet the personal-data rules and the contract's row rules)",
    )

    @model_validator(mode="after")
    def _no_credentials_in_the_source(self) -> MonitorParams:
        _refuse_credentials_in_source(self.current_source, "current_source")
        return self


class DriftWindow(Section):
    start: Scalar | None = Field(None, description="first period in the window (inclusive); null: from the first current row")
    end: Scalar | None = Field(None, description="last period in the window (inclusive); null: to the last current row")


class DriftParams(Section):
    """Drift between the training period (reference) and each window of the current data, with
    Evidently, and the retrain verdict. Windows are checked with the params: bounds need a time
    column and must end after split.train_until. A window the current data does not reach is named
    in the verdict."""

    windows: dict[str, DriftWindow] = Field(
        {"all": DriftWindow()}, description="name: {start, end} on data.time_column; {} covers every current row"
    )
    num_method: str | None = Field(
        None, description="Evidently stat test for numeric columns (wasserstein, ks, psi, ...); null: Evidently's choice"
    )
    cat_method: str | None = Field(None, description="the same for categorical columns (jensenshannon, chisquare, psi, ...)")
    num_threshold: float | None = Field(None, gt=0, description="numeric drift threshold; null: the method's default")
    cat_threshold: float | None = Field(None, gt=0, description="categorical drift threshold; null: the method's default")
    drift_share: float = Field(0.5, gt=0, le=1, description="dataset drift when at least this share of feature columns drifts")
    report_windows: list[str] | None = Field(
        None,
        description="windows that get an HTML report: null for every window, [] for none (the stage then skips importing Evidently, most of its time)",
    )
    report_sample_size: int = Field(10_000, ge=100, description="rows per side drawn (seeded) for the HTML report; verdicts use every row")
    report_max_columns: int = Field(
        100,
        ge=1,
        description="features an HTML report draws at most (Evidently takes about 0.1 s and 36 KB of page per column): past it, the drifted ones first, then schema order; verdicts cover every feature",
    )
    seed: int = Field(
        42,
        ge=0,
        description="seeds the report samples, the re-splits of null_draws and the label draws of the estimated performance's interval",
    )
    null_draws: int = Field(
        99,
        ge=0,
        le=10_000,
        description="a column its stat test flags drifts only when its score also beats the same test on each of this many random re-splits of the pooled rows (a permutation test at level 1/(draws+1)): small samples and many distinct values inflate distances and fool chi-square; runs only for flagged columns; 0: no check",
    )
    p_value_correction: Literal["benjamini-hochberg", "none"] = Field(
        "benjamini-hochberg",
        description="p-value tests (chisquare, ks, z, ...) over a window's columns are corrected for testing many at once, so stable columns do not drift 5% of the time; none: each column at its threshold, as Evidently does",
    )
    max_auc_drop: float = Field(
        0.02, ge=0, le=1, description="recommend retraining when a labelled window's ROC-AUC falls more than this below the test ROC-AUC"
    )
    max_estimated_auc_drop: float = Field(
        0.03,
        ge=0,
        le=1,
        description="recommend retraining when a window without labels has a ROC-AUC estimated from its calibrated probabilities (CBPE, docs/monitoring.md#performance-estimated-without-labels) more than this below the test ROC-AUC",
    )

    @model_validator(mode="after")
    def _windows_not_empty(self) -> DriftParams:
        if not self.windows:
            raise ValueError("drift.windows needs at least one window (e.g. all: {})")
        for name in self.windows:
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                raise ValueError(f"drift.windows name {name!r} must use only letters, digits, '_', '.', '-' (it names a report file)")
        unknown = [name for name in self.report_windows or [] if name not in self.windows]
        if unknown:
            raise ValueError(f"drift.report_windows names {unknown}, which drift.windows does not have (it has {list(self.windows)})")
        return self

    @property
    def reported(self) -> list[str]:
        """The windows that get an HTML report."""
        return list(self.windows) if self.report_windows is None else list(dict.fromkeys(self.report_windows))


class ServeParams(Section):
    """The prediction service (`make serve`): what it accepts, who may call it, and where it logs what it served."""

    unknown_category: Literal["missing", "reject"] = Field(
        "missing",
        description="a category the model never saw in training: missing scores it as the batch stage does (the shared __other__ level, else missing, which LightGBM routes down its default branch); reject answers 422",
    )
    max_batch_rows: int = Field(1000, ge=1, description="the most records one request may hold; more get 413")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="the largest request body accepted, in bytes; larger gets 413")
    api_key_env: str = Field(
        "MLPIPE_API_KEY",
        min_length=1,
        description="the environment variable holding the API key; when it is set, /predict, /reload and /metadata need it in the X-API-Key header (/health, /ready, /metrics and the OpenAPI page do not)",
    )
    log_folder: str | None = Field(
        "data/served",
        description="the prediction log: every served record (personal columns protected as at ingest), its outputs, model version and time, as date-partitioned Parquet; point monitor.current_source at it to monitor what was served; null: no log",
    )
    log_rows_per_file: int = Field(10_000, ge=1, description="a log file is closed and a new one started after this many rows")
    log_flush_seconds: float = Field(
        2.0,
        gt=0,
        description="buffered log rows are written at least this often; a crash of the service loses the rows not yet written (docs/serving.md: this much traffic, more when the disk is slower than the traffic)",
    )
    log_max_buffered_rows: int = Field(
        100_000,
        ge=1,
        description="the most rows the log holds in memory while it cannot write them (a full disk, failing personal-data rules); past it the oldest are dropped, counted in /metrics (mlpipe_prediction_log_dropped_rows_total); must be at least log_rows_per_file",
    )
    log_max_age_days: float | None = Field(
        None,
        gt=0,
        description="log files whose first row was served longer ago than this are removed (checked after each write); null: kept for ever",
    )
    log_max_bytes: int | None = Field(
        10_000_000_000,
        ge=1,
        description="the log's files may take this many bytes in all; past it the oldest are removed (checked after each write); null: no limit",
    )
    workers: int = Field(
        1,
        ge=1,
        description="service processes sharing the port (uvicorn workers), each with the model loaded; more use more cores for large batches. /metrics counts every worker's requests",
    )
    watch_seconds: float = Field(
        2.0,
        ge=0,
        description="each worker checks this often whether the model files changed on disk (dvc repro, dvc pull) and, if so, loads them and swaps them in; 0: only POST /reload does, which with several workers reaches only the worker that answers",
    )

    @model_validator(mode="after")
    def _buffer_holds_a_file(self) -> ServeParams:
        if self.log_max_buffered_rows < self.log_rows_per_file:
            raise ValueError(
                f"serve.log_max_buffered_rows ({self.log_max_buffered_rows}) must be at least serve.log_rows_per_file "
                f"({self.log_rows_per_file}): a file's rows wait in memory until it is written"
            )
        return self

    @model_validator(mode="after")
    def _workers_watch_the_model(self) -> ServeParams:
        if self.workers > 1 and self.watch_seconds == 0:
            raise ValueError("serve.workers > 1 needs serve.watch_seconds > 0: POST /reload reaches one worker, the watch reaches them all")
        return self


class ComputeParams(Section):
    """Where the work runs. Every table is a folder of Parquet parts and every step works part by part under either engine, writing the same bytes; the engine decides only where the parts are processed and where LightGBM trains, so switching it reruns train and what follows only."""

    engine: Literal["local", "dask"] = Field(
        "local",
        description="local: each stage processes the parts one after another in its own process and trains LightGBM there; dask: the parts are processed on a Dask cluster's workers and LightGBM trains there (lightgbm.dask); the data stages' outputs are the same bytes either way (docs/scaling.md)",
    )
    scheduler: str = Field(
        "local",
        description="with engine dask: local starts a cluster of compute.workers processes on this machine for the stage's duration; or the address of a running scheduler, such as tcp://10.0.0.5:8786",
    )
    workers: int = Field(
        2, ge=1, description="with scheduler local: worker processes (each data step and train spread the parts over them)"
    )
    threads_per_worker: int = Field(1, ge=1, description="with scheduler local: threads per worker process")
    memory_limit: str = Field(
        "4GiB",
        pattern=r"^(auto|\d+(\.\d+)?\s*([kKMGT]i?B)?)$",
        description="with scheduler local: each worker's memory limit (4GiB, 500MB, auto); past it a worker spills to disk, then pauses",
    )
    connect_timeout_seconds: float = Field(10.0, gt=0, description="how long to wait for a remote scheduler before failing")

    @model_validator(mode="after")
    def _scheduler_is_local_or_an_address(self) -> ComputeParams:
        if self.scheduler == "local":
            return self
        if "@" in self.scheduler:  # the message does not quote it: it may hold a password
            raise ValueError(
                f"{FIELD_MARK}scheduler: an address holds no user or password (params.yaml is committed): give tcp://host:port"
            )
        if not re.fullmatch(r"(tcp|tls)://[^\s/?#]+:\d+", self.scheduler):
            raise ValueError(
                f"{FIELD_MARK}scheduler: give local, or a scheduler address such as tcp://10.0.0.5:8786 (got {self.scheduler!r})"
            )
        return self


class Guard(Section):
    """A metric that must not get worse by more than `max_drop` (or `max_rise` for losses)."""

    file: str = Field(min_length=1, description="a metrics file, e.g. metrics/evaluation.json")
    key: str = Field(min_length=1, description="a dotted key in it, e.g. test.roc_auc")
    max_drop: float | None = Field(None, ge=0, description="higher is better: the largest fall allowed")
    max_rise: float | None = Field(None, ge=0, description="lower is better: the largest rise allowed")

    @model_validator(mode="after")
    def _one_direction(self) -> Guard:
        if (self.max_drop is None) == (self.max_rise is None):
            raise ValueError("a guard needs exactly one of max_drop (higher is better) or max_rise (lower is better)")
        return self


class ReviewParams(Section):
    """What `make review` guards when it compares the workspace with a git revision."""

    guards: list[Guard] = Field(
        [],
        description="metrics that must not get worse by more than their limit: `mlpipe review` exits 1 when one does, or disappears (through make every failure is exit 2)",
    )


class CardParams(Section):
    """What the model card (models/card.md for people, models/card.json for tools, written by the card
    stage) says that no file of the pipeline knows: who the model is for and what it must not be used
    for. Everything else on the card is read from the pipeline's files. Plain text: Markdown and HTML
    in it are shown as written, never rendered. `make init` empties these keys, which described the
    table before."""

    name: str | None = Field(None, description="the model's name in the card's title and model-index; null: '<target> classifier'")
    dataset_name: str | None = Field(
        None, description="a readable name of the training data for the card and its model-index; null: data.source"
    )
    intended_use: str | None = Field(
        None, description="what the model is for and who uses it (the card's Direct Use); null: the card says it is not stated"
    )
    out_of_scope: list[str] = Field([], description="uses the model is not fit for, one an entry (the card's Out-of-Scope Use)")
    limitations: list[str] = Field(
        [], description="known limitations and risks, one an entry (the card lists them above the measured group and drift figures)"
    )
    license: str | None = Field(
        None,
        description="the model's licence as a Hugging Face licence id (mit, apache-2.0, cc-by-4.0, other ...); null: not stated",
    )
    owners: list[str] = Field([], description="who answers for the model: names of teams or shared addresses (the card is published)")


with warnings.catch_warnings():
    # BaseModel.validate is pydantic v1's deprecated name for model_validate; the section's name wins.
    warnings.filterwarnings("ignore", message='Field name "validate"', category=UserWarning)

    class Params(BaseModel):
        """The whole of params.yaml."""

        model_config = ConfigDict(extra="allow", frozen=True)

        data: DataParams
        init: InitParams = InitParams()
        sql_snapshots: dict[str, SqlSnapshot] = Field(
            {},
            description="name: {url, query | table, order_by, password_env}; one snapshot@name stage per entry writes data/snapshots/<name>.parquet on every dvc repro",
        )
        validate: ValidateParams = ValidateParams()
        split: SplitParams = SplitParams()
        features: FeaturesParams = FeaturesParams()
        train: TrainParams = TrainParams()
        tune: TuneParams = TuneParams()
        calibration: CalibrationParams = CalibrationParams()
        evaluate: EvaluateParams = EvaluateParams()
        fairness: FairnessParams = FairnessParams()
        explain: ExplainParams = ExplainParams()
        monitor: MonitorParams
        drift: DriftParams = DriftParams()
        review: ReviewParams = ReviewParams()
        card: CardParams = CardParams()
        serve: ServeParams = ServeParams()
        compute: ComputeParams = ComputeParams()

        @model_validator(mode="after")
        def _snapshot_names_fit_file_names(self) -> Params:
            for name in self.sql_snapshots:
                if not re.fullmatch(SNAPSHOT_NAME, name):
                    raise ValueError(
                        f"sql_snapshots name {name!r} must use only letters, digits, '_' and '-' (it names a stage and a file)"
                    )
            return self

        @model_validator(mode="after")
        def _drift_windows_fit_the_data(self) -> Params:
            """Windows that cannot select current rows fail here, in the params check every stage runs,
            rather than in the drift stage after training."""
            for name, window in self.drift.windows.items():
                key = f"drift.windows.{name}"
                bounds = {bound: value for bound, value in (("start", window.start), ("end", window.end)) if value is not None}
                if not bounds:
                    continue
                if not self.data.time_column:
                    raise ValueError(
                        f"{key} has start/end but data.time_column is null: a table without a time column has "
                        "no periods; use a window without bounds (all: {}), or set data.time_column"
                    )
                for bound, value in bounds.items():
                    if isinstance(value, str) and _time_order(value) is None:
                        raise ValueError(f"{key}.{bound} {value!r} is neither a number nor a date (write dates as YYYY-MM-DD)")
                if len(bounds) == 2 and not _comparable(window.start, window.end):
                    raise ValueError(
                        f"{key}: start {window.start!r} and end {window.end!r} are not the same kind of time (a number and a date)"
                    )
                if len(bounds) == 2 and _time_order(window.start) > _time_order(window.end):
                    raise ValueError(f"{key}: start {window.start!r} comes after end {window.end!r}, so it selects nothing: swap them")
                if self.split.strategy == "time" and window.end is not None and self.split.train_until is not None:
                    if not _comparable(window.end, self.split.train_until):
                        raise ValueError(
                            f"{key}.end {window.end!r} and split.train_until {self.split.train_until!r} are not the same "
                            "kind of time (a number and a date): write both like the values of data.time_column"
                        )
                    end, train_until = _time_order(window.end), _time_order(self.split.train_until)
                    if end is not None and train_until is not None and end <= train_until:
                        raise ValueError(
                            f"{key} ends at {window.end!r}, inside the training period (split.train_until "
                            f"{self.split.train_until!r}): drift compares later rows with that period, so the window "
                            "selects nothing to compare; move it after split.train_until"
                        )
            return self


def _comparable(first: Scalar, second: Scalar) -> bool:
    """Two time bounds are comparable when both are numbers or both are text (dates)."""
    return isinstance(first, str) == isinstance(second, str)


def _time_order(value: Scalar):
    """A time bound as something to compare: numbers as they are, text as a date (None when it is not one)."""
    if isinstance(value, str):
        import pandas as pd

        try:
            return pd.Timestamp(value)
        except ValueError:
            return None
    return value


SECTIONS = tuple(Params.model_fields)


def parse_params(raw: Any, origin: str = "params.yaml") -> Params:
    """Validate a params mapping; the error names the first offending key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping of sections ({', '.join(SECTIONS)}), got {type(raw).__name__}")
    for key in raw:
        close = difflib.get_close_matches(str(key), SECTIONS, n=1, cutoff=0.75)
        if key not in SECTIONS and close:
            raise ConfigError(f"{origin}: unknown section '{key}'; did you mean '{close[0]}'?")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {describe_validation_error(exc)}") from None
    except ConfigError as exc:  # raised by a section's own check (it already names the key)
        raise ConfigError(f"{origin}: {exc}") from None


# Keys that moved to another section: a params.yaml written before the move names the new place.
MOVED_KEYS = {"compute.partition_rows": "data.partition_rows"}  # the part size shapes the tables, not where they are computed
# Keys that are gone, and what to write instead ({value}: the value the old key held).
RETIRED_KEYS = {
    "evaluate.threshold": "the decision threshold is chosen on the calibration slice now (calibration.threshold); remove "
    "evaluate.threshold, and to keep this one set calibration.threshold.objective: fixed and calibration.threshold.value: {value}",
}


def describe_validation_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    key = ".".join(str(part) for part in first["loc"] if not str(part).startswith("function-after"))
    message = first["msg"].removeprefix("Value error, ")
    if message.startswith(FIELD_MARK):
        field, _, message = message.removeprefix(FIELD_MARK).partition(": ")
        return f"{key}.{field}: {message}" if key else f"{field}: {message}"
    if first["type"] == "extra_forbidden":
        if key in MOVED_KEYS:
            return f"'{key}' is now '{MOVED_KEYS[key]}': move it there"
        if key in RETIRED_KEYS:
            return f"'{key}' is gone: {RETIRED_KEYS[key].format(value=first.get('input'))}"
        return f"unknown key '{key}' (check its spelling)"
    if first["type"] == "missing":
        return f"missing required key '{key}'"
    if "input" in first and not isinstance(first["input"], dict):
        message = f"{message} (got {first['input']!r})"
    return f"{key}: {message}" if key else message


# What each params file held when this process read it, so that a stage can tell, before it
# writes anything, whether the file changed under it (see `changes_since_read`).
_READ: dict[Path, Any] = {}

# libyaml's loader reads the same documents as yaml.SafeLoader about 8 times faster; every stage
# reads params.yaml twice (at its start and before it writes). PyYAML's wheels ship libyaml.
_FAST_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_FAST_SAFE_LOADER):
    """YAML that names a key twice in one mapping is refused: PyYAML would keep the last value and
    DVC's reader (ruamel) refuses the file, so the stages and dvc.lock would disagree on it."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may be overridden by the keys beside it
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # PyYAML's own check names it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice in one mapping: keep one", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


_SAFE_LOADER = _UniqueKeyLoader


def read_params_file(path: str | Path) -> Any:
    """The parsed YAML of a params file; one-line errors for a missing or malformed file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"params file '{path}' not found: run from the repository root") from None
    return read_params_text(text, str(path))


def read_params_text(text: str, origin: str) -> Any:
    """A params file's text parsed as every stage reads it (`make init` checks what it writes with this)."""
    try:
        return yaml.load(text, Loader=_SAFE_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{origin}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None


def load_params(path: str | Path = "params.yaml", fresh: bool = False) -> Params:
    """Read and check a params file. `fresh` starts a new record of what was read (a new stage run),
    against which `changes_since_read` compares the files later."""
    if fresh:
        _READ.clear()
    raw = read_params_file(path)
    _READ[Path(path).resolve()] = copy.deepcopy(raw)
    return parse_params(raw, origin=str(path))


def changes_since_read() -> list[str]:
    """The keys whose values differ between each params file now and when `load_params` read it.

    DVC records the params it finds in the file after a stage ends. A value changed while the
    stage ran would be recorded though never used, and the next `dvc repro` would skip the stage.
    """
    changes = []
    for path, then in _READ.items():
        try:
            now = read_params_file(path)
        except ConfigError as exc:
            changes.append(str(exc))
            continue
        changes.extend(f"{path.name}: {change}" for change in _differences(then, now))
    return changes


def _differences(then: Any, now: Any, key: str = "") -> list[str]:
    if isinstance(then, dict) and isinstance(now, dict):
        return [
            change
            for name in [*then, *(name for name in now if name not in then)]
            for change in _differences(then.get(name, "<absent>"), now.get(name, "<absent>"), f"{key}.{name}".lstrip("."))
        ]
    return [] if then == now and type(then) is type(now) else [f"{key or '(the whole file)'} {then!r} -> {now!r}"]
