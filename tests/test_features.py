import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib.data.features import (
    feature_frame,
    garman_klass,
    log_returns,
    parkinson,
    rolling_stat,
    squared_returns,
    validate_series,
)
from course_lib.data.prices import load_prices


def _prices(values):
    return pd.Series(values, index=pd.date_range("2020-01-01", periods=len(values), freq="B"), dtype=float)


@given(st.lists(st.floats(1.0, 1e4), min_size=2, max_size=50))
@settings(max_examples=50, deadline=None)
def test_log_returns_telescope(values):
    p = _prices(values)
    r = log_returns(p)
    assert len(r) == len(p) - 1
    assert r.sum() == pytest.approx(100 * np.log(values[-1] / values[0]), abs=1e-8)


def test_volatility_proxies_match_their_formulas():
    df = pd.DataFrame(
        {"Open": [100.0], "High": [103.0], "Low": [98.0], "Close": [101.0]},
        index=pd.DatetimeIndex(["2020-01-02"]),
    )
    df = pd.concat([df, df.set_axis(pd.DatetimeIndex(["2020-01-03"]))])
    hl, co = np.log(103 / 98), np.log(101 / 100)
    assert garman_klass(df).iloc[0] == pytest.approx(1e4 * (0.5 * hl**2 - (2 * np.log(2) - 1) * co**2))
    assert parkinson(df).iloc[0] == pytest.approx(1e4 * hl**2 / (4 * np.log(2)))
    assert squared_returns(_prices([2.0, -1.0])).tolist() == [4.0, 1.0]


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="NaN"):
        log_returns(_prices([1.0, np.nan, 2.0]))
    with pytest.raises(ValueError, match="infinite"):
        validate_series(_prices([1.0, np.inf, 2.0]))
    with pytest.raises(ValueError, match="too short"):
        log_returns(_prices([1.0]))
    p = _prices([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="not sorted"):
        log_returns(p.iloc[::-1])
    with pytest.raises(ValueError, match="duplicate"):
        log_returns(pd.concat([p, p.iloc[:1]]).sort_index())
    with pytest.raises(TypeError, match="DatetimeIndex"):
        log_returns(pd.Series([1.0, 2.0]))
    with pytest.raises(ValueError, match="positive"):
        log_returns(_prices([1.0, -2.0]))
    with pytest.raises(ValueError, match="lacks columns"):
        garman_klass(pd.DataFrame({"High": [1.0, 2.0]}, index=p.index[:2]))


def test_rolling_stat_is_trailing():
    x = _prices(np.arange(10.0))
    m = rolling_stat(x, 3)
    assert m.iloc[0] == 1.0 and len(m) == 8
    y = x.copy()
    y.iloc[-1] = 1e6  # changing the last day moves only the last value
    assert rolling_stat(y, 3).iloc[:-1].equals(m.iloc[:-1])
    with pytest.raises(ValueError, match="unknown statistic"):
        rolling_stat(x, 3, "mode")


def test_feature_frame_uses_only_the_past():
    prices = load_prices("^GSPC", end="2003-12-31", offline=True)
    frame = feature_frame(prices)
    assert not frame.isna().any().any()
    changed = prices.copy()
    changed.loc["2003-06-02":] *= 1.5  # a level shift after a date...
    frame2 = feature_frame(changed)
    before = frame.index < pd.Timestamp("2003-06-02")
    pd.testing.assert_frame_equal(frame[before], frame2[before])  # ...leaves earlier features unchanged


def test_log_vol_checks_its_input():
    # it used to check nothing: NaN, unsorted and duplicate dates passed silently
    from course_lib.data.features import VAR_FLOOR, log_vol

    v = _prices([1.0, 4.0, 0.0])
    np.testing.assert_allclose(log_vol(v).to_numpy(), [0.0, np.log(2.0), 0.5 * np.log(VAR_FLOOR)])
    with pytest.raises(ValueError, match="NaN"):
        log_vol(_prices([1.0, np.nan, 2.0]))
    with pytest.raises(ValueError, match="infinite"):
        log_vol(_prices([1.0, np.inf]))
    with pytest.raises(ValueError, match="not sorted"):
        log_vol(v.iloc[::-1])
    with pytest.raises(ValueError, match="duplicate"):
        log_vol(pd.concat([v, v.iloc[:1]]).sort_index())


def test_the_horizon_log_vol_is_half_the_log_of_the_mean_variance():
    from course_lib.data.features import VAR_FLOOR, horizon_log_vol, log_vol_targets

    paths = np.array([[1.0, 4.0, 7.0], [0.0, 0.0, 3.0]])  # daily variances of days t+1..t+3
    expected = [
        [0.0, 0.5 * np.log(2.5), 0.5 * np.log(4.0)],
        [0.5 * np.log(VAR_FLOOR), 0.5 * np.log(VAR_FLOOR), 0.5 * np.log(1.0)],
    ]
    np.testing.assert_allclose(log_vol_targets(paths, (1, 2, 3)), expected)
    np.testing.assert_allclose(log_vol_targets(paths, (3, 1)), np.array(expected)[:, [2, 0]])
    assert horizon_log_vol(12.0, 3) == pytest.approx(0.5 * np.log(4.0))
    with pytest.raises(ValueError, match="H >= 4"):
        log_vol_targets(paths, (1, 4))
