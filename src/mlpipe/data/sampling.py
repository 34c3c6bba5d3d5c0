"""Seeded, stratified row sampling: the test set of a random split and the early-stopping slice."""

from __future__ import annotations

import numpy as np
import pandas as pd


def stratified_mask(labels: pd.Series | None, n_rows: int, fraction: float, seed: int) -> np.ndarray:
    """A seeded random `fraction` of rows, the same fraction within each label when labels are given.

    Plain numpy rather than scikit-learn's splitter: it is a few lines, and it keeps
    scikit-learn's import time out of the stages that only split.
    """
    rng = np.random.default_rng(seed)
    groups = (
        [np.arange(n_rows)]
        if labels is None
        else [np.flatnonzero(labels.to_numpy() == value) for value in sorted(labels.dropna().unique(), key=str)]
    )
    is_test = np.zeros(n_rows, dtype=bool)
    for rows in groups:
        chosen = rng.permutation(rows)[: int(round(fraction * len(rows)))]
        is_test[chosen] = True
    return is_test
