"""Model versions in git: register -> assign -> serve the version a GTO stage names, in a
temporary git+DVC repository holding two tiny LightGBM models trained with the library's own
functions (models/model.txt DVC-tracked, its cache the only copy). The service's probabilities
are the batch ones of the same rows to the bit; re-assigning the stage switches what is served;
every refusal is one line with its exit status and a fix that works."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import warnings
from pathlib import Path

import httpx
import pandas as pd
import pytest
import uvicorn
import yaml

with warnings.catch_warnings():
    # Starlette 1.10's test client announces a move from httpx to httpx2; it runs on the pinned httpx.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from conftest import ROOT, VENV, Repo, employment_sample, tool_env, unused_port
from mlpipe.config import CalibrationParams, TrainParams, load_params
from mlpipe.data.features import build_schema, feature_table
from mlpipe.errors import EXIT_USAGE
from mlpipe.model.booster import model_to_text
from mlpipe.model.scoring import model_version, score_table
from mlpipe.model.training import train_model
from mlpipe.serving.app import create_app
from mlpipe.tools import serve as serve_tool

pytestmark = pytest.mark.integration  # dvc and gto commands in a temporary git repository

EXTRAS = ["--evaluation", "metrics/evaluation.json", "--training-params", "metrics/train/params.yaml"]


def train_version(repo: Repo, trees: int) -> pd.Series:
    """Train a model of `trees` trees on a few hundred rows, write its three files as the train
    stage does, DVC-track the model, commit; the batch probabilities of the scored rows by id."""
    params = load_params(ROOT / "params.yaml")
    rows = employment_sample(rows_per_year=100)
    schema = build_schema(rows, params.data, params.features)
    table = feature_table(rows, schema)
    trained = train_model(
        table[schema.feature_names],
        table[schema.target],
        TrainParams(n_estimators=trees, validation_fraction=0, early_stopping_rounds=0, min_child_samples=10),
        CalibrationParams(fraction=0.2),
    )
    text = model_to_text(trained.booster)
    models = repo.path / "models"
    models.mkdir(exist_ok=True)
    (models / "model.txt").write_text(text)
    (models / "schema.json").write_text(schema.to_json())
    (models / "calibration.json").write_text(trained.calibration.to_json())
    (repo.path / "metrics").mkdir(exist_ok=True)
    (repo.path / "metrics" / "evaluation.json").write_text(json.dumps({"test": {"trees": trees}}))
    repo.dvc("add", "-q", "models/model.txt")
    repo.commit(f"a model of {trees} trees")
    scored = score_table(scored_rows(), trained.booster, schema, trained.calibration, model_version(text))
    return scored.set_index("id")["probability"]


def scored_rows() -> pd.DataFrame:
    return employment_sample(rows_per_year=15, seed=1)


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> tuple[Repo, pd.Series]:
    """The trainer's repository: version v0.0.1 registered and assigned to prod, its DVC remote
    (a folder) configured but empty; and v1's batch probabilities."""
    base = tmp_path_factory.mktemp("release")
    repo = Repo(base / "trainer")
    repo.path.mkdir()
    repo.run("git", "init", "-q", "-b", "main")
    repo.dvc("init", "-q")
    repo.dvc("remote", "add", "-q", "-d", "store", str(base / "remote"))
    shutil.copy(ROOT / "params.yaml", repo.path)
    shutil.copy(ROOT / "Makefile", repo.path)
    artifacts = yaml.safe_load((ROOT / "dvc.yaml").read_text())["artifacts"]
    (repo.path / "dvc.yaml").write_text(yaml.safe_dump({"artifacts": artifacts}))
    batch = train_version(repo, trees=8)
    repo.run("gto", "register", "classifier")
    repo.run("gto", "assign", "classifier", "--version", "v0.0.1", "--stage", "prod")
    return repo, batch


def served(repo: Path, fetched: Path, *argv: str) -> tuple[TestClient, serve_tool.ServedFiles]:
    """The app `mlpipe serve <argv>` would run in `repo`, in process, and the files it serves."""
    args = serve_tool.parser().parse_args(["--dvc-yaml", str(repo / "dvc.yaml"), "--params", str(repo / "params.yaml"), *EXTRAS, *argv])
    params = load_params(args.params)
    files = serve_tool.served_files(args, fetched)
    load, watch = serve_tool.model_loader(files, params)
    return TestClient(create_app(load, params, watch=watch)), files


def served_probabilities(client: TestClient) -> pd.Series:
    rows = scored_rows()
    answer = client.post("/predict", content=rows.to_json(orient="records"))
    assert answer.status_code == 200, answer.text
    return pd.Series([p["probability"] for p in answer.json()["predictions"]], index=rows["id"])


def refusal(repo: Path, capsys, monkeypatch, *argv: str) -> tuple[int, str]:
    """`mlpipe serve <argv>` in `repo`, which must refuse before it listens: (status, stderr)."""

    def listens(*args, **options):
        raise AssertionError(f"mlpipe serve {' '.join(argv)} started the service instead of refusing")

    monkeypatch.setattr(uvicorn, "run", listens)
    code = serve_tool.main(["--dvc-yaml", str(repo / "dvc.yaml"), "--params", str(repo / "params.yaml"), *EXTRAS, *argv])
    return code, capsys.readouterr().err


def test_make_serve_stage_prod_serves_the_assigned_version_with_the_batch_probabilities(registry, tmp_path):
    """The real command (`make serve STAGE=prod`, uvicorn, two worker processes that are handed
    the files main fetched): /metadata names the release, /predict gives v1's batch
    probabilities to the bit."""
    trainer, batch = registry
    repo = trainer.copy(tmp_path / "repo")
    repo.set_params(serve={"workers": 2, "log_folder": None})
    temporary = tmp_path / "tmp"  # the service's temporary folders
    temporary.mkdir()
    port = unused_port()
    process = subprocess.Popen(
        ["make", "-o", str(VENV / ".installed-from-requirements"), "serve", "STAGE=prod", f"PORT={port}", f"VENV={VENV}"],
        cwd=repo.path,
        env={**tool_env(), "PYTHONPATH": str(ROOT / "src"), "TMPDIR": str(temporary)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the service did not become ready within 60 s"
                try:
                    if http.get("/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            metadata = http.get("/metadata").json()
            rev = trainer.run("git", "rev-parse", "classifier@v0.0.1^{commit}").stdout.strip()
            assert metadata["release"] == {"artifact": "classifier", "version": "v0.0.1", "stage": "prod", "rev": rev}
            assert metadata["test_metrics"] == {"trees": 8}  # the release's evaluation, fetched with it
            rows = scored_rows()
            answer = http.post("/predict", content=rows.to_json(orient="records")).json()
            assert [p["probability"] for p in answer["predictions"]] == batch.loc[rows["id"]].tolist()
            assert len(list(temporary.glob("*/models/model.txt"))) == 1  # fetched once, by main: the workers were handed the paths
    finally:
        os.killpg(process.pid, signal.SIGINT)
        out, _ = process.communicate(timeout=30)
    assert "serving classifier v0.0.1 (stage prod, commit " in out and "2 worker process(es)" in out
    assert list(temporary.iterdir()) == []  # the fetched files went with the service


def test_reassigning_prod_switches_what_is_served_and_a_version_stays_servable(registry, tmp_path, monkeypatch):
    trainer, first = registry
    repo = trainer.copy(tmp_path / "repo")
    client, _ = served(repo.path, tmp_path / "v1", "--stage", "prod")
    assert served_probabilities(client).equals(first)
    second = train_version(repo, trees=20)
    assert not second.equals(first)  # the two versions differ: the switch is visible
    repo.run("gto", "register", "classifier")
    repo.run("gto", "assign", "classifier", "--version", "v0.0.2", "--stage", "prod")
    assigned = time.time()
    # What the deploy workflow does on the new stage tag: restart the service.
    client, files = served(repo.path, tmp_path / "v2", "--stage", "prod")
    assert served_probabilities(client).equals(second)
    metadata = client.get("/metadata").json()
    assert {key: metadata["release"][key] for key in ("artifact", "version", "stage")} == {
        "artifact": "classifier",
        "version": "v0.0.2",
        "stage": "prod",
    }
    assert metadata["test_metrics"] == {"trees": 20} and files.model.is_relative_to(tmp_path / "v2")
    # A rollback: the stage holds the version of its latest assignment, not the highest version.
    # (GTO orders assignments by their tags' times, which git keeps to the second.)
    time.sleep(max(0.0, int(assigned) + 1 - time.time()))
    repo.run("gto", "assign", "classifier", "--version", "v0.0.1", "--stage", "prod", "--force")
    client, files = served(repo.path, tmp_path / "rolled-back", "--stage", "prod")
    assert served_probabilities(client).equals(first) and client.get("/metadata").json()["release"]["version"] == "v0.0.1"
    # A version's files come from its commit, as its own dvc.yaml names them: not the workspace's.
    declared = (repo.path / "dvc.yaml").read_text()
    (repo.path / "dvc.yaml").write_text(declared.replace("models/model.txt", "models/elsewhere.txt"))
    client, files = served(repo.path, tmp_path / "old", "--version", "v0.0.1")
    assert served_probabilities(client).equals(first) and files.release.stage is None and files.release.version == "v0.0.1"
    (repo.path / "dvc.yaml").write_text(declared)
    monkeypatch.chdir(repo.path)  # the workspace's files are named relative to it
    client, files = served(repo.path, tmp_path / "unused")
    assert served_probabilities(client).equals(second) and client.get("/metadata").json()["release"] is None


def test_a_stage_without_a_version_an_unknown_artifact_or_version_and_no_git_are_one_line(registry, tmp_path, capsys, monkeypatch):
    trainer, first = registry
    repo = trainer.copy(tmp_path / "repo")
    code, err = refusal(repo.path, capsys, monkeypatch, "--stage", "staging")
    assert code == EXIT_USAGE and err.count("\n") == 1
    assert "no version of classifier is assigned to stage 'staging' (its stages: prod (v0.0.1))" in err
    assert "`gto assign classifier --version vX.Y.Z --stage staging`" in err
    repo.run("gto", "assign", "classifier", "--version", "v0.0.1", "--stage", "staging")  # the fix
    assert served_probabilities(served(repo.path, tmp_path / "fixed", "--stage", "staging")[0]).equals(first)

    code, err = refusal(repo.path, capsys, monkeypatch, "--stage", "prod", "--artifact", "classifer")
    assert (
        code == EXIT_USAGE
        and err.count("\n") == 1
        and "needs an artifact named 'classifer' under artifacts: (it has ['classifier'])" in err
    )
    code, err = refusal(repo.path, capsys, monkeypatch, "--version", "v9.9.9")
    assert code == EXIT_USAGE and err.count("\n") == 1
    assert "classifier has no registered version 'v9.9.9' (it has v0.0.1)" in err
    repo.run("git", "commit", "-q", "--allow-empty", "-m", "a commit without a version")
    repo.run("gto", "register", "classifier", "HEAD", "--version", "v9.9.9")  # the fix
    assert served(repo.path, tmp_path / "v9", "--version", "v9.9.9")[1].release.version == "v9.9.9"
    code, err = refusal(repo.path, capsys, monkeypatch, "--stage", "prod", "--evaluation", str(tmp_path / "evaluation.json"))
    assert code == EXIT_USAGE and err.count("\n") == 1 and "are named by their paths inside the repository" in err

    # A registered commit whose model is neither in git nor in DVC.
    repo.run("git", "rm", "-q", "models/model.txt.dvc")
    repo.commit("the model is no longer tracked")
    repo.run("gto", "register", "classifier", "--version", "v10.0.0")
    code, err = refusal(repo.path, capsys, monkeypatch, "--version", "v10.0.0")
    assert code == EXIT_USAGE and err.count("\n") == 1 and "that commit tracks it neither in git nor as a DVC output" in err

    # An artifact dvc.yaml declares that was never registered.
    spec = yaml.safe_load((repo.path / "dvc.yaml").read_text())
    spec["artifacts"]["shadow"] = spec["artifacts"]["classifier"]
    (repo.path / "dvc.yaml").write_text(yaml.safe_dump(spec))
    code, err = refusal(repo.path, capsys, monkeypatch, "--stage", "prod", "--artifact", "shadow")
    assert code == EXIT_USAGE and err.count("\n") == 1
    assert "artifact 'shadow' has no registered version" in err and "`gto register shadow`" in err
    repo.run("git", "checkout", "-q", "HEAD~1", "--", "models/model.txt.dvc")
    repo.commit("shadow: the model again, declared as a second artifact")
    repo.run("gto", "register", "shadow")  # the fix
    assert served(repo.path, tmp_path / "shadow", "--version", "v0.0.1", "--artifact", "shadow")[1].release.artifact == "shadow"

    shutil.rmtree(repo.path / ".git")
    code, err = refusal(repo.path, capsys, monkeypatch, "--stage", "prod", "--artifact", "classifier")
    assert code == EXIT_USAGE and err.count("\n") == 1 and f"{repo.path} is not a git repository" in err


def test_a_model_in_neither_cache_nor_remote_is_one_line_and_pushing_it_from_the_trainer_fixes_it(registry, tmp_path, capsys, monkeypatch):
    """A fresh clone (the deploy machine) has the tags but no DVC cache; the remote is empty."""
    trainer, first = registry
    clone = tmp_path / "clone"
    trainer.run("git", "clone", "-q", str(trainer.path), str(clone))
    code, err = refusal(clone, capsys, monkeypatch, "--stage", "prod")
    assert code == EXIT_USAGE and err.count("\n") == 1, err
    assert "models/model.txt of classifier v0.0.1 (commit " in err and "neither this clone's DVC cache nor its DVC remote" in err
    assert "run `dvc push --all-tags`" in err
    trainer.dvc("push", "-q", "--all-tags")  # the fix, where the model was trained
    client, _ = served(clone, tmp_path / "fetched", "--stage", "prod")
    assert served_probabilities(client).equals(first)
    assert not (clone / "models" / "model.txt").exists()  # read from the remote, not checked out
