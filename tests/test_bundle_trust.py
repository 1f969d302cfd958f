"""Chapter 07: what a bundle must be before it is served. Non-finite weights, a manifest or config that
does not follow the schema (checked before anything is built), the keyed signature, and request values
whose scaled form would overflow the model's dtype. The round trip and the basic refusals are in
tests/test_pipeline.py."""

import hashlib
import json
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from course_lib import set_seed
from course_lib.evaluation.walkforward import raw_windows
from course_lib.models import FinancialGRU
from course_lib.models.checkpoint import META_FILE, WEIGHTS_FILE
from course_lib.production.bundle import (
    FILES,
    KEY_ENV,
    MANIFEST_FILE,
    BundleError,
    ForecastError,
    ModelDeployment,
    _content_hash,
    save_bundle,
)

torch.set_num_threads(1)

GRU_CONFIG = {"input_size": 4, "hidden_size": 8, "output_size": 2}
KEY = "k" * 40
OTHER_KEY = "o" * 40


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, vol_task):
    set_seed(0)
    return save_bundle(tmp_path_factory.mktemp("bundle") / "gru", FinancialGRU(**GRU_CONFIG), vol_task)


def _forge(src, dst, manifest=None, checkpoint=None, state=None):
    """A copy of the bundle ``src`` edited by the three functions, with every hash recomputed (as anyone
    who can write the files can do)."""
    dst.mkdir()
    for name in FILES:
        (dst / name).write_bytes((src / name).read_bytes())
    if state is not None:
        tensors = load_file(dst / WEIGHTS_FILE)
        state(tensors)
        save_file(tensors, dst / WEIGHTS_FILE)
    weights = (dst / WEIGHTS_FILE).read_bytes()
    meta = json.loads((dst / META_FILE).read_text())
    if checkpoint is not None:
        checkpoint(meta)
    meta["weights_sha256"] = hashlib.sha256(weights).hexdigest()
    (dst / META_FILE).write_text(json.dumps(meta))
    body = json.loads((dst / MANIFEST_FILE).read_text())
    if manifest is not None:
        manifest(body)
    if isinstance(body, dict) and "content_hash" in body:
        body["content_hash"] = _content_hash(body, meta, weights)
    (dst / MANIFEST_FILE).write_text(json.dumps(body))
    return dst


def _set(dictionary, key, value):
    dictionary[key] = value


# ---------------------------------------------------------------- non-finite weights and forecasts


def test_save_bundle_refuses_non_finite_weights(vol_task, tmp_path):
    model = FinancialGRU(**GRU_CONFIG)
    with torch.no_grad():
        model.head[3].bias[1] = float("nan")  # a diverged run
    with pytest.raises(BundleError, match=r"non-finite weights.*head\.3\.bias"):
        save_bundle(tmp_path / "b", model, vol_task)
    assert not (tmp_path / "b" / MANIFEST_FILE).exists()


def test_load_refuses_non_finite_weights(bundle, tmp_path):
    path = _forge(bundle, tmp_path / "nan", state=lambda s: s["gru.weight_hh_l0"].fill_(float("nan")))
    with pytest.raises(BundleError, match=r"non-finite weights.*gru\.weight_hh_l0"):
        ModelDeployment.load(path)


def _overflowing(vol_task, path):
    """A bundle with finite weights whose forecasts are +inf: the head's hidden layer sits at 3e38."""
    model = FinancialGRU(**GRU_CONFIG)
    with torch.no_grad():
        model.head[0].weight.zero_()
        model.head[0].bias.fill_(3e38)
        model.head[3].weight.fill_(1.0)  # 8 x 3e38 overflows float32
    return save_bundle(path, model, vol_task)


def test_a_non_finite_forecast_is_an_error_not_a_number(vol_task, tmp_path):
    deployment = ModelDeployment.load(_overflowing(vol_task, tmp_path / "inf"))
    with pytest.raises(ForecastError, match=r"FinancialGRU gave a non-finite forecast \(inf\) for window 0"):
        deployment.predict(raw_windows(vol_task, "test")[:2])


# ---------------------------------------------------------------- the manifest's schema, checked first


MALFORMED = {
    "extra config key": (
        {"checkpoint": lambda m: _set(m["config"], "bogus", 1)},
        r"config of FinancialGRU does not build the model.*'bogus'",
    ),
    "config size beyond the weights": (
        {"checkpoint": lambda m: _set(m["config"], "hidden_size", 10**6)},
        r"hidden_size=1000000 exceeds the \d+ numbers stored",
    ),
    "config of another shape": (
        {"checkpoint": lambda m: _set(m["config"], "hidden_size", 9)},
        r"does not fit FinancialGRU.*wrong shapes \['gru\.weight_ih_l0: \(24, 4\) stored, \(27, 4\) built'",
    ),
    "extra tensor": (
        {"state": lambda s: _set(s, "extra.weight", torch.zeros(3))},
        r"unexpected tensors \['extra\.weight'\]",
    ),
    "missing tensor": ({"state": lambda s: s.pop("head.3.bias")}, r"missing tensors \['head\.3\.bias'\]"),
    "missing class": ({"checkpoint": lambda m: m.pop("class")}, r"missing \['class'\]"),
    "missing task": ({"manifest": lambda m: m.pop("task")}, r"the manifest lacks the keys \['task'\]"),
    "unknown manifest key": (
        {"manifest": lambda m: _set(m, "run", "x")},
        r"the manifest has unknown keys \['run'\]",
    ),
    "unknown task key": ({"manifest": lambda m: _set(m["task"], "extra", 1)}, r"task has unknown keys"),
    "scaler of the wrong length": (
        {"manifest": lambda m: m["scaler"]["mean"].pop()},
        r"scaler\.mean must be 4 finite numbers",
    ),
    "zero scale": (
        {"manifest": lambda m: _set(m["scaler"]["scale"], 2, 0.0)},
        r"scaler\.scale must be 4 finite positive numbers",
    ),
    "lookback as text": ({"manifest": lambda m: _set(m["task"], "lookback", "20")}, r"task\.lookback"),
    "negative horizon": ({"manifest": lambda m: _set(m["task"], "horizons", [1, -5])}, r"task\.horizons"),
    "duplicate features": (
        {"manifest": lambda m: _set(m["features"], 1, m["features"][0])},
        r"features must be a list of distinct names",
    ),
    "missing features": (
        {"manifest": lambda m: m.pop("features")},
        r"the manifest lacks the keys \['features'\]",
    ),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_bundle_is_refused_quickly_with_the_field(bundle, tmp_path, case):
    edits, message = MALFORMED[case]
    path = _forge(bundle, tmp_path / "forged", **edits)
    start = time.perf_counter()
    with pytest.raises(BundleError, match=message):
        ModelDeployment.load(path)
    assert time.perf_counter() - start < 1.0, "refused only after an allocation or a build"


# ---------------------------------------------------------------- the keyed signature


def test_the_hash_alone_does_not_stop_an_edit_and_the_signature_does(bundle, vol_task, tmp_path):
    window = raw_windows(vol_task, "test")[:1]
    honest = ModelDeployment.load(bundle).predict(window)
    scaled = _forge(bundle, tmp_path / "x100", state=lambda s: [v.mul_(100) for v in s.values()])
    # unkeyed: anyone who edits the files can recompute the hash, and the edit loads
    assert not np.allclose(ModelDeployment.load(scaled).predict(window), honest)
    signed = save_bundle(tmp_path / "signed", FinancialGRU(**GRU_CONFIG), vol_task, key=KEY)
    assert ModelDeployment.load(signed, key=KEY).predict(window).shape == (1, 2)
    forged = _forge(signed, tmp_path / "forged", state=lambda s: [v.mul_(100) for v in s.values()])
    with pytest.raises(BundleError, match="signature mismatch"):
        ModelDeployment.load(forged, key=KEY)
    with pytest.raises(BundleError, match="signature mismatch"):
        ModelDeployment.load(signed, key=OTHER_KEY)
    with pytest.raises(BundleError, match="is not signed, and a signing key is configured"):
        ModelDeployment.load(bundle, key=KEY)


def test_the_key_comes_from_the_environment(bundle, vol_task, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    signed = save_bundle(tmp_path / "signed", FinancialGRU(**GRU_CONFIG), vol_task)
    assert len(json.loads((signed / MANIFEST_FILE).read_text())["signature"]) == 64
    ModelDeployment.load(signed)
    with pytest.raises(BundleError, match="is not signed"):
        ModelDeployment.load(bundle)
    monkeypatch.setenv(KEY_ENV, "short")
    with pytest.raises(BundleError, match="the signing key has 5 bytes; use at least 32"):
        ModelDeployment.load(signed)


# ---------------------------------------------------------------- values that overflow once scaled


@pytest.mark.parametrize("value", [1e38, 1e300, -1e30])
def test_a_value_that_overflows_once_scaled_is_refused_by_name(bundle, vol_task, value):
    deployment = ModelDeployment.load(bundle)
    windows = raw_windows(vol_task, "test")[:2].copy()
    windows[1, 4, 3] = value
    with pytest.raises(
        ValueError, match=r"window 1, step 4, feature 'volume_change' lies .* standard deviations"
    ):
        deployment.predict(windows)
    windows[1, 4, 3] = deployment.high[3]  # the edge of the published range is accepted
    assert np.isfinite(deployment.predict(windows)).all()
