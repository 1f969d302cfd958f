"""The sealed cross-asset hold-out: its splits never leak a test date into training, and its summary
reads the boards correctly."""

import numpy as np
import pandas as pd
import pytest

from course_lib.capstone import holdout
from course_lib.capstone.task import TRAIN_END, VAL_END
from course_lib.data.windows import make_task


@pytest.mark.parametrize("ticker", holdout.HOLDOUT_ASSETS)
def test_no_test_date_of_a_holdout_asset_reaches_its_training(ticker):
    task = holdout.holdout_task(ticker)
    frame = task.frame
    target_day = {n: frame.index[task.split(n).rows + 1] for n in ("train", "val", "test")}
    assert target_day["train"].max() <= pd.Timestamp(TRAIN_END) < target_day["val"].min()
    assert target_day["val"].max() <= pd.Timestamp(VAL_END) < target_day["test"].min()
    assert len(task.test) > 1000, "a hold-out needs several years of test targets"
    # the training windows and targets do not change when every price after the training years does
    prices = holdout.load_prices(ticker, offline=True)
    later = prices.index > pd.Timestamp(TRAIN_END)
    shocked = prices.copy()
    shocked.loc[later, "High"] *= np.exp(np.abs(np.random.default_rng(0).normal(0, 0.05, int(later.sum()))))
    again = make_task(
        "volatility", ticker=ticker, lookback=task.lookback, horizons=(1,), features=task.feature_names,
        train_end=TRAIN_END, val_end=VAL_END, prices=shocked, split_by="target", test_end=str(target_day["test"].max().date()),
    )  # fmt: skip
    assert np.array_equal(again.train.X, task.train.X) and np.array_equal(again.train.y, task.train.y)
    assert not np.array_equal(again.test.y, task.test.y)  # the probe reached the test years


def test_holdout_task_refuses_an_asset_outside_the_holdout():
    with pytest.raises(ValueError, match="hold-out assets"):
        holdout.holdout_task("^GSPC")


def _board(qlike, dm, p, mcs):
    return pd.DataFrame(
        {"QLIKE_lc": qlike, "ens DM_QLIKE": dm, "ens p_QLIKE": p, "in_MCS": mcs}, index=["a", "b", "c", "har"]
    )


def test_holdout_summary_correlates_rankings_and_names_lost_verdicts():
    reference = _board(
        [0.40, 0.42, 0.45, 0.43], [-3.0, -0.5, 4.0, np.nan], [0.001, 0.6, 0.001, np.nan], [1, 1, 0, 1]
    )
    same = _board(
        [0.50, 0.52, 0.55, 0.53], [-3.0, -0.5, 4.0, np.nan], [0.001, 0.6, 0.001, np.nan], [1, 1, 0, 1]
    )
    flipped = _board(
        [0.55, 0.52, 0.50, 0.53], [3.0, -0.5, -4.0, np.nan], [0.001, 0.6, 0.001, np.nan], [0, 1, 1, 1]
    )
    table, rho = holdout.holdout_summary({"AAPL": same, "IBM": flipped}, reference)
    assert rho.loc["AAPL", "rho"] == pytest.approx(1.0) and rho.loc["IBM", "rho"] < 0
    assert table.loc["a", ("IBM", "verdict")] == "worse" and table.loc["a", ("^GSPC", "verdict")] == "better"
    text = holdout.holdout_sentences(table, rho, {"^GSPC": "har", "AAPL": "har", "IBM": "har"})
    assert "a: better on the S&P 500; IBM worse on the hold-out." in text
    assert "b:" not in text  # no significant difference anywhere: nothing to say
    assert "AAPL: Spearman rank correlation with the S&P 500 board +1.00" in text
    with pytest.raises(ValueError, match="at least one"):
        holdout.holdout_summary({}, reference)


def test_the_committed_holdout_is_read_back_with_its_correlations_and_benchmarks(tmp_path):
    reference = _board(
        [0.40, 0.42, 0.45, 0.43], [-3.0, -0.5, 4.0, np.nan], [0.001, 0.6, 0.001, np.nan], [1, 1, 0, 1]
    )
    other = _board(
        [0.55, 0.52, 0.50, 0.53], [3.0, -0.5, -4.0, np.nan], [0.001, 0.6, 0.001, np.nan], [0, 1, 1, 1]
    )
    table, rho = holdout.holdout_summary({"IBM": other.drop(index="b")}, reference)  # b not re-fitted on IBM
    table.to_csv(tmp_path / "holdout.csv")
    back, rho_back, benchmarks = holdout.load_holdout(tmp_path)
    pd.testing.assert_frame_equal(rho_back, rho)
    assert rho.loc["IBM", "rows"] == 3 and benchmarks == {"^GSPC": "har", "IBM": "har"}
    assert back.loc["a", ("IBM", "verdict")] == "worse" and back[("IBM", "in_MCS")].dtype == bool
    assert holdout.holdout_sentences(back, rho_back, benchmarks) == holdout.holdout_sentences(
        table, rho, benchmarks
    )
    with pytest.raises(FileNotFoundError, match="make holdout"):
        holdout.load_holdout(tmp_path / "nowhere")


def test_the_pooled_training_set_holds_every_assets_training_years_and_nothing_later():
    from course_lib.capstone import capstone_task, pooled

    tasks = {"^GSPC": capstone_task(), **{a: holdout.holdout_task(a) for a in ("AAPL", "IBM")}}
    train = pooled.pooled_training_set(tasks)
    assert len(train.y) == sum(len(t.train) for t in tasks.values())
    assert train.target_day.max() <= pd.Timestamp(TRAIN_END)
    for asset, task in tasks.items():
        held = set(task.frame.index[np.concatenate([task.val.rows, task.test.rows]) + 1])
        mine = train.target_day[train.asset == asset]
        assert not held & set(mine), f"{asset}: a validation or test day entered the pooled training set"
        assert np.array_equal(train.X[train.asset == asset], task.train.X)  # its own scaler, unchanged
    late = make_task(
        "volatility", ticker="AAPL", lookback=60, horizons=(1,), features=list(tasks["AAPL"].feature_names),
        train_end="2007-12-31", val_end="2008-12-31", prices=holdout.load_prices("AAPL", offline=True),
        split_by="target",
    )  # fmt: skip
    with pytest.raises(ValueError, match="reaches the validation years"):
        pooled.pooled_training_set({**tasks, "AAPL": late})
    with pytest.raises(ValueError, match="at least two"):
        pooled.pooled_training_set({"AAPL": tasks["AAPL"]})


def test_pooled_entries_forecast_every_asset_from_one_model_per_seed():
    from course_lib.capstone import pooled

    tasks = {a: holdout.holdout_task(a) for a in ("AAPL", "IBM")}
    entries = pooled.pooled_entries("GRU", tasks, seeds=(0, 1), size="small", max_epochs=1, batch_size=512)
    assert set(entries) == set(tasks)
    for asset, e in entries.items():
        assert len(e.test) == 2 and e.test[0].shape == (len(tasks[asset].test), 1) and e.family == "pooled"
    assert not np.allclose(entries["AAPL"].test[0], entries["AAPL"].test[1])  # two seeds, two models
    with pytest.raises(ValueError, match="quantiles"):
        pooled.pooled_entries("TFT", tasks, seeds=(0,), max_epochs=1)
