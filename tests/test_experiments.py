"""Experiments end to end: a queued sweep through `make sweep`'s tool (tuning and review: test_tuning_and_review_in_dvc.py)."""

import json
import re

import pytest

from mlpipe.tools.workspace import stages_run

pytestmark = pytest.mark.integration

UPSTREAM = ["ingest", "validate", "split", "featurize"]
DOWNSTREAM = ["train", "evaluate", "fairness", "predict", "drift", "card"]


def ran_and_skipped(log: str) -> tuple[list[str], list[str]]:
    return stages_run(log), re.findall(r"Stage '([^']+)' didn't change, skipping", log)


def test_queued_sweep_runs_only_train_and_downstream_in_each_experiment(repo):
    # A grid of two points (a 2 x 1 product) from the committed, reproduced workspace, run at the
    # same time; one of them has a learning rate the params check refuses.
    run = repo.run(
        "python",
        "-m",
        "mlpipe.tools.experiments",
        "train.learning_rate=0.1,-1",
        "train.num_leaves=7",
        "--jobs",
        "2",
        check=False,
    )
    names = re.search(r"queued 2 experiments: (.+)", run.stdout).group(1).split(", ")
    # It shows progress while they run (`dvc queue start`'s workers once held its output pipe, so
    # the first line came after they had all ended and exited).
    first = re.search(r"\] (\d+) success, (\d+) failed, (\d+) running, (\d+) queued", run.stdout)
    assert int(first.group(3)) + int(first.group(4)) > 0, run.stdout
    assert "| Experiment | State | train.learning_rate | train.num_leaves | test.roc_auc |" in run.stdout

    # The failing experiment says why in one line from the stage, and the sweep exits 1.
    assert run.returncode == 1
    assert "error: train: params.yaml: train.learning_rate: Input should be greater than 0" in run.stderr
    failed = re.findall(r"experiment (\S+) failed: error: train:", run.stderr)
    assert len(failed) == 1 and failed[0] in names
    succeeded = [name for name in names if name not in failed]
    # The table shows the failed one as failed, without the metrics DVC gives it from its baseline.
    assert re.search(rf"^\| {failed[0]} \| failed \| -1 \| 7 \| — \| — \| — \| — \|$", run.stdout, re.M), run.stdout
    assert re.search(rf"^\| {succeeded[0]} \| success \| 0\.1 \| 7 \| 0\.\d+ \| 0\.\d+ \| \d+ \| (True|False) \|$", run.stdout, re.M), (
        run.stdout
    )

    for name in succeeded:
        ran, skipped = ran_and_skipped(repo.dvc("queue", "logs", name).stdout)
        assert ran == DOWNSTREAM, name
        assert skipped == UPSTREAM, name

    shown = json.loads(repo.dvc("exp", "show", "--json").stdout)
    experiments = [exp for entry in shown for exp in (entry.get("experiments") or [])]
    aucs = {}
    for experiment in experiments:
        revision = experiment["revs"][0]
        if revision.get("name") in succeeded:
            params = revision["data"]["params"]["params.yaml"]["data"]["train"]
            metrics = revision["data"]["metrics"]["metrics/evaluation.json"]["data"]["test"]
            aucs[(params["learning_rate"], params["num_leaves"])] = metrics["roc_auc"]
    assert set(aucs) == {(0.1, 7)}
    # Its own params reached its stages: its ROC-AUC is not the workspace's (other params).
    workspace = json.loads((repo.path / "metrics" / "evaluation.json").read_text())["test"]["roc_auc"]
    assert aucs[(0.1, 7)] != workspace, aucs
