"""An HTTP service for a model bundle (FastAPI + uvicorn).

Endpoints (JSON):

* ``GET /health``: ``{"status": "ok"}`` once the bundle is loaded;
* ``GET /metadata``: :attr:`course_lib.production.bundle.ModelDeployment.metadata`;
* ``POST /predict``: ``{"features": [...], "window": [[...] * C] * L}`` -> ``{"forecast": [...]}``;
* ``POST /predict_batch``: ``{"features": [...], "windows": [window, ...]}`` -> ``{"forecasts": [...]}``.

Windows are *unscaled* features in the bundle's order; the service applies the training scaler.
Every malformed request gets a 422 with a message saying what is wrong (a missing field, a wrong
feature list, a window of the wrong length, a NaN, a batch over ``max_batch``), never a 500.

Run it with ``python -m course_lib.production.serving BUNDLE_DIR --port 8000`` or, from Python, with
:func:`serve_in_subprocess`, a context manager that starts it on a free localhost port, waits
until it is healthy and always stops it.
"""

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from .bundle import ModelDeployment

MAX_BATCH = 4096


class WindowRequest(BaseModel):
    features: list[str]
    window: list[list[float]]


class BatchRequest(BaseModel):
    features: list[str]
    windows: list[list[list[float]]]


def create_app(bundle: str | Path, map_location: str = "cpu", max_batch: int = MAX_BATCH) -> FastAPI:
    """The FastAPI application serving one bundle (loaded, and so checked, once at start-up)."""
    deployment = ModelDeployment.load(bundle, map_location=map_location)
    app = FastAPI(title="course_lib forecast service", version=deployment.manifest["course_lib_version"])

    def predict(windows, features):
        try:
            return deployment.predict(windows, features).tolist()
        except ValueError as err:
            raise HTTPException(status_code=422, detail=str(err)) from err

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/metadata")
    def metadata() -> dict:
        return deployment.metadata

    @app.post("/predict")
    def predict_one(request: WindowRequest) -> dict:
        return {"forecast": predict([request.window], request.features)[0]}

    @app.post("/predict_batch")
    def predict_batch(request: BatchRequest) -> dict:
        if len(request.windows) > max_batch:
            raise HTTPException(
                status_code=422, detail=f"batch of {len(request.windows)} windows; at most {max_batch}"
            )
        return {"forecasts": predict(request.windows, request.features)}

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
