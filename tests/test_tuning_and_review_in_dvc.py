"""Tuning inside `dvc repro`, and `make review` between two commits: apart from the sweep
(tests/test_experiments.py) so that the test workers run them side by side."""

import json
import re

import pytest
import yaml

pytestmark = pytest.mark.integration

DOWNSTREAM = ["train", "evaluate", "fairness", "predict", "drift", "card"]


def test_tuning_in_the_pipeline_feeds_train(repo):
    repo.set_params(tune={"enabled": True, "n_trials": 3, "folds": 2})
    run = repo.dvc("repro")
    assert run.stages_run == DOWNSTREAM
    assert len(re.findall(r"train: trial \d/3: roc_auc", run.stdout)) == 3
    tuning = json.loads((repo.path / "metrics/tuning.json").read_text())
    assert tuning["enabled"] and tuning["n_trials"] == 3 and len(tuning["trials"]) == 3
    used = yaml.safe_load((repo.path / "metrics/train/params.yaml").read_text())
    for name, value in tuning["best_params"].items():
        assert used[name] == pytest.approx(value, rel=1e-6), name
    history = json.loads((repo.path / "metrics/plots/tuning.json").read_text())
    assert [row["trial"] for row in history] == [0, 1, 2]
    # The same search again: nothing to rerun (a rerun's history is the same: tests/test_tuning_and_review.py).
    assert repo.dvc("repro").stages_run == []


def make_review(repo, base: str):
    return repo.make("review", f"BASE={base}", check=False)


def test_review_between_two_commits_then_the_regression_gate(repo):
    # Nothing changed since HEAD: the review passes.
    unchanged = make_review(repo, "HEAD")
    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr

    # A much smaller model, reproduced and committed: HEAD against HEAD~1 shows what changed and fails the gate.
    # A guard on a nested key of the fairness report, as params.yaml's example: DVC's diff finds it.
    fairness_guard = {"file": "metrics/fairness.json", "key": "sensitive.sex.equalized_odds_difference", "max_rise": 1.0}
    repo.set_params(
        train={"num_leaves": 2, "n_estimators": 3, "early_stopping_rounds": 0},
        review={"guards": [*repo.params()["review"]["guards"], fairness_guard]},
    )
    repo.dvc("repro")
    repo.commit("a tiny model")
    regressed = make_review(repo, "HEAD~1")
    assert regressed.returncode == 2  # make's status for any failing recipe
    assert "FAIL metrics/evaluation.json:test.roc_auc" in regressed.stdout
    # The command itself, as a CI gate calls it, exits 1: a guarded regression (mlpipe.errors).
    # make names the status its recipe's command exited with.
    assert re.search(r"^make: \*\*\* \[Makefile:\d+: review\] Error 1$", regressed.stderr, re.M), regressed.stderr
    report = (repo.path / "reports/review.md").read_text()
    assert re.search(r"\| params.yaml \| `train.num_leaves` \| 31 \| 2 \|", report)
    assert re.search(r"\| `test.roc_auc` \| 0\.\d+ \| 0\.\d+ \| -\d", report)
    assert "## Drift (workspace)" in report
    assert re.search(r"^pass metrics/fairness.json:sensitive.sex.equalized_odds_difference: [\d.]+ -> [\d.]+ ", regressed.stdout, re.M)
    assert "## Fairness by group" in report and "<summary><code>sex</code> (<code>SEX</code>):" in report and "| male |" in report
    assert "**REGRESSION**" in report
    assert (repo.path / "reports/review_plots/index.html").exists()
