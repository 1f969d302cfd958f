"""A model bundle you can ship, and ``ModelDeployment``: the source module's loader without its defects.

The source module saved a whole pickled module and loaded it with ``torch.load(path)``. Since torch
2.6 that raises (``weights_only=True`` became the default), and the usual workaround,
``weights_only=False``, unpickles and so *executes* whatever the file carries (see docs/errata.md,
ModelDeployment). It also shipped the weights alone: the scaler and the feature list that the
network was trained with were lost, so a server had to re-create them, and train/serve skew follows.

A bundle is one directory: a checkpoint (:mod:`course_lib.models.checkpoint`, the one on-disk format)
plus the task manifest:

* ``model.safetensors``: the ``state_dict`` in the safetensors format, tensors and nothing else
  (no code can run when it is read);
* ``checkpoint.json``: the model class and its constructor config (``model.config``; the class must be
  in the catalogue, :mod:`course_lib.models.registry`) and the weights' SHA-256;
* ``bundle.json``: the task (kind, target, horizons, lookback), the feature names in order, the fitted
  scaler (mean and scale per feature), the training and validation periods, the ``course_lib``
  version and a SHA-256 content hash over the weights, the checkpoint's JSON and every other field.

:meth:`ModelDeployment.load` refuses, with a :class:`BundleError` naming the file and the field: a
bundle in an older format (format 1, with ``weights.safetensors``: re-export it) or from another
``course_lib`` version; a manifest that does not follow its schema (a missing or unknown key, a
scaler of the wrong length or with a scale that is not positive, a bad lookback); a hash that does
not match; a config that does not describe the stored weights (checked against the safetensors
header on PyTorch's ``meta`` device, before anything is allocated); a weights file that is not
safetensors (a pickle is never unpickled); and weights that are not finite (a diverged run, which
:func:`save_bundle` refuses to write in the first place).

What the checks protect against, and what they do not:

* **Code execution**: prevented by the formats, not by any hash. The weights are read as
  safetensors (tensors only) and the model class must be in the catalogue (an allow-list), so a
  crafted bundle can at worst give wrong numbers.
* **Corruption** (a truncated copy, a flipped bit, files from two different saves): the SHA-256
  content hash, over the weights, the checkpoint's JSON and the manifest. It is *not* a protection
  against tampering: the hash has no key, so whoever can edit the files can recompute it.
* **Tampering**: an optional keyed signature, HMAC-SHA256 of the content hash with a secret key
  (:data:`KEY_ENV` in the environment, or ``key=``). :func:`save_bundle` adds it when a key is
  configured; :meth:`ModelDeployment.load` then requires it and refuses an unsigned bundle or one
  signed with another key. Only someone who holds the key can make a bundle that loads. Keep the
  key out of the bundle's directory and out of version control.

The loaded model then validates every request (feature names and order, window length, finite
values within :data:`MAX_STANDARD_SCORE` training standard deviations, batch shape), applies the
training scaler, predicts in batches, and raises :class:`ForecastError` rather than return a
forecast that is not finite. :meth:`ModelDeployment.predict_prices` goes one step further back and
runs the training feature pipeline (:func:`course_lib.data.features.feature_frame`) on raw daily prices.

:func:`export_onnx` writes the network for ``onnxruntime`` with a dynamic batch axis;
:func:`check_onnx` compares it with PyTorch at a batch size different from the export's.
"""

import hashlib
import hmac
import json
import math
import os
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

import course_lib

from ..data.features import feature_frame
from ..data.windows import StandardScaler, Task
from ..models.checkpoint import META_FILE, WEIGHTS_FILE, CheckpointError, load_checkpoint, save_checkpoint
from ..models.registry import model_class
from ..outputs import prediction_of

BUNDLE_FORMAT = 2  # 1: weights.safetensors + bundle.json holding the class and config
MANIFEST_FILE = "bundle.json"
FILES = (WEIGHTS_FILE, META_FILE, MANIFEST_FILE)
KEY_ENV = "COURSE_LIB_BUNDLE_KEY"  # the secret key of the optional HMAC signature
MIN_KEY_BYTES = 32
# A request value further than this many training standard deviations from the training mean is refused:
# far beyond any real feature (the 1987 crash was about 20 of them), and far below float32's 3.4e38, so a
# scaled window is finite in every dtype a model uses and leaves the network's arithmetic headroom.
MAX_STANDARD_SCORE = 1e6
MAX_LOOKBACK = 100_000  # time steps of a window (400 years of trading days)


class BundleError(ValueError):
    """A bundle that cannot be trusted or used: wrong hash, signature, version, format or contents."""


class ForecastError(RuntimeError):
    """The model gave a forecast that is not finite for a valid request: the model is at fault."""


def _content_hash(manifest: dict, checkpoint: dict, weights: bytes) -> str:
    """SHA-256 over the weights, the checkpoint's JSON and the manifest (without its hash and signature)."""
    body = {k: v for k, v in manifest.items() if k not in ("content_hash", "signature")}
    digest = hashlib.sha256(weights)
    digest.update(json.dumps(checkpoint, sort_keys=True).encode())
    digest.update(json.dumps(body, sort_keys=True).encode())
    return digest.hexdigest()


def _read_json(file: Path) -> dict:
    try:
        return json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"{file} is not valid JSON: {err}") from err


def _signing_key(key: str | bytes | None) -> bytes | None:
    """The HMAC key: ``key``, else the environment's :data:`KEY_ENV`, else None (no signature)."""
    if key is None:
        key = os.environ.get(KEY_ENV) or None
    if key is None:
        return None
    key = key.encode() if isinstance(key, str) else bytes(key)
    if len(key) < MIN_KEY_BYTES:
        raise BundleError(
            f"the signing key has {len(key)} bytes; use at least {MIN_KEY_BYTES} random bytes, e.g. "
            f'{KEY_ENV}=$(python -c "import secrets; print(secrets.token_hex(32))")'
        )
    return key


def _signature(key: bytes, content_hash: str) -> str:
    """HMAC-SHA256 of the content hash (which covers every file) under ``key``, as hex."""
    return hmac.new(key, content_hash.encode(), hashlib.sha256).hexdigest()


_HEX64 = re.compile(r"[0-9a-f]{64}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _is_int(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_manifest(manifest, file: Path) -> None:
    """Raise a :class:`BundleError` naming the field unless ``manifest`` follows the bundle's schema.

    Checked before anything is built: the keys (none missing, none unknown), their types, and the
    values a server relies on (a positive lookback, distinct positive horizons, distinct feature names,
    a finite scaler of one mean and one positive scale per feature, dates, hex digests).
    """

    def require(ok: bool, field: str, want: str, value) -> None:
        if not ok:
            raise BundleError(f"{file}: {field} must be {want}, got {json.dumps(value)[:100]}")

    def keys(obj, field: str, required: set[str], optional: frozenset = frozenset()) -> None:
        require(isinstance(obj, dict), field, "a JSON object", obj)
        missing, unknown = sorted(required - set(obj)), sorted(set(obj) - required - optional)
        if missing or unknown:
            raise BundleError(
                f"{file}: {field} "
                + (f"lacks the keys {missing}" if missing else f"has unknown keys {unknown}")
                + f" (expected {sorted(required | optional)})"
            )

    keys(
        manifest,
        "the manifest",
        {"format", "course_lib_version", "task", "features", "scaler", "training_period", "content_hash"},
        frozenset({"signature"}),
    )
    task = manifest["task"]
    keys(task, "task", {"kind", "target", "ticker", "lookback", "horizons"})
    for field in ("kind", "target", "ticker"):
        require(isinstance(task[field], str), f"task.{field}", "a string", task[field])
    require(
        _is_int(task["lookback"], 1, MAX_LOOKBACK),
        "task.lookback",
        f"an integer in 1..{MAX_LOOKBACK}",
        task["lookback"],
    )
    horizons = task["horizons"]
    require(
        isinstance(horizons, list)
        and len(horizons) > 0
        and len(set(map(str, horizons))) == len(horizons)
        and all(_is_int(h, 1, MAX_LOOKBACK) for h in horizons),
        "task.horizons",
        "a list of distinct positive integers",
        horizons,
    )
    features = manifest["features"]
    require(
        isinstance(features, list)
        and len(features) > 0
        and all(isinstance(f, str) for f in features)
        and len(set(features)) == len(features),
        "features",
        "a list of distinct names",
        features,
    )
    scaler, n = manifest["scaler"], len(features)
    keys(scaler, "scaler", {"mean", "scale"})
    for field, positive in (("mean", False), ("scale", True)):
        values = scaler[field]
        require(
            isinstance(values, list)
            and len(values) == n
            and all(_is_number(v) for v in values)
            and (not positive or all(v > 0 for v in values)),
            f"scaler.{field}",
            f"{n} finite {'positive ' if positive else ''}numbers, one per feature",
            values,
        )
    period = manifest["training_period"]
    keys(period, "training_period", {"train", "validation"})
    for field in ("train", "validation"):
        dates = period[field]
        require(
            isinstance(dates, list)
            and len(dates) == 2
            and all(isinstance(d, str) and _DATE.fullmatch(d) for d in dates),
            f"training_period.{field}",
            "[first, last] dates (YYYY-MM-DD)",
            dates,
        )
    for field in ("content_hash", "signature"):
        if field in manifest:
            value = manifest[field]
            require(isinstance(value, str) and bool(_HEX64.fullmatch(value)), field, "64 hex digits", value)


def _nonfinite(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors of a state dict that hold a NaN or an infinity."""
    return [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]


def _period(dates: pd.DatetimeIndex) -> list[str]:
    return [str(dates[0].date()), str(dates[-1].date())]


def save_bundle(path: str | Path, model: nn.Module, task: Task, key: str | bytes | None = None) -> Path:
    """Write a bundle directory for ``model`` trained on ``task``; returns the directory.

    The model must be a registered course_lib model (its class is looked up by name when loading)
    and keep its constructor arguments in ``model.config``. It is rebuilt from them here once, so a
    config that does not describe the weights fails now, not on the server; weights that are not
    finite (a diverged run) are refused. With a signing ``key`` (default: the environment's
    :data:`KEY_ENV`, if set) the manifest also gets an HMAC-SHA256 ``signature``.
    """
    path = Path(path)
    key = _signing_key(key)
    name = type(model).__name__
    try:
        registered = model_class(name)
    except KeyError as err:
        raise BundleError(f"unknown model class: {err.args[0]}") from None
    if registered is not type(model):
        raise BundleError(f"{name} is not the registered class of that name")
    config = getattr(model, "config", None)
    if not isinstance(config, dict):
        raise BundleError(f"{name} has no .config dict (decorate its __init__ with keeps_config)")
    rebuilt = type(model)(**config).state_dict()
    state = model.state_dict()
    mismatch = [k for k in state if k not in rebuilt or rebuilt[k].shape != state[k].shape]
    if mismatch or set(rebuilt) != set(state):
        raise BundleError(
            f"config {config} does not rebuild {name}'s weights (first mismatch: {mismatch[:3]})"
        )
    nonfinite = _nonfinite(state)
    if nonfinite:
        raise BundleError(
            f"{name} has non-finite weights (NaN or inf) in {nonfinite[:3]} ({len(nonfinite)} tensors): a "
            "diverged run is not shipped; retrain (a lower learning rate, gradient clipping) or bundle an "
            "earlier checkpoint"
        )
    manifest = {
        "format": BUNDLE_FORMAT,
        "course_lib_version": course_lib.__version__,
        "task": {
            "kind": task.kind,
            "target": task.target_column,
            "ticker": task.ticker,
            "lookback": task.lookback,
            "horizons": list(task.horizons),
        },
        "features": list(task.feature_names),
        "scaler": {"mean": task.scaler.mean_.tolist(), "scale": task.scaler.scale_.tolist()},
        "training_period": {"train": _period(task.train.dates), "validation": _period(task.val.dates)},
    }
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path) as tmp:
        save_checkpoint(model, tmp)
        checkpoint = json.loads((Path(tmp) / META_FILE).read_text())
        weights = (Path(tmp) / WEIGHTS_FILE).read_bytes()
        manifest["content_hash"] = _content_hash(manifest, checkpoint, weights)
        if key is not None:
            manifest["signature"] = _signature(key, manifest["content_hash"])
        (Path(tmp) / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        for file in FILES:
            os.replace(Path(tmp) / file, path / file)
    return path


class ModelDeployment:
    """A loaded bundle: validated requests in, forecasts out (``(B, n_horizons)``, natural units).

    Build it with :meth:`load`. Requests are *unscaled* feature windows ``(B, L, C)`` in the order
    of :attr:`features` (what :func:`course_lib.data.features.feature_frame` computes), or raw prices for
    :meth:`predict_prices`. The training scaler is applied here, never by the caller.
    """

    def __init__(self, model: nn.Module, manifest: dict, device: torch.device) -> None:
        self.model, self.manifest, self.device = model.eval(), manifest, device
        self.features: list[str] = list(manifest["features"])
        self.lookback: int = int(manifest["task"]["lookback"])
        self.horizons: tuple[int, ...] = tuple(manifest["task"]["horizons"])
        self.scaler = StandardScaler()
        self.scaler.mean_ = np.asarray(manifest["scaler"]["mean"], dtype=np.float64)
        self.scaler.scale_ = np.asarray(manifest["scaler"]["scale"], dtype=np.float64)
        # the accepted range of each feature: MAX_STANDARD_SCORE training standard deviations around its mean
        self.low = self.scaler.mean_ - MAX_STANDARD_SCORE * self.scaler.scale_
        self.high = self.scaler.mean_ + MAX_STANDARD_SCORE * self.scaler.scale_
        self.dtype = next(model.parameters()).dtype

    @classmethod
    def load(
        cls, path: str | Path, map_location: str | torch.device = "cpu", key: str | bytes | None = None
    ) -> "ModelDeployment":
        """Check and load a bundle directory written by :func:`save_bundle` onto ``map_location``.

        With a signing ``key`` (default: the environment's :data:`KEY_ENV`, if set) the bundle must carry
        a signature made with that key; without one, a signature is not checked (the hash still is).
        """
        path, key = Path(path), _signing_key(key)
        if not (path / MANIFEST_FILE).is_file():
            raise BundleError(f"{path} is not a bundle: {MANIFEST_FILE} is missing")
        manifest = _read_json(path / MANIFEST_FILE)
        if isinstance(manifest, dict) and manifest.get("format") != BUNDLE_FORMAT:
            raise BundleError(
                f"{path} is a bundle of format {manifest.get('format')!r}; this loader reads format "
                f"{BUNDLE_FORMAT} (a checkpoint, {WEIGHTS_FILE} + {META_FILE}, plus {MANIFEST_FILE}). Re-export "
                "it with save_bundle(path, model, task); format 1 kept its weights in weights.safetensors (safe "
                "to read with safetensors.torch.load_file) and its class and config in bundle.json['model']"
            )
        _check_manifest(manifest, path / MANIFEST_FILE)
        for file in FILES:
            if not (path / file).is_file():
                raise BundleError(f"{path} is not a bundle: {file} is missing")
        version = manifest["course_lib_version"]
        if version != course_lib.__version__:
            raise BundleError(
                f"the bundle was written by course_lib {version}, this is course_lib {course_lib.__version__}: "
                "re-export it with this version (or load it with the version that wrote it)"
            )
        checkpoint = _read_json(path / META_FILE)
        if manifest["content_hash"] != _content_hash(
            manifest, checkpoint, (path / WEIGHTS_FILE).read_bytes()
        ):
            raise BundleError(
                f"content hash mismatch in {path}: the weights, {META_FILE} or {MANIFEST_FILE} were changed "
                "after saving"
            )
        if key is not None and "signature" not in manifest:
            raise BundleError(
                f"{path} is not signed, and a signing key is configured ({KEY_ENV} or key=): only signed "
                "bundles load; sign it by saving it again with the key"
            )
        if key is not None and not hmac.compare_digest(
            manifest["signature"], _signature(key, manifest["content_hash"])
        ):
            raise BundleError(
                f"signature mismatch in {path}: the bundle was signed with another key, or changed and "
                "re-hashed after signing"
            )
        device = torch.device(map_location)
        try:
            model = load_checkpoint(path, map_location=device)  # tensors only: nothing is executed
        except CheckpointError as err:
            raise BundleError(str(err)) from err
        except KeyError as err:
            raise BundleError(f"unknown model class: {err.args[0]}") from None
        nonfinite = _nonfinite(model.state_dict())
        if nonfinite:
            raise BundleError(
                f"{path / WEIGHTS_FILE} holds non-finite weights (NaN or inf) in {nonfinite[:3]} "
                f"({len(nonfinite)} tensors): a diverged run; every forecast would be NaN"
            )
        n_features = len(manifest["features"])
        if model.config.get("input_size", n_features) != n_features:
            raise BundleError(
                f"{path}: the model takes input_size={model.config['input_size']} features, the manifest "
                f"lists {n_features}"
            )
        return cls(model, manifest, device)

    @property
    def metadata(self) -> dict:
        """Everything a client may want to know: model, task, features, periods, version, hash."""
        keys = ("task", "features", "training_period", "course_lib_version", "content_hash")
        model = {"class": type(self.model).__name__, "config": self.model.config}
        return {"model": model, **{k: self.manifest[k] for k in keys}}

    def validate(self, windows, features: list[str] | None = None) -> np.ndarray:
        """Return the request as a float64 (B, L, C) array, or raise ``ValueError`` naming the problem.

        ``features``: the column names the client used; they must equal :attr:`features`, in order.
        """
        if features is not None and list(features) != self.features:
            missing = [f for f in self.features if f not in features]
            extra = [f for f in features if f not in self.features]
            detail = (
                f"missing {missing}, unexpected {extra}" if missing or extra else "same names, wrong order"
            )
            raise ValueError(
                f"features must be {self.features} in this order; got {list(features)} ({detail})"
            )
        try:
            x = np.asarray(windows, dtype=np.float64)
        except (ValueError, TypeError, OverflowError) as err:
            raise ValueError(f"windows must be a rectangular array of numbers (B, L, C): {err}") from err
        C, L = len(self.features), self.lookback
        if x.ndim >= 1 and x.shape[0] == 0:
            raise ValueError("empty batch: send at least one window")
        if x.ndim != 3:
            raise ValueError(f"windows must have shape (batch, {L}, {C}), got shape {x.shape}")
        if x.shape[1] != L:
            raise ValueError(
                f"each window must have {L} time steps (the training lookback), got {x.shape[1]}"
            )
        if x.shape[2] != C:
            raise ValueError(f"each time step must have {C} features {self.features}, got {x.shape[2]}")
        bad = np.argwhere(~np.isfinite(x))
        if len(bad):
            b, t, c = bad[0]
            raise ValueError(
                f"non-finite value {x[b, t, c]} in window {b}, step {t}, feature {self.features[c]!r} "
                f"({len(bad)} non-finite values in all)"
            )
        # the range check is on the raw values against precomputed bounds, the same numbers the service's
        # schema publishes; inside them the scaled window is finite in the model's dtype
        bad = np.argwhere((x < self.low) | (x > self.high))
        if len(bad):
            b, t, c = bad[0]
            score = (x[b, t, c] - self.scaler.mean_[c]) / self.scaler.scale_[c]
            raise ValueError(
                f"value {x[b, t, c]:.6g} in window {b}, step {t}, feature {self.features[c]!r} lies {score:.3g} "
                f"training standard deviations from the training mean; at most {MAX_STANDARD_SCORE:g} are "
                f"accepted (feature range [{self.low[c]:.6g}, {self.high[c]:.6g}]): check the units and the scale"
            )
        return x

    @torch.no_grad()
    def predict(self, windows, features: list[str] | None = None, batch_size: int = 1024) -> np.ndarray:
        """Forecasts (B, n_horizons) for unscaled feature windows (B, L, C), in batches of ``batch_size``."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        x = torch.from_numpy(self.scaler.transform(self.validate(windows, features))).to(self.dtype)
        out = np.concatenate([
            prediction_of(self.model(x[i : i + batch_size].to(self.device))).cpu().numpy()
            for i in range(0, len(x), batch_size)
        ])  # fmt: skip
        bad = np.argwhere(~np.isfinite(out))
        if len(bad):
            raise ForecastError(
                f"{type(self.model).__name__} gave a non-finite forecast ({out[tuple(bad[0])]}) for window "
                f"{bad[0][0]} of a valid request ({len(bad)} non-finite values): the model is at fault, not "
                "the request; check the bundle's weights and the training run"
            )
        return out

    def predict_prices(self, prices: pd.DataFrame) -> np.ndarray:
        """Forecast (1, n_horizons) made at the last date of a daily OHLCV frame.

        The training feature pipeline runs on the frame (it needs a 23-day warm-up before the
        ``lookback`` days of the window); then the last window is validated, scaled and predicted.
        """
        frame = feature_frame(prices)
        if len(frame) < self.lookback:
            raise ValueError(
                f"{len(prices)} days of prices give {len(frame)} feature rows; the window needs {self.lookback} "
                f"(send at least {self.lookback + 23} days: the features have a 23-day warm-up)"
            )
        window = frame[self.features].to_numpy(np.float64)[-self.lookback :]
        return self.predict(window[None], self.features)


def export_onnx(
    model: nn.Module, path: str | Path, lookback: int, n_features: int, batch_size: int = 2
) -> Path:
    """Export ``model`` (eval mode) to ONNX with a dynamic batch axis; returns ``path``.

    The exporter that torch recommends (``dynamo=True``) needs the ``onnxscript`` package, which the
    course does not pin, so this uses the older tracing exporter (``dynamo=False``, deprecated but
    working). Tracing records one run: Python ``if`` statements on the data, such as the models'
    input checks (NaN, feature count), are frozen into the graph, not exported. Validate requests
    before ONNX Runtime, as :class:`ModelDeployment` does. What else the graph loses: only the batch
    axis is dynamic (the window length is fixed at ``lookback``), and the export is in eval mode, so
    Monte Carlo dropout (``BayesianLSTM``'s epistemic spread) is gone. A ``FinancialMamba`` is exported
    with the sequential reference scan and its own weights, whatever its ``scan``: the chunked scan
    traces to a wrong graph (off by up to 8e-4) and the fused one is a C call. The single-input models of
    the registry export and match PyTorch at batch sizes 1, 3 and 64 (``tests/test_pipeline.py``), except
    ``NeuralCDEFinance`` (its forward fill uses ``torch.cummax``, which ONNX lacks),
    ``AttentionNeuralODE`` (tracing bakes the batch size into a reshape, so another batch fails in ONNX
    Runtime) and ``DeepKoopmanFinance`` (``Tensor.unfold``). A ``FinancialS4D`` is exported in its
    export form (:meth:`~course_lib.models.s4d.FinancialS4D.for_export`): ONNX has no complex numbers
    and no FFT, so each layer's kernel, which in eval mode depends only on the weights and the window
    length, is computed once and convolved as a Toeplitz product. The TFT takes extra inputs, which this helper does not name.
    """
    path = Path(path)
    model = model.eval().cpu()
    config = getattr(model, "config", {})
    if config.get("scan") in ("chunked", "fused"):
        # FinancialMamba's chunked scan traces to a graph that is wrong by 1e-4..8e-4 even at the export's
        # batch size, and its fused scan is a C call that tracing cannot record: export the same weights
        # with the sequential reference scan (the same function; 1e-7 in float32)
        sequential = type(model)(**{**config, "scan": "sequential"})
        sequential.load_state_dict(model.state_dict())
        model = sequential.eval()
    if hasattr(model, "for_export"):  # FinancialS4D: a precomputed kernel instead of complex FFTs
        model = model.for_export(lookback)
    example = torch.randn(batch_size, lookback, n_features)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation and TracerWarnings described above
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["forecast"],
            dynamic_axes={"x": {0: "batch"}, "forecast": {0: "batch"}},
        )
    return path


def check_onnx(model: nn.Module, path: str | Path, x: torch.Tensor) -> float:
    """Largest |ONNX Runtime - PyTorch| on the input ``x`` (B, L, C); raises if the shapes differ."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {"x": x.detach().cpu().numpy().astype(np.float32)})[0]
    with torch.no_grad():
        torch_out = prediction_of(model.eval().cpu()(x.cpu())).numpy()
    if onnx_out.shape != torch_out.shape:
        raise AssertionError(f"ONNX output shape {onnx_out.shape} != PyTorch {torch_out.shape}")
    return float(np.abs(onnx_out - torch_out).max())
