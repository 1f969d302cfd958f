"""Daily market data: one call that works online (Yahoo Finance) and offline (data shipped with the course).

``load_prices("^GSPC")`` returns daily Open, High, Low, Close, Volume indexed by date, whatever the network.
Yahoo symbols are used everywhere, so a notebook written offline runs unchanged online.

Packaged (offline) data, see ``data/README.md`` for provenance and licences:

* ``^GSPC`` (S&P 500) and ``^IXIC`` (NASDAQ Composite), 1999-2018, shipped by the ``arch`` package;
* ``AAPL``, ``MSFT``, ``IBM``, ``GOOG``, 2000-2013 (GOOG from 2004), public domain, vendored from
  Bokeh's sample data into ``data/stocks.csv.gz``. Their OHLC are split- and dividend-adjusted here
  (scaled by adjusted close / close), so returns do not jump at a split.

Online (not offline, see :func:`is_offline`) the data come from yfinance with ``auto_adjust=True``
and are cached as CSV in the user cache directory (never in the repository or the working
directory). Any failure, including yfinance's habit of returning an EMPTY frame when it is offline,
falls back to the packaged data with a warning. ``df.attrs["source"]`` says where the data came from.
"""

import contextlib
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path

import pandas as pd

COLUMNS = ["Open", "High", "Low", "Close", "Volume"]
DATA_DIR = Path(os.environ.get("COURSE_DATA_DIR", Path(__file__).resolve().parents[2] / "data"))
STOCKS_FILE = "stocks.csv.gz"

# Yahoo symbol -> (loader name, human description)
PACKAGED = {
    "^GSPC": ("arch.data.sp500", "S&P 500 index, daily 1999-2018, shipped by the arch package"),
    "^IXIC": ("arch.data.nasdaq", "NASDAQ Composite index, daily 1999-2018, shipped by the arch package"),
    "AAPL": (STOCKS_FILE, "Apple, daily 2000-2013, public domain (Quandl WIKI via Bokeh sample data)"),
    "MSFT": (STOCKS_FILE, "Microsoft, daily 2000-2013, public domain (Quandl WIKI via Bokeh sample data)"),
    "IBM": (STOCKS_FILE, "IBM, daily 2000-2013, public domain (Quandl WIKI via Bokeh sample data)"),
    "GOOG": (
        STOCKS_FILE,
        "Alphabet/Google, daily 2004-2013, public domain (Quandl WIKI via Bokeh sample data)",
    ),
}


_FAILED_ONLINE: set[str] = set()  # tickers whose download failed in this session: not retried


class UnknownTickerError(ValueError):
    """Raised when a ticker is neither packaged nor downloadable."""


def available_tickers() -> list[str]:
    """The tickers that work offline."""
    return list(PACKAGED)


def is_offline(offline: bool | None = None) -> bool:
    """Whether to skip the network: ``offline`` if given, else ``COURSE_OFFLINE=1`` or a CI run."""
    if offline is not None:
        return bool(offline)
    return os.environ.get("COURSE_OFFLINE", "") == "1" or os.environ.get("CI", "").lower() in {"1", "true"}


def cache_dir() -> Path:
    """Where downloaded prices are cached: ``COURSE_CACHE_DIR`` or the platform's user cache dir."""
    if os.environ.get("COURSE_CACHE_DIR"):
        return Path(os.environ["COURSE_CACHE_DIR"])
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("dlfts-course")) / "prices"


def load_prices(
    ticker: str,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    offline: bool | None = None,
) -> pd.DataFrame:
    """Daily OHLCV for ``ticker`` between ``start`` and ``end`` (inclusive), indexed by date.

    Never returns an empty frame: an unknown ticker offline, or a date range with no data, raises.
    """
    if not isinstance(ticker, str) or not ticker.strip():
        raise UnknownTickerError(f"ticker must be a non-empty string, got {ticker!r}")
    ticker = ticker.strip().upper()
    start_ts = pd.Timestamp(start) if start is not None else None
    end_ts = pd.Timestamp(end) if end is not None else None
    if start_ts is not None and end_ts is not None and start_ts > end_ts:
        raise ValueError(f"start {start_ts.date()} is after end {end_ts.date()}")

    df = None
    if not is_offline(offline) and ticker not in _FAILED_ONLINE:
        df = _load_online(ticker, start_ts, end_ts)
        if df is None:
            _FAILED_ONLINE.add(ticker)  # one warning per ticker and session, not one per call
    if df is None:
        df = _load_packaged(ticker)
    return _select_dates(df, ticker, start_ts, end_ts)


def _load_packaged(ticker: str) -> pd.DataFrame:
    if ticker not in PACKAGED:
        raise UnknownTickerError(
            f"ticker {ticker!r} is not available offline; packaged tickers: {', '.join(PACKAGED)} "
            "(online, any Yahoo Finance symbol works)"
        )
    source, description = PACKAGED[ticker]
    if source == STOCKS_FILE:
        raw = pd.read_csv(DATA_DIR / STOCKS_FILE, parse_dates=["Date"])
        raw = raw[raw["Ticker"] == ticker].set_index("Date").sort_index()
        factor = raw["Adj Close"] / raw["Close"]  # split and dividend adjustment
        df = raw[["Open", "High", "Low", "Close"]].mul(factor, axis=0)
        df["Volume"] = raw["Volume"].astype(float)
    else:
        import importlib

        df = importlib.import_module(source).load()[COLUMNS].astype(float)
    df.index = pd.DatetimeIndex(df.index).as_unit("ns")
    df.index.name = "Date"
    df.attrs["source"] = f"packaged: {description}"
    return df


def _cache_file(ticker: str, start: pd.Timestamp | None, end: pd.Timestamp | None) -> Path:
    safe = "".join(c if c.isalnum() else "_" for c in ticker)
    span = f"{start.date() if start is not None else 'first'}_{end.date() if end is not None else 'last'}"
    return cache_dir() / f"{safe}_{span}_adjusted.csv"


def _load_online(ticker: str, start: pd.Timestamp | None, end: pd.Timestamp | None) -> pd.DataFrame | None:
    """Yahoo data through yfinance, cached; ``None`` (with a warning) on any failure."""
    path = _cache_file(ticker, start, end)
    if path.exists():
        df = pd.read_csv(path, index_col="Date", parse_dates=["Date"])
        df.index = df.index.as_unit("ns")
        df.attrs["source"] = f"cache: {path}"
        return df
    try:
        import yfinance as yf

        # yfinance's end is exclusive: add a day so that `end` is included as documented.
        with _quiet_yfinance():
            raw = yf.download(
                ticker,
                start=start,
                end=None if end is None else end + pd.Timedelta(days=1),
                auto_adjust=True,
                progress=False,
                multi_level_index=False,
            )
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _warn_fallback(ticker, f"the download failed: {reason}")
        return None
    if raw is None or raw.empty:
        _warn_fallback(ticker, "yfinance returned no data (offline?)")
        return None
    if isinstance(raw.columns, pd.MultiIndex):
        raw.columns = raw.columns.get_level_values(0)
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        _warn_fallback(ticker, f"yfinance data lack {missing}")
        return None
    df = raw[COLUMNS].astype(float).dropna()
    df.index = pd.DatetimeIndex(df.index).tz_localize(None).as_unit("ns")
    df.index.name = "Date"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Atomic write: a crash mid-write never leaves a truncated cache file behind.
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as tmp:
        df.to_csv(tmp)
    os.replace(tmp.name, path)
    df.attrs["source"] = f"yfinance (auto_adjust=True), cached at {path}"
    return df


class DataFallbackWarning(UserWarning):
    """Online data could not be had: the packaged data are used instead."""


def _warn_fallback(ticker: str, reason: str) -> None:
    """The one line a learner sees when the download fails (yfinance's own messages are silenced)."""
    warnings.warn(
        f"{ticker}: {reason}; using the packaged data instead (set COURSE_OFFLINE=1 to skip the download)",
        DataFallbackWarning,
        stacklevel=4,
    )


@contextlib.contextmanager
def _quiet_yfinance():
    """Silence yfinance's logging, warnings and prints for the duration of one call, then restore them."""
    names = ["yfinance", *(n for n in logging.Logger.manager.loggerDict if n.startswith("yfinance."))]
    loggers = [logging.getLogger(n) for n in names]
    saved = [lg.disabled for lg in loggers]
    for lg in loggers:
        lg.disabled = True
    try:
        # anything still printed (or logged through the last-resort handler) lands in a buffer
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stderr(io.StringIO()),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, was in zip(loggers, saved, strict=True):
            lg.disabled = was


def _select_dates(
    df: pd.DataFrame, ticker: str, start: pd.Timestamp | None, end: pd.Timestamp | None
) -> pd.DataFrame:
    source = df.attrs.get("source", "")
    out = df.loc[start:end].copy()
    if out.empty:
        raise ValueError(
            f"no data for {ticker!r} between {start} and {end}; "
            f"the data run from {df.index[0].date()} to {df.index[-1].date()} ({source})"
        )
    out.attrs["source"] = source
    out.attrs["ticker"] = ticker
    return out
