"""`mlpipe smoke`: check that a freshly started prediction service answers, serves what it should and scores.

    mlpipe smoke --url http://127.0.0.1:8000 --stage prod     # what the deploy workflow runs after `make serve STAGE=prod`

One line per check, then exit 0 when every check passed, 1 when one failed (2 for a bad argument):
  health    GET /health answers within --timeout seconds (the service loads its model first);
  release   GET /metadata's release names --stage (and --version when given: the version the
            stage's tag assigned); without --stage it only says what is served;
  predict   POST /predict with one record built from the service's own request contract (the
            Record schema of /openapi.json: a field's first allowed value, a categorical's first
            known category from /metadata, else 0 or the bound nearest it) answers a probability
            in [0, 1].
The API key, when the service needs one, is read from the variable serve.api_key_env names.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from mlpipe.config import load_params
from mlpipe.errors import EXIT_FINDING, EXIT_OK, EXIT_USAGE, PipelineError, exit_status


def record_from_contract(record_schema: dict[str, Any], features: list[dict[str, Any]]) -> dict[str, Any]:
    """One record the contract accepts, with its required fields (the model's inputs): a field's
    first allowed value (`enum`), else a categorical feature's first known category, else 0 or the
    nearest bound to it, else null where the field allows it."""
    categories = {feature["name"]: feature["categories"] for feature in features if feature.get("categories")}
    record: dict[str, Any] = {}
    for name in record_schema.get("required", []):
        field = record_schema["properties"][name]
        options = field.get("anyOf", [field])
        types = {option.get("type") for option in options}
        numeric = next((option for option in options if option.get("type") in ("integer", "number")), None)
        if field.get("enum"):
            record[name] = field["enum"][0]
        elif name in categories and "string" in types:
            record[name] = categories[name][0]
        elif numeric is not None:
            value = min(max(0, numeric.get("minimum", 0)), numeric.get("maximum", float("inf")))  # 0, or the bound nearest it
            record[name] = int(value) if float(value).is_integer() else value
        elif "null" in types:
            record[name] = None
        else:
            record[name] = False if "boolean" in types else ""
    return record


def wait_for_health(client, url: str, timeout: float) -> tuple[bool, str]:
    import httpx

    start = time.monotonic()
    last = "no answer"
    while True:
        try:
            response = client.get("/health")
            if response.status_code == 200:
                return True, f"GET {url}/health answered after {time.monotonic() - start:.1f} s"
            last = f"answered {response.status_code}"
        except httpx.TransportError as exc:
            last = f"no answer ({type(exc).__name__})"
        if time.monotonic() - start >= timeout:
            return False, f"GET {url}/health: {last} after {timeout:g} s (--timeout): is the service starting? see its log"
        time.sleep(0.5)


def check_release(metadata: dict[str, Any], stage: str | None, version: str | None = None) -> tuple[bool, str]:
    release = metadata.get("release")
    model = str(metadata.get("model_version", "?"))[:12]
    if stage is None:
        return True, f"serves {release or 'the workspace model, no release'} (model {model}; no --stage to check)"
    if not isinstance(release, dict) or release.get("stage") != stage:
        return False, f"/metadata's release is {release}, expected one at stage {stage!r}: was the service started with --stage {stage}?"
    if version is not None and release.get("version") != version:
        return False, f"stage {stage} serves {release.get('artifact')} {release.get('version')}, expected {version}: a later assignment?"
    return True, (
        f"{release.get('artifact')} {release.get('version')} at stage {release.get('stage')} "
        f"(rev {str(release.get('rev'))[:12]}, model {model})"
    )


def check_prediction(predictions: Any) -> tuple[bool, str]:
    try:
        [prediction] = predictions
        probability = prediction["probability"]
    except (ValueError, TypeError, KeyError):
        return False, f"/predict answered {str(predictions)[:200]}, not one prediction with a probability"
    if isinstance(probability, bool) or not isinstance(probability, (int, float)) or not 0 <= probability <= 1:
        return False, f"/predict answered probability {probability!r}, not a number in [0, 1]"
    return True, f"probability {probability:.6f} for one record built from the request contract"


def run_checks(url: str, stage: str | None, version: str | None, timeout: float, key_env: str) -> list[tuple[str, bool, str]]:
    """(check, passed, detail) for each check run; the checks after a failed health check are not run."""
    import httpx

    from mlpipe.tools.replay import answer

    key = os.environ.get(key_env)
    results = []
    with httpx.Client(base_url=url, headers={"X-API-Key": key} if key else {}, timeout=30) as client:
        passed, detail = wait_for_health(client, url, timeout)
        results.append(("health", passed, detail))
        if not passed:
            return results
        try:
            metadata = answer(client.get("/metadata"), url, key_env, ())
            results.append(("release", *check_release(metadata, stage, version)))
            record_schema = answer(client.get("/openapi.json"), url, key_env, ("components", "schemas", "Record"))
            record = record_from_contract(record_schema, metadata.get("features", []))
            response = client.post("/predict", json=record)
            if response.status_code != 200:
                results.append(("predict", False, f"POST {url}/predict answered {response.status_code}: {response.text[:300]}"))
            else:
                results.append(("predict", *check_prediction(answer(response, url, key_env, ("predictions",)))))
        except (PipelineError, httpx.TransportError) as exc:
            results.append(("service", False, str(exc)))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running service")
    parser.add_argument("--stage", help="the stage the service must serve (mlpipe serve --stage); default: the workspace's model")
    parser.add_argument("--version", help="with --stage: the version the stage must serve (the one its tag assigned)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for /health")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="for serve.api_key_env")
    args = parser.parse_args(argv)
    if not args.url.startswith(("http://", "https://")):
        print(
            f"error: smoke: --url {args.url!r} is not an http(s) URL: give the service's address, e.g. --url http://127.0.0.1:8000",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.version is not None and args.stage is None:
        print(f"error: smoke: --version {args.version} needs --stage: give the stage that version is assigned to", file=sys.stderr)
        return EXIT_USAGE
    if args.timeout <= 0:
        print(f"error: smoke: --timeout {args.timeout:g} must be a positive number of seconds, e.g. --timeout 120", file=sys.stderr)
        return EXIT_USAGE
    try:
        key_env = load_params(args.params).serve.api_key_env
    except PipelineError as exc:
        print(f"error: smoke: {exc}", file=sys.stderr)
        return exit_status(exc)
    results = run_checks(args.url.rstrip("/"), args.stage, args.version, args.timeout, key_env)
    for check, passed, detail in results:
        print(f"{'pass' if passed else 'FAIL'} {check}: {detail}")
    return EXIT_OK if all(passed for _, passed, _ in results) else EXIT_FINDING


if __name__ == "__main__":
    sys.exit(main())
