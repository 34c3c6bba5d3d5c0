"""The prediction service as users run it: `make serve` (uvicorn on a free loopback port) in a
copy of the built repository, called over HTTP. In-process checks of the same app are in
tests/test_serving.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from conftest import VENV, Repo, tool_env, unused_port
from mlpipe.data.schema import PREDICTED_LABEL

pytestmark = pytest.mark.integration


class Server:
    """`make serve` on a copy of the repository, in its own process group (make and the service)."""

    def __init__(self, repo: Repo, **env: str):
        self.repo = repo
        self.url = f"http://127.0.0.1:{unused_port()}"
        self.process = subprocess.Popen(
            ["make", "-o", str(VENV / ".installed-from-requirements"), "serve", f"PORT={self.url.rsplit(':', 1)[1]}", f"VENV={VENV}"],
            cwd=repo.path,
            env={**tool_env(), "PYTHONPATH": str(repo.path / "src"), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.client = httpx.Client(base_url=self.url, timeout=30)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"make serve exited {self.process.returncode}: {self.process.stderr.read()}")
            try:
                if self.client.get("/ready").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError("the service did not become ready within 60 s")

    def predict(self, body, **headers: str) -> httpx.Response:
        return self.client.post("/predict", content=body if isinstance(body, (bytes, str)) else json.dumps(body), headers=headers)

    def metrics(self) -> dict[tuple[str, tuple], float]:
        samples = {}
        for family in text_string_to_metric_families(self.client.get("/metrics").text):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples

    def stop(self) -> str:
        """Stop it as Ctrl-C does (graceful: the prediction log is flushed); its stdout."""
        self.client.close()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        out, _ = self.process.communicate(timeout=30)
        return out


def records_of(table: pd.DataFrame) -> list[dict]:
    return json.loads(table.to_json(orient="records"))


@pytest.fixture(scope="module")
def served(built_repo_without_reports, tmp_path_factory):
    repo = built_repo_without_reports.copy(tmp_path_factory.mktemp("served") / "repo")
    server = Server(repo)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def current_rows(served) -> pd.DataFrame:
    """The rows the batch predict stage scored (monitor.current_source), as they are in the source."""
    return pd.read_parquet(served.repo.path / served.repo.params()["monitor"]["current_source"])


def test_served_probabilities_equal_the_batch_stage_to_the_last_bit(served, current_rows):
    batch = pd.read_parquet(served.repo.path_of("predict", "out-current")).set_index("id")
    served_probability = {}
    for start in range(0, len(current_rows), 1000):
        chunk = current_rows.iloc[start : start + 1000]
        response = served.predict(records_of(chunk))
        assert response.status_code == 200, response.text
        body = response.json()
        assert {p["model_version"] for p in body["predictions"]} == {body["model_version"]} == set(batch["model_version"])
        served_probability.update(zip(chunk["id"], (p["probability"] for p in body["predictions"]), strict=True))
    assert len(served_probability) == len(batch) == len(current_rows)
    differing = [i for i, probability in served_probability.items() if probability != batch.at[i, "probability"]]
    assert differing == []  # exact float equality, row by row
    one = served.predict(records_of(current_rows.head(1))[0]).json()["predictions"]  # a single object, not a list
    assert one[0]["probability"] == batch.at[current_rows["id"].iloc[0], "probability"]
    # The label is the batch's: the same calibrated probability at the threshold of models/calibration.json.
    assert one[0]["label"] == str(batch.at[current_rows["id"].iloc[0], PREDICTED_LABEL])
    threshold = json.loads((served.repo.path / "models" / "calibration.json").read_text())["threshold"]
    assert one[0]["label"] == ("1" if one[0]["probability"] >= threshold else "0")


def test_each_bad_input_gets_its_status_and_one_message_per_field(served, current_rows):
    good = records_of(current_rows.head(1))[0]
    cases = [
        ({k: v for k, v in good.items() if k != "AGEP"}, 422, [("AGEP", "is required")]),
        ({**good, "nickname": "x"}, 422, [("nickname", "is not a field")]),
        ({**good, "AGEP": "thirty"}, 422, [("AGEP", "wrong type str")]),
        ({**good, "AGEP": 30.5}, 422, [("AGEP", "whole number")]),
        ({**good, "AGEP": 130}, 422, [("AGEP", "at most 120")]),
        ({**good, "SEX": None}, 422, [("SEX", "must not be null")]),
        ({**good, "MAR": 9, "AGEP": -1}, 422, [("AGEP", "at least 0"), ("MAR", "one of 1, 2, 3, 4 or 5")]),
    ]
    for record, status, expected in cases:
        response = served.predict(record)
        assert response.status_code == status, (record, response.text)
        problems = response.json()["detail"]
        assert [p["field"] for p in problems] == [field for field, _ in expected], problems
        assert all(fragment in p["message"] for p, (_, fragment) in zip(problems, expected, strict=True)), problems
    too_many = served.predict([good] * 1001)
    assert too_many.status_code == 413 and "serve.max_batch_rows" in too_many.json()["detail"]
    too_big = served.predict(b'{"AGEP": ' + b" " * 1_000_001 + b"1}")
    assert too_big.status_code == 413 and "serve.max_body_bytes" in too_big.json()["detail"]
    assert served.predict(b"{not json").status_code == 400
    not_finite = served.predict({**good, "AGEP": float("nan")})  # JSON has no NaN; a lenient encoder writes it anyway
    assert not_finite.status_code == 422 and not_finite.json()["detail"][0]["message"] == "must be a finite number"
    assert served.predict(b"[]").status_code == 422
    assert served.predict(b"42").status_code == 422


def test_a_thousand_malformed_requests_leave_it_serving_correct_answers(served, current_rows):
    good = records_of(current_rows.head(3))
    before = served.predict(good).json()
    bodies = [
        b"\xff\xfe\x00garbage",
        b"[" * 100_000 + b"]" * 100_000,  # nesting deep enough to exhaust a recursive parser
        b'{"AGEP": 1e999}',
        json.dumps([{**good[0], "MAR": {"$gt": 1}}]).encode(),
        json.dumps({**good[0], "AGEP": [1, 2]}).encode(),
        json.dumps({**good[0], "__class__": "x", "SCHL": True}).encode(),
        b'{"a": "' + b"\\u0000" * 1000 + b'"}',
        json.dumps([good[0], 5, "x", None]).encode(),
    ]
    statuses = {served.predict(bodies[i % len(bodies)]).status_code for i in range(1000)}
    assert statuses <= {400, 413, 422}, statuses
    assert served.client.get("/health").json() == {"status": "ok"}
    assert served.predict(good).json() == before


def test_health_answers_while_large_invalid_requests_are_being_checked(served, current_rows):
    """Four concurrent 1,000-record requests of nothing but broken fields held the event loop
    (validation ran on it): /health waited for all four. Now they are checked in worker threads,
    so /health answers before them. Ordering, not timing: the four are sent and given a moment to
    arrive, then /health is asked; when it answers, none of the four has (each takes a good part
    of a second to report; on the event loop, /health waited for the one being checked)."""
    import select
    import socket

    broken = json.dumps([{column: [] for column in current_rows.columns}] * 1000).encode()
    host, port = served.url.removeprefix("http://").split(":")
    request = (
        f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {len(broken)}\r\n\r\n".encode()
        + broken
    )
    slow = [socket.create_connection((host, int(port))) for _ in range(4)]
    senders = [threading.Thread(target=connection.sendall, args=(request,)) for connection in slow]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    time.sleep(0.3)  # not an assertion: lets the service read the four bodies before /health is asked
    assert served.client.get("/health").json() == {"status": "ok"}
    answered, _, _ = select.select(slow, [], [], 0)  # which of the four have an answer waiting now
    assert answered == [], "/health waited for a large request to be checked"
    for connection in slow:
        connection.settimeout(60)
        assert connection.recv(64).startswith(b"HTTP/1.1 422")
        connection.close()


_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.integers(1, 1000).map(lambda digits: 10**digits),  # past int64, past a float64
    st.floats(),  # nan and infinities too: json.dumps writes NaN and Infinity
    st.text(max_size=20),  # any unicode, surrogates and NUL included
)
_HUGE = st.integers(300, 1000).map(lambda digits: -(10**digits) if digits % 2 else 10**digits)  # past a float64, as a field
_JSON = st.recursive(
    _LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8
)


@st.composite
def _records(draw, good: dict) -> dict:
    """A served record with some fields dropped, some replaced by any JSON value, some added."""
    record = {key: value for key, value in good.items() if draw(st.integers(0, 9))}  # each field dropped one time in ten
    for key in draw(st.lists(st.sampled_from(sorted(good)), max_size=4, unique=True)):
        record[key] = draw(st.one_of(_JSON, _HUGE))
    record.update(draw(st.dictionaries(st.text(max_size=8), _JSON, max_size=2)))
    return record


def _bodies(good: dict):
    records = _records(good)
    one_off = st.tuples(st.sampled_from(sorted(good)), st.one_of(_HUGE, _LEAVES))  # a good record but for one value
    return st.one_of(
        one_off.map(lambda change: json.dumps({**good, change[0]: change[1]})),
        records.map(json.dumps),
        st.lists(records, max_size=5).map(json.dumps),  # the empty list included
        st.integers(1, 3).map(lambda extra: json.dumps([good] * (1000 + extra))),  # past serve.max_batch_rows
        _JSON.map(json.dumps),  # anything JSON: a number, a string, nested arrays and objects
        st.binary(max_size=64),  # not JSON, not UTF-8
    )


def test_the_service_answers_any_body_with_a_status_below_500_and_json(served, current_rows):
    """The service fuzz: request bodies from Hypothesis (valid records, wrong types, huge numbers,
    nested arrays and objects, unicode, missing and extra fields, empty lists, oversized batches)
    sent to the real uvicorn service: never a 5xx, always a JSON body, and /health afterwards."""
    good = records_of(current_rows.head(1))[0]

    @settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(body=_bodies(good))
    def answers(body):
        response = served.predict(body.encode() if isinstance(body, str) else body)
        assert response.status_code < 500, (body[:200], response.text[:300])
        assert response.status_code in (200, 400, 413, 422), (body[:200], response.text[:300])
        response.json()

    answers()
    assert served.client.get("/health").json() == {"status": "ok"}
    assert served.predict(good).status_code == 200


def test_metrics_count_requests_rejections_probabilities_and_the_model(served, current_rows):
    before = served.metrics()
    good = records_of(current_rows.head(5))
    assert served.predict(good).status_code == 200
    assert served.predict({**good[0], "AGEP": -5, "bogus": 1}).status_code == 422
    after = served.metrics()

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("mlpipe_requests_total", endpoint="/predict", status="200") == 1
    assert delta("mlpipe_requests_total", endpoint="/predict", status="422") == 1
    assert delta("mlpipe_rejected_inputs_total", reason="out_of_range") == 1
    assert delta("mlpipe_rejected_inputs_total", reason="extra_field") == 1
    assert delta("mlpipe_predicted_probability_count") == 5
    assert delta("mlpipe_request_duration_seconds_count", endpoint="/predict") == 2
    version = served.client.get("/ready").json()["model_version"]
    assert after[("mlpipe_model_info", (("version", version),))] == 1


def test_metadata_and_the_openapi_schema_show_the_real_fields(served):
    metadata = served.client.get("/metadata").json()
    assert metadata["model_version"] == served.client.get("/ready").json()["model_version"]
    assert metadata["test_metrics"]["roc_auc"] > 0.8 and metadata["training_params"]["num_leaves"] == 31
    assert metadata["card"]["model_details"]["version"] == metadata["model_version"]  # the card of the model served (make serve's --card)
    assert metadata["card"]["evaluation"]["overall"] == metadata["test_metrics"]
    record = served.client.get("/openapi.json").json()["components"]["schemas"]["Record"]
    assert "AGEP" in record["required"] and {member["maximum"] for member in record["properties"]["AGEP"]["anyOf"]} == {120}
    assert "['1', '2', '3', '4', '5']" in record["properties"]["MAR"]["description"]
    assert record["additionalProperties"] is False


def test_reload_under_load_fails_no_request_and_each_answer_names_its_model(built_repo_without_reports, tmp_path):
    repo = built_repo_without_reports.copy(tmp_path / "repo")
    repo.set_params(serve={"watch_seconds": 0})  # POST /reload alone swaps the model (the watch is tested on its own)
    server = Server(repo)
    try:
        rows = records_of(pd.read_parquet(repo.path / repo.params()["monitor"]["current_source"]).head(20))
        old = server.client.get("/ready").json()["model_version"]
        answers, failures, stop = [], [], threading.Event()

        def call() -> None:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                while not stop.is_set():
                    response = client.post("/predict", json=rows)
                    if response.status_code != 200:
                        failures.append(response.text)
                    else:
                        body = response.json()
                        answers.append((body["model_version"], {p["model_version"] for p in body["predictions"]}))

        callers = [threading.Thread(target=call) for _ in range(4)]
        for caller in callers:
            caller.start()
        time.sleep(1)
        # A smaller model (its first 5 trees): same features and levels, another version.
        model = repo.path / "models" / "model.txt"
        import lightgbm

        model.write_text(lightgbm.Booster(model_file=str(model)).model_to_string(num_iteration=5))
        reloaded = server.client.post("/reload").json()
        time.sleep(1)
        stop.set()
        for caller in callers:
            caller.join()
        new = reloaded["model_version"]
        assert new != old and reloaded["previous_version"] == old
        assert failures == []
        assert all(per_record == {version} for version, per_record in answers)
        versions = [version for version, _ in answers]
        assert set(versions) == {old, new} and versions.count(new) > 0
        # A broken file: the reload is refused and the last good model keeps serving.
        model.write_text("not a model")
        refused = server.client.post("/reload")
        assert refused.status_code == 409 and "is corrupt or truncated" in refused.json()["detail"]
        assert server.client.get("/ready").json()["model_version"] == new
    finally:
        server.stop()


def test_a_half_written_or_spliced_model_never_crashes_a_loader(built_repo_without_reports, tmp_path):
    """Writing part of models/model.txt over the file while the service ran killed it (LightGBM
    Fatal, terminate called), and service start and evaluate on such a file exited 139 with no
    error line. A prefix, and a file cut in the middle that still begins and ends as a model does:
    the running service keeps answering with the last good model; start and evaluate say one line,
    exit 3."""
    repo = built_repo_without_reports.copy(tmp_path / "repo")
    repo.set_params(serve={"watch_seconds": 0.1})
    model = repo.path / "models" / "model.txt"
    good = model.read_text()
    size = len(good)  # a splice that keeps the end: the file copied over while it was read
    broken = {"a prefix": good[: size // 3], "a splice": good[: size // 4] + good[size // 2 :]}
    rows = records_of(pd.read_parquet(repo.path / repo.params()["monitor"]["current_source"]).head(20))
    server = Server(repo)
    try:
        before = server.predict(rows).json()
        for text in broken.values():
            model.write_text(text)
            time.sleep(0.5)  # not an assertion: a few watch ticks
            assert server.predict(rows).json() == before
            refused = server.client.post("/reload")
            assert refused.status_code == 409 and "is corrupt or truncated" in refused.json()["detail"]
        assert server.client.get("/health").json() == {"status": "ok"}
    finally:
        out = server.stop()
    # One line per change it saw (a write seen half done is a change of its own); it never died.
    assert sum("do not load" in line for line in out.splitlines()) >= len(broken) and "Fatal" not in out, out
    for what, text in broken.items():
        model.write_text(text)
        started = repo.run(
            "python", "-m", "mlpipe.tools.serve", "--evaluation", "metrics/evaluation.json", "--training-params",
            "metrics/train/params.yaml", check=False,
        )  # fmt: skip
        evaluated = repo.run("python", "src/stages/evaluate.py", *repo.command("evaluate"), check=False)
        for done in (started, evaluated):
            lines = done.stderr.strip().splitlines()
            assert done.returncode == 3 and len(lines) == 1 and "model 'models/model.txt' is corrupt or truncated" in lines[0], (what, done)


def test_several_workers_share_the_port_the_metrics_the_log_and_every_model_change(built_repo_without_reports, tmp_path):
    repo = built_repo_without_reports.copy(tmp_path / "repo")
    repo.set_params(serve={"workers": 2, "watch_seconds": 0.5})
    server = Server(repo)
    rows = records_of(pd.read_parquet(repo.path / repo.params()["monitor"]["current_source"]).head(10))
    sent = []

    def call(times: int) -> None:
        for _ in range(times):  # a new connection each time: the kernel hands it to a worker that accepts
            with httpx.Client(base_url=server.url, timeout=30) as client:
                response = client.post("/predict", json=rows)
                assert response.status_code == 200, response.text
                sent.append(response.json()["model_version"])

    def serving() -> dict[str, str]:
        """pid -> the version that worker serves (its model_info series at 1)."""
        found = server.metrics()
        return {
            dict(labels)["pid"]: dict(labels)["version"]
            for (name, labels), value in found.items()
            if name == "mlpipe_model_info" and value == 1
        }

    try:
        callers = [threading.Thread(target=call, args=(10,)) for _ in range(4)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()
        found = server.metrics()  # whichever worker answers, the counts are every worker's
        assert found[("mlpipe_requests_total", (("endpoint", "/predict"), ("status", "200")))] == len(sent) == 40
        assert found[("mlpipe_predicted_probability_count", ())] == 400
        old = server.client.get("/ready").json()["model_version"]
        assert len(serving()) == 2 and set(serving().values()) == {old}  # one series per worker process
        # A new model file, and no /reload: every worker sees the change and swaps it in.
        model = repo.path / "models" / "model.txt"
        import lightgbm

        model.write_text(lightgbm.Booster(model_file=str(model)).model_to_string(num_iteration=5))
        deadline = time.monotonic() + 20
        while old in serving().values() and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = serving()
        (new,) = set(workers.values())
        assert new != old and len(workers) == 2
        call(10)
        assert set(sent[-10:]) == {new}
    finally:
        server.stop()
    # Each worker wrote its own log files (its pid in their names); on stop every row is there.
    logged = pd.read_parquet(repo.path / repo.params()["serve"]["log_folder"])
    assert len(logged) == 10 * len(sent) and set(logged["model_version"]) == {old, new}


def test_api_key_from_the_environment(built_repo_without_reports, tmp_path):
    repo = built_repo_without_reports.copy(tmp_path / "repo")
    server = Server(repo, MLPIPE_API_KEY="s3cret-key")
    try:
        row = records_of(pd.read_parquet(repo.path / repo.params()["monitor"]["current_source"]).head(1))
        assert server.predict(row).status_code == 401
        assert server.predict(row, **{"X-API-Key": "wrong"}).status_code == 401
        assert server.predict(row, **{"X-API-Key": "s3cret-key"}).status_code == 200
        assert server.client.get("/metadata").status_code == 401
        assert server.client.get("/health").status_code == server.client.get("/metrics").status_code == 200
        assert server.client.get("/openapi.json").status_code == 200  # the contract is no secret (docs/serving.md)
        assert "s3cret-key" not in server.client.get("/metrics").text
    finally:
        out = server.stop()
    assert "s3cret-key" not in out and "API key required (MLPIPE_API_KEY)" in out


def replay(server: Server, *variables: str):
    return server.repo.make("replay", f"PORT={server.url.rsplit(':', 1)[1]}", *variables)


def test_replayed_rows_feed_the_drift_stage_and_a_shifted_replay_asks_for_retraining(built_repo_without_reports, tmp_path):
    """The loop: serve -> prediction log -> monitor.current_source -> dvc repro -> drift verdict."""
    repo = built_repo_without_reports.copy(tmp_path / "repo")
    source = repo.params()["monitor"]["current_source"]
    current = pd.read_parquet(repo.path / source)
    latest = current[current["year"] == 2018]
    server = Server(repo)
    sent = replay(server)  # the latest period by default
    server.stop()  # graceful: the log's buffer is written
    assert f"sent {len(latest):,} rows (the latest period, year 2018)" in sent.stdout
    log = repo.path / repo.params()["serve"]["log_folder"]
    files = sorted(log.rglob("*.parquet"))
    assert files and all(file.parent.name.startswith("date=") for file in files)
    logged = pd.concat(map(pd.read_parquet, files))
    assert sorted(logged["id"]) == sorted(latest["id"]) and logged["served_at"].notna().all()

    batch_estimate = json.loads((repo.path / "metrics" / "drift.json").read_text())["windows"]["2018"]["estimated_performance"]
    repo.set_params(monitor={"current_source": str(log.relative_to(repo.path))})
    assert repo.dvc("repro").stages_run == ["predict", "drift", "card"]
    drift = json.loads((repo.path / "metrics" / "drift.json").read_text())
    assert drift["windows"]["all"]["rows"] == drift["windows"]["2018"]["rows"] == len(latest)
    assert "2016" in drift["empty_windows"]
    # The performance estimated from the logged rows' probabilities is the batch run's, to the bit
    # (replay sends the labels along, so the realised figures are there too).
    assert drift["windows"]["2018"]["estimated_performance"] == batch_estimate
    rescored = pd.read_parquet(repo.path_of("predict", "out-current")).set_index("id")["probability"]
    assert (logged.set_index("id")["probability"] == rescored.loc[logged["id"]]).all()  # the loop changes no score

    # Only people under 30, into a log of their own: the drift stage flags it, make monitor says retrain.
    repo.set_params(serve={"log_folder": "data/served-young"})
    server = Server(repo)
    young = replay(server, "WHERE=year == 2018 and AGEP < 30", f"SOURCE={source}")  # the rows, not the first log
    server.stop()
    repo.set_params(monitor={"current_source": "data/served-young"})
    assert f"sent {(latest['AGEP'] < 30).sum():,} rows (rows where year == 2018 and AGEP < 30)" in young.stdout
    repo.dvc("repro")
    monitor = repo.make("monitor", check=False)
    assert monitor.returncode != 0 and "RETRAIN RECOMMENDED" in monitor.stdout and "dataset drift" in monitor.stdout, monitor.stdout
    assert json.loads((repo.path / "metrics" / "drift.json").read_text())["retrain_recommended"]


def test_replay_without_a_service_is_one_line(repo):
    refused = repo.make("replay", f"PORT={unused_port()}", check=False)
    assert refused.returncode != 0
    assert "error: replay: no prediction service at http://127.0.0.1:" in refused.stderr and "Traceback" not in refused.stderr


class _FakeService:
    """A real HTTP server on loopback answering as told: `/openapi.json` and `/predict` give
    (status, content type, body); the POSTs it received are counted."""

    def __init__(self, openapi: tuple[int, str, bytes], predict: tuple[int, str, bytes]):
        import http.server

        answers, self.posts = {"/openapi.json": openapi, "/predict": predict}, []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(handler):
                status, kind, body = answers[handler.path]
                handler.send_response(status)
                handler.send_header("Content-Type", kind)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)

            def do_GET(handler):
                handler._answer()

            def do_POST(handler):
                self.posts.append(handler.rfile.read(int(handler.headers["Content-Length"])))
                handler._answer()

            def log_message(handler, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


CONTRACT = (200, "application/json", json.dumps({"components": {"schemas": {"Record": {"properties": {"AGEP": {}}}}}}).encode())


@pytest.mark.parametrize(
    ("openapi", "predict", "posts", "says"),
    [
        (
            CONTRACT,
            (401, "application/json", b'{"detail":"missing or wrong API key"}'),
            1,
            "answered 401: the service refuses the API key; export",
        ),
        (CONTRACT, (403, "application/json", b'{"detail":"forbidden"}'), 1, "answered 403: the service refuses the API key"),
        ((200, "text/html", b"<html><body>It works!</body></html>"), (200, "text/html", b""), 0, "GET http://127.0.0.1:"),
        (CONTRACT, (200, "text/html", b"<html>a proxy's page</html>"), 1, 'answered 200 with "<html>a proxy\'s page</html>", not the'),
    ],
)
def test_replay_stops_at_a_refused_key_or_an_answer_that_is_not_the_services(tmp_path, capsys, openapi, predict, posts, says):
    """A wrong key sent every batch despite 401; a non-JSON answer raised JSONDecodeError."""
    from mlpipe.errors import EXIT_USAGE
    from mlpipe.tools import replay

    pd.DataFrame({"year": [2018] * 30, "AGEP": range(30)}).to_parquet(tmp_path / "rows.parquet")
    service = _FakeService(openapi, predict)
    try:
        status = replay.main(["--url", service.url, "--params", str(Path(__file__).parent.parent / "params.yaml"),
                              "--source", str(tmp_path / "rows.parquet"), "--batch-rows", "10"])  # fmt: skip
    finally:
        service.close()
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == EXIT_USAGE and len(lines) == 1 and lines[0].startswith("error: replay: ") and says in lines[0], lines
    assert len(service.posts) == posts  # three batches to send: it stopped at the first refusal
