"""Chapter 07: the service's published contract is the real one. Its OpenAPI schema states the checks it
makes; Schemathesis (the OpenAPI fuzzer) finds no 5xx, no response outside the schema and no schema-valid
request refused; oversized bodies get 413, strings and booleans are not numbers, a model that gives a
non-finite forecast answers 503, and /ready says whether the model is sane. Good and bad requests of the
basic kinds are in tests/test_pipeline.py."""

import json
import re
import subprocess
import sys
import time

import pytest
import torch
from fastapi.testclient import TestClient

from course_lib import set_seed
from course_lib.evaluation.walkforward import raw_windows
from course_lib.models import FinancialGRU
from course_lib.production.bundle import ModelDeployment, save_bundle
from course_lib.production.serving import create_app, serve_in_subprocess

torch.set_num_threads(1)

GRU_CONFIG = {"input_size": 4, "hidden_size": 8, "output_size": 2}
FUZZ_EXAMPLES = 30  # per operation and phase; 5 operations
FUZZ_SECONDS = 60


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, vol_task):
    set_seed(0)
    return save_bundle(tmp_path_factory.mktemp("bundle") / "gru", FinancialGRU(**GRU_CONFIG), vol_task)


@pytest.fixture(scope="module")
def client(bundle):
    with TestClient(create_app(bundle, max_batch=2)) as client:
        yield client


@pytest.fixture(scope="module")
def request_body(vol_task):
    return {"features": list(vol_task.feature_names), "window": raw_windows(vol_task, "test")[0].tolist()}


def test_the_schema_states_the_real_constraints_and_error_bodies(bundle, client):
    deployment = ModelDeployment.load(bundle)
    spec = client.get("/openapi.json").json()
    predict = spec["paths"]["/predict"]["post"]
    body = predict["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["features", "window"] and body["additionalProperties"] is False
    assert body["properties"]["features"]["const"] == deployment.features
    window = body["properties"]["window"]
    assert window["minItems"] == window["maxItems"] == 20
    row = window["items"]
    assert row["minItems"] == row["maxItems"] == 4 and row["items"] is False
    assert [(c["minimum"], c["maximum"]) for c in row["prefixItems"]] == list(
        zip(deployment.low.tolist(), deployment.high.tolist(), strict=True)
    )
    batch = spec["paths"]["/predict_batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert batch["properties"]["windows"]["maxItems"] == 2
    for code in ("413", "422", "503"):
        error = predict["responses"][code]["content"]["application/json"]["schema"]
        assert error["properties"]["detail"] == {"type": "string"}  # what the service writes


def test_schemathesis_finds_no_failure(bundle, tmp_path):
    """The fuzzer on the real service (127.0.0.1), every check: 5xx, status codes, content types, response
    schemas, schema-invalid requests accepted, schema-valid requests rejected."""
    with serve_in_subprocess(bundle) as url:
        start = time.perf_counter()
        run = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json", "--checks", "all",
             "--max-examples", str(FUZZ_EXAMPLES), "--generation-deterministic", "--workers", "1",
             "--request-timeout", "10", "--no-color"],
            cwd=tmp_path, capture_output=True, text=True, timeout=FUZZ_SECONDS + 30,
        )  # fmt: skip
        seconds = time.perf_counter() - start
    assert run.returncode == 0, run.stdout[-6000:]
    cases = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert cases and cases[1] == cases[2] and int(cases[1]) > 100, run.stdout[-2000:]
    assert seconds < FUZZ_SECONDS


def test_a_body_over_the_limit_is_413_before_it_is_parsed(client, request_body):
    big = json.dumps({**request_body, "padding": "x" * 1_000_000}).encode()
    response = client.post("/predict", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "at most" in response.json()["detail"]
    chunks = iter([b'{"features": [', b" " * 1_000_000, b"]}"])  # streamed: no Content-Length
    response = client.post("/predict_batch", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "exceeds" in response.json()["detail"]


def test_the_default_limit_refuses_ten_megabytes(bundle, request_body):
    with TestClient(create_app(bundle)) as client:
        big = json.dumps({**request_body, "padding": "x" * 10_000_000}).encode()
        response = client.post("/predict", content=big, headers={"content-type": "application/json"})
        assert response.status_code == 413


@pytest.mark.parametrize(
    ("value", "message"),
    [("1.5", r'window\[3\]\[1\] is "1.5", not a number'), (True, r"window\[3\]\[1\] is true, not a number")],
    ids=["string", "boolean"],
)
def test_numbers_are_strict(client, request_body, value, message):
    window = [row[:] for row in request_body["window"]]
    window[3][1] = value
    response = client.post("/predict", json={**request_body, "window": window})
    assert response.status_code == 422 and re.search(message, response.json()["detail"])


def test_an_unknown_field_is_refused(client, request_body):
    response = client.post("/predict", json={**request_body, "note": "hi"})
    assert response.status_code == 422 and "unknown fields ['note']" in response.json()["detail"]


def test_the_batch_cap_comes_before_any_number_is_read(client, request_body):
    windows = [[["x"] * 4] * 20] * 3  # not numbers: the count alone refuses it
    response = client.post("/predict_batch", json={"features": request_body["features"], "windows": windows})
    assert response.status_code == 422 and response.json()["detail"] == "batch of 3 windows; at most 2"


def test_a_non_finite_forecast_is_503_and_the_service_is_not_ready(vol_task, tmp_path, request_body):
    model = FinancialGRU(**GRU_CONFIG)
    with torch.no_grad():  # finite weights whose forecast overflows float32
        model.head[0].weight.zero_()
        model.head[0].bias.fill_(3e38)
        model.head[3].weight.fill_(1.0)
    with TestClient(create_app(save_bundle(tmp_path / "inf", model, vol_task))) as client:
        assert client.get("/health").json() == {"status": "ok"}  # alive...
        ready = client.get("/ready")
        assert ready.status_code == 503 and "non-finite forecast" in ready.json()["detail"]  # ...not ready
        response = client.post("/predict", json=request_body)
        assert (
            response.status_code == 503
            and "FinancialGRU gave a non-finite forecast" in response.json()["detail"]
        )


def test_a_sane_model_is_ready(client):
    assert client.get("/ready").json() == {"status": "ready"}
