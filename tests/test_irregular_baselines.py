"""The thinned-data baselines of chapter 06c: the calendar-time EWMA and forward-filled HAR / log-HAR."""

import numpy as np
import pandas as pd
import pytest

from course_lib.data.irregular import make_irregular
from course_lib.data.windows import make_task
from course_lib.evaluation import volatility_baselines
from course_lib.evaluation.irregular_baselines import (
    IRREGULAR_BASELINES,
    RISKMETRICS_RATE,
    forward_filled_task,
    irregular_ewma,
    thinned_volatility_baselines,
)


def test_irregular_ewma_with_unit_gaps_and_no_missing_day_is_the_usual_ewma():
    v = np.random.default_rng(0).gamma(2.0, size=200)
    rate = 0.3
    expected = pd.Series(v).ewm(alpha=1 - np.exp(-rate), adjust=False).mean().to_numpy()
    got = irregular_ewma(v, np.arange(200.0), np.ones(200, bool), rate)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_irregular_ewma_discounts_by_the_calendar_gap_and_carries_the_level():
    rate, v = 0.2, np.array([4.0, 100.0, 100.0, 1.0])
    got = irregular_ewma(v, np.array([0.0, 1.0, 2.0, 3.0]), np.array([True, False, False, True]), rate)
    w = np.exp(-3 * rate)  # three days since the last kept one
    np.testing.assert_allclose(got, [4.0, 4.0, 4.0, w * 4.0 + (1 - w) * 1.0])
    # the same two observations a weekend apart (Friday -> Monday) against one day apart
    friday_monday = irregular_ewma(np.array([4.0, 1.0]), np.array([0.0, 3.0]), np.ones(2, bool), rate)
    consecutive = irregular_ewma(np.array([4.0, 1.0]), np.array([0.0, 1.0]), np.ones(2, bool), rate)
    assert friday_monday[-1] < consecutive[-1]  # the longer gap trusts the new day more


def test_irregular_ewma_reads_no_later_day_and_refuses_bad_inputs():
    rng = np.random.default_rng(1)
    v, t, kept = (
        rng.gamma(2.0, size=50),
        np.cumsum(rng.integers(1, 4, 50)).astype(float),
        rng.random(50) > 0.4,
    )
    base = irregular_ewma(v, t, kept, 0.1)
    changed = v.copy()
    changed[30:] *= 10
    np.testing.assert_array_equal(irregular_ewma(changed, t, kept, 0.1)[:30], base[:30])
    with pytest.raises(ValueError, match="strictly increasing"):
        irregular_ewma(v, t[::-1], kept, 0.1)
    with pytest.raises(ValueError, match="rate must be > 0"):
        irregular_ewma(v, t, kept, 0.0)
    with pytest.raises(ValueError, match="mark it unobserved"):
        irregular_ewma(np.where(kept, np.nan, v), t, kept, 0.1)


def test_riskmetrics_rate_gives_094_per_average_trading_day():
    assert np.exp(-RISKMETRICS_RATE * 365.25 / 252) == pytest.approx(0.94)


@pytest.fixture(scope="module")
def task():
    return make_task("volatility", lookback=10)


def test_thinned_baselines_equal_the_full_ones_when_nothing_is_removed(task):
    full = volatility_baselines(task)
    thinned = thinned_volatility_baselines(make_irregular(task, 0.0))
    assert set(thinned) == set(IRREGULAR_BASELINES)
    np.testing.assert_array_equal(thinned["har (ffill)"], full["har"])
    np.testing.assert_array_equal(thinned["log_har (ffill)"], full["log_har"])
    assert thinned["ewma (irregular)"].shape == task.test.y.shape
    assert np.isfinite(thinned["ewma (irregular)"]).all()


def test_thinned_baselines_see_only_the_kept_days(task):
    """Changing the proxy on removed days changes no forecast; on kept days it does."""
    irregular = make_irregular(task, 0.5, seed=3)
    before = thinned_volatility_baselines(irregular)
    column, factor = task.target_column, np.random.default_rng(0).uniform(2.0, 4.0, len(task.frame))
    for days, moves in ((~irregular.observed, False), (irregular.observed, True)):
        frame = task.frame.copy()
        frame.loc[frame.index[days], column] *= factor[days]  # not one factor: log-HAR would absorb it
        moved = make_irregular(type(task)(**{**task.__dict__, "frame": frame, "cache": {}}), 0.5, seed=3)
        after = thinned_volatility_baselines(moved)
        for name in IRREGULAR_BASELINES:
            assert np.allclose(after[name], before[name]) != moves, (name, moves)
    assert not np.allclose(before["har (ffill)"], volatility_baselines(task)["har"])
    with pytest.raises(ValueError, match="'val' or 'test'"):
        thinned_volatility_baselines(irregular, "train")


def test_forward_filled_task_fills_removed_days_from_the_last_kept_one(task):
    irregular = make_irregular(task, 0.5, seed=4)
    filled = forward_filled_task(irregular).frame[task.target_column].to_numpy()
    proxy, kept = task.frame[task.target_column].to_numpy(), irregular.observed
    first = int(np.argmax(kept))
    last_kept = np.maximum.accumulate(np.where(kept, np.arange(len(kept)), -1))  # index of the last kept day
    np.testing.assert_array_equal(filled[first:], proxy[last_kept[first:]])
    np.testing.assert_array_equal(forward_filled_task(irregular).train.y, task.train.y)  # targets untouched
