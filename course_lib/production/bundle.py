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

:meth:`ModelDeployment.load` refuses a bundle whose hash does not match (a corrupted or edited file),
one written by another ``course_lib`` version or in an older bundle format (format 1, with
``weights.safetensors``: re-export it), and a weights file that is not safetensors (a pickle is
never unpickled). It rebuilds the model from the config, then validates every request (feature
names and order, window length, finite values, batch shape), applies the training scaler and
predicts in batches. :meth:`ModelDeployment.predict_prices` goes one step further back and runs the
training feature pipeline (:func:`course_lib.data.features.feature_frame`) on raw daily prices.

:func:`export_onnx` writes the network for ``onnxruntime`` with a dynamic batch axis;
:func:`check_onnx` compares it with PyTorch at a batch size different from the export's.
"""

import hashlib
import json
import os
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


class BundleError(ValueError):
    """A bundle that cannot be trusted or used: wrong hash, version, format or contents."""


def _content_hash(manifest: dict, checkpoint: dict, weights: bytes) -> str:
    """SHA-256 over the weights, the checkpoint's JSON and the manifest (without its own hash)."""
    body = {k: v for k, v in manifest.items() if k != "content_hash"}
    digest = hashlib.sha256(weights)
    digest.update(json.dumps(checkpoint, sort_keys=True).encode())
    digest.update(json.dumps(body, sort_keys=True).encode())
    return digest.hexdigest()


def _read_json(file: Path) -> dict:
    try:
        return json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"{file} is not valid JSON: {err}") from err


def _period(dates: pd.DatetimeIndex) -> list[str]:
    return [str(dates[0].date()), str(dates[-1].date())]


def save_bundle(path: str | Path, model: nn.Module, task: Task) -> Path:
    """Write a bundle directory for ``model`` trained on ``task``; returns the directory.

    The model must be a registered course_lib model (its class is looked up by name when loading)
    and keep its constructor arguments in ``model.config``. It is rebuilt from them here once, so a
    config that does not describe the weights fails now, not on the server.
    """
    path = Path(path)
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

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> "ModelDeployment":
        """Check and load a bundle directory written by :func:`save_bundle` onto ``map_location``."""
        path = Path(path)
        if not (path / MANIFEST_FILE).is_file():
            raise BundleError(f"{path} is not a bundle: {MANIFEST_FILE} is missing")
        manifest = _read_json(path / MANIFEST_FILE)
        if manifest.get("format") != BUNDLE_FORMAT:
            raise BundleError(
                f"{path} is a bundle of format {manifest.get('format')!r}; this loader reads format "
                f"{BUNDLE_FORMAT} (a checkpoint, {WEIGHTS_FILE} + {META_FILE}, plus {MANIFEST_FILE}). Re-export "
                "it with save_bundle(path, model, task); format 1 kept its weights in weights.safetensors (safe "
                "to read with safetensors.torch.load_file) and its class and config in bundle.json['model']"
            )
        for file in FILES:
            if not (path / file).is_file():
                raise BundleError(f"{path} is not a bundle: {file} is missing")
        version = manifest.get("course_lib_version")
        if version != course_lib.__version__:
            raise BundleError(
                f"the bundle was written by course_lib {version}, this is course_lib {course_lib.__version__}: "
                "re-export it with this version (or load it with the version that wrote it)"
            )
        checkpoint = _read_json(path / META_FILE)
        if manifest.get("content_hash") != _content_hash(
            manifest, checkpoint, (path / WEIGHTS_FILE).read_bytes()
        ):
            raise BundleError(
                f"content hash mismatch in {path}: the weights, {META_FILE} or {MANIFEST_FILE} were changed "
                "after saving"
            )
        device = torch.device(map_location)
        try:
            model = load_checkpoint(path, map_location=device)  # tensors only: nothing is executed
        except CheckpointError as err:
            raise BundleError(str(err)) from err
        except KeyError as err:
            raise BundleError(f"unknown model class: {err.args[0]}") from None
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
        except (ValueError, TypeError) as err:
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
        return x

    @torch.no_grad()
    def predict(self, windows, features: list[str] | None = None, batch_size: int = 1024) -> np.ndarray:
        """Forecasts (B, n_horizons) for unscaled feature windows (B, L, C), in batches of ``batch_size``."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        x = self.scaler.transform(self.validate(windows, features)).astype(np.float32)
        out = [
            prediction_of(self.model(torch.from_numpy(x[i : i + batch_size]).to(self.device))).cpu().numpy()
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(out)

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
    Monte Carlo dropout (``BayesianLSTM``'s epistemic spread) is gone. The single-input models of the
    registry export and match PyTorch (``tests/test_pipeline.py``), except two continuous-time ones:
    ``NeuralCDEFinance`` (its forward fill uses ``torch.cummax``, which ONNX lacks) and
    ``AttentionNeuralODE`` (tracing bakes the batch size into a reshape, so another batch fails in ONNX
    Runtime). The TFT takes extra inputs, which this helper does not name.
    """
    path = Path(path)
    model = model.eval().cpu()
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
