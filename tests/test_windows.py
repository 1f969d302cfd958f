import numpy as np
import pandas as pd
import pytest

from course_lib.data.prices import load_prices
from course_lib.data.windows import StandardScaler, chronological_split, make_task, make_windows


def test_make_windows_shapes_and_targets():
    T, C, L = 50, 3, 5
    feats = np.arange(T * C, dtype=float).reshape(T, C)
    daily = np.random.default_rng(0).normal(size=T)
    X, y, origins = make_windows(feats, daily, L, (1, 3), "returns")
    assert X.shape == (T - L + 1 - 3, L, C) and y.shape == (len(X), 2)
    for i, t in enumerate(origins):
        np.testing.assert_array_equal(X[i], feats[t - L + 1 : t + 1])
        assert y[i, 0] == pytest.approx(daily[t + 1], abs=1e-6)
        assert y[i, 1] == pytest.approx(daily[t + 1 : t + 4].sum(), abs=1e-5)
    var = np.abs(daily) + 0.5
    _, yv, _ = make_windows(feats, var, L, (2,), "volatility")
    assert yv[0, 0] == pytest.approx(0.5 * np.log(var[L : L + 2].mean()), abs=1e-6)


def test_no_target_appears_in_any_input_window_of_same_or_earlier_samples():
    # Features and targets carry the row index, so we can see exactly which days each sample uses.
    T, L = 200, 10
    rows = np.arange(T, dtype=float)
    X, _, origins = make_windows(rows[:, None], rows, L, (1, 5), "returns")
    latest_input = np.maximum.accumulate(X[:, :, 0].max(axis=1))  # latest day seen by samples 0..i
    first_target = origins + 1  # y uses daily[t+1 .. t+h]
    assert (latest_input < first_target).all()
    assert (latest_input == origins).all()


def test_make_windows_rejects_bad_input():
    with pytest.raises(ValueError, match="too short"):
        make_windows(np.zeros((5, 1)), np.zeros(5), 5, (1,), "returns")
    with pytest.raises(ValueError, match="daily_target"):
        make_windows(np.zeros((5, 1)), np.zeros(4), 2, (1,), "returns")
    with pytest.raises(ValueError, match="unknown task"):
        make_windows(np.zeros((5, 1)), np.zeros(5), 2, (1,), "prices")


def test_splits_are_chronological_with_a_gap(returns_task):
    t = returns_task
    h = max(t.horizons)
    idx = t.frame.index
    assert idx[t.train.rows + h].max() <= pd.Timestamp("2006-12-31")
    assert t.val.dates.min() > pd.Timestamp("2006-12-31")
    assert idx[t.val.rows + h].max() <= pd.Timestamp("2008-12-31")
    assert t.test.dates.min() > pd.Timestamp("2008-12-31")
    assert t.train.dates.max() < t.val.dates.min() < t.test.dates.min()
    # every split is in time order and the targets of one split never reach into the next
    for name in ("train", "val", "test"):
        assert np.all(np.diff(t.split(name).rows) > 0)
    assert t.train.rows.max() + h < t.val.rows.min()
    assert t.val.rows.max() + h < t.test.rows.min()


def test_split_by_target_keeps_every_boundary_day_and_test_end_cuts_the_test_split():
    dates = pd.bdate_range("2006-12-20", "2009-01-15")
    origins = np.arange(len(dates) - 5)
    kw = dict(train_end="2006-12-31", val_end="2008-12-31")
    for h in (1, 5):
        by_origin = chronological_split(dates, origins, h, **kw)
        by_target = chronological_split(dates, origins, h, **kw, split_by="target", test_end="2009-01-09")
        first, last = dates[origins + 1], dates[origins + h]
        np.testing.assert_array_equal(by_target["train"], by_origin["train"])  # the same rule for training
        np.testing.assert_array_equal(
            by_target["val"],
            np.asarray((first > pd.Timestamp(kw["train_end"])) & (last <= pd.Timestamp(kw["val_end"]))),
        )
        np.testing.assert_array_equal(
            by_target["test"],
            np.asarray((first > pd.Timestamp(kw["val_end"])) & (last <= pd.Timestamp("2009-01-09"))),
        )
        # the origin rule drops the sample whose origin is the last day of a split; the target rule keeps it
        straddle = origins[dates[origins] == pd.Timestamp("2008-12-31")]
        assert not by_origin["test"][straddle].any() and by_target["test"][straddle].all()
        # no sample is in two splits, and at h = 1 every origin up to the test end is in one
        total = by_target["train"].astype(int) + by_target["val"] + by_target["test"]
        assert total.max() == 1 and (h > 1 or total[dates[origins + 1] <= pd.Timestamp("2009-01-09")].all())
    with pytest.raises(ValueError, match="split rule"):
        chronological_split(dates, origins, 1, **kw, split_by="dates")
    with pytest.raises(ValueError, match="test_end"):
        chronological_split(dates, origins, 1, **kw, test_end="2008-06-30")


def test_task_targets_match_the_frame(vol_task, returns_task):
    r = returns_task.frame["ret"].to_numpy()
    t = returns_task.test.rows[0]
    assert returns_task.test.y[0, 1] == pytest.approx(r[t + 1 : t + 6].sum(), abs=1e-4)
    v = vol_task.frame[vol_task.target_column].to_numpy()
    assert vol_task.target_column == "var_parkinson"
    t = vol_task.val.rows[3]
    assert vol_task.val.y[3, 0] == pytest.approx(0.5 * np.log(v[t + 1]), abs=1e-5)


def test_scaler_never_sees_validation_or_test_data():
    prices = load_prices("^GSPC", offline=True)
    a = make_task("returns", prices=prices)
    shocked = prices.copy()
    late = shocked.index > pd.Timestamp("2006-12-31")
    rng = np.random.default_rng(1)
    shocked.loc[late, ["Open", "High", "Low", "Close"]] *= rng.uniform(0.5, 2.0, size=(late.sum(), 1))
    shocked.loc[late, "Volume"] *= 100
    b = make_task("returns", prices=shocked)
    np.testing.assert_array_equal(a.scaler.mean_, b.scaler.mean_)
    np.testing.assert_array_equal(a.scaler.scale_, b.scaler.scale_)
    np.testing.assert_array_equal(a.train.X, b.train.X)
    assert not np.array_equal(a.test.X, b.test.X)


def test_training_inputs_are_standardised(returns_task):
    x = returns_task.train.X[:, -1, :]
    assert np.abs(x.mean(axis=0)).max() < 0.1
    assert np.abs(x.std(axis=0) - 1).max() < 0.1


def test_task_errors():
    with pytest.raises(ValueError, match="unknown task"):
        make_task("prices")
    with pytest.raises(ValueError, match="unknown features"):
        make_task("returns", features=["ret", "sentiment"])
    with pytest.raises(ValueError, match="split is empty"):
        make_task("returns", ticker="AAPL", train_end="2012-12-31", val_end="2013-03-01")
    with pytest.raises(RuntimeError, match="not fitted"):
        StandardScaler().transform(np.zeros((2, 2)))


def test_tensors_and_repr(returns_task):
    X, y = returns_task.tensors("val")
    assert X.shape == returns_task.val.X.shape and str(X.dtype) == "torch.float32"
    assert "train=" in repr(returns_task)
    with pytest.raises(ValueError, match="unknown split"):
        returns_task.split("holdout")


def test_stock_task_uses_the_default_split():
    t = make_task("volatility", ticker="IBM", lookback=10)
    assert t.test.dates.min().year == 2009 and t.test.dates.max().year == 2013


def test_make_task_names_the_column_and_date_of_a_nan_price():
    prices = load_prices("^GSPC", end="2010-12-31")
    day = prices.index[1000]
    prices.loc[day, "Close"] = np.nan
    with pytest.raises(ValueError, match=rf"NaN values \(1 of them; first in column 'Close' on {day.date()}"):
        make_task("returns", prices=prices)
