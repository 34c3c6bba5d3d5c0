"""The prediction service: mlpipe.serving.scorer behind FastAPI, with Prometheus metrics, an optional
API key, request limits, a prediction log and model reload without a restart.

    POST /predict    one record (a JSON object) or a list of them -> probability, label, model version each
                     (?explain=true: and its top contributions, LightGBM's TreeSHAP)
    POST /reload     load the model again (the same files), swap it in atomically
    GET  /health     the process is up           GET /ready     a model is loaded
    GET  /metadata   model version, threshold, features, training params, test metrics, the model card
    GET  /metrics    Prometheus exposition       GET /docs      the OpenAPI page, with the real fields

`create_app` takes a model loader rather than paths, so it knows nothing of the repository's
layout; `mlpipe.tools.serve` (`make serve`) gives it the files `dvc.yaml` names.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import Field, TypeAdapter, ValidationError

from mlpipe.config import Params
from mlpipe.data.schema import MODEL_VERSION, PREDICTED_LABEL, PROBABILITY
from mlpipe.errors import PipelineError
from mlpipe.serving.prediction_log import PredictionLog
from mlpipe.serving.scorer import INT64, RecordError, ServedModel, explain_records, record_model, score_records

log = logging.getLogger("mlpipe.serving.app")

API_KEY_HEADER = "X-API-Key"
# Bodies of up to this many bytes (a few dozen records) are checked and scored on the event loop,
# on one LightGBM thread: a small call takes less time than handing it to a worker thread or
# waking OpenMP's. Larger ones go to a thread, checks included (a 1,000-record body of broken
# fields takes a good fraction of a second to report), so that neither a big batch nor a broken
# one holds up /health and the single records behind it.
INLINE_BYTES = 16_384


@dataclass(frozen=True)
class Loaded:
    """A model and the request contract built from its schema: swapped together, read together."""

    model: ServedModel
    one: TypeAdapter  # a body holding one record (its JSON schema is /docs' Record)
    many: TypeAdapter  # a body holding a list of them
    files: Any = None  # what `watch` said about the model files just before they were read


class RequestRejected(Exception):
    def __init__(self, status: int, reason: str, detail: Any):
        self.status, self.reason, self.detail = status, reason, detail


class MeasuredRequests:
    """ASGI middleware counting and timing every request by route template and status (cheaper
    per request than Starlette's BaseHTTPMiddleware). Unknown paths count as "unmatched", so
    they cannot grow the label set."""

    def __init__(self, app, metrics: ServiceMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [500]

        async def record_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            endpoint = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
            self.metrics.requests.labels(endpoint, str(status[0])).inc()


def multiprocess_metrics() -> bool:
    """Several service processes: prometheus-client keeps every metric in files under the folder
    PROMETHEUS_MULTIPROC_DIR names (`mlpipe.tools.serve` sets it before any worker starts), and
    /metrics adds up every process's."""
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ


class ServiceMetrics:
    """The service's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(self, reveal_version: bool = True) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("mlpipe_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram(
            "mlpipe_request_duration_seconds",
            "request handling time by endpoint",
            ["endpoint"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.probability = Histogram(
            "mlpipe_predicted_probability",
            "predicted probabilities of the positive label",
            buckets=tuple(round(0.1 * i, 1) for i in range(1, 11)),
            registry=self.registry,
        )
        self.rejected = Counter("mlpipe_rejected_inputs", "rejected requests or fields by reason", ["reason"], registry=self.registry)
        self.log_dropped = Counter(
            "mlpipe_prediction_log_dropped_rows",
            "served rows the prediction log dropped unwritten (it could not write them: serve.log_max_buffered_rows)",
            registry=self.registry,
        )
        # With several workers, one series per live worker (a `pid` label): during a model change
        # they show which worker serves which version. /metrics asks no key (scrapers have none):
        # with one required, the version is not shown here.
        self.reveal_version = reveal_version
        self.model = Gauge(
            "mlpipe_model_info",
            "the model being served (1), by version (no version when an API key is required)",
            ["version"] if reveal_version else [],
            registry=self.registry,
            multiprocess_mode="liveall",
        )

    def exposition(self) -> bytes:
        if not multiprocess_metrics():
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        every_worker = CollectorRegistry()
        multiprocess.MultiProcessCollector(every_worker)
        return generate_latest(every_worker)

    def serving(self, version: str, before: str | None = None) -> None:
        if not self.reveal_version:
            self.model.set(1)
            return
        if before is not None and before != version:
            self.model.labels(before).set(0)  # multiprocess mode keeps a removed series' last value: 0, not 1
            self.model.remove(before)
        self.model.labels(version).set(1)

    def observe_probabilities(self, values: np.ndarray) -> None:
        """One `observe` per value: prometheus-client has no public call for a batch, and its
        histogram's internals change between releases (the cost per 1,000 values is a phase of
        bench/results/serving.md)."""
        for value in values.tolist():
            self.probability.observe(value)


def create_app(
    load_model: Callable[[], ServedModel],
    params: Params,
    *,
    api_key: str | None = None,
    prediction_log: PredictionLog | None = None,
    watch: Callable[[], Any] | None = None,
) -> FastAPI:
    """The app, with the model `load_model` returns already loaded (its errors propagate: a
    service that cannot load its model must not start). /reload calls `load_model` again; so
    does a change in what `watch()` says about the model files (checked every
    serve.watch_seconds while the app runs). On shutdown the prediction log is closed."""
    serve = params.serve
    metrics = ServiceMetrics(reveal_version=api_key is None)

    def load() -> Loaded:
        files = watch() if watch is not None else None  # before reading: a change during the read is seen next time
        model = load_model()
        record = record_model(model.schema, params)
        many = TypeAdapter(Annotated[list[record], Field(min_length=1, max_length=serve.max_batch_rows)])
        return Loaded(model, TypeAdapter(record), many, files)

    swapping = asyncio.Lock()  # one reload at a time, whether /reload or the watch asked

    async def swap_in(why: str) -> tuple[str, str]:
        """Load the model files again and swap them in (the old model keeps serving if they do not
        load: the `PipelineError` propagates); (previous version, new version)."""
        async with swapping:
            before = app.state.loaded.model.version
            fresh = await run_in_threadpool(load)
            app.state.loaded = fresh  # one assignment: each request sees the old pair or the new one, never a mix
            app.openapi_schema = None  # the request contract may have changed with the schema
            metrics.serving(fresh.model.version, before)
            log.info("reloaded (%s): %s -> %s", why, before[:12], fresh.model.version[:12])
            return before, fresh.model.version

    async def watch_files() -> None:
        refused = None  # files that did not load are not tried again until they change again
        while True:
            await asyncio.sleep(serve.watch_seconds)
            now = watch()
            if now in (app.state.loaded.files, refused):
                continue
            try:
                await swap_in("the model files changed")
            except PipelineError as exc:
                refused = now
                log.error("the model files changed but do not load, %s still serves: %s", app.state.loaded.model.version[:12], exc)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        watcher = asyncio.create_task(watch_files()) if watch is not None and serve.watch_seconds > 0 else None
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
            if prediction_log is not None:
                prediction_log.close()  # writes what is buffered
            if multiprocess_metrics():
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(os.getpid())  # this worker's model_info series goes

    current = load()
    metrics.serving(current.model.version)
    if prediction_log is not None:
        prediction_log.on_dropped = metrics.log_dropped.inc
    app = FastAPI(
        title="mlpipe prediction service",
        summary="Probabilities from the pipeline's LightGBM model, validated against its data contract.",
        version=current.model.version[:12],
        lifespan=lifespan,
    )
    app.state.loaded = current
    app.add_middleware(MeasuredRequests, metrics=metrics)

    async def authorised(request: Request) -> None:  # async: FastAPI would run a plain def in a worker thread
        if api_key is None:  # probes, scrapers and the OpenAPI page have no key: their routes do not ask
            return
        sent = request.headers.get(API_KEY_HEADER, "")  # the header's bytes as latin-1 (ASGI); the key is ASCII (tools/serve.py)
        if not hmac.compare_digest(sent.encode("latin-1"), api_key.encode("latin-1")):
            raise RequestRejected(401, "unauthorised", f"missing or wrong API key: send it in the {API_KEY_HEADER} header")

    @app.exception_handler(RequestRejected)
    async def rejected(request: Request, exc: RequestRejected) -> JSONResponse:
        reasons = [exc.reason] if isinstance(exc.reason, str) else exc.reason
        for reason in reasons:
            metrics.rejected.labels(reason).inc()
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.get("/health", summary="The process is up")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", summary="A model is loaded and serving (its version too, unless an API key is required)")
    async def ready() -> dict[str, Any]:
        # Probes have no key: with one required, the version is told only to callers of /metadata.
        return {"ready": True} if api_key is not None else {"ready": True, "model_version": app.state.loaded.model.version}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/metadata", summary="The model being served", dependencies=[Depends(authorised)])
    async def metadata() -> dict[str, Any]:
        loaded = app.state.loaded
        model = loaded.model
        return {
            "model_version": model.version,
            "threshold": model.calibration.threshold,
            "calibration": {"method": model.calibration.method, "objective": model.calibration.objective},
            "target": model.schema.target,
            "positive_label": model.schema.positive_label,
            "features": [{"name": spec.name, "kind": spec.kind, "categories": list(spec.categories)} for spec in model.schema.features],
            **model.metadata,
        }

    @app.post("/predict", summary="Score one record or a list of records", dependencies=[Depends(authorised)])
    async def predict(
        request: Request,
        explain: Annotated[str | None, Query(description=EXPLAIN_HELP, json_schema_extra={"enum": ["true", "false"]})] = None,
    ) -> Response:
        explained = wants_explanations(explain, params.explain.top_k)
        loaded = app.state.loaded  # one model for the whole request, even if /reload swaps it meanwhile
        body = await read_body(request, serve.max_body_bytes)
        if len(body) <= INLINE_BYTES:
            records = validated_records(body, loaded, serve.max_batch_rows)
            probability, labels = score_records(records, loaded.model, threads=1)
        else:
            records, probability, labels = await run_in_threadpool(validated_and_scored, body, loaded, serve.max_batch_rows)
        version = loaded.model.version
        metrics.observe_probabilities(probability)
        if prediction_log is not None:
            prediction_log.append(records, {PROBABILITY: probability, PREDICTED_LABEL: labels, MODEL_VERSION: version})
        predictions = [
            {"probability": value, "label": label, "model_version": version}
            for value, label in zip(probability.tolist(), labels.tolist(), strict=True)
        ]
        if explained:
            # TreeSHAP costs over 100 predictions a row: in a worker thread, never on the event loop.
            found = await run_in_threadpool(explain_records, records, loaded.model, params.explain.top_k)
            for prediction, explanation in zip(predictions, found, strict=True):
                prediction.update(explanation)
        return Response(orjson.dumps({"model_version": version, "predictions": predictions}), media_type="application/json")

    @app.post("/reload", summary="Load the model files again and swap the new model in", dependencies=[Depends(authorised)])
    async def reload() -> dict[str, Any]:
        try:
            before, version = await swap_in("POST /reload")
        except PipelineError as exc:
            current = app.state.loaded.model.version
            raise RequestRejected(409, "reload_failed", f"the model was not reloaded, {current[:12]} still serves: {exc}") from None
        return {"model_version": version, "previous_version": before}

    def openapi() -> dict[str, Any]:
        """FastAPI's schema, with /predict's body described by the current request contract."""
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            record = app.state.loaded.one.json_schema(ref_template="#/components/schemas/{model}")
            schema.setdefault("components", {}).setdefault("schemas", {})["Record"] = record
            reference = {"$ref": "#/components/schemas/Record"}
            body = {"oneOf": [reference, {"type": "array", "items": reference, "maxItems": serve.max_batch_rows}]}
            schema["paths"]["/predict"]["post"]["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app


EXPLAIN_HELP = (
    "true: each prediction also gets `contributions`, its explain.top_k features of largest TreeSHAP contribution "
    "to the model's raw score (log-odds, before calibration), largest |contribution| first, as "
    '[{"feature", "contribution"}], and `base_value`, the raw score of an average row; false or absent: no explanation'
)


def wants_explanations(value: str | None, top_k: int) -> bool:
    """Whether `?explain=` asks for explanations: true or false (absent: false); anything else, or
    true while explain.top_k is 0, is a 422."""
    if value is None or value == "false":
        return False
    if value != "true":
        raise RequestRejected(422, "bad_explain", f"the query parameter explain must be true or false, not {value[:40]!r}")
    if top_k == 0:
        raise RequestRejected(
            422, "explain_off", "explanations are off (explain.top_k is 0): set explain.top_k to 1 or more in params.yaml"
        )
    return True


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it exceeds `limit` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestRejected(413, "body_too_large", f"the body is {declared} bytes; the limit is {limit} (serve.max_body_bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestRejected(413, "body_too_large", f"the body exceeds {limit} bytes (serve.max_body_bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


def validated_and_scored(body: bytes, loaded: Loaded, max_rows: int) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray]:
    """A large body's records, checked, and their (probability, label): in a worker thread."""
    records = validated_records(body, loaded, max_rows)
    return (records, *score_records(records, loaded.model))


def validated_records(body: bytes, loaded: Loaded, max_rows: int) -> list[dict[str, Any]]:
    """The records of a body (one JSON object or a list of them), each checked against the request
    contract: the fields each one was sent with. Every broken field of every record is reported
    at once, one message each."""
    many = body.lstrip()[:1] == b"["
    try:
        return loaded.many.validate_json(body) if many else [loaded.one.validate_json(body)]
    except ValidationError as exc:
        raise _rejection(exc, many, max_rows) from None


# pydantic's error types -> (reason, message); "{...}" is filled from the error's context.
_FIELD_ERRORS = {
    "missing": ("missing_field", "is required"),
    "extra_forbidden": ("extra_field", "is not a field of this model's records (see /docs)"),
    "greater_than_equal": ("out_of_range", "must be at least {ge} (the data contract)"),
    "less_than_equal": ("out_of_range", "must be at most {le} (the data contract)"),
    "multiple_of": ("not_whole", "must be a whole number (the data contract's dtype)"),
    "finite_number": ("not_finite", "must be a finite number"),
    "string_too_long": ("too_long", "is longer than {max_length} characters"),
}


def _rejection(exc: ValidationError, many: bool, max_rows: int) -> RequestRejected:
    errors = exc.errors()
    whole = [error for error in errors if not error["loc"]]
    if whole:
        kind = whole[0]["type"]
        if kind == "json_invalid":
            return RequestRejected(400, "not_json", f"the body is not JSON: {whole[0]['msg'][:200]}")
        if kind == "too_long":
            return RequestRejected(413, "too_many_records", f"more than {max_rows} records in one request (serve.max_batch_rows)")
        if kind == "too_short":
            return RequestRejected(422, "no_records", "the list holds no records")
        return RequestRejected(422, "not_a_record", "the body must be a record (a JSON object) or a list of records")
    depth = 2 if many else 1  # a field's location: (record, field) in a list, (field,) alone
    by_field: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for error in errors:
        by_field[tuple(error["loc"][:depth])].append(error)
    problems = []
    for where, group in by_field.items():
        if len(where) == depth:
            reason, message = _field_problem(group, depth)
        else:  # an item of the list that is not an object
            reason, message = "not_a_record", "each record must be a JSON object"
        problem = {"field": str(where[-1]) if len(where) == depth else "(record)", "message": message, "reason": reason}
        problems.append({"record": where[0], **problem} if many else problem)
    return RequestRejected(422, [problem.pop("reason") for problem in problems], problems)


def _field_problem(errors: list[dict[str, Any]], depth: int) -> tuple[str, str]:
    """One (reason, message) for a field. A value that fits none of a field's types fails each
    member of the union in pydantic's report: the most telling failure speaks for the field."""
    for error in errors:
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, RecordError):
            return cause.reason, str(cause)
    if errors[0].get("input", ...) is None and errors[0]["type"] not in {"missing", "extra_forbidden"}:
        return "null", "must not be null (the data contract)"
    for error in errors:
        context = error.get("ctx") or {}
        if context.get("ge") == INT64[0] or context.get("le") == INT64[1]:
            continue  # only steers a huge integer to the float member, whose verdict speaks
        if error["type"] == "finite_number" and type(error.get("input")) is int:
            return "not_finite", "is beyond the range of a float64: send a number of at most about 1.8e308"
        if error["type"] in _FIELD_ERRORS:
            reason, message = _FIELD_ERRORS[error["type"]]
            context = {key: f"{value:g}" if isinstance(value, float) else value for key, value in (error.get("ctx") or {}).items()}
            return reason, message.format(**context)
    expected = sorted({str(error["loc"][depth]).removeprefix("constrained-") for error in errors if len(error["loc"]) > depth})
    return "wrong_type", f"has the wrong type {type(errors[0].get('input')).__name__}: expected {' or '.join(expected)}"
