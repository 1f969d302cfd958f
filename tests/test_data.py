import numpy as np
import pandas as pd
import pytest

from course_lib.data import prices as data
from course_lib.data.prices import UnknownTickerError, available_tickers, is_offline, load_prices


@pytest.mark.parametrize("ticker", ["^GSPC", "^IXIC", "AAPL", "MSFT", "IBM", "GOOG"])
def test_packaged_tickers_load_offline(ticker):
    df = load_prices(ticker, offline=True)
    assert list(df.columns) == ["Open", "High", "Low", "Close", "Volume"]
    assert len(df) > 2000
    assert df.index.is_monotonic_increasing and not df.index.has_duplicates
    assert np.isfinite(df.to_numpy()).all()
    assert (df["High"] >= df["Low"]).all()
    assert df.attrs["source"].startswith("packaged")


def test_sp500_is_the_real_index():
    df = load_prices("^GSPC", offline=True)
    assert df.index[0] == pd.Timestamp("1999-01-04") and df.index[-1] == pd.Timestamp("2018-12-31")
    assert df.loc["2008-10-10", "Close"] == pytest.approx(899.22, abs=0.01)


def test_stock_prices_are_split_adjusted():
    # AAPL split 2:1 on 2005-02-28; unadjusted closes halve overnight, adjusted ones do not.
    close = load_prices("AAPL", start="2005-02-20", end="2005-03-10", offline=True)["Close"]
    assert np.abs(np.log(close).diff().dropna()).max() < 0.1


def test_date_selection_and_empty_range():
    df = load_prices("^GSPC", start="2010-01-01", end="2010-12-31", offline=True)
    assert df.index[0].year == 2010 and df.index[-1].year == 2010
    with pytest.raises(ValueError, match="no data"):
        load_prices("^GSPC", start="2030-01-01", offline=True)
    with pytest.raises(ValueError, match="after end"):
        load_prices("^GSPC", start="2010-01-01", end="2009-01-01", offline=True)


def test_unknown_ticker_offline_lists_available():
    with pytest.raises(UnknownTickerError, match="AAPL") as err:
        load_prices("NOPE", offline=True)
    for t in available_tickers():
        assert t in str(err.value)


def test_offline_switches(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("COURSE_OFFLINE", "0")
    assert not is_offline()
    monkeypatch.setenv("CI", "true")
    assert is_offline()
    assert not is_offline(False)


@pytest.fixture
def online(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_OFFLINE", "0")
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "_FAILED_ONLINE", set())
    import yfinance

    calls = []

    def install(result):
        def fake_download(ticker, **kwargs):
            calls.append((ticker, kwargs))
            if isinstance(result, Exception):
                raise result
            return result

        monkeypatch.setattr(yfinance, "download", fake_download)
        return calls

    return install


def test_empty_yfinance_result_falls_back_with_warning(online):
    calls = online(pd.DataFrame())  # what yfinance returns when it is offline
    with pytest.warns(UserWarning, match="no data"):
        df = load_prices("^GSPC")
    assert not df.empty and df.attrs["source"].startswith("packaged")
    assert calls[0][1]["auto_adjust"] is True
    load_prices("^GSPC", start="2005-01-01")  # a failed ticker is not retried in the same session
    assert len(calls) == 1


def test_yfinance_exception_falls_back(online):
    online(ConnectionError("network down"))
    with pytest.warns(UserWarning, match="network down"):
        assert not load_prices("MSFT").empty


def test_unknown_ticker_online_failure_raises(online):
    online(pd.DataFrame())
    with pytest.warns(UserWarning, match="NOPE"), pytest.raises(UnknownTickerError):
        load_prices("NOPE")


def test_download_is_cached_atomically_outside_the_repo(online, tmp_path, monkeypatch):
    idx = pd.date_range("2020-01-01", periods=30, freq="B")
    cols = pd.MultiIndex.from_product([["Open", "High", "Low", "Close", "Volume"], ["XYZ"]])
    raw = pd.DataFrame(np.full((30, 5), 10.0) + np.arange(30)[:, None], index=idx, columns=cols)
    calls = online(raw)
    monkeypatch.chdir(tmp_path)
    df = load_prices("XYZ", start="2020-01-01", end="2020-02-28")
    assert len(df) == 30 and "yfinance" in df.attrs["source"]
    cached = list((tmp_path / "cache").glob("*.csv"))
    assert len(cached) == 1 and not list((tmp_path / "cache").glob("*.tmp"))
    again = load_prices("XYZ", start="2020-01-01", end="2020-02-28")
    assert len(calls) == 1  # served from the cache
    pd.testing.assert_frame_equal(df, again, check_freq=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # nothing else written


def test_stocks_file_exists_in_data_dir():
    assert (data.DATA_DIR / data.STOCKS_FILE).exists()


def test_offline_download_failure_shows_one_course_line_only(online, monkeypatch, capsys):
    import logging
    import warnings

    import yfinance

    def noisy_download(ticker, **kwargs):  # what yfinance does with no network
        logging.getLogger("yfinance").error("Cookie/crumb fetch failed (DNSError), continuing without crumb")
        logging.getLogger("yfinance.data").error("Could not resolve host: query2.finance.yahoo.com")
        print("1 Failed download: possibly delisted")
        warnings.warn("The inplace keyword in DataFrame.rename is deprecated", FutureWarning, stacklevel=1)
        return pd.DataFrame()

    monkeypatch.setattr(yfinance, "download", noisy_download)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = load_prices("^GSPC")
    assert df.attrs["source"].startswith("packaged")
    assert [type(w.message) for w in caught] == [data.DataFallbackWarning]
    assert "^GSPC: yfinance returned no data (offline?); using the packaged data" in str(caught[0].message)
    assert caught[0].filename == __file__, "the warning points at the learner's call, not at course_lib"
    out = capsys.readouterr()
    assert out.out == "" and out.err == "", "yfinance's own messages must not reach the learner"
    assert not logging.getLogger("yfinance").disabled, "yfinance's logging is restored after the call"
    assert not logging.getLogger("yfinance.data").disabled
