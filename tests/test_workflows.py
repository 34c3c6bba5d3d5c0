"""The GitHub workflows (.github/workflows): linted, and their shell steps run locally on a clone.

zizmor audits them for security findings (offline) and check-jsonschema checks them against the
workflow schema it vendors. The integration tests run each job's `run:` steps in order on a
`git clone` of this repository with the environment GitHub gives a step (GITHUB_OUTPUT,
GITHUB_STEP_SUMMARY, the `${{ }}` values of `env:`), skipping what needs GitHub (`uses:` steps)
and `make test` (the suite would run itself); a fake `gh` records the comment. The clone is
one of the built repository (conftest's `built_repo`: this working tree on the sample data,
reproduced and committed); it uses this venv (a symlink, never rebuilt) and the built
repository's DVC cache, which is also its remote (DVC_REMOTE): the workflow's `dvc pull`
restores every output, and `make repro` retrains nothing.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from conftest import ROOT, VENV, tool_env, unused_port
from mlpipe.errors import EXIT_FINDING, EXIT_OK, EXIT_USAGE
from mlpipe.tools import review, smoke

WORKFLOWS = ROOT / ".github" / "workflows"
WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.yml"))


def load(name: str) -> dict:
    # YAML 1.1 reads the key `on` as True: the workflow's triggers are under True.
    return yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))


def steps(name: str) -> Iterator[tuple[str, dict]]:
    for job_name, job in load(name)["jobs"].items():
        for step in job["steps"]:
            yield job_name, step


# --- lint ---------------------------------------------------------------------------------------


def test_zizmor_finds_nothing_in_the_workflows():
    done = subprocess.run([str(VENV / "bin" / "zizmor"), "--offline", "--no-progress", str(WORKFLOWS)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings to report" in done.stdout, done.stdout


def test_the_workflows_match_githubs_workflow_schema():
    done = subprocess.run(
        [str(VENV / "bin" / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOW_FILES)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert {path.name for path in WORKFLOW_FILES} == {"review.yml", "deploy.yml"}


@pytest.mark.parametrize("name", ["review.yml", "deploy.yml"])
def test_actions_are_pinned_by_commit_with_their_version_and_no_expression_is_pasted_into_a_shell_line(name):
    text = (WORKFLOWS / name).read_text(encoding="utf-8")
    for line in text.splitlines():
        if "uses:" in line:
            assert re.search(r"uses: [\w-]+/[\w-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$", line), line
    for job_name, step in steps(name):
        # Untrusted text (a branch name, a title) reaches a shell only through `env:`, never `${{ }}` in `run:`.
        assert "${{" not in step.get("run", ""), (job_name, step)


def test_the_review_workflow_asks_for_write_access_only_where_it_comments():
    workflow = load("review.yml")
    assert workflow["permissions"] == {}
    assert workflow[True] == {"pull_request": None}
    jobs = workflow["jobs"]
    assert jobs["test"]["permissions"] == {"contents": "read"}
    assert jobs["review"]["permissions"] == {"contents": "read", "pull-requests": "write"}
    runs = [step.get("run", "").strip() for step in jobs["test"]["steps"]]
    assert "make test" in runs and "make repro" not in runs  # the README's two commands, one job each
    assert "make repro" in [step.get("run", "").strip() for step in jobs["review"]["steps"]]
    for job in jobs.values():
        checkout = job["steps"][0]
        assert checkout["uses"].startswith("actions/checkout@") and checkout["with"]["persist-credentials"] is False


def test_the_deploy_workflow_runs_on_stage_assignment_tags_only():
    workflow = load("deploy.yml")
    patterns = workflow[True]["push"]["tags"]
    assert patterns == ["*#*#*", "!*!#*"]
    assert workflow["permissions"] == {} and workflow["jobs"]["deploy"]["permissions"] == {"contents": "read"}


# --- the review comment -------------------------------------------------------------------------


def test_the_comment_links_the_plots_in_the_runs_artifacts_instead_of_a_local_path():
    url = "https://github.com/o/r/actions/runs/1"
    local = review.render("origin/main", {}, {}, [], None, "reports/review_plots/index.html")
    linked = review.render("origin/main", {}, {}, [], None, "reports/review_plots/index.html", artifacts_url=url)
    plots = linked[linked.index("## Plots") :]
    assert f"in [the workflow run's artifacts]({url})" in plots
    assert "in [the workflow run's artifacts]" not in local


def test_a_report_that_fits_is_the_comment_unchanged():
    report = review.render("origin/main", {}, {}, [], None, "p/index.html")
    assert review.comment_body(report, "review.md", None) == report


sections = st.lists(
    st.tuples(st.sampled_from(["## ", "### "]), st.text(st.characters(codec="utf-8"), min_size=1, max_size=300)), min_size=1, max_size=30
)


@given(sections, st.integers(300, 3000))
def test_a_long_report_is_cut_where_a_section_starts_with_a_line_saying_where_the_whole_is(parts, limit):
    report = "# Review\n\n" + "".join(f"{level}s{index}\n\n{body.replace(chr(10), ' ')}\n\n" for index, (level, body) in enumerate(parts))
    body = review.comment_body(report, "reports/review.md", "https://x/runs/1", limit=limit)
    assert len(body) <= limit
    if len(report) <= limit:
        assert body == report
        return
    kept, note = body.rsplit("**The report is cut here**", 1)
    assert report.startswith(kept)
    assert report[len(kept) :].startswith(("## ", "### ")) or kept == ""  # a whole number of sections
    assert f"{len(report):,} characters" in note and "`reports/review.md` in [the workflow run's artifacts](https://x/runs/1)" in note


def test_a_report_over_githubs_limit_is_cut_to_it():
    big = review.render("origin/main", {}, {"m.json": {f"k{i}": {"old": i, "new": i + 1} for i in range(3000)}}, [], None, "p")
    assert len(big) > review.COMMENT_LIMIT
    body = review.comment_body(big, "review.md", None)
    assert len(body) <= review.COMMENT_LIMIT == 65_536
    assert body.startswith("# Review: workspace vs `origin/main`\n\n## Verdict")
    assert body.endswith("the whole report is `review.md` in the workflow run's artifacts.\n")


# --- mlpipe smoke against a stand-in service ----------------------------------------------------

RECORD = {
    "required": ["AGE", "SEX", "CITY", "NOTE"],
    "properties": {
        "AGE": {"anyOf": [{"type": "integer", "minimum": 16, "maximum": 99}, {"type": "number", "minimum": 16}]},
        "SEX": {"anyOf": [{"type": "integer"}, {"type": "string"}], "enum": [1, 2]},
        "CITY": {"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]},
        "NOTE": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "id": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
    },
}
FEATURES = [{"name": "AGE", "kind": "numeric", "categories": []}, {"name": "CITY", "kind": "categorical", "categories": ["b", "a"]}]


def test_the_smoke_record_takes_allowed_values_from_the_contract():
    assert smoke.record_from_contract(RECORD, FEATURES) == {"AGE": 16, "SEX": 1, "CITY": "b", "NOTE": None}


@contextmanager
def stand_in_service(release: dict | None, probability: object = 0.25) -> Iterator[str]:
    """A stand-in for the prediction service on a free loopback port; it records what /predict got."""
    received: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            pages = {
                "/health": {"status": "ok"},
                "/metadata": {"model_version": "abc123", "features": FEATURES, "release": release},
                "/openapi.json": {"components": {"schemas": {"Record": RECORD}}},
            }
            self.answer(200, pages[self.path]) if self.path in pages else self.answer(404, {})

        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.answer(200, {"predictions": [{"probability": probability, "label": "0"}]})

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
    assert all(set(record) == set(RECORD["required"]) for record in received)


PROD = {"artifact": "classifier", "version": "v1.2.0", "stage": "prod", "rev": "0123456789abcdef"}


def test_smoke_passes_a_service_serving_the_stage(capsys):
    with stand_in_service(PROD) as url:
        assert smoke.main(["--url", url, "--stage", "prod", "--version", "v1.2.0", "--params", str(ROOT / "params.yaml")]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["pass health", "pass release", "pass predict"]
    assert "classifier v1.2.0 at stage prod" in lines[1] and "probability 0.250000" in lines[2]


@pytest.mark.parametrize(
    ("release", "probability", "argv", "failed"),
    [
        (None, 0.5, ["--stage", "prod"], "FAIL release: /metadata's release is None, expected one at stage 'prod'"),
        ({**PROD, "stage": "staging"}, 0.5, ["--stage", "prod"], "FAIL release"),
        (PROD, 0.5, ["--stage", "prod", "--version", "v1.3.0"], "FAIL release: stage prod serves classifier v1.2.0, expected v1.3.0"),
        (PROD, 1.5, ["--stage", "prod"], "FAIL predict: /predict answered probability 1.5, not a number in [0, 1]"),
        (PROD, None, [], "FAIL predict"),
    ],
)
def test_smoke_fails_with_one_line_per_check(capsys, release, probability, argv, failed):
    with stand_in_service(release, probability) as url:
        assert smoke.main(["--url", url, *argv, "--params", str(ROOT / "params.yaml")]) == EXIT_FINDING
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 3 and failed in out, out


def test_smoke_gives_up_on_a_service_that_does_not_answer(capsys):
    port = unused_port()
    argv = ["--url", f"http://127.0.0.1:{port}", "--timeout", "1", "--params", str(ROOT / "params.yaml")]
    assert smoke.main(argv) == EXIT_FINDING
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith(f"FAIL health: GET http://127.0.0.1:{port}/health: no answer") and "after 1 s (--timeout)" in line


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--url", "127.0.0.1:8000"], "error: smoke: --url '127.0.0.1:8000' is not an http(s) URL: give the service's address"),
        (["--version", "v1"], "error: smoke: --version v1 needs --stage"),
        (["--timeout", "0"], "error: smoke: --timeout 0 must be a positive number of seconds"),
    ],
)
def test_smoke_usage_errors_are_one_line_and_exit_2(capsys, argv, message):
    assert smoke.main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(message) and len(err.splitlines()) == 1


# --- the workflows' shell steps on a clone ------------------------------------------------------

# The `if:` of each step, as GitHub would decide it here: (runs after the steps before succeeded,
# runs after one failed). The run is a same-repository pull request.
CONDITIONS = {
    "github.event.pull_request.head.repo.full_name == github.repository": (True, False),
    "${{ !cancelled() }}": (True, True),
    "always()": (True, True),
}


@dataclass
class StepRun:
    name: str
    returncode: int
    output: str


def clone(source: Path, tmp_path: Path) -> Path:
    """A clone of `source`'s last commit using this venv and `source`'s DVC cache."""
    path = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(source), str(path)], check=True)
    (path / ".venv").symlink_to(VENV)
    # Older than the venv's stamps: make takes the venv as built from them.
    for name in ("requirements.txt", "requirements-dev.txt", "pyproject.toml"):
        os.utime(path / name, (1_000_000_000, 1_000_000_000))
    # The source's cache, as the clone's cache and as the remote the workflow pulls from.
    cache = str(source / ".dvc" / "cache")
    subprocess.run([str(VENV / "bin" / "dvc"), "cache", "dir", "--local", cache], cwd=path, check=True)
    subprocess.run([str(VENV / "bin" / "dvc"), "remote", "add", "--local", "shared", cache], cwd=path, check=True)
    return path


def run_job(
    workflow: str,
    job: str,
    cwd: Path,
    env: dict[str, str],
    expressions: dict[str, str],
    only: set[str] | None = None,
    overrides: dict[str, str] | None = None,
) -> list[StepRun]:
    """The job's `run:` steps in order (or those named in `only`), as a runner runs them (`bash -e`,
    a fresh GITHUB_OUTPUT per step, `${{ }}` in `env:` replaced from `expressions` and earlier
    steps' outputs; `overrides` last, e.g. the job's PORT)."""
    spec = load(workflow)["jobs"][job]
    outputs: dict[str, dict[str, str]] = {}
    runs: list[StepRun] = []
    failed = False
    for index, step in enumerate(spec["steps"]):
        if "uses" in step or step["run"].strip() == "make test" or (only is not None and step.get("name") not in only):
            continue
        if "if" in step and not CONDITIONS[step["if"]][failed]:
            continue
        if failed and "if" not in step:
            continue

        def value(match: re.Match) -> str:
            found = re.fullmatch(r"steps\.(\w+)\.outputs\.(\w+)", match[1])
            return outputs.get(found[1], {}).get(found[2], "") if found else expressions[match[1]]

        step_env = {
            name: re.sub(r"\$\{\{\s*(.+?)\s*\}\}", value, str(text))
            for name, text in {**spec.get("env", {}), **step.get("env", {})}.items()
        }
        output = cwd.parent / f"output-{job}-{index}"
        output.write_text("")
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-e", "-c", step["run"]],
            cwd=cwd,
            env={**env, **step_env, **(overrides or {}), "GITHUB_OUTPUT": str(output)},
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=900,
        )
        outputs[step.get("id", "")] = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
        runs.append(StepRun(step.get("name", step["run"].strip()), done.returncode, done.stdout + done.stderr))
        failed = failed or done.returncode != 0
    return runs


def github_env(tmp_path: Path) -> dict[str, str]:
    """What a runner sets for every step, plus a fake `gh` first on PATH that records its calls."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "gh").write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "args = sys.argv[1:]\n"
        "body = open(args[args.index('--body-file') + 1]).read() if '--body-file' in args else None\n"
        "with open(os.environ['FAKE_GH_LOG'], 'a') as log:\n"
        "    log.write(json.dumps({'argv': args, 'body': body, 'token': os.environ.get('GH_TOKEN')}) + '\\n')\n"
    )
    (fake / "gh").chmod(0o755)
    env = tool_env()
    env.update(
        PATH=os.pathsep.join([str(fake), env["PATH"]]),
        FAKE_GH_LOG=str(tmp_path / "gh.log"),
        GITHUB_ACTIONS="true",
        GITHUB_SERVER_URL="https://github.com",
        GITHUB_REPOSITORY="owner/project",
        GITHUB_RUN_ID="4242",
        GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"),
        RUNNER_TEMP=str(tmp_path / "runner-temp"),
    )
    (tmp_path / "runner-temp").mkdir()
    return env


# A remote that needs no credentials: secrets a repository does not set are empty to a workflow.
SECRETS = {"vars.DVC_REMOTE": "shared", "secrets.AWS_ACCESS_KEY_ID": "", "secrets.AWS_SECRET_ACCESS_KEY": ""}


@pytest.mark.integration
def test_the_review_jobs_steps_on_a_clone_post_the_review_then_fail_on_the_regression(built_repo, tmp_path):
    path = clone(built_repo.path, tmp_path)
    env = {**github_env(tmp_path), "PYTHONPATH": str(path / "src")}
    git = lambda *args: subprocess.run(["git", *args], cwd=path, env=env, check=True, capture_output=True)  # noqa: E731
    # The pull request's base: this commit with a better guarded metric (test.roc_auc 0.1 higher),
    # which the pull request (the clone as it is) then loses: a guarded regression.
    git("checkout", "-q", "-b", "better-base")
    metrics = json.loads((path / "metrics/evaluation.json").read_text())
    metrics["test"]["roc_auc"] += 0.1
    (path / "metrics/evaluation.json").write_text(json.dumps(metrics, indent=2))
    git("commit", "-q", "-am", "a base with a better model")
    git("update-ref", "refs/remotes/origin/better-base", "HEAD")
    git("checkout", "-q", "-")

    expressions = {**SECRETS, "github.base_ref": "better-base", "github.event.pull_request.number": "7", "github.token": "fake-token"}
    runs = run_job("review.yml", "review", path, env, expressions)

    assert [(run.name, run.returncode) for run in runs] == [
        ("Build .venv from requirements.txt", 0),
        ("Pull the DVC cache from the configured remote", 0),
        ("Run the pipeline", 0),
        ("Review against the pull request's base", 0),
        ("Post the review as the pull request's comment, updated on each push", 0),
        ("Plots page with the base overlaid", 0),
        ("Fail on a guarded regression", EXIT_FINDING),
    ], "\n\n".join(f"{run.name}: {run.returncode}\n{run.output[-3000:]}" for run in runs)
    assert "files added" in runs[1].output
    assert "Running stage" not in runs[2].output  # every output came from the remote
    report = (path / "reports/review.md").read_text()
    assert "**REGRESSION**: 1 of 1 guarded metrics" in report
    assert "`review_plots/index.html` in [the workflow run's artifacts](https://github.com/owner/project/actions/runs/4242)" in report
    [call] = [json.loads(line) for line in (tmp_path / "gh.log").read_text().splitlines()]
    assert call["argv"] == [
        "pr",
        "comment",
        "7",
        "--repo",
        "owner/project",
        "--edit-last",
        "--create-if-none",
        "--body-file",
        "reports/review-comment.md",
    ]
    # The comment is the report with the unchanged metrics counted, not listed (review.md has them).
    assert call["body"] == (path / "reports/review-comment.md").read_text() and call["token"] == "fake-token"
    assert call["body"].split("## All metrics")[0] == report.split("## All metrics")[0]
    assert report in (tmp_path / "summary.md").read_text()
    for upload in ("reports/review_plots/index.html", "reports/plots.html", "reports/drift"):
        assert (path / upload).exists(), upload


@pytest.mark.integration
@pytest.mark.parametrize("workflow", ["review.yml", "deploy.yml"])
def test_without_a_configured_remote_the_pull_step_says_so_and_the_review_survives_an_unreachable_one(tmp_path, workflow):
    path = clone(ROOT, tmp_path)
    env = github_env(tmp_path)
    job, pull = {
        "review.yml": ("review", "Pull the DVC cache from the configured remote"),
        "deploy.yml": ("deploy", "Pull the stage's model from the configured remote"),
    }[workflow]
    [run] = run_job(workflow, job, path, env, {**SECRETS, "vars.DVC_REMOTE": ""}, only={pull})
    assert run.returncode == 0 and "no DVC remote configured (repository variable DVC_REMOTE)" in run.output, run.output
    [run] = run_job(workflow, job, path, env, {**SECRETS, "vars.DVC_REMOTE": "gone"}, only={pull})
    if workflow == "review.yml":  # make repro computes what the remote did not give
        assert run.returncode == 0 and "::warning::dvc pull from remote 'gone' failed" in run.output, run.output
    else:  # a deployment without its model cannot go on
        assert run.returncode != 0, run.output


@pytest.mark.integration
def test_the_deploy_jobs_steps_on_a_clone_serve_the_version_the_tag_assigns_and_smoke_test_it(built_repo, tmp_path):
    path = clone(built_repo.path, tmp_path)
    env = {**github_env(tmp_path), "PYTHONPATH": str(path / "src")}
    for command in (["register", "classifier"], ["assign", "classifier", "--version", "v0.0.1", "--stage", "prod"]):
        subprocess.run([str(VENV / "bin" / "gto"), *command], cwd=path, env=env, check=True, capture_output=True)
    tag = "classifier#prod#1"
    assert subprocess.run(["git", "tag"], cwd=path, capture_output=True, text=True).stdout.split() == [
        "classifier#prod#1",
        "classifier@v0.0.1",
    ]
    pid = tmp_path / "runner-temp" / "serve.pid"
    try:
        runs = run_job("deploy.yml", "deploy", path, {**env, "GITHUB_REF_NAME": tag}, SECRETS, overrides={"PORT": str(unused_port())})
    finally:  # the workflow's last step stops the service; this stops it should the test fail before
        if pid.exists():
            subprocess.run(["kill", "--", f"-{pid.read_text().strip()}"], capture_output=True)
    assert [(run.name, run.returncode) for run in runs] == [
        ("Build .venv from requirements.txt", 0),
        ("Artifact, stage and version the tag assigns", 0),
        ("Pull the stage's model from the configured remote", 0),
        ("Start the service on the stage's version", 0),
        ("Smoke test", 0),
        ("Stop the service", 0),
    ], "\n\n".join(f"{run.name}: {run.returncode}\n{run.output[-3000:]}" for run in runs)
    smoke_lines = runs[4].output.splitlines()
    assert [line.split(":")[0] for line in smoke_lines] == ["pass health", "pass release", "pass predict"], smoke_lines
    assert "classifier v0.0.1 at stage prod" in smoke_lines[1]

    # A registration tag (or any event but an assignment) deploys nothing, in one line.
    [run] = run_job(
        "deploy.yml",
        "deploy",
        path,
        {**env, "GITHUB_REF_NAME": "classifier@v0.0.1"},
        SECRETS,
        only={"Artifact, stage and version the tag assigns"},
    )
    assert run.returncode == 1 and "error: deploy: the tag is a GTO 'registration' event, not a stage assignment" in run.output
