"""Features from daily prices: log returns, volatility proxies and rolling statistics.

Units: returns are percent log returns, ``r_t = 100 * log(C_t / C_{t-1})``; variances are in
percent squared (daily), so a daily volatility of 1% is a variance of 1.

Volatility proxies (one day, from that day's prices only):

* squared return     ``r_t^2``
* Parkinson (1980)   ``sigma^2 = (log H/L)^2 / (4 log 2)``
* Garman-Klass (1980) ``sigma^2 = 0.5 (log H/L)^2 - (2 log 2 - 1) (log C/O)^2``

Range-based proxies are far less noisy than the squared return. Garman-Klass also uses the open, and
in the packaged S&P 500 data the open of 1999-2005 is mostly a copy of the previous close (see
:func:`stale_open_share`), so its open-to-close term means different things in different years;
Parkinson uses the high and the low only and is the course's volatility target. Every function checks its input:
NaN or infinite values, too-short series and unsorted or duplicate dates raise a ``ValueError``
that names the problem, instead of propagating NaN silently.
"""

import numpy as np
import pandas as pd

PCT = 100.0
VAR_FLOOR = 1e-4  # %^2: a day whose high equals its low would otherwise give log(0)

CALENDAR_FEATURES = ["day_of_week", "month"]


def validate_series(x: pd.Series | pd.DataFrame, name: str = "input", min_length: int = 2) -> None:
    """Raise ``ValueError`` if ``x`` has NaN/inf, fewer than ``min_length`` rows, or bad dates."""
    if not isinstance(x, pd.Series | pd.DataFrame):
        raise TypeError(
            f"{name} must be a pandas Series or DataFrame indexed by date, not {type(x).__name__}"
        )
    if len(x) < min_length:
        raise ValueError(f"{name} is too short: {len(x)} rows, at least {min_length} needed")
    if not isinstance(x.index, pd.DatetimeIndex):
        raise TypeError(f"{name} must be indexed by dates (DatetimeIndex), not {type(x.index).__name__}")
    if x.index.has_duplicates:
        dup = x.index[x.index.duplicated()][0]
        raise ValueError(f"{name} has duplicate dates (first: {dup.date()})")
    if not x.index.is_monotonic_increasing:
        raise ValueError(f"{name} dates are not sorted in increasing order; call .sort_index() first")
    values = np.asarray(x, dtype=float)
    for what, bad in (("NaN", np.isnan(values)), ("infinite", np.isinf(values))):
        if bad.any():
            raise ValueError(
                f"{name} contains {what} values ({int(bad.sum())} of them; {_first_place(x, bad)})"
            )


def _first_place(x: pd.Series | pd.DataFrame, bad: np.ndarray) -> str:
    """Where the first flagged value sits: its column (for a frame) and its date."""
    bad = bad.reshape(len(x), -1)
    row = int(np.flatnonzero(bad.any(axis=1))[0])
    where = f"first on {x.index[row].date()}"
    if isinstance(x, pd.DataFrame):
        columns = [str(c) for c, flagged in zip(x.columns, bad[row], strict=True) if flagged]
        where = f"first in column {columns[0]!r} on {x.index[row].date()}"
    return where + "; drop or fill those rows first, e.g. prices.dropna()"


def _check_ohlc(df: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"price frame lacks columns {missing}; it has {list(df.columns)}")
    validate_series(df[columns], "prices", min_length=2)
    if (df[columns] <= 0).to_numpy().any():
        raise ValueError("prices must be strictly positive")


def log_returns(prices: pd.Series) -> pd.Series:
    """Percent log returns ``100 log(P_t / P_{t-1})``; one row shorter than ``prices``."""
    validate_series(prices, "prices", min_length=2)
    if (prices <= 0).any():
        raise ValueError("prices must be strictly positive to take logs")
    r = PCT * np.log(prices).diff().iloc[1:]
    return r.rename("ret")


def squared_returns(returns: pd.Series) -> pd.Series:
    """The simplest (and noisiest) daily variance proxy, ``r_t^2``."""
    validate_series(returns, "returns", min_length=1)
    return (returns**2).rename("var_sq")


def parkinson(df: pd.DataFrame) -> pd.Series:
    """Parkinson (1980) high-low variance estimate, percent squared."""
    _check_ohlc(df, ["High", "Low"])
    hl = np.log(df["High"] / df["Low"])
    return (PCT**2 * hl**2 / (4.0 * np.log(2.0))).rename("var_parkinson")


def garman_klass(df: pd.DataFrame) -> pd.Series:
    """Garman-Klass (1980) open-high-low-close variance estimate, percent squared."""
    _check_ohlc(df, ["Open", "High", "Low", "Close"])
    hl = np.log(df["High"] / df["Low"])
    co = np.log(df["Close"] / df["Open"])
    return (PCT**2 * (0.5 * hl**2 - (2.0 * np.log(2.0) - 1.0) * co**2)).rename("var_gk")


def rolling_stat(x: pd.Series, window: int, stat: str = "mean") -> pd.Series:
    """Trailing rolling statistic over ``window`` days (uses data up to and including t only).

    The first ``window - 1`` values are dropped rather than left as NaN.
    """
    validate_series(x, "series", min_length=window)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if stat not in {"mean", "std", "var", "min", "max", "median"}:
        raise ValueError(f"unknown statistic {stat!r}")
    return getattr(x.rolling(window), stat)().iloc[window - 1 :]


def stale_open_share(prices: pd.DataFrame) -> pd.Series:
    """Share of days per calendar year whose open equals the previous day's close (a data-quality check).

    A feed that fills a missing open with the last close makes ``log(C/O)`` the close-to-close return,
    so any estimator that uses the open (Garman-Klass) changes meaning with the feed.
    """
    _check_ohlc(prices, ["Open", "Close"])
    stale = np.isclose(prices["Open"].to_numpy()[1:], prices["Close"].to_numpy()[:-1], rtol=1e-6, atol=0.0)
    return (
        pd.Series(stale, index=prices.index[1:])
        .groupby(prices.index[1:].year)
        .mean()
        .rename("stale_open_share")
    )


def log_vol(variance: pd.Series) -> pd.Series:
    """Log volatility ``0.5 log(max(variance, floor))`` from a variance proxy (percent squared).

    The floor lifts days with a zero (or, from inconsistent OHLC data, negative) range estimate;
    NaN or infinite variances and unsorted or duplicate dates raise a ``ValueError`` (docs/errata.md:
    features.log_vol). A rolling mean starts with NaN: drop its warm-up rows first (``.dropna()``).
    """
    validate_series(variance, "variance", min_length=1)
    return horizon_log_vol(variance, 1)


def horizon_log_vol(variance_sum, h):
    """The course's volatility target over h days from the sum of the daily variances of those days:

        v = 0.5 log(max(sum_{i=1}^{h} var_{t+i} / h, VAR_FLOOR))

    half the log of the *mean* daily variance (percent squared), floored. ``h`` may be an array that
    broadcasts against ``variance_sum`` (one horizon per column). The one place the course aggregates
    variance over a horizon: the targets (:func:`course_lib.data.windows.make_windows`), the baselines'
    variance paths and the Koopman rollouts (:func:`log_vol_targets`) all come here.
    """
    return 0.5 * np.log(np.maximum(variance_sum / h, VAR_FLOOR))


def log_vol_targets(variance_paths: np.ndarray, horizons) -> np.ndarray:
    """(N, H) daily variances of days t+1..t+H (forecasts) -> (N, n_h) targets :func:`horizon_log_vol`.

    Column j is 0.5 log of the mean of the first ``horizons[j]`` days (each h <= H); float64.
    """
    variance_paths = np.asarray(variance_paths, dtype=np.float64)
    hs = np.asarray(horizons)
    if variance_paths.ndim != 2 or hs.min() < 1 or hs.max() > variance_paths.shape[1]:
        raise ValueError(
            f"variance_paths must be (N, H >= {hs.max()}) daily variances for horizons {tuple(horizons)}, "
            f"got shape {variance_paths.shape}"
        )
    cum = np.cumsum(variance_paths, axis=1)  # (N, H): the sum over days t+1..t+k in column k-1
    return horizon_log_vol(cum[:, hs - 1], hs)


def feature_frame(prices: pd.DataFrame) -> pd.DataFrame:
    """All per-day features of the course, aligned on dates, without NaN (the 22-day warm-up is dropped).

    Columns: ``ret`` (percent log return), ``var_parkinson`` (Parkinson variance, the default volatility
    target's proxy), ``var_gk`` (Garman-Klass variance), ``log_vol_gk`` and ``log_vol_parkinson`` (log volatilities), ``ret_std22`` (trailing
    22-day std of returns), ``volume_change`` (log change of 1 + volume), ``day_of_week`` (0-4) and
    ``month`` (1-12). Every value at date t uses prices up to t only.
    """
    _check_ohlc(prices, ["Open", "High", "Low", "Close"])
    if "Volume" not in prices.columns:
        raise ValueError("price frame lacks a Volume column")
    validate_series(prices["Volume"], "volume", min_length=24)
    ret = log_returns(prices["Close"])
    var_gk = garman_klass(prices)
    var_parkinson = parkinson(prices)
    frame = pd.DataFrame(
        {
            "ret": ret,
            "var_parkinson": var_parkinson,
            "var_gk": var_gk,
            "log_vol_gk": log_vol(var_gk),
            "log_vol_parkinson": log_vol(var_parkinson),
            "ret_std22": ret.rolling(22).std(),
            "volume_change": np.log1p(prices["Volume"]).diff(),
        }
    ).dropna()
    frame["day_of_week"] = frame.index.day_of_week.astype(float)
    frame["month"] = frame.index.month.astype(float)
    frame.attrs = dict(prices.attrs)
    return frame
