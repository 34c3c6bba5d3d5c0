"""The prediction service: mlpipe.serving behind FastAPI, with Prometheus metrics, an optional
API key, request limits, a prediction log and model reload without a restart.

    POST /predict    one record (a JSON object) or a list of them -> probability, label, model version each
    POST /reload     load the model again (the same files), swap it in atomically
    GET  /health     the process is up           GET /ready     a model is loaded
    GET  /metadata   model version, threshold, features, training params, test metrics
    GET  /metrics    Prometheus exposition       GET /docs      the OpenAPI page, with the real fields

`create_app` takes a model loader rather than paths, so it knows nothing of the repository's
layout; `mlpipe.tools.serve` (`make serve`) gives it the files `dvc.yaml` names.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, ValidationError

from mlpipe.config import Params
from mlpipe.errors import PipelineError
from mlpipe.prediction_log import PredictionLog
from mlpipe.schema import MODEL_VERSION, PREDICTED_LABEL, PROBABILITY
from mlpipe.serving import RecordError, ServedModel, record_model, score_records

log = logging.getLogger("mlpipe.service")

API_KEY_HEADER = "X-API-Key"
OPEN_PATHS = {"/health", "/ready", "/metrics"}  # probes and scrapers call these without the key


@dataclass(frozen=True)
class Loaded:
    """A model and the request contract built from its schema: swapped together, read together."""

    model: ServedModel
    record: type[BaseModel]


class RequestRejected(Exception):
    def __init__(self, status: int, reason: str, detail: Any):
        self.status, self.reason, self.detail = status, reason, detail


class ServiceMetrics:
    """The service's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(self) -> None:
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
        self.model = Gauge("mlpipe_model_info", "the model being served (1), by version", ["version"], registry=self.registry)


def create_app(
    load_model: Callable[[], ServedModel], params: Params, *, api_key: str | None = None, prediction_log: PredictionLog | None = None
) -> FastAPI:
    """The app, with the model `load_model` returns already loaded (its errors propagate: a
    service that cannot load its model must not start). /reload calls `load_model` again."""
    serve = params.serve
    metrics = ServiceMetrics()

    def load() -> Loaded:
        model = load_model()
        return Loaded(model, record_model(model.schema, params))

    current = load()
    metrics.model.labels(current.model.version).set(1)
    app = FastAPI(
        title="mlpipe prediction service",
        summary="Probabilities from the pipeline's LightGBM model, validated against its data contract.",
        version=current.model.version[:12],
    )
    app.state.loaded = current

    def authorised(request: Request) -> None:
        if api_key is None or request.url.path in OPEN_PATHS:
            return
        sent = request.headers.get(API_KEY_HEADER, "")
        if not hmac.compare_digest(sent.encode("utf-8", "surrogateescape"), api_key.encode("utf-8")):
            raise RequestRejected(401, "unauthorised", f"missing or wrong API key: send it in the {API_KEY_HEADER} header")

    @app.exception_handler(RequestRejected)
    async def rejected(request: Request, exc: RequestRejected) -> JSONResponse:
        reasons = [exc.reason] if isinstance(exc.reason, str) else exc.reason
        for reason in reasons:
            metrics.rejected.labels(reason).inc()
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.middleware("http")
    async def measure(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        endpoint = getattr(route, "path", "unmatched")  # the route's template: unknown paths cannot grow the label set
        metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        return response

    @app.get("/health", summary="The process is up")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", summary="A model is loaded and serving")
    async def ready() -> dict[str, Any]:
        return {"ready": True, "model_version": app.state.loaded.model.version}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/metadata", summary="The model being served", dependencies=[Depends(authorised)])
    async def metadata() -> dict[str, Any]:
        model = app.state.loaded.model
        return {
            "model_version": model.version,
            "threshold": params.evaluate.threshold,
            "target": model.schema.target,
            "positive_label": model.schema.positive_label,
            "features": [{"name": spec.name, "kind": spec.kind, "categories": list(spec.categories)} for spec in model.schema.features],
            **model.metadata,
        }

    @app.post("/predict", summary="Score one record or a list of records", dependencies=[Depends(authorised)])
    async def predict(request: Request) -> dict[str, Any]:
        loaded = app.state.loaded  # one model for the whole request, even if /reload swaps it meanwhile
        records = validated_records(await read_body(request, serve.max_body_bytes), loaded.record, serve.max_batch_rows)
        scored = await run_in_threadpool(score_records, records, loaded.model, params)
        for probability in scored[PROBABILITY]:
            metrics.probability.observe(probability)
        if prediction_log is not None:
            prediction_log.append(scored)
        predictions = [
            {"probability": probability, "label": label, "model_version": version}
            for probability, label, version in zip(
                scored[PROBABILITY].tolist(), scored[PREDICTED_LABEL], scored[MODEL_VERSION], strict=True
            )
        ]
        return {"model_version": loaded.model.version, "predictions": predictions}

    @app.post("/reload", summary="Load the model files again and swap the new model in", dependencies=[Depends(authorised)])
    async def reload() -> dict[str, Any]:
        before = app.state.loaded.model.version
        try:
            fresh = await run_in_threadpool(load)
        except PipelineError as exc:
            raise RequestRejected(409, "reload_failed", f"the model was not reloaded, {before[:12]} still serves: {exc}") from None
        app.state.loaded = fresh  # one assignment: each request sees the old pair or the new one, never a mix
        app.openapi_schema = None  # the request contract may have changed with the schema
        if fresh.model.version != before:
            metrics.model.remove(before)
            metrics.model.labels(fresh.model.version).set(1)
        log.info("reloaded: %s -> %s", before[:12], fresh.model.version[:12])
        return {"model_version": fresh.model.version, "previous_version": before}

    def openapi() -> dict[str, Any]:
        """FastAPI's schema, with /predict's body described by the current request contract."""
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            record = app.state.loaded.record.model_json_schema(ref_template="#/components/schemas/{model}")
            schema.setdefault("components", {}).setdefault("schemas", {})["Record"] = record
            reference = {"$ref": "#/components/schemas/Record"}
            body = {"oneOf": [reference, {"type": "array", "items": reference, "maxItems": serve.max_batch_rows}]}
            schema["paths"]["/predict"]["post"]["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app


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


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def validated_records(body: bytes, record: type[BaseModel], max_rows: int) -> list[dict[str, Any]]:
    """The records of a body, each checked against the request contract: the fields each one
    was sent with. Every broken field of every record is reported at once, one message each."""
    try:
        payload = json.loads(body, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        raise RequestRejected(400, "not_json", f"the body is not JSON: {str(exc)[:200]}") from None
    records = [payload] if isinstance(payload, dict) else payload
    if not isinstance(records, list):
        raise RequestRejected(422, "not_a_record", "the body must be a record (a JSON object) or a list of records")
    if len(records) > max_rows:
        raise RequestRejected(
            413, "too_many_records", f"{len(records)} records in one request; the limit is {max_rows} (serve.max_batch_rows)"
        )
    if not records:
        raise RequestRejected(422, "no_records", "the list holds no records")
    valid, problems = [], []
    for index, raw in enumerate(records):
        try:
            valid.append(record.model_validate(raw).model_dump(exclude_unset=True))
        except ValidationError as exc:
            problems += _field_problems(exc, index if isinstance(payload, list) else None)
    if problems:
        raise RequestRejected(422, [problem.pop("reason") for problem in problems], problems)
    return valid


def _field_problems(exc: ValidationError, index: int | None) -> list[dict[str, Any]]:
    """One problem per field: a value that fits none of a field's types fails each of them in
    pydantic's report; here that is one 'wrong type' message."""
    by_field: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for error in exc.errors():
        by_field[str(error["loc"][0]) if error["loc"] else "(record)"].append(error)
    problems = []
    for name, errors in by_field.items():
        first = errors[0]
        cause = (first.get("ctx") or {}).get("error")
        if isinstance(cause, RecordError):
            reason, message = cause.reason, str(cause)
        elif first["type"] == "missing":
            reason, message = "missing_field", "is required"
        elif first["type"] == "extra_forbidden":
            reason, message = "extra_field", "is not a field of this model's records (see /docs)"
        elif first["type"] in {"dict_type", "model_type"}:
            reason, message = "not_a_record", "each record must be a JSON object"
        elif first.get("input", ...) is None:
            reason, message = "null", "must not be null (the data contract)"
        else:
            expected = sorted({str(error["loc"][-1]) for error in errors if len(error["loc"]) > 1} or {first["type"]})
            reason, message = "wrong_type", f"has the wrong type {type(first.get('input')).__name__}: expected {' or '.join(expected)}"
        problem = {"field": name, "message": message, "reason": reason}
        if index is not None:
            problem = {"record": index, **problem}
        problems.append(problem)
    return problems
