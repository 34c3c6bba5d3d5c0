"""Experiments end to end: a queued sweep through `make sweep`'s tool (tuning and review: test_tuning_and_review_in_dvc.py)."""

import json
import re
import sys

import pytest

from mlpipe.tools.workspace import stages_run

pytestmark = pytest.mark.integration

UPSTREAM = ["ingest", "validate", "split", "featurize"]
DOWNSTREAM = ["train", "evaluate", "predict", "drift"]


def ran_and_skipped(log: str) -> tuple[list[str], list[str]]:
    return stages_run(log), re.findall(r"Stage '([^']+)' didn't change, skipping", log)


def test_queued_sweep_runs_only_train_and_downstream_in_each_experiment(repo):
    # A grid of two points (a 2 x 1 product) from the committed, reproduced workspace, run two at a time.
    run = repo.run(sys.executable, "-m", "mlpipe.tools.experiments", "train.learning_rate=0.03,0.1", "train.num_leaves=7", "--jobs", "2")
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
    assert set(aucs) == {(0.03, 7), (0.1, 7)}
    assert len(set(aucs.values())) == 2, aucs

    # A failing experiment says why in its queue log, in one line from the stage.
    failing = repo.run(sys.executable, "-m", "mlpipe.tools.experiments", "train.learning_rate=-1", "--jobs", "1", check=False)
    assert failing.returncode == 1
    assert "error: train: params.yaml: train.learning_rate: Input should be greater than 0" in failing.stderr
