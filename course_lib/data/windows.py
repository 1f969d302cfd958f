"""Sliding windows, chronological splits and the two standard tasks of the course.

A sample is made at a *forecast origin* t (the last day the model sees):

    inputs  X_t = features[t - L + 1 .. t]             (L = lookback)
    target  y_t = agg(daily[t + 1 .. t + h])           for each horizon h

Standard tasks (units as in :mod:`course_lib.data.features`):

* ``"returns"``:    y = sum of the next h percent log returns (h = 1: tomorrow's return);
* ``"volatility"``: y = 0.5 log(mean daily variance proxy over the next h days), a log volatility. The
  proxy is Parkinson's high-low variance by default (``proxy="parkinson"``); ``proxy="gk"`` picks
  Garman-Klass, whose open-to-close term is unreliable in the packaged S&P 500 data before 2008
  (see :func:`course_lib.data.features.stale_open_share`).

Splits are chronological by the dates of the *targets*: a sample is in a split only when its origin
and all its target days lie inside that split, so samples whose targets straddle a boundary are
dropped (the gap). Defaults: train to 2006-12-31, validation 2007-2008, test 2009 onwards. The
capstone splits by the target days alone (``split_by="target"``, its window may look back into the
previous split) and ends its test split at a date (``test_end``).
The feature scaler is fitted on the rows the training inputs cover, and nothing else.
"""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from numpy.lib.stride_tricks import sliding_window_view

from .features import feature_frame, horizon_log_vol, validate_series
from .prices import load_prices

DEFAULT_FEATURES = ["ret", "log_vol_gk", "log_vol_parkinson", "volume_change"]
TASKS = ("returns", "volatility")
PROXIES = {"parkinson": "var_parkinson", "gk": "var_gk"}  # volatility target proxy -> column of the frame
SPLITS = ("train", "val", "test")


class StandardScaler:
    """Per-feature standardisation whose statistics come from the training rows only."""

    def __init__(self) -> None:
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None

    def fit(self, values: np.ndarray) -> "StandardScaler":
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or len(values) < 2:
            raise ValueError(f"fit expects (n_rows >= 2, n_features) values, got shape {values.shape}")
        if not np.isfinite(values).all():
            raise ValueError("cannot fit a scaler on NaN or infinite values")
        self.mean_ = values.mean(axis=0)
        self.scale_ = values.std(axis=0)
        self.scale_[self.scale_ == 0] = 1.0  # a constant feature stays constant (0) after scaling
        return self

    def transform(self, values: np.ndarray) -> np.ndarray:
        if self.mean_ is None:
            raise RuntimeError("the scaler is not fitted; call fit() on training data first")
        values = np.asarray(values, dtype=np.float64)
        if values.shape[-1] != self.mean_.shape[0]:
            raise ValueError(f"expected {self.mean_.shape[0]} features, got {values.shape[-1]}")
        return (values - self.mean_) / self.scale_


def make_windows(
    features: np.ndarray, daily_target: np.ndarray, lookback: int, horizons: tuple[int, ...], kind: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All windows of a (T, C) feature matrix: X (N, L, C), y (N, n_h) and origin rows (N,).

    ``daily_target`` (T,) is the per-day series the targets aggregate: returns (summed) or a
    variance proxy (averaged, then 0.5 log). Origins run from L-1 to T-1-max(h).
    """
    features = np.asarray(features, dtype=np.float32)
    daily_target = np.asarray(daily_target, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be (T, C), got shape {features.shape}")
    if daily_target.shape != (features.shape[0],):
        raise ValueError(f"daily_target must be ({features.shape[0]},), got shape {daily_target.shape}")
    if lookback < 1 or not horizons or min(horizons) < 1:
        raise ValueError(f"lookback and horizons must be >= 1, got {lookback} and {horizons}")
    if kind not in TASKS:
        raise ValueError(f"unknown task {kind!r}; choose from {list(TASKS)}")
    T, max_h = features.shape[0], max(horizons)
    origins = np.arange(lookback - 1, T - max_h)
    if len(origins) == 0:
        raise ValueError(f"series too short: {T} days cannot make one window of {lookback} + {max_h} days")
    X = sliding_window_view(features, lookback, axis=0)[: len(origins)]  # (N, C, L)
    X = np.ascontiguousarray(X.transpose(0, 2, 1))  # (N, L, C)
    cumsum = np.concatenate([[0.0], np.cumsum(daily_target)])  # cumsum[k] = sum of daily[:k]
    ys = []
    for h in horizons:
        total = cumsum[origins + 1 + h] - cumsum[origins + 1]  # sum of daily[t+1 .. t+h]
        ys.append(total if kind == "returns" else horizon_log_vol(total, h))
    return X, np.stack(ys, axis=1).astype(np.float32), origins


SPLIT_RULES = ("origin", "target")


def chronological_split(
    dates: pd.DatetimeIndex,
    origins: np.ndarray,
    max_horizon: int,
    train_end: str,
    val_end: str,
    test_end: str | None = None,
    split_by: str = "origin",
) -> dict[str, np.ndarray]:
    """Boolean masks over samples, one per split, by the dates a sample covers.

    ``split_by="origin"`` (the chapters): a sample belongs to a split when its origin and its last
    target day do, so the samples whose targets straddle a boundary are dropped (a gap).
    ``split_by="target"`` (the capstone): when all its target days t+1..t+h do; its window may look
    back into the previous split, and at h = 1 no target day is lost at a boundary. ``test_end``: the
    last target day of the test split (default: the end of the data).
    """
    if split_by not in SPLIT_RULES:
        raise ValueError(f"unknown split rule {split_by!r}; choose from {list(SPLIT_RULES)}")
    train_end_ts, val_end_ts = pd.Timestamp(train_end), pd.Timestamp(val_end)
    if train_end_ts >= val_end_ts:
        raise ValueError(f"train_end {train_end} must come before val_end {val_end}")
    # the first day that must lie inside the split: the origin, or the first target day
    first = dates[origins] if split_by == "origin" else dates[origins + 1]
    last_target = dates[origins + max_horizon]
    test = np.asarray(first > val_end_ts)
    if test_end is not None:
        if pd.Timestamp(test_end) <= val_end_ts:
            raise ValueError(f"test_end {test_end} must come after val_end {val_end}")
        test &= np.asarray(last_target <= pd.Timestamp(test_end))
    return {
        "train": np.asarray(last_target <= train_end_ts),
        "val": np.asarray((first > train_end_ts) & (last_target <= val_end_ts)),
        "test": test,
    }


@dataclass
class SplitData:
    """One chronological split: scaled inputs, targets, origin dates and origin rows in ``Task.frame``."""

    X: np.ndarray  # (N, L, C) float32, scaled
    y: np.ndarray  # (N, n_h) float32, natural units
    dates: pd.DatetimeIndex  # (N,) forecast origins
    rows: np.ndarray  # (N,) positions of the origins in Task.frame

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Task:
    """A forecasting task: splits, the unscaled per-day frame and the fitted scaler."""

    kind: str
    ticker: str
    lookback: int
    horizons: tuple[int, ...]
    feature_names: list[str]
    frame: pd.DataFrame
    scaler: StandardScaler
    train: SplitData
    val: SplitData
    test: SplitData
    source: str = field(default="")
    target_column: str = field(default="ret")  # the per-day column the targets aggregate
    cache: dict = field(default_factory=dict, repr=False, compare=False)  # baseline forecasts, by protocol

    @property
    def fit_end_row(self) -> int:
        """Last row of ``frame`` that the training split's inputs or targets cover (frozen models stop here)."""
        return int(self.train.rows[-1] + max(self.horizons))

    def split(self, name: str) -> SplitData:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; choose from {SPLITS}")
        return getattr(self, name)

    def tensors(self, name: str, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """(X, y) of one split as float32 tensors on ``device``."""
        s = self.split(name)
        return torch.from_numpy(s.X).to(device), torch.from_numpy(s.y).to(device)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{n}={len(self.split(n))}" for n in SPLITS)
        return (
            f"Task({self.kind!r}, {self.ticker}, lookback={self.lookback}, horizons={self.horizons}, "
            f"features={self.feature_names}, {sizes})"
        )


def make_task(
    kind: str,
    ticker: str = "^GSPC",
    lookback: int = 20,
    horizons: tuple[int, ...] | int = (1,),
    features: list[str] | None = None,
    train_end: str = "2006-12-31",
    val_end: str = "2008-12-31",
    start: str | None = None,
    end: str | None = None,
    prices: pd.DataFrame | None = None,
    offline: bool | None = None,
    proxy: str = "parkinson",
    split_by: str = "origin",
    test_end: str | None = None,
) -> Task:
    """Build one of the standard tasks (``"returns"`` or ``"volatility"``) on real daily data.

    ``prices`` (an OHLCV frame) replaces :func:`course_lib.data.prices.load_prices` when given. ``proxy``
    (volatility only): the daily variance proxy of the target, ``"parkinson"`` or ``"gk"``.
    ``split_by`` and ``test_end``: the split rule of :func:`chronological_split` (``"origin"``, the
    chapters' default, drops the samples that straddle a boundary; ``"target"``, the capstone's, splits
    by the dates of the targets only) and the last target day of the test split.
    """
    if kind not in TASKS:
        raise ValueError(f"unknown task {kind!r}; choose from {list(TASKS)}")
    if proxy not in PROXIES:
        raise ValueError(f"unknown volatility proxy {proxy!r}; choose from {list(PROXIES)}")
    target_column = "ret" if kind == "returns" else PROXIES[proxy]
    horizons = (horizons,) if isinstance(horizons, int) else tuple(int(h) for h in horizons)
    if prices is None:
        prices = load_prices(ticker, start=start, end=end, offline=offline)
    else:
        validate_series(prices, "prices", min_length=lookback + max(horizons) + 23)
    frame = feature_frame(prices)
    names = list(DEFAULT_FEATURES if features is None else features)
    unknown = [n for n in names if n not in frame.columns]
    if unknown:
        raise ValueError(f"unknown features {unknown}; available: {list(frame.columns)}")

    X, y, origins = make_windows(
        frame[names].to_numpy(), frame[target_column].to_numpy(), lookback, horizons, kind
    )
    masks = chronological_split(frame.index, origins, max(horizons), train_end, val_end, test_end, split_by)
    for name, mask in masks.items():
        if mask.sum() == 0:
            raise ValueError(
                f"the {name} split is empty for {ticker} ({frame.index[0].date()} to {frame.index[-1].date()}) "
                f"with train_end={train_end}, val_end={val_end}"
                + (f", test_end={test_end}" if test_end is not None else "")
                + ": give prices that cover every split, or move the split dates"
            )

    # Fit on the rows that training inputs cover (up to the last training origin), nothing later.
    last_train_row = origins[masks["train"]].max()
    scaler = StandardScaler().fit(frame[names].to_numpy()[: last_train_row + 1])
    mean = scaler.mean_.astype(np.float32)
    scale = scaler.scale_.astype(np.float32)

    splits = {}
    for name, mask in masks.items():
        rows = origins[mask]
        splits[name] = SplitData(X=(X[mask] - mean) / scale, y=y[mask], dates=frame.index[rows], rows=rows)
    return Task(
        kind=kind,
        ticker=prices.attrs.get("ticker", ticker),
        lookback=lookback,
        horizons=horizons,
        feature_names=names,
        frame=frame,
        scaler=scaler,
        source=prices.attrs.get("source", "user-supplied prices"),
        target_column=target_column,
        **splits,
    )
