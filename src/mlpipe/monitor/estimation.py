"""Performance estimated without labels: confidence-based performance estimation (CBPE).

The method is NannyML's CBPE (https://nannyml.readthedocs.io/en/stable/how_it_works/performance_estimation.html,
`estimate_roc_auc` and `BinaryClassificationAccuracy` in nannyml/performance_estimation/confidence_based/metrics.py),
written here in numpy. When the probabilities are calibrated, a row scored p is positive with
probability p, so each row adds p expected positives and 1 - p expected negatives:

- expected accuracy: the mean over rows of p where the row's predicted label is positive and
  1 - p where it is negative (so the threshold predict used is read from the predicted labels);
- expected ROC-AUC: at every threshold, the expected true positives are the sum of p over the
  rows scored at or above it and the expected false positives the sum of 1 - p; the area under
  the curve of their rates, by the trapezoidal rule.

It assumes calibrated probabilities and no concept drift: it sees the probabilities only, so a
change of P(y | x) that leaves them as they were goes unnoticed.

Uncertainty (not NannyML's sampling-error formula, which scales the standard deviation of a
labelled reference): `DRAWS` Monte-Carlo draws of the labels, each row positive with its
probability (seeded by drift.seed), give the distribution of the realised metric around the
estimate; `std` is their standard deviation and `low`..`high` their central 95%, an interval the
realised metric falls in 95% of the time when the assumptions hold.

The drift stage reads a window's rows part by part, so the estimate comes from a `Histogram` of
the probabilities that parts add up exactly: row counts and probability sums per bin of a fixed
grid of `BINS` bins, for predicted-negative and predicted-positive rows apart. Sums are integers
in units of 2**-24 (`UNITS`), so any cut of a table into parts merges to the same histogram, to the
bit, and so to the same JSON (float sums would depend on the order of the additions). Accuracy
comes out exactly; ROC-AUC treats the rows of one bin as tied: 2e-8 from the unbinned estimate on
30,000 of the default data's rows (tests/test_estimation.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

BINS = 10_000  # bins of width 1e-4 over [0, 1]
# A probability sum counts in these units (a rounding of at most 3e-8 per row): a part's sums stay
# exact integers in float64 (bincount's weights) up to 2**29 rows in one bin.
UNITS = 2**24
DRAWS = 1_000  # Monte-Carlo label draws for the uncertainty
DRAW_BINS = 1_000  # the draws run on this coarser grid (10 bins merged): a tenth of the time, the same spread
INTERVAL = (2.5, 97.5)  # percentiles of the draws: a 95% interval


@dataclass(frozen=True)
class Histogram:
    """Rows and probability sums per bin: `counts[k, b]` rows of bin b whose predicted label is
    negative (k=0) or positive (k=1), and `sums[k, b]` their probabilities' sum in 1/UNITS."""

    counts: np.ndarray
    sums: np.ndarray

    @classmethod
    def of(cls, probabilities: np.ndarray, predicted_positive: np.ndarray) -> Histogram:
        probabilities = np.asarray(probabilities, dtype=float)
        # a probability of exactly 1 goes into the last bin; clipping also keeps a bad value from indexing outside
        cells = np.clip((probabilities * BINS).astype(np.int64), 0, BINS - 1) + BINS * np.asarray(predicted_positive, dtype=np.int64)
        units = np.rint(probabilities * UNITS)
        counts = np.bincount(cells, minlength=2 * BINS).reshape(2, BINS)
        sums = np.bincount(cells, weights=units, minlength=2 * BINS).astype(np.int64).reshape(2, BINS)
        return cls(counts, sums)

    @classmethod
    def merge(cls, parts: list[Histogram]) -> Histogram:
        return cls(sum(part.counts for part in parts), sum(part.sums for part in parts))

    @property
    def rows(self) -> int:
        return int(self.counts.sum())


def expected_roc_auc(rows: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """ROC-AUC from groups of tied scores in ascending order along the last axis: each group's row
    count and (expected or drawn) positives. Rows scored above a group rank above all of it; within
    a group half of the pairs count (the trapezoidal rule, as scikit-learn's roc_auc_score on ties).
    NaN when the positives or the negatives add up to nothing. Works on a stack of draws (2-D)."""
    positives = np.asarray(positives, dtype=float)
    negatives = rows - positives
    above = np.cumsum(positives[..., ::-1], axis=-1)[..., ::-1] - positives  # positives scored strictly higher
    total_positive, total_negative = positives.sum(axis=-1), negatives.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (negatives * (above + positives / 2)).sum(axis=-1) / (total_positive * total_negative)


def estimate(histogram: Histogram, seed: int) -> dict[str, Any]:
    """The window's estimated ROC-AUC and accuracy, each as {value, std, low, high}, and the rows
    they cover. The ROC-AUC is None when every probability is 0 (or every one is 1), its interval
    when fewer than two draws hold both classes."""
    rows = histogram.rows
    positives = histogram.sums / UNITS  # expected positives per cell
    auc = float(expected_roc_auc(histogram.counts.sum(axis=0), positives.sum(axis=0)))
    accuracy = float((positives[1].sum() + histogram.counts[0].sum() - positives[0].sum()) / rows)

    # The draws: per cell of the coarse grid, its positives ~ Binomial(rows, mean probability)
    # (the sum of its rows' Bernoulli draws, whose probabilities differ by less than 1e-3).
    coarse_rows = histogram.counts.reshape(2, DRAW_BINS, -1).sum(axis=-1)
    coarse_positives = positives.reshape(2, DRAW_BINS, -1).sum(axis=-1)
    used = coarse_rows.sum(axis=0) > 0
    coarse_rows, coarse_positives = coarse_rows[:, used], coarse_positives[:, used]
    mean = np.divide(coarse_positives, coarse_rows, out=np.zeros_like(coarse_positives), where=coarse_rows > 0)
    drawn = np.random.default_rng(seed).binomial(coarse_rows, np.clip(mean, 0, 1), size=(DRAWS, *coarse_rows.shape))
    # The spread is taken around the estimate on the same grid, so the coarser ties shift nothing.
    auc_draws = expected_roc_auc(coarse_rows.sum(axis=0), drawn.sum(axis=1)) - expected_roc_auc(
        coarse_rows.sum(axis=0), coarse_positives.sum(axis=0)
    )
    accuracy_draws = (drawn[:, 1].sum(axis=-1) + coarse_rows[0].sum() - drawn[:, 0].sum(axis=-1)) / rows - accuracy
    return {"rows": rows, "roc_auc": _spread(auc, auc_draws), "accuracy": _spread(accuracy, accuracy_draws)}


def _spread(value: float, deviations: np.ndarray) -> dict[str, float | None]:
    """The estimate with the standard deviation and 95% interval of the draws around it."""
    deviations = deviations[np.isfinite(deviations)]  # a draw without both classes has no ROC-AUC
    if not np.isfinite(value) or len(deviations) < 2:
        return {"value": float(value) if np.isfinite(value) else None, "std": None, "low": None, "high": None}
    low, high = np.percentile(deviations, INTERVAL)
    return {
        "value": value,
        "std": float(np.std(deviations, ddof=1)),
        "low": float(max(value + low, 0.0)),
        "high": float(min(value + high, 1.0)),
    }
