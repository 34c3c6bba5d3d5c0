"""The leakage guard of `make init`: columns that give the outcome away.

A column recorded after the outcome (a re-arrest flag beside "re-arrested within two years", the
date of a later event, a survival time) predicts the target almost perfectly in the table and is
unknown when the model is used. A model trained with it scores near 1 on every split of that table
and is worthless in use. Each candidate feature is scored ALONE against the target, on the rows
the split trains on (the test rows stay unseen, so choosing features does not peek at the test):

- its values: rank ROC-AUC for numbers and dates, max(AUC, 1 - AUC) so that the direction does not
  matter; for text, the ROC-AUC of an out-of-fold target-rate encoding (each row's value scored by
  the target rate of that value in the other folds, so a value unique to one row learns nothing);
- whether it is empty: the ROC-AUC of `isnull` (a later event's date is empty when it did not happen);
- a value (or emptiness) that settles the target: one class in every training row that holds it.

The rule that turns scores into drops is `mlpipe.config.InitParams`; its description and
docs/walkthrough.md explain the defaults. Pure functions: no file is read or written here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlpipe.model.metrics import roc_auc

if TYPE_CHECKING:
    from mlpipe.config import InitParams

# Fewer rows of either class than this and a single column's AUC is noise (its spread on 20 rows a
# class is about 0.09, so an unrelated column reaches 0.9 about once in 100,000): not scored.
MIN_CLASS_ROWS = 20
FOLDS = 5
# The target-rate encoding pulls a value seen n times towards the overall rate by SMOOTHING / (n + SMOOTHING).
SMOOTHING = 10
# A settled value must hold so many rows that an unrelated column would show at least this many of
# the other class there: the chance of seeing none is then below e**-10 (about 1 in 22,000).
MIN_EXPECTED_EXCEPTIONS = 10


@dataclass(frozen=True)
class Settled:
    """A value of a column, or its being empty or not, with one target class in all its rows."""

    where: str  # "it is 'x'", "it is empty", "it is not empty"
    rows: int
    positive: bool
    expected_exceptions: float


@dataclass(frozen=True)
class ColumnScore:
    column: str
    auc: float | None  # its values alone, on the rows where it is not empty (None: too few rows)
    missing_auc: float | None  # whether it is empty (None: never or always empty)
    settled: Settled | None

    @property
    def best(self) -> float:
        return max(self.auc or 0.5, self.missing_auc or 0.5)


@dataclass(frozen=True)
class Leak:
    column: str
    reason: str  # short, for the comment beside data.drop_columns in params.yaml
    warning: str  # the line `make init` prints


def score_columns(features: pd.DataFrame, is_positive: pd.Series, min_settled_share: float, seed: int = 0) -> list[ColumnScore]:
    """Each column of `features` scored alone against the boolean target `is_positive` (same rows)."""
    positive = np.asarray(is_positive, dtype=bool)
    return [_score(features[column], positive, min_settled_share, seed) for column in features.columns]


def find_leaks(
    features: pd.DataFrame, is_positive: pd.Series, target: str, positive_label: Any, rule: InitParams, seed: int = 0
) -> tuple[list[Leak], list[ColumnScore]]:
    """The columns of `features` (the training rows) that `rule` drops as leaks, strongest first,
    and every column's score. Columns in rule.keep_columns are never dropped, and count among the
    columns that stay when the gap is measured."""
    scores = score_columns(features, is_positive, rule.min_settled_share, seed)
    ranked = sorted(scores, key=lambda score: (-score.best, score.column))
    judged = [score for score in ranked if score.column not in rule.keep_columns]
    # The plain rules first; the gap is then measured against the columns they leave.
    plain = {score.column for score in judged if score.best > rule.max_feature_auc or score.settled is not None}
    rest = [score for score in ranked if score.column not in plain]
    first_kept = next((index for index, score in enumerate(rest) if score.column in rule.keep_columns), len(rest))
    far_above = {score.column for score in rest[: _gap_suspects([score.best for score in rest], first_kept, rule)]}
    best_kept = next((score for score in rest if score.column not in far_above), None)
    leaks = [_judge(score, score.column in far_above, best_kept, target, positive_label, rule) for score in judged]
    return [leak for leak in leaks if leak is not None], scores


def _gap_suspects(best: list[float], within: int, rule: InitParams) -> int:
    """How many of the top-ranked columns (of the first `within`) stand above rule.suspect_feature_auc
    and at least rule.min_auc_gap above every column below them: the largest such count (0: none).
    At least one column stays: a table whose every column is strong is a strong table."""
    count = 0
    for index, score in enumerate(best[: min(within, len(best) - 1)]):
        if score > rule.suspect_feature_auc and score - best[index + 1] >= rule.min_auc_gap:
            count = index + 1
    return count


def _judge(score: ColumnScore, far_above: bool, best_kept: ColumnScore | None, target: str, label: Any, rule: InitParams) -> Leak | None:
    by_emptiness = (score.missing_auc or 0.5) > (score.auc or 0.5)
    predicts = (
        f"{'whether it is empty' if by_emptiness else 'alone it'} predicts {target} with ROC-AUC {score.best:.3f} on the training rows"
    )
    short = f"{'its emptiness' if by_emptiness else 'alone it'} predicts {target} with ROC-AUC {score.best:.3f}"
    if score.best > rule.max_feature_auc:
        why = f"{predicts} (init.max_feature_auc={rule.max_feature_auc:g})"
    elif far_above:
        kept = f"'{best_kept.column}' {best_kept.best:.3f}" if best_kept else "none"
        why = (
            f"{predicts} (above init.suspect_feature_auc={rule.suspect_feature_auc:g} and at least "
            f"init.min_auc_gap={rule.min_auc_gap:g} above every column kept, the best {kept})"
        )
    elif score.settled is not None:
        settled = score.settled
        where = settled.where
        outcome = f"{target} is {label!r}" if settled.positive else f"{target} is never {label!r}"
        why = (
            f"where {where} ({settled.rows:,} training rows) {outcome} in every row, where an unrelated column would show "
            f"about {settled.expected_exceptions:,.0f} exceptions (init.min_settled_share={rule.min_settled_share:g})"
        )
        short = f"where {where}, {outcome} ({settled.rows:,} training rows)"
    else:
        return None
    return Leak(
        score.column,
        f"leak? {short}",
        f"drop '{score.column}': {why}: a value recorded after the outcome? keep it only if it is known at prediction time "
        "(add it to init.keep_columns and run make init again with FORCE=1)",
    )


def _score(values: pd.Series, positive: np.ndarray, min_settled_share: float, seed: int) -> ColumnScore:
    present = values.notna().to_numpy()
    missing_auc = _two_sided_auc(positive, ~present) if 0 < present.sum() < len(present) else None
    auc = None
    if min(positive[present].sum(), (~positive[present]).sum()) >= MIN_CLASS_ROWS:
        kept, labels = values[present], positive[present]
        if pd.api.types.is_datetime64_any_dtype(kept):
            ranks = kept.astype("int64").to_numpy(dtype=float)
        elif pd.api.types.is_numeric_dtype(kept) and not pd.api.types.is_bool_dtype(kept):
            ranks = kept.to_numpy(dtype=float)
        else:
            ranks = out_of_fold_rates(kept.astype(str).to_numpy(), labels, seed)
        auc = _two_sided_auc(labels, ranks)
    return ColumnScore(str(values.name), auc, missing_auc, _settled(values, positive, min_settled_share))


def _two_sided_auc(positive: np.ndarray, score: np.ndarray) -> float:
    auc = roc_auc(positive.astype(int), np.asarray(score, dtype=float))
    return max(auc, 1.0 - auc)


def out_of_fold_rates(values: np.ndarray, positive: np.ndarray, seed: int) -> np.ndarray:
    """Each row's value encoded as the smoothed positive rate of that value in the other folds
    (folds stratified by the target, seeded); a value not seen there gets the overall rate."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(values), dtype=int)
    for rows in (np.flatnonzero(positive), np.flatnonzero(~positive)):
        fold[rng.permutation(rows)] = np.arange(len(rows)) % FOLDS
    encoded = np.empty(len(values))
    for k in range(FOLDS):
        held = fold == k
        learn = pd.DataFrame({"value": values[~held], "positive": positive[~held]})
        prior = learn["positive"].mean()
        counts = learn.groupby("value")["positive"].agg(["sum", "count"])
        rates = (counts["sum"] + SMOOTHING * prior) / (counts["count"] + SMOOTHING)
        encoded[held] = pd.Series(values[held]).map(rates).fillna(prior).to_numpy()
    return encoded


def _settled(values: pd.Series, positive: np.ndarray, min_share: float) -> Settled | None:
    """The largest group of rows holding one target class only, among the rows of each value and
    the rows where the column is empty or not (a later event's details are present only when it
    happened, spread over many values): when they are at least `min_share` of the rows and an
    unrelated column would show MIN_EXPECTED_EXCEPTIONS of the other class there."""
    rows = len(positive)
    if rows == 0 or min_share >= 1:
        return None
    present = values.notna().to_numpy()
    groups = [("it is empty", ~present), ("it is not empty", present)]
    counts = values[present].value_counts()
    groups += [(f"it is {_plain(value)!r}", (values == value).to_numpy()) for value in counts.index[counts >= min_share * rows]]
    rate = positive.mean()
    found = None
    for where, members in groups:
        count, hits = int(members.sum()), int(positive[members].sum())
        if count < min_share * rows or 0 < hits < count:
            continue
        expected = count * ((1 - rate) if hits else rate)
        if expected >= MIN_EXPECTED_EXCEPTIONS and (found is None or count > found.rows):
            found = Settled(where, count, bool(hits), float(expected))
    return found


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def leak_guard(
    table: pd.DataFrame,
    target: str,
    positive_label: Any,
    candidates: list[str],
    split: dict[str, Any],
    time_column: str | None,
    rule: InitParams,
) -> list[Leak]:
    """The leaks among the `candidates` features of `table`, scored on the rows that `split` (the
    split section init writes) trains on. A random split uses split.seed and split.test_size at
    their defaults: a column that leaks does so on any large share of the rows."""
    from mlpipe.config import SplitParams
    from mlpipe.data.split import split_masks

    is_train, _ = split_masks(table, SplitParams.model_validate(split), time_column, target)
    training = table.loc[is_train & table[target].notna().to_numpy()]  # a row without a target is no evidence either way
    leaks, _ = find_leaks(training[candidates], training[target] == positive_label, target, positive_label, rule)
    return leaks
