"""The volatility target's proxy, and the data-quality check that chose it."""

import numpy as np
import pandas as pd
import pytest

from course_lib.data.features import feature_frame, garman_klass, parkinson, stale_open_share
from course_lib.data.prices import load_prices
from course_lib.data.windows import make_task


def test_stale_open_share_counts_opens_copied_from_the_previous_close():
    idx = pd.bdate_range("2020-12-28", periods=8)
    close = np.array([100.0, 101, 102, 103, 104, 105, 106, 107])
    open_ = np.array([99.0, 100, 101.5, 102, 103.5, 104, 105, 106.5])  # days 1, 3, 5, 6 copy the close
    prices = pd.DataFrame({"Open": open_, "Close": close}, index=idx)
    share = stale_open_share(prices)
    stale = pd.Series([True, False, True, False, True, True, False], index=idx[1:])
    np.testing.assert_allclose(share.to_numpy(), stale.groupby(idx[1:].year).mean().to_numpy())
    assert list(share.index) == sorted(set(idx[1:].year))


def test_the_packaged_sp500_opens_are_stale_before_2006_and_not_after_2008():
    share = stale_open_share(load_prices("^GSPC", offline=True))
    assert share.loc[1999:2005].min() > 0.9
    assert share.loc[2008:].median() < 0.05


def test_volatility_target_uses_parkinson_by_default():
    prices = load_prices("^GSPC", end="2010-12-31", offline=True)
    frame = feature_frame(prices)
    np.testing.assert_allclose(frame["var_parkinson"], parkinson(prices).loc[frame.index])
    np.testing.assert_allclose(frame["var_gk"], garman_klass(prices).loc[frame.index])
    task = make_task("volatility", prices=prices)
    gk = make_task("volatility", prices=prices, proxy="gk")
    assert task.target_column == "var_parkinson" and gk.target_column == "var_gk"
    t = task.test.rows[5]
    assert task.test.y[5, 0] == pytest.approx(0.5 * np.log(frame["var_parkinson"].iloc[t + 1]), abs=1e-5)
    assert gk.test.y[5, 0] == pytest.approx(0.5 * np.log(frame["var_gk"].iloc[t + 1]), abs=1e-5)
    assert task.fit_end_row == task.train.rows[-1] + 1
    assert (
        task.frame.index[task.fit_end_row]
        <= pd.Timestamp("2006-12-31")
        < task.frame.index[task.fit_end_row + 1]
    )
    with pytest.raises(ValueError, match="proxy"):
        make_task("volatility", prices=prices, proxy="close")
