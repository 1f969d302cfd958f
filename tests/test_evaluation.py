import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from course_lib.data import load_prices
from course_lib.evaluation import (
    diebold_mariano,
    directional_accuracy,
    mae,
    mse,
    qlike,
    r2_oos,
    results_table,
    return_baselines,
    seed_summary,
    volatility_baselines,
)
from course_lib.windows import make_task


def test_metrics_refuse_shape_mismatch_and_nan():
    y = np.arange(5.0)
    for metric in (mse, mae, directional_accuracy):
        with pytest.raises(ValueError, match="shape mismatch"):
            metric(y, y[:, None])
    with pytest.raises(ValueError, match="finite"):
        mse(y, y * np.nan)


def test_metric_values():
    y, p = np.array([1.0, -1.0, 2.0, -2.0]), np.array([0.5, 0.5, 1.0, -1.0])
    assert mse(y, p) == pytest.approx((0.25 + 2.25 + 1 + 1) / 4)
    assert mae(y, p) == pytest.approx((0.5 + 1.5 + 1 + 1) / 4)
    assert directional_accuracy(y, p) == 0.75
    assert r2_oos(y, y, p) == 1.0 and r2_oos(y, p, p) == 0.0
    assert qlike(np.ones(3), np.ones(3)) == 0.0 and qlike(np.ones(3), 2 * np.ones(3)) > 0


@pytest.mark.parametrize("h", [1, 3])
def test_dm_matches_a_hac_regression(h):
    rng = np.random.default_rng(h)
    y = rng.normal(size=400)
    p1, p2 = y + rng.normal(size=400), y + 1.2 * rng.normal(size=400)
    res = diebold_mariano(y, p1, p2, h=h)
    d = (y - p1) ** 2 - (y - p2) ** 2
    ols = sm.OLS(d, np.ones_like(d)).fit(cov_type="HAC", cov_kwds={"maxlags": h - 1, "use_correction": False})
    T = len(d)
    hln = np.sqrt((T + 1 - 2 * h + h * (h - 1) / T) / T)
    assert res.statistic == pytest.approx(ols.tvalues[0] * hln, rel=1e-8)
    assert res.statistic < 0 and res.pvalue < 0.05  # p1 is the better forecast
    flipped = diebold_mariano(y, p2, p1, h=h)
    assert flipped.statistic == pytest.approx(-res.statistic) and flipped.pvalue == pytest.approx(res.pvalue)


def test_dm_rejects_identical_forecasts_and_2d_input():
    y = np.random.default_rng(0).normal(size=50)
    with pytest.raises(ValueError, match="identical"):
        diebold_mariano(y, y * 0, y * 0)
    with pytest.raises(ValueError, match="one horizon"):
        diebold_mariano(y[:, None], y[:, None], y[:, None] * 0)


def test_return_baselines(returns_task):
    base = return_baselines(returns_task)
    assert set(base) == {"zero", "hist_mean", "ar1"}
    for p in base.values():
        assert p.shape == returns_task.test.y.shape and np.isfinite(p).all()
    r = returns_task.frame["ret"].to_numpy()
    t = returns_task.test.rows[10]
    assert base["hist_mean"][10, 0] == pytest.approx(r[: t + 1].mean(), rel=1e-5)
    assert base["hist_mean"][10, 1] == pytest.approx(5 * r[: t + 1].mean(), rel=1e-5)


def _shock_after(prices, date, seed=0):
    shocked = prices.copy()
    late = shocked.index > pd.Timestamp(date)
    factor = np.random.default_rng(seed).uniform(0.7, 1.4, size=(late.sum(), 1))
    shocked.loc[late, ["Open", "High", "Low", "Close"]] *= np.cumprod(factor, axis=0) ** 0.1
    shocked.loc[late, "High"] *= factor[:, 0] ** 0.05 + 0.01  # wider ranges: the variance proxy moves too
    return shocked


@pytest.mark.parametrize("kind", ["returns", "volatility"])
def test_baselines_have_no_look_ahead(kind):
    prices = load_prices("^GSPC", end="2011-12-31", offline=True)
    cut = "2010-06-30"
    a = make_task(kind, prices=prices, horizons=(1, 5))
    b = make_task(kind, prices=_shock_after(prices, cut), horizons=(1, 5))
    fa = (return_baselines if kind == "returns" else volatility_baselines)(a)
    fb = (return_baselines if kind == "returns" else volatility_baselines)(b)
    h = max(a.horizons)
    safe = a.frame.index[a.test.rows + h] <= pd.Timestamp(cut)  # origins whose data are all before the cut
    assert safe.sum() > 100 and (~safe).sum() > 100
    for name in fa:
        np.testing.assert_allclose(fa[name][safe], fb[name][safe], rtol=1e-5, err_msg=name)
        assert not np.allclose(fa[name][~safe], fb[name][~safe]) or name == "zero"


def test_volatility_baselines_beat_a_constant(vol_task):
    base = volatility_baselines(vol_task)
    assert set(base) == {"ewma", "garch", "har", "log_har"}
    y = vol_task.test.y
    constant = np.full_like(y, vol_task.train.y.mean())
    for name, p in base.items():
        assert p.shape == y.shape
        assert mse(y[:, 0], p[:, 0]) < mse(y[:, 0], constant[:, 0]), name


def test_results_table(returns_task, vol_task):
    preds = return_baselines(returns_task)
    table = results_table(returns_task, preds)
    assert list(table.index.names) == ["horizon", "model"] and len(table) == 6
    assert np.isnan(table.loc[(1, "zero"), "DM"]) and np.isnan(table.loc[(1, "zero"), "DA"])
    assert {"MSE", "MAE", "R2_oos", "DA", "up_rate", "DM", "DM_p"} <= set(table.columns)
    assert table.loc[(1, "hist_mean"), "R2_oos"] == 0.0
    with pytest.raises(KeyError, match="benchmark"):
        results_table(returns_task, {"model": preds["zero"]})
    with pytest.raises(ValueError, match="shape"):
        results_table(returns_task, {**preds, "bad": preds["zero"][:, :1]})
    vt = results_table(vol_task, volatility_baselines(vol_task))
    assert "QLIKE" in vt.columns


def test_seed_summary_counts_significant_seeds(vol_task):
    base = volatility_baselines(vol_task)
    y = vol_task.test.y
    good = [base["log_har"] * 0.5 + y * 0.5 + 0.01 * s for s in range(3)]  # far better than HAR
    bad = [np.full_like(y, y.mean() + s) for s in range(3)]  # constants: far worse
    table = seed_summary(vol_task, {"good": good, "bad": bad}, base)
    assert table.loc[(1, "good"), "better (p<0.05)"] == "3/3"
    assert table.loc[(1, "bad"), "worse (p<0.05)"] == "3/3"
    assert table.loc[(1, "har"), "MSE sd"] == 0.0
    assert table.loc[(1, "good"), "MSE"] == pytest.approx(np.mean([mse(y[:, 0], g[:, 0]) for g in good]))
    with pytest.raises(ValueError, match="same number of seeds"):
        seed_summary(vol_task, {"good": good, "bad": bad[:2]}, base)
