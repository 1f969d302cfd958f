"""Chapter 07: walk-forward training, the model bundle, ONNX export, serving, monitoring and DDP."""

import hashlib
import json
import pickle
import re

import httpx
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data.distributed import DistributedSampler

import course_lib
from course_lib import set_seed
from course_lib.data.features import feature_frame
from course_lib.data.prices import load_prices
from course_lib.evaluation.walkforward import block_task, raw_windows, scale_windows, walk_forward
from course_lib.models import FinancialGRU, TemporalConvNet, registry
from course_lib.models.checkpoint import META_FILE, WEIGHTS_FILE, load_checkpoint
from course_lib.models.registry import REGISTRY
from course_lib.production.bundle import (
    FILES,
    MANIFEST_FILE,
    BundleError,
    ModelDeployment,
    _content_hash,
    check_onnx,
    export_onnx,
    save_bundle,
)
from course_lib.production.distributed import launch
from course_lib.production.monitoring import DriftMonitor, psi, rolling_error
from course_lib.production.serving import create_app, serve_in_subprocess
from course_lib.training import Trainer

torch.set_num_threads(1)

GRU_CONFIG = {"input_size": 4, "hidden_size": 8, "output_size": 2}
TCN_CONFIG = {"input_size": 4, "num_channels": [8, 8], "kernel_size": 3, "dropout": 0.0, "output_size": 2}


@pytest.fixture(scope="module")
def prices():
    return load_prices("^GSPC")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, vol_task):
    set_seed(0)
    model = FinancialGRU(**GRU_CONFIG)
    path = save_bundle(tmp_path_factory.mktemp("bundle") / "gru", model, vol_task)
    return path, model.eval()


# ---------------------------------------------------------------------------------------------
# Walk-forward
# ---------------------------------------------------------------------------------------------


def test_block_task_splits_by_year(prices):
    bt = block_task("volatility", prices, 2010)
    last_train_target = bt.frame.index[bt.train.rows + 1].max()
    assert last_train_target <= pd.Timestamp("2008-12-31")
    assert set(bt.val.dates.year) == {2009} and set(bt.test.dates.year) == {2010}
    np.testing.assert_allclose(scale_windows(raw_windows(bt, "test"), bt.scaler), bt.test.X, atol=1e-5)


def _tiny_tcn():
    return TemporalConvNet(4, (4, 4), kernel_size=3, dropout=0.0)


@pytest.fixture(scope="module")
def walk(prices):
    return walk_forward("volatility", prices, _tiny_tcn, [2010, 2011], epochs=1, initial_epochs=2)


def test_walk_forward_covers_the_test_years_and_retrains(walk):
    assert list(walk.task.test.dates.year.unique()) == [2010, 2011]
    forecasts = walk.predictions | walk.baselines("walk_forward")
    assert set(forecasts) == {"walk_forward", "frozen", "ewma", "garch", "har", "log_har"}
    for p in forecasts.values():
        assert p.shape == walk.task.test.y.shape and np.isfinite(p).all()
    first = walk.block == 2010
    np.testing.assert_allclose(
        walk.predictions["walk_forward"][first], walk.predictions["frozen"][first], atol=1e-5
    )
    retrained = any(not torch.equal(walk.states[0][k], walk.states[1][k]) for k in walk.states[0])
    assert retrained == (walk.epochs[1] > 0), "block 2011 keeps the warm start only when no epoch beat it"
    table = walk.per_year(lambda y, p: float(np.mean((y - p) ** 2)), walk.baselines("frozen"))
    assert list(table.index) == [2010, 2011] and {"walk_forward", "frozen", "log_har"} <= set(table.columns)


def test_walk_forward_uses_no_data_after_each_block_start(prices, walk):
    """Perturb every price after 30 June 2011: forecasts made before then, and every block's model, stay the same."""
    cut = pd.Timestamp("2011-06-30")
    rng = np.random.default_rng(0)
    later = prices.index > cut
    shock = np.exp(np.cumsum(rng.normal(0, 0.02, later.sum())))  # a different price path
    perturbed = prices.copy()
    for col in ("Open", "High", "Low", "Close"):
        perturbed.loc[later, col] = prices.loc[later, col] * shock
    perturbed.loc[later, "High"] *= 1 + rng.uniform(0, 0.02, later.sum())  # and different ranges
    perturbed.loc[later, "Volume"] *= rng.uniform(0.5, 1.5, later.sum())
    probe = walk_forward("volatility", perturbed, _tiny_tcn, [2010, 2011], epochs=1, initial_epochs=2)
    before = walk.task.test.dates <= cut
    for protocol in ("walk_forward", "frozen"):
        old, new = walk.predictions | walk.baselines(protocol), probe.predictions | probe.baselines(protocol)
        for name, p in old.items():
            np.testing.assert_array_equal(new[name][before], p[before], err_msg=f"{name} ({protocol})")
    # 2011's model was fitted on data to 2010 only
    for old, new in zip(walk.states, probe.states, strict=True):
        assert all(torch.equal(old[k], new[k]) for k in old)
    after = ~before
    assert not np.allclose(probe.predictions["walk_forward"][after], walk.predictions["walk_forward"][after])


def test_walk_forward_without_warm_start_builds_a_model_per_block(prices):
    built = []

    def make():
        built.append(1)
        return _tiny_tcn()

    walk_forward("returns", prices, make, [2010, 2011], epochs=1, warm_start=False)
    assert len(built) == 2
    with pytest.raises(ValueError, match="consecutive"):
        walk_forward("returns", prices, make, [2010, 2012])


# ---------------------------------------------------------------------------------------------
# Bundle and ModelDeployment
# ---------------------------------------------------------------------------------------------


def test_bundle_round_trip_applies_the_training_scaler(bundle, vol_task):
    path, model = bundle
    assert sorted(p.name for p in path.iterdir()) == sorted([WEIGHTS_FILE, META_FILE, MANIFEST_FILE])
    deployment = ModelDeployment.load(path, map_location="cpu")
    raw = raw_windows(vol_task, "test")[:300]
    with torch.no_grad():
        expected = model(torch.from_numpy(vol_task.test.X[:300])).numpy()
    np.testing.assert_allclose(
        deployment.predict(raw, vol_task.feature_names, batch_size=64), expected, atol=1e-5
    )
    meta = deployment.metadata
    assert meta["features"] == vol_task.feature_names and meta["task"]["lookback"] == 20
    assert meta["training_period"]["train"][1] == str(vol_task.train.dates[-1].date())
    assert meta["model"] == {"class": "FinancialGRU", "config": model.config}
    assert GRU_CONFIG.items() <= model.config.items()


def test_predict_prices_runs_the_training_feature_pipeline(bundle, prices):
    deployment = ModelDeployment.load(bundle[0])
    recent = prices.loc[:"2012-03-30"].iloc[-60:]
    window = feature_frame(recent)[deployment.features].to_numpy()[-20:]
    np.testing.assert_allclose(deployment.predict_prices(recent), deployment.predict(window[None]), atol=0)
    with pytest.raises(ValueError, match="at least 43 days"):
        deployment.predict_prices(recent.iloc[-30:])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda x, f: (x, f[::-1]), "wrong order"),
        (lambda x, f: (x[..., :3], f[:3]), r"missing \['volume_change'\]"),
        (lambda x, f: (x[:, 1:], f), "20 time steps"),
        (lambda x, f: (x[0], f), "shape"),
        (lambda x, f: (x[:0], f), "empty batch"),
        (
            lambda x, f: (np.where(np.arange(20)[None, :, None] == 7, np.nan, x), f),
            "window 0, step 7, feature 'ret'",
        ),
        (lambda x, f: ([[[1.0] * 4] * 20, [[1.0] * 4] * 19], f), "rectangular"),
    ],
    ids=["order", "missing", "length", "2-d", "empty", "nan", "ragged"],
)
def test_every_request_is_validated(bundle, vol_task, change, message):
    deployment = ModelDeployment.load(bundle[0])
    windows, features = change(raw_windows(vol_task, "test")[:3], list(vol_task.feature_names))
    with pytest.raises(ValueError, match=message):
        deployment.predict(windows, features)


def _copy_bundle(src, dst):
    dst.mkdir()
    for name in FILES:
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def _rehash(path):
    """Recompute every hash after an edit, as an attacker can: the checkpoint's, then the bundle's."""
    weights = (path / WEIGHTS_FILE).read_bytes()
    checkpoint = json.loads((path / META_FILE).read_text())
    checkpoint["weights_sha256"] = hashlib.sha256(weights).hexdigest()
    (path / META_FILE).write_text(json.dumps(checkpoint))
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    manifest["content_hash"] = _content_hash(manifest, checkpoint, weights)
    (path / MANIFEST_FILE).write_text(json.dumps(manifest))


class _Payload:
    """Unpickling this runs code: it creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickled_payload_is_refused_and_never_executed(bundle, tmp_path):
    path = _copy_bundle(bundle[0], tmp_path / "evil")
    marker = tmp_path / "executed"
    (path / WEIGHTS_FILE).write_bytes(pickle.dumps({"gru.weight_ih_l0": _Payload(str(marker))}))
    _rehash(path)  # even with a valid hash (an attacker can recompute it) nothing is unpickled
    with pytest.raises(BundleError, match="not a safetensors file"):
        ModelDeployment.load(path)
    assert not marker.exists()
    pickle.loads((path / WEIGHTS_FILE).read_bytes())  # the control: unpickling it does run the payload
    assert marker.exists()


def test_a_changed_bundle_is_refused(bundle, tmp_path):
    weights = _copy_bundle(bundle[0], tmp_path / "weights")
    data = bytearray((weights / WEIGHTS_FILE).read_bytes())
    data[-1] ^= 1  # one bit of one weight
    (weights / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(BundleError, match="content hash mismatch"):
        ModelDeployment.load(weights)
    scaler = _copy_bundle(bundle[0], tmp_path / "scaler")
    manifest = json.loads((scaler / MANIFEST_FILE).read_text())
    manifest["scaler"]["mean"][0] += 0.1
    (scaler / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="content hash mismatch"):
        ModelDeployment.load(scaler)
    config = _copy_bundle(bundle[0], tmp_path / "config")
    checkpoint = json.loads((config / META_FILE).read_text())
    checkpoint["config"]["hidden_size"] = 16
    (config / META_FILE).write_text(json.dumps(checkpoint))
    with pytest.raises(BundleError, match="content hash mismatch"):
        ModelDeployment.load(config)
    unknown = _copy_bundle(bundle[0], tmp_path / "unknown")
    checkpoint = json.loads((unknown / META_FILE).read_text())
    checkpoint["class"] = "os.system"
    (unknown / META_FILE).write_text(json.dumps(checkpoint))
    _rehash(unknown)
    with pytest.raises(BundleError, match="unknown model class"):
        ModelDeployment.load(unknown)


def test_an_old_bundle_is_refused_with_the_fix(bundle, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "weights.safetensors").write_bytes((bundle[0] / WEIGHTS_FILE).read_bytes())
    manifest = json.loads((bundle[0] / MANIFEST_FILE).read_text())
    manifest["format"] = 1
    manifest["model"] = json.loads((bundle[0] / META_FILE).read_text())
    (old / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(
        BundleError, match=r"format 1; this loader reads format 2.*Re-export it with save_bundle"
    ):
        ModelDeployment.load(old)
    missing = _copy_bundle(bundle[0], tmp_path / "missing")
    (missing / META_FILE).unlink()
    with pytest.raises(BundleError, match=r"checkpoint.json is missing"):
        ModelDeployment.load(missing)


def test_a_bundle_from_another_version_is_refused(bundle, monkeypatch):
    written = re.escape(course_lib.__version__)
    monkeypatch.setattr(course_lib, "__version__", "99.0.0")
    with pytest.raises(BundleError, match=rf"written by course_lib {written}, this is course_lib 99\.0\.0"):
        ModelDeployment.load(bundle[0])


def test_save_bundle_checks_the_model(vol_task, tmp_path):
    model = FinancialGRU(**GRU_CONFIG)
    model.config["hidden_size"] = 16  # a config that no longer describes the weights
    with pytest.raises(BundleError, match="does not rebuild"):
        save_bundle(tmp_path / "b", model, vol_task)

    class MyGRU(FinancialGRU):
        pass

    with pytest.raises(BundleError, match="not a registered model class"):
        save_bundle(tmp_path / "b", MyGRU(**GRU_CONFIG), vol_task)
    with pytest.raises(BundleError, match="not the registered class"):
        save_bundle(tmp_path / "b", _renamed(MyGRU(**GRU_CONFIG)), vol_task)
    assert not (tmp_path / "b" / MANIFEST_FILE).exists()


def _renamed(model):
    type(model).__name__ = "FinancialGRU"  # a look-alike that takes a registered name
    return model


# ---------------------------------------------------------------------------------------------
# ONNX
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [lambda: FinancialGRU(4, 8, output_size=2), lambda: TemporalConvNet(4, (8, 8), 3, 0.1, 2)],
    ids=["recurrent", "convolutional"],
)
def test_onnx_matches_pytorch_at_another_batch_size(make, tmp_path):
    set_seed(0)
    model = make().eval()
    path = export_onnx(model, tmp_path / "m.onnx", lookback=20, n_features=4, batch_size=2)
    assert check_onnx(model, path, torch.randn(37, 20, 4)) < 1e-5
    import onnxruntime as ort

    x = torch.randn(3, 20, 4)
    x[0, -1, 1] = float("nan")  # on the last step, inside every receptive field
    # no error: the check was not exported (the GRU even turns the NaN into a finite number)
    out = ort.InferenceSession(str(path)).run(None, {"x": x.numpy()})[0]
    assert out.shape == (3, 2) and np.isfinite(out[1:]).all()
    with pytest.raises(ValueError, match="NaN"):
        model(x)


# What does not export, and why (found by this test; strict: an entry that starts to work must be moved out)
ONNX_FAILURES = {
    "NeuralCDEFinance": pytest.mark.xfail(
        strict=True, reason="its forward fill of missing days uses torch.cummax, which has no ONNX operator"
    ),
    "AttentionNeuralODE": pytest.mark.xfail(
        strict=True, reason="tracing bakes the export's batch size into a Reshape: another batch size fails"
    ),
    "DeepKoopmanFinance": pytest.mark.xfail(
        strict=True,
        reason="its delay embedding uses Tensor.unfold, which the tracer cannot export (input size)",
    ),
}


@pytest.mark.parametrize(
    "entry",
    [pytest.param(e, marks=ONNX_FAILURES.get(e.id, ()), id=e.id) for e in REGISTRY if e.extra_inputs is None],
)
def test_every_single_input_model_of_the_registry_exports(entry, tmp_path):
    model = entry.build().eval()
    length = max(24, getattr(model, "receptive_field", 1))
    n_features = model.config["input_size"]
    path = export_onnx(model, tmp_path / "m.onnx", lookback=length, n_features=n_features, batch_size=2)
    for batch in (1, 3, 64):  # the export's batch is 2
        (x,) = entry.inputs(model, batch, length, seed=1)
        assert check_onnx(model, path, x) < 1e-5, f"batch {batch}"


# ---------------------------------------------------------------------------------------------
# Serving
# ---------------------------------------------------------------------------------------------


def test_the_service_answers_good_requests_and_rejects_bad_ones(bundle, vol_task):
    path, _ = bundle
    deployment = ModelDeployment.load(path)
    features = list(vol_task.feature_names)
    windows = raw_windows(vol_task, "test")[:5]
    with serve_in_subprocess(path) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/metadata").json()["content_hash"] == deployment.metadata["content_hash"]
        one = client.post("/predict", json={"features": features, "window": windows[0].tolist()})
        assert one.status_code == 200
        np.testing.assert_allclose(one.json()["forecast"], deployment.predict(windows[:1])[0], atol=1e-6)
        batch = client.post("/predict_batch", json={"features": features, "windows": windows.tolist()})
        np.testing.assert_allclose(batch.json()["forecasts"], deployment.predict(windows), atol=1e-6)
        nan_window = windows[0].copy()
        nan_window[3, 2] = np.nan
        bad = {
            "missing field": ({"features": features}, "window"),
            "wrong features": ({"features": features[::-1], "window": windows[0].tolist()}, "wrong order"),
            "short window": ({"features": features, "window": windows[0][1:].tolist()}, "20 time steps"),
            "NaN": ({"features": features, "window": nan_window.tolist()}, "non-finite"),
            "text": ({"features": features, "window": [["a"] * 4] * 20}, "not a number"),
        }
        for case, (body, message) in bad.items():
            # json.dumps writes NaN as the literal NaN, as many clients do
            content = json.dumps(body).encode()
            response = client.post("/predict", content=content, headers={"content-type": "application/json"})
            assert response.status_code == 422, case
            assert message in json.dumps(response.json()), case
        empty = client.post("/predict_batch", json={"features": features, "windows": []})
        assert empty.status_code == 422 and "empty batch" in empty.json()["detail"]
        garbage = client.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
        assert garbage.status_code == 422
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/health", timeout=1.0)


def test_the_service_caps_the_batch_size(bundle, vol_task):
    from fastapi.testclient import TestClient

    windows = raw_windows(vol_task, "test")[:3].tolist()
    with TestClient(create_app(bundle[0], max_batch=2)) as client:
        response = client.post(
            "/predict_batch", json={"features": vol_task.feature_names, "windows": windows}
        )
        assert response.status_code == 422 and "at most 2" in response.json()["detail"]
        ok = client.post("/predict_batch", json={"features": vol_task.feature_names, "windows": windows[:2]})
        assert ok.status_code == 200 and len(ok.json()["forecasts"]) == 2


# ---------------------------------------------------------------------------------------------
# Monitoring
# ---------------------------------------------------------------------------------------------


def test_psi_closed_form_and_alerts():
    reference = np.arange(1000.0)
    assert psi(reference, reference, bins=4) == 0.0
    actual = np.concatenate([np.full(40, 100.0), np.full(10, 300.0), np.full(25, 600.0), np.full(25, 900.0)])
    shares = np.array([0.4, 0.1, 0.25, 0.25])  # against 0.25 in each quartile bin
    assert psi(reference, actual, bins=4) == pytest.approx(np.sum((shares - 0.25) * np.log(shares / 0.25)))
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"a": rng.normal(size=5000), "b": rng.normal(size=5000)})
    recent = pd.DataFrame({"a": rng.normal(size=500), "b": rng.normal(1.0, 1.0, size=500)})
    table = DriftMonitor(train, ["a", "b"]).drift(recent)
    assert not table.loc["a", "alert"] and table.loc["b", "alert"]
    assert table.loc["b", "KS_p"] < 1e-6 < table.loc["a", "KS_p"]
    with pytest.raises(ValueError, match=r"lacks the features \['c'\]"):
        DriftMonitor(train, ["a", "c"])
    with pytest.raises(ValueError, match="feature 'b'"):
        DriftMonitor(train, ["a", "b"]).drift(recent.assign(b=np.nan))


def test_rolling_drift_sees_the_shifted_stretch_only():
    rng = np.random.default_rng(1)
    dates = pd.bdate_range("2006-01-02", periods=1000)
    values = rng.normal(size=1000)
    values[500:] += 1.0  # the regime changes on day 500
    data = pd.DataFrame({"x": values}, index=dates)
    monitor = DriftMonitor(pd.DataFrame({"x": rng.normal(size=5000)}), ["x"])
    drift = monitor.rolling(data, window=200, step=50)
    assert drift.index[0] == dates[199]
    # unchanged: about (bins - 1) / window = 0.045 of sampling noise; shifted by one sd: far above the alert
    assert (drift.loc[: dates[499], "x"] < 0.15).all() and (drift.loc[dates[699] :, "x"] > 0.5).all()
    with pytest.raises(ValueError, match="window"):
        monitor.rolling(data, window=1001)


def test_rolling_error_alerts_when_the_model_loses_to_the_baseline():
    dates = pd.bdate_range("2008-01-01", periods=100)
    y = np.zeros(100)
    model = np.where(np.arange(100) < 50, 1.0, 2.0)  # error 1, then 2
    table = rolling_error(y, model, np.ones(100), dates, window=10, threshold=1.2)
    assert table.index[0] == dates[9]
    assert not table.loc[: dates[49], "alert"].any() and table.loc[dates[59] :, "alert"].all()
    assert table["ratio"].iloc[-1] == pytest.approx(4.0)
    with pytest.raises(ValueError, match="one length"):
        rolling_error(y, model[:-1], np.ones(100), dates)


# ---------------------------------------------------------------------------------------------
# Distributed data parallel
# ---------------------------------------------------------------------------------------------


def test_two_ranks_equal_one_process_on_the_full_batch(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 20, 4)).astype(np.float32), rng.normal(size=(64, 2)).astype(np.float32)
    np.savez(tmp_path / "data.npz", X=X, y=y)
    # one step: each rank sees 32 of the 64 samples
    meta = launch(
        tmp_path / "data.npz",
        "TemporalConvNet",
        TCN_CONFIG,
        tmp_path / "ckpt",
        nproc=2,
        epochs=1,
        batch_size=32,
        lr=1e-2,
        no_shuffle=True,
    )
    assert meta["world_size"] == 2 and meta["samples_per_rank"] == 32
    assert meta["history"][-1]["max_rank_difference"] == 0.0
    assert meta["class"] == "TemporalConvNet" and meta["config"] == TemporalConvNet(**TCN_CONFIG).config
    ddp = load_checkpoint(tmp_path / "ckpt").state_dict()  # rank 0 writes the one checkpoint format

    set_seed(0)
    single = TemporalConvNet(**TCN_CONFIG)
    Trainer(
        single,
        lr=1e-2,
        weight_decay=1e-4,
        batch_size=64,
        max_epochs=1,
        grad_clip=1.0,
        device="cpu",
        progress=False,
    ).fit(X, y, X, y)
    set_seed(0)
    untrained = TemporalConvNet(**TCN_CONFIG).state_dict()
    for name, value in single.state_dict().items():
        torch.testing.assert_close(ddp[name], value, atol=1e-6, rtol=1e-5, msg=name)
        assert not torch.equal(value, untrained[name]), (
            f"{name} did not move: the comparison would be vacuous"
        )


def test_launch_refuses_a_bad_model_or_data_before_starting_processes(tmp_path):
    np.savez(tmp_path / "data.npz", X=np.zeros((4, 20, 4), np.float32))
    with pytest.raises(KeyError, match="not a registered model class"):
        launch(tmp_path / "data.npz", "Nope", {}, tmp_path / "out")
    with pytest.raises(ValueError, match="must hold arrays X and y"):
        launch(tmp_path / "data.npz", "TemporalConvNet", TCN_CONFIG, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_distributed_sampler_pads_with_duplicates():
    dataset = list(range(5))
    shards = [list(DistributedSampler(dataset, num_replicas=2, rank=r, shuffle=False)) for r in range(2)]
    seen = shards[0] + shards[1]
    assert len(seen) == 6 and len(set(seen)) == 5, "one sample is served twice"
    dropped = [
        list(DistributedSampler(dataset, num_replicas=2, rank=r, shuffle=False, drop_last=True))
        for r in range(2)
    ]
    assert sum(map(len, dropped)) == 4
    sampler = DistributedSampler(list(range(100)), num_replicas=2, rank=0, seed=0)
    epoch0 = list(sampler)
    assert list(sampler) == epoch0, "without set_epoch every epoch repeats the same order"
    sampler.set_epoch(1)
    assert list(sampler) != epoch0


def test_s4d_export_form_is_the_same_function_with_real_operations_only():
    """The export form freezes each layer's kernel at the window length and sums the convolution
    directly: equal to the FFT model to float32 round-off, and refused at another length."""
    set_seed(0)
    model = registry.build("FinancialS4D").eval()
    x = torch.randn(3, 24, model.input_size)
    frozen = model.for_export(24)
    with torch.no_grad():
        torch.testing.assert_close(frozen(x), model(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="frozen for 24-day windows, got 12 days"):
        frozen(x[:, :12])
    assert not any(p.is_complex() for p in frozen.buffers())
