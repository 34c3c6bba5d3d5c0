"""mlpipe.model.metrics computes scikit-learn's ranking metrics and curves without importing it: held
equal to scikit-learn's own functions, bit for bit, on labels and scores with and without ties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from mlpipe.model import metrics


def _same(ours, theirs) -> None:
    if isinstance(ours, tuple):
        for mine, reference in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(mine, reference)
    else:
        assert ours == theirs


def _check(y: np.ndarray, score: np.ndarray) -> None:
    _same(metrics.roc_curve(y, score), skm.roc_curve(y, score))
    _same(metrics.precision_recall_curve(y, score), skm.precision_recall_curve(y, score))
    _same(metrics.roc_auc(y, score), skm.roc_auc_score(y, score))
    _same(metrics.average_precision(y, score), skm.average_precision_score(y, score))
    _same(metrics.log_loss(y, score), skm.log_loss(y, score, labels=[0, 1]))


@pytest.mark.parametrize("ties", [None, 10, 3])
@pytest.mark.parametrize("rows", [2, 7, 1000, 20_000])
def test_equal_to_scikit_learn_on_random_scores(rows, ties):
    rng = np.random.default_rng(rows)
    y = rng.integers(0, 2, rows)
    y[:2] = [0, 1]  # both classes
    score = rng.random(rows) * 0.6 + y * 0.3
    if ties:  # few distinct scores: long runs of ties, as a shallow model gives
        score = np.round(score * ties) / ties
    _check(y, score)


def test_equal_to_scikit_learn_at_the_edges():
    # Probabilities of exactly 0 and 1 (log-loss clipping), a perfect and an inverted ranking.
    _check(np.array([0, 0, 1, 1]), np.array([0.0, 0.0, 1.0, 1.0]))
    _check(np.array([1, 1, 0, 0]), np.array([0.0, 0.1, 0.9, 1.0]))
    _check(np.array([0, 1, 0, 1, 1]), np.full(5, 0.5))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]) | st.floats(0, 1)), min_size=2, max_size=60)
)
def test_equal_to_scikit_learn_for_any_table(rows):
    y = np.array([label for label, _ in rows], dtype=int)
    score = np.array([value for _, value in rows])
    if y.min() == y.max():
        return  # one class: ROC-AUC undefined, binary_metrics reports None
    _check(y, score)


def test_tie_order_does_not_matter():
    rng = np.random.default_rng(0)
    y, score = rng.integers(0, 2, 500), np.round(rng.random(500), 1)
    shuffled = rng.permutation(500)
    _same(metrics.roc_curve(y, score), metrics.roc_curve(y[shuffled], score[shuffled]))
    _same(metrics.precision_recall_curve(y, score), metrics.precision_recall_curve(y[shuffled], score[shuffled]))
