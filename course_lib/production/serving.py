"""An HTTP service for a model bundle (FastAPI + uvicorn).

Endpoints (JSON):

* ``GET /health``: ``{"status": "ok"}`` while the process serves (liveness);
* ``GET /ready``: ``{"status": "ready"}`` when the model gives a finite forecast on a reference window
  (the training means at every step), else 503 with the reason (readiness: route no traffic here);
* ``GET /metadata``: :attr:`course_lib.production.bundle.ModelDeployment.metadata`;
* ``POST /predict``: ``{"features": [...], "window": [[...] * C] * L}`` -> ``{"forecast": [...]}``;
* ``POST /predict_batch``: ``{"features": [...], "windows": [window, ...]}`` -> ``{"forecasts": [...]}``.

Windows are *unscaled* features in the bundle's order; the service applies the training scaler.

The OpenAPI schema (``/openapi.json``) states the real contract, built from the bundle: the feature
names in order, ``L`` rows of ``C`` numbers, each feature's accepted range
(:data:`course_lib.production.bundle.MAX_STANDARD_SCORE` training standard deviations around its mean),
the batch cap, no other fields, and the error bodies. Every request the schema allows is answered
200, and every request it forbids is refused: 413 for a body over the size limit (judged from
``Content-Length`` before the body is read, and while it streams), 422 with ``{"detail": message}``
for the rest (not JSON, a missing or unknown field, a string or a boolean where a number belongs, a
wrong feature list, a window of the wrong length, a NaN, a value out of range, a batch over
``max_batch``, which is counted before any number is read). A model that gives a non-finite forecast
for a valid request is the server's fault: 503 with the reason, never 200 with ``null``.

Run it with ``python -m course_lib.production.serving BUNDLE_DIR --port 8000`` or, from Python, with
:func:`serve_in_subprocess`, a context manager that starts it on a free localhost port, waits
until it answers (on /health) and always stops it.
"""

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from .bundle import ForecastError, ModelDeployment

MAX_BATCH = 4096
# bytes per number in a request: the longest float64 in JSON ("-2.2250738585072014e-308") and ", "
NUMBER_BYTES = 26
ERROR = {"type": "object", "required": ["detail"], "properties": {"detail": {"type": "string"}}}


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def _contract(deployment: ModelDeployment, max_batch: int) -> dict:
    """The JSON Schemas of the requests and forecasts, from the bundle (what the service really checks)."""
    row = {
        "type": "array",
        "prefixItems": [
            {"type": "number", "minimum": float(lo), "maximum": float(hi)}
            for lo, hi in zip(deployment.low, deployment.high, strict=True)
        ],
        "items": False,
        "minItems": len(deployment.features),
        "maxItems": len(deployment.features),
    }
    window = {"type": "array", "items": row, "minItems": deployment.lookback, "maxItems": deployment.lookback}
    features = {"type": "array", "items": {"type": "string"}, "const": deployment.features}
    forecast = {
        "type": "array",
        "items": {"type": "number"},
        "minItems": len(deployment.horizons),
        "maxItems": len(deployment.horizons),
    }

    def body(field: str, schema: dict) -> dict:
        return {
            "type": "object",
            "required": ["features", field],
            "properties": {"features": features, field: schema},
            "additionalProperties": False,
        }

    batch = {"type": "array", "items": window, "minItems": 1, "maxItems": max_batch}
    return {
        "predict": body("window", window),
        "predict_batch": body("windows", batch),
        "forecast": {"type": "object", "required": ["forecast"], "properties": {"forecast": forecast}},
        "forecasts": {
            "type": "object",
            "required": ["forecasts"],
            "properties": {"forecasts": {"type": "array", "items": forecast}},
        },
    }


async def _read_json(request: Request, limit: int):
    """The request's JSON body, refused with 413 past ``limit`` bytes (declared or streamed) and 422 if not JSON."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the body has {declared} bytes; at most {limit} are read")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"the body exceeds {limit} bytes")
    try:
        return json.loads(body)  # NaN and Infinity parse, and are refused by name below
    except (ValueError, RecursionError) as err:
        raise HTTPException(422, f"the body is not JSON: {err}") from None


def _check_numbers(value, path: str, depth: int) -> None:
    """Refuse anything but nested lists (``depth`` deep) of JSON numbers: no strings, no booleans."""
    if depth == 0:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise HTTPException(
                422, f"{path} is {json.dumps(value)[:40]}, not a number (strings and booleans are refused)"
            )
        return
    if not isinstance(value, list):
        raise HTTPException(422, f"{path} must be a list, got {json.dumps(value)[:40]}")
    for i, item in enumerate(value):
        _check_numbers(item, f"{path}[{i}]", depth - 1)


def _fields(payload, field: str) -> list[str]:
    """The feature names of a request body that has exactly the keys ``features`` and ``field``."""
    if not isinstance(payload, dict):
        raise HTTPException(422, f'the body must be a JSON object {{"features": [...], "{field}": [...]}}')
    missing, unknown = {"features", field} - set(payload), set(payload) - {"features", field}
    if missing or unknown:
        problems = [
            f"{what} fields {sorted(names)}"
            for what, names in (("missing", missing), ("unknown", unknown))
            if names
        ]
        raise HTTPException(422, f"{', '.join(problems)}: send exactly features and {field}")
    features = payload["features"]
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise HTTPException(422, f"features must be a list of names, got {json.dumps(features)[:80]}")
    return features


def create_app(bundle: str | Path, map_location: str = "cpu", max_batch: int = MAX_BATCH) -> FastAPI:
    """The FastAPI application serving one bundle (loaded, and so checked, once at start-up)."""
    deployment = ModelDeployment.load(bundle, map_location=map_location)
    app = FastAPI(title="course_lib forecast service", version=deployment.manifest["course_lib_version"])
    contract = _contract(deployment, max_batch)
    head = 1024 + 4 * sum(len(f) + 4 for f in deployment.features)  # braces, keys, feature names (escaped)
    window_bytes = deployment.lookback * (len(deployment.features) * NUMBER_BYTES + 4)
    limits = {"window": head + window_bytes, "windows": head + max_batch * (window_bytes + 4)}
    reference = np.broadcast_to(deployment.scaler.mean_, (1, deployment.lookback, len(deployment.features)))

    async def predict(request: Request, field: str) -> list:
        payload = await _read_json(request, limits[field])
        features = _fields(payload, field)
        windows = payload[field]
        if field == "windows":
            if not isinstance(windows, list):
                raise HTTPException(422, f"windows must be a list of windows, got {json.dumps(windows)[:40]}")
            if len(windows) > max_batch:  # counted before any number is read
                raise HTTPException(422, f"batch of {len(windows)} windows; at most {max_batch}")
            _check_numbers(windows, "windows", 3)
        else:
            _check_numbers(windows, "window", 2)
            windows = [windows]
        try:
            return (await run_in_threadpool(deployment.predict, windows, features)).tolist()
        except ForecastError as err:
            raise HTTPException(503, str(err)) from None
        except ValueError as err:
            raise HTTPException(422, str(err)) from None

    errors = {413: _json(ERROR), 422: _json(ERROR), 503: _json(ERROR)}

    @app.get("/health", responses={200: _json({"type": "object", "properties": {"status": {"const": "ok"}}})})
    def health() -> dict:
        return {"status": "ok"}

    @app.get(
        "/ready",
        responses={
            200: _json({"type": "object", "properties": {"status": {"const": "ready"}}}),
            503: _json(ERROR),
        },
    )
    def ready() -> dict:
        try:
            deployment.predict(reference)
        except ForecastError as err:
            raise HTTPException(
                503, f"not ready: on the reference window (the training means), {err}"
            ) from None
        return {"status": "ready"}

    @app.get(
        "/metadata", responses={200: _json({"type": "object", "required": ["model", "features", "task"]})}
    )
    def metadata() -> dict:
        return deployment.metadata

    @app.post(
        "/predict",
        openapi_extra={"requestBody": {"required": True, **_json(contract["predict"])}},
        responses={200: _json(contract["forecast"]), **errors},
    )
    async def predict_one(request: Request) -> dict:
        return {"forecast": (await predict(request, "window"))[0]}

    @app.post(
        "/predict_batch",
        openapi_extra={"requestBody": {"required": True, **_json(contract["predict_batch"])}},
        responses={200: _json(contract["forecasts"]), **errors},
    )
    async def predict_batch(request: Request) -> dict:
        return {"forecasts": await predict(request, "windows")}

    return app


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_in_subprocess(bundle: str | Path, port: int | None = None, timeout: float = 60.0) -> Iterator[str]:
    """Start the service for ``bundle`` in a child process; yield its base URL; always stop it.

    The child runs in a temporary directory (it writes nothing) with one torch thread.
    """
    import httpx

    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    root = str(Path(__file__).resolve().parents[2])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "server.log", "w+") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "course_lib.production.serving",
                str(Path(bundle).resolve()),
                "--port",
                str(port),
            ],
            cwd=tmp,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(
                        f"the server exited with code {process.returncode}:\n{log.read()[-2000:]}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the server did not answer on {url} within {timeout} s")
                time.sleep(0.1)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def main(argv: list[str] | None = None) -> None:
    import torch
    import uvicorn

    parser = argparse.ArgumentParser(description="Serve a course_lib model bundle over HTTP.")
    parser.add_argument("bundle", help="bundle directory written by course_lib.production.bundle.save_bundle")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (small models: 1 is fastest)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    uvicorn.run(create_app(args.bundle), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
