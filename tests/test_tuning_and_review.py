"""Tuning (folds, reproducible search), the DVCLive training record, and the review report's logic."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import make_classification

from mlpipe.config import ConfigError, Guard, TrainParams, TuneParams, parse_params
from mlpipe.errors import ArtifactError, DataError
from mlpipe.model import tuning
from mlpipe.model.tracking import read_training_curve, write_training_record
from mlpipe.tools import experiments, review


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(n_samples=2000, n_features=5, n_informative=3, random_state=1)
    features = pd.DataFrame(X, columns=[f"x{i}" for i in range(5)])
    times = pd.Series(np.repeat([2011, 2012, 2013, 2014], 500)[np.random.default_rng(0).permutation(2000)])
    return features, pd.Series(y), times


TRAIN = TrainParams(n_estimators=60, early_stopping_rounds=10, num_threads=1)
TUNE = TuneParams(
    enabled=True,
    n_trials=4,
    folds=3,
    space={
        "learning_rate": {"low": 0.02, "high": 0.3, "log": True},
        "num_leaves": {"low": 4, "high": 64, "log": True},
        "min_child_samples": {"choices": [10, 40]},
    },
)


def test_time_ordered_folds_validate_on_later_rows(data):
    _, target, times = data
    for fit, valid in tuning.cv_folds(target, times, 3, seed=0):
        assert times.iloc[fit].max() <= times.iloc[valid].min()
        assert len(set(fit) & set(valid)) == 0


def test_stratified_folds_without_time_cover_every_row_once(data):
    _, target, _ = data
    folds = tuning.cv_folds(target, None, 4, seed=0)
    validated = np.concatenate([valid for _, valid in folds])
    assert sorted(validated) == list(range(len(target)))
    assert all(abs(target.iloc[valid].mean() - target.mean()) < 0.02 for _, valid in folds)


def test_a_fold_with_one_class_is_a_clear_error():
    target = pd.Series([0] * 50 + [1] * 50)
    with pytest.raises(DataError, match="tune.folds"):
        tuning.cv_folds(target, pd.Series(range(100)), 3, seed=0)


def test_search_is_reproducible_and_stays_in_the_space(data):
    features, target, times = data
    first = tuning.search(features, target, times, TRAIN, TUNE)
    second = tuning.search(features, target, times, TRAIN, TUNE)
    assert first == second
    assert len(first.trials) == 4
    assert first.best_score == max(trial["score"] for trial in first.trials)
    assert 0.02 <= first.best_params["learning_rate"] <= 0.3
    assert 4 <= first.best_params["num_leaves"] <= 64 and isinstance(first.best_params["num_leaves"], int)
    assert first.best_params["min_child_samples"] in (10, 40)
    history = first.history()
    assert [row["best_so_far"] for row in history] == list(np.maximum.accumulate([row["score"] for row in history]))


def test_a_different_seed_searches_differently(data):
    features, target, times = data
    first = tuning.search(features, target, times, TRAIN, TUNE)
    other = tuning.search(features, target, times, TRAIN, TUNE.model_copy(update={"seed": 7}))
    assert [t["params"] for t in first.trials] != [t["params"] for t in other.trials]


@pytest.mark.parametrize(
    "tune, message",
    [
        ({"space": {"n_estimators": {"low": 10, "high": 20}}}, "space.n_estimators is not tunable"),
        ({"space": {"learning_rate": {"low": 0, "high": 0.1, "log": True}}}, "log-scale range needs low > 0"),
        ({"space": {"learning_rate": {"low": 0.2, "high": 0.1}}}, "low < high"),
        ({"enabled": True, "space": {}}, "at least one entry in space"),
        ({"n_trial": 3}, "unknown key 'tune.n_trial'"),
    ],
)
def test_bad_tune_params_name_the_key(tune, message):
    with pytest.raises(ConfigError, match=message):
        parse_params({"data": {"source": "x.csv", "target": "y", "positive_label": 1}, "tune": tune})


def test_training_record_round_trips_and_replaces_the_whole_folder(tmp_path):
    curve = [{"iteration": i, "train_logloss": 1 / i, "validation_logloss": 1.1 / i} for i in range(1, 6)]
    folder = tmp_path / "train"
    (folder / "plots" / "metrics" / "stale").mkdir(parents=True)
    write_training_record(folder, {"learning_rate": 0.1}, curve, {"best_iteration": 5})
    assert not (folder / "plots" / "metrics" / "stale").exists()
    assert read_training_curve(folder) == [{k: round(v, 6) for k, v in point.items()} for point in curve]
    assert "learning_rate: 0.1" in (folder / "params.yaml").read_text()
    assert '"best_iteration": 5' in (folder / "metrics.json").read_text()
    assert "timestamp" not in (folder / "plots" / "metrics" / "training" / "logloss.tsv").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["train"]  # no staging folder left behind


@settings(max_examples=40, deadline=None)
@given(cut=st.floats(0.0, 0.999), which=st.sampled_from(["training", "validation"]))
def test_a_truncated_training_curve_is_one_artifact_error_naming_it(tmp_path_factory, cut, which):
    """A curve file cut anywhere (a killed copy, a partial `dvc pull`) is a corrupt file the train
    stage rebuilds: one ArtifactError naming it, never a traceback (evaluate reads it)."""
    folder = tmp_path_factory.mktemp("record") / "train"
    curve = [{"iteration": i, "train_logloss": 1 / i, "validation_logloss": 1.1 / i} for i in range(1, 30)]
    write_training_record(folder, {}, curve, {"best_iteration": 29})
    path = folder / "plots" / "metrics" / which / "logloss.tsv"
    content = path.read_bytes()
    path.write_bytes(content[: int(len(content) * cut)])
    with pytest.raises(ArtifactError, match=r"^training curve '.*' is corrupt or truncated \(.*\): rebuild it with `dvc repro train`$"):
        read_training_curve(folder)


def test_training_record_inside_a_dvc_repository_does_not_open_it(tmp_path):
    """DVCLive's repository discovery (DVC's import and a `Repo()`, half a second) is left out:
    the record saves no experiment. Run in a fresh interpreter inside a git+DVC repository,
    where DVCLive would otherwise open it, so that sys.modules shows what was imported."""
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text("")
    script = (
        "import sys\n"
        "from mlpipe.model.tracking import write_training_record\n"
        "write_training_record('metrics/train', {'learning_rate': 0.1}, "
        "[{'iteration': 1, 'train_logloss': 0.5, 'validation_logloss': 0.6}], {'n_trees': 1})\n"
        "print(sorted(name for name in ('dvc.repo', 'scmrepo.git') if name in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
    assert read_training_curve(tmp_path / "metrics" / "train") == [{"iteration": 1, "train_logloss": 0.5, "validation_logloss": 0.6}]


def test_training_record_without_a_curve(tmp_path):
    write_training_record(tmp_path / "train", {}, [], {"n_trees": 10})
    assert read_training_curve(tmp_path / "train") == []
    assert (tmp_path / "train" / "plots" / "metrics").is_dir()


METRICS_DIFF = {
    "metrics/evaluation.json": {
        "test.roc_auc": {"old": 0.905, "new": 0.897, "diff": -0.008},
        "test.log_loss": {"old": 0.37, "new": 0.37, "diff": 0.0},
    },
    "metrics/train/metrics.json": {"best_iteration": {"old": 210, "new": 118, "diff": -92}},
}


@pytest.mark.parametrize(
    "guard, failed",
    [
        (Guard(file="metrics/evaluation.json", key="test.roc_auc", max_drop=0.005), True),
        (Guard(file="metrics/evaluation.json", key="test.roc_auc", max_drop=0.01), False),
        (Guard(file="metrics/evaluation.json", key="test.log_loss", max_rise=0.0), False),
        (Guard(file="metrics/evaluation.json", key="test.missing", max_drop=0.01), True),
    ],
)
def test_guards(guard, failed):
    [result] = review.check_guards(METRICS_DIFF, [guard])
    assert result.failed is failed


def test_a_guarded_metric_new_on_this_side_passes():
    diff = {"metrics/evaluation.json": {"test.roc_auc": {"old": None, "new": 0.9}}}
    [result] = review.check_guards(diff, [Guard(file="metrics/evaluation.json", key="test.roc_auc", max_drop=0.0)])
    assert not result.failed and "new metric" in result.describe()


def test_review_markdown_lists_params_metric_deltas_and_the_verdict():
    params_diff = {"params.yaml": {"train.learning_rate": {"old": 0.05, "new": 0.1}}}
    guards = review.check_guards(METRICS_DIFF, [Guard(file="metrics/evaluation.json", key="test.roc_auc", max_drop=0.005)])
    text = review.render("main", params_diff, METRICS_DIFF, guards, None, "reports/review_plots/index.html")
    assert "**REGRESSION**" in text
    assert "| params.yaml | `train.learning_rate` | 0.05 | 0.1 |" in text
    assert "| `test.roc_auc` | 0.905 | 0.897 | -0.008 | -0.88% |" in text
    assert "<details><summary><code>metrics/evaluation.json</code>: 1 changed, 1 unchanged</summary>" in text
    assert "reports/review_plots/index.html" in text


def test_queue_output_parsing():
    queued = "Queueing with overrides '{...}'.\nQueued experiment 'slant-mako' for future execution.\nQueued experiment 'ample-glop' for future execution.\n"
    assert experiments.queued_names(queued) == ["slant-mako", "ample-glop"]
    status = (
        "Task     Name        Created    Status\n50dcccb  slant-mako  03:43 AM   Success\n"
        "9fea3d5  ample-glop  03:43 AM   Failed\n\nWorker status: 0 active, 0 idle\n"
    )
    assert experiments.queue_statuses(status) == {"slant-mako": "Success", "ample-glop": "Failed"}


def test_queue_signature_changes_when_an_experiment_ends(tmp_path):
    """The cheap cue `wait_for` reads every second instead of running `dvc queue status`."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "base"], cwd=tmp_path, check=True)
    before = experiments.queue_signature(tmp_path)
    assert experiments.queue_signature(tmp_path) == before
    # A success: DVC saves the experiment as refs/exps/<baseline>/<name>.
    subprocess.run(["git", "update-ref", "refs/exps/ab/cdef/slant-mako", "HEAD"], cwd=tmp_path, check=True)
    saved = experiments.queue_signature(tmp_path)
    assert saved != before
    # Any end, a failure too: the task queue writes its result.
    results = tmp_path / ".dvc" / "tmp" / "exps" / "celery" / "result"
    results.mkdir(parents=True)
    (results / "celery-task-meta-1").write_text("{}")
    assert experiments.queue_signature(tmp_path) != saved


def test_failure_reason_prefers_the_stage_error():
    log = "Running stage 'train':\nerror: train: params.yaml: train.learning_rate: bad\nERROR: failed to reproduce 'train'\n"
    assert experiments.failure_reason(log) == "error: train: params.yaml: train.learning_rate: bad"
    assert experiments.failure_reason("Traceback...\nKeyError: 'x'\n") == "KeyError: 'x'"
