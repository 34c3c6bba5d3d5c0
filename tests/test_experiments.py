"""Experiments end to end: a queued sweep, tuning inside the pipeline, and the review gate."""

import json
import re
import sys

import pytest
import yaml

from mlpipe.tools.workspace import stages_run

pytestmark = pytest.mark.integration

UPSTREAM = ["ingest", "validate", "split", "featurize"]
DOWNSTREAM = ["train", "evaluate", "predict", "drift"]


def ran_and_skipped(log: str) -> tuple[list[str], list[str]]:
    return stages_run(log), re.findall(r"Stage '([^']+)' didn't change, skipping", log)


def test_queued_sweep_runs_only_train_and_downstream_in_each_experiment(repo):
    # Small trees matter on the small sample only when leaves may hold few rows.
    repo.set_params(train={"min_child_samples": 5}, drift={"windows": {"all": {}}})
    repo.dvc("repro")
    repo.commit("baseline for the sweep")

    # A grid of two points (a 2 x 1 product), run two at a time.
    run = repo.run(sys.executable, "-m", "mlpipe.tools.experiments", "train.learning_rate=0.03,0.1", "train.num_leaves=4", "--jobs", "2")
    names = re.search(r"queued 2 experiments: (.+)", run.stdout).group(1).split(", ")
    assert "| Experiment" in run.stdout  # dvc exp show --md

    for name in names:
        ran, skipped = ran_and_skipped(repo.dvc("queue", "logs", name).stdout)
        assert ran == DOWNSTREAM, name
        assert skipped == UPSTREAM, name

    shown = json.loads(repo.dvc("exp", "show", "--json").stdout)
    experiments = [exp for entry in shown for exp in (entry.get("experiments") or [])]
    aucs = {}
    for experiment in experiments:
        revision = experiment["revs"][0]
        if revision.get("name") in names:
            params = revision["data"]["params"]["params.yaml"]["data"]["train"]
            metrics = revision["data"]["metrics"]["metrics/evaluation.json"]["data"]["test"]
            aucs[(params["learning_rate"], params["num_leaves"])] = metrics["roc_auc"]
    assert set(aucs) == {(0.03, 4), (0.1, 4)}
    assert len(set(aucs.values())) == 2, aucs

    # A failing experiment says why in its queue log, in one line from the stage.
    failing = repo.run(sys.executable, "-m", "mlpipe.tools.experiments", "train.learning_rate=-1", "--jobs", "1", check=False)
    assert failing.returncode == 1
    assert "error: train: params.yaml: train.learning_rate: Input should be greater than 0" in failing.stderr


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
    # The same search again: nothing to rerun, and forcing it gives the same history.
    assert repo.dvc("repro").stages_run == []
    repo.dvc("repro", "-f", "-s", "train")
    assert json.loads((repo.path / "metrics/tuning.json").read_text()) == tuning


def make_review(repo, base: str):
    return repo.make("review", f"BASE={base}", check=False)


def test_review_between_two_commits_then_the_regression_gate(repo):
    repo.set_params(train={"learning_rate": 0.1})
    repo.dvc("repro")
    repo.commit("learning rate 0.1")

    run = make_review(repo, "HEAD~1")
    assert run.returncode == 0, run.stdout + run.stderr
    report = (repo.path / "reports/review.md").read_text()
    assert re.search(r"\| params.yaml \| `train.learning_rate` \| 0.05 \| 0.1 \|", report)
    assert re.search(r"\| `test.roc_auc` \| 0\.\d+ \| 0\.\d+ \| [+-]\d", report)
    assert "## Drift (workspace)" in report
    assert (repo.path / "reports/review_plots/index.html").exists()

    repo.set_params(train={"num_leaves": 2, "n_estimators": 3, "early_stopping_rounds": 0})
    repo.dvc("repro")
    regressed = make_review(repo, "HEAD")
    assert regressed.returncode != 0
    assert "FAIL metrics/evaluation.json:test.roc_auc" in regressed.stdout
    assert "**REGRESSION**" in (repo.path / "reports/review.md").read_text()
