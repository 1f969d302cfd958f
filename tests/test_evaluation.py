import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from course_lib.data.prices import load_prices
from course_lib.data.windows import make_task
from course_lib.evaluation import (
    apply_correction,
    benchmark_rule,
    clark_west,
    diebold_mariano,
    directional_accuracy,
    level_correct,
    level_shift,
    loss_series,
    mae,
    model_confidence_set,
    mse,
    newey_west_lags,
    qlike,
    r2_oos,
    results_table,
    return_baselines,
    seed_summary,
    spa_test,
    verdict_summary,
    verdicts,
    volatility_baselines,
)
from course_lib.evaluation.correction import MIN_KNOWN


def _ar1(rng, n, phi):
    e = rng.normal(size=n)
    for t in range(1, n):
        e[t] += phi * e[t - 1]
    return e


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


def test_qlike_loss_is_taken_on_variances_of_log_vols():
    rng = np.random.default_rng(0)
    v, f = rng.normal(size=50), rng.normal(size=50)
    assert loss_series(v, f, "qlike").mean() == pytest.approx(qlike(np.exp(2 * v), np.exp(2 * f)), rel=1e-12)
    np.testing.assert_allclose(loss_series(v, f, "se"), (v - f) ** 2)
    np.testing.assert_allclose(loss_series(v, f, "ae"), np.abs(v - f))
    with pytest.raises(ValueError, match="loss must be"):
        loss_series(v, f, "mape")


def test_newey_west_default_lag():
    assert newey_west_lags(100) == 4  # floor(4 * 1)
    assert newey_west_lags(2500) == int(np.floor(4 * 25 ** (2 / 9))) == 8
    assert newey_west_lags(100, h=10) == 9  # overlapping targets need at least h - 1


@pytest.mark.parametrize("loss", ["se", "ae", "qlike"])
@pytest.mark.parametrize("h", [1, 5])
def test_dm_matches_statsmodels_hac_on_autocorrelated_data(loss, h):
    rng = np.random.default_rng(h)
    T = 600
    y = 0.3 * _ar1(rng, T, 0.6)
    p1, p2 = y + 0.3 * _ar1(rng, T, 0.7), y + 0.36 * _ar1(rng, T, 0.7)
    res = diebold_mariano(y, p1, p2, h=h, loss=loss)
    K = newey_west_lags(T, h)
    assert res.lags == K
    d = loss_series(y, p1, loss) - loss_series(y, p2, loss)
    assert abs(np.corrcoef(d[1:], d[:-1])[0, 1]) > 0.2  # the differential really is autocorrelated
    ols = sm.OLS(d, np.ones_like(d)).fit(cov_type="HAC", cov_kwds={"maxlags": K, "use_correction": False})
    hln = np.sqrt((T + 1 - 2 * h + h * (h - 1) / T) / T)
    assert res.statistic == pytest.approx(ols.tvalues[0] * hln, rel=1e-8)
    flipped = diebold_mariano(y, p2, p1, h=h, loss=loss)
    assert flipped.statistic == pytest.approx(-res.statistic) and flipped.pvalue == pytest.approx(res.pvalue)


def test_dm_newey_west_holds_its_size_where_lag_zero_does_not():
    """Equal accuracy, autocorrelated loss differentials: the 5% test should reject about 5% of the time."""
    rng = np.random.default_rng(0)
    reject = {"nw": 0, "none": 0}
    n_rep, T = 400, 500
    for _ in range(n_rep):
        y = np.zeros(T)
        p1, p2 = _ar1(rng, T, 0.7), _ar1(rng, T, 0.7)  # same distribution: neither is better
        reject["nw"] += diebold_mariano(y, p1, p2).pvalue < 0.05
        reject["none"] += diebold_mariano(y, p1, p2, lags=0).pvalue < 0.05
    assert reject["nw"] / n_rep < 0.10
    assert reject["none"] / n_rep > 0.15  # h - 1 = 0 lags: far too many false wins


def test_qlike_dm_is_robust_to_a_noisy_proxy_where_se_is_not():
    """Patton (2011): against a noisy proxy, squared error of log vol prefers a biased forecast; QLIKE does not."""
    rng = np.random.default_rng(1)
    T = 3000
    true_logvol = 0.4 * _ar1(rng, T, 0.95) / 3
    proxy_var = np.exp(2 * true_logvol) * rng.chisquare(1, size=T)  # unbiased, noisy daily proxy
    y = 0.5 * np.log(proxy_var)
    biased = true_logvol + 0.5 * np.mean(np.log(rng.chisquare(1, size=100_000)))  # E log chi2_1 = -1.27
    se = diebold_mariano(y, true_logvol, biased, loss="se")
    ql = diebold_mariano(y, true_logvol, biased, loss="qlike")
    assert se.statistic > 0 and se.pvalue < 0.05  # squared error: the true variance 'loses'
    assert ql.statistic < 0 and ql.pvalue < 0.05  # QLIKE: the true variance wins


def test_dm_rejects_identical_forecasts_2d_input_and_unknown_loss():
    y = np.random.default_rng(0).normal(size=50)
    with pytest.raises(ValueError, match="identical"):
        diebold_mariano(y, y * 0, y * 0)
    with pytest.raises(ValueError, match="one horizon"):
        diebold_mariano(y[:, None], y[:, None], y[:, None] * 0)
    with pytest.raises(ValueError, match="loss must be"):
        diebold_mariano(y, y, y * 0, loss="mape")


def test_clark_west_matches_hac_regression_and_finds_small_predictability():
    rng = np.random.default_rng(3)
    T = 2000
    signal = _ar1(rng, T, 0.5)
    y = 0.1 * signal + rng.normal(size=T)
    large = 0.1 * signal + 0.05 * rng.normal(size=T)  # a noisy estimate of a real signal
    res = clark_west(y, large, np.zeros(T))
    f = y**2 - ((y - large) ** 2 - large**2)
    ols = sm.OLS(f, np.ones(T)).fit(cov_type="HAC", cov_kwds={"maxlags": res.lags, "use_correction": False})
    assert res.statistic == pytest.approx(ols.tvalues[0], rel=1e-8)
    assert res.statistic > 0 and res.pvalue < 0.05
    noise_only = clark_west(y, 0.05 * rng.normal(size=T), np.zeros(T))  # nests zero, adds only noise
    assert noise_only.pvalue > 0.05


@pytest.mark.parametrize("method", ["variance", "lognormal"])
def test_level_shift_undoes_a_level_error(method):
    rng = np.random.default_rng(4)
    y_val = rng.normal(size=(800, 2))
    noise = 0.3 * rng.normal(size=(800, 2))
    pred = y_val + noise - 0.4  # far too low, like exp(E log v)
    shift = level_shift(y_val, pred, method)
    assert shift.shape == (2,)
    corrected = pred + shift
    if method == "variance":  # exactly the QLIKE-optimal multiplier on the data it was learnt on
        np.testing.assert_allclose(np.mean(np.exp(2 * (y_val - corrected)), axis=0), 1.0, rtol=1e-10)
    for j in range(2):
        assert (
            loss_series(y_val[:, j], corrected[:, j], "qlike").mean()
            < loss_series(y_val[:, j], pred[:, j], "qlike").mean()
        )
    # Gaussian log errors: the two forms agree
    assert level_shift(y_val, pred, "lognormal") == pytest.approx(
        level_shift(y_val, pred, "variance"), abs=0.02
    )
    with pytest.raises(ValueError, match="method"):
        level_shift(y_val, pred, "median")
    out = level_correct({"a": pred, "b": pred}, {"a": pred}, y_val, method)
    assert set(out) == {"a"}


def test_model_confidence_set_and_spa():
    rng = np.random.default_rng(5)
    T = 1000
    good = rng.normal(size=T) ** 2
    losses = pd.DataFrame({"a": good, "b": good + 0.01 * rng.normal(size=T), "bad": good + 1.0})
    mcs = model_confidence_set(losses)
    assert list(mcs.index) == ["a", "b", "bad"]
    assert mcs.loc["a", "in_MCS"] and mcs.loc["b", "in_MCS"] and not mcs.loc["bad", "in_MCS"]
    assert model_confidence_set(losses).equals(mcs)  # seeded: reproducible
    with pytest.raises(ValueError, match="two models"):
        model_confidence_set(losses[["a"]])
    assert spa_test(losses["bad"], losses[["a", "b"]])["consistent"] < 0.05
    assert spa_test(losses["a"], losses[["b", "bad"]])["consistent"] > 0.1


def test_return_baselines(returns_task):
    r = returns_task.frame["ret"].to_numpy()
    t = returns_task.test.rows[10]
    wf = return_baselines(returns_task, protocol="walk_forward")
    frozen = return_baselines(returns_task)
    for base in (wf, frozen):
        assert set(base) == {"zero", "hist_mean", "ar1"}
        for p in base.values():
            assert p.shape == returns_task.test.y.shape and np.isfinite(p).all()
    assert wf["hist_mean"][10, 0] == pytest.approx(r[: t + 1].mean(), rel=1e-5)
    assert wf["hist_mean"][10, 1] == pytest.approx(5 * r[: t + 1].mean(), rel=1e-5)
    train_mean = r[: returns_task.fit_end_row + 1].mean()
    np.testing.assert_allclose(frozen["hist_mean"][:, 1], 5 * train_mean, rtol=1e-5)
    with pytest.raises(ValueError, match="protocol"):
        return_baselines(returns_task, protocol="rolling")


def _shock_after(prices, date, seed=0):
    shocked = prices.copy()
    late = shocked.index > pd.Timestamp(date)
    factor = np.random.default_rng(seed).uniform(0.7, 1.4, size=(late.sum(), 1))
    shocked.loc[late, ["Open", "High", "Low", "Close"]] *= np.cumprod(factor, axis=0) ** 0.1
    shocked.loc[late, "High"] *= (
        1.0 + 0.05 * factor[:, 0]
    )  # wider ranges (never below the close): the proxy moves too
    return shocked


@pytest.mark.parametrize("protocol", ["frozen", "walk_forward"])
@pytest.mark.parametrize("kind", ["returns", "volatility"])
def test_baselines_have_no_look_ahead(kind, protocol):
    prices = load_prices("^GSPC", end="2011-12-31", offline=True)
    cut = "2010-06-30"
    a = make_task(kind, prices=prices, horizons=(1, 5))
    b = make_task(kind, prices=_shock_after(prices, cut), horizons=(1, 5))
    fn = return_baselines if kind == "returns" else volatility_baselines
    fa, fb = fn(a, protocol=protocol), fn(b, protocol=protocol)
    h = max(a.horizons)
    safe = a.frame.index[a.test.rows + h] <= pd.Timestamp(cut)  # origins whose data are all before the cut
    assert safe.sum() > 100 and (~safe).sum() > 100
    for name in fa:
        np.testing.assert_allclose(fa[name][safe], fb[name][safe], rtol=1e-5, err_msg=name)
        assert not np.allclose(fa[name][~safe], fb[name][~safe]) or name in ("zero", "hist_mean"), name


def _shock_between(prices, start, end, seed=0):
    """Wider daily ranges and noisier closes between two dates; prices after ``end`` untouched."""
    shocked = prices.copy()
    inside = (shocked.index > pd.Timestamp(start)) & (shocked.index <= pd.Timestamp(end))
    rng = np.random.default_rng(seed)
    wiggle = rng.uniform(0.97, 1.03, size=inside.sum())
    shocked.loc[inside, ["Open", "Close"]] = shocked.loc[inside, ["Open", "Close"]].mul(wiggle, axis=0)
    shocked.loc[inside, "High"] = (
        np.maximum(shocked.loc[inside, ["Open", "Close"]].max(axis=1), shocked.loc[inside, "High"]) * 1.02
    )
    shocked.loc[inside, "Low"] = (
        np.minimum(shocked.loc[inside, ["Open", "Close"]].min(axis=1), shocked.loc[inside, "Low"]) * 0.98
    )
    return shocked


@pytest.mark.parametrize("kind", ["returns", "volatility"])
def test_frozen_baselines_never_learn_from_later_years(kind):
    """Frozen parameters come from the training years only: test-period turmoil leaves later forecasts of
    the short-memory baselines (AR(1), HAR, log-HAR) unchanged, while walk-forward ones refit on it."""
    prices = load_prices("^GSPC", end="2013-12-31", offline=True)
    a = make_task(kind, prices=prices)
    b = make_task(kind, prices=_shock_between(prices, "2009-03-01", "2010-12-31"))
    late = a.test.dates > pd.Timestamp("2011-03-01")  # past every baseline's 22-day memory
    names = ["ar1"] if kind == "returns" else ["har", "log_har"]
    fn = return_baselines if kind == "returns" else volatility_baselines
    fa, fb = fn(a), fn(b)
    wa, wb = fn(a, protocol="walk_forward"), fn(b, protocol="walk_forward")
    for name in names:
        np.testing.assert_allclose(fa[name][late], fb[name][late], rtol=1e-5, atol=1e-6, err_msg=name)
        assert not np.allclose(wa[name][late], wb[name][late], rtol=1e-5, atol=1e-6), name


def test_frozen_log_har_matches_a_statsmodels_fit_on_the_training_years(vol_task):
    var = vol_task.frame[vol_task.target_column]
    design = np.column_stack(
        [np.ones(len(var))] + [0.5 * np.log(var.rolling(k).mean().clip(lower=1e-4)) for k in (1, 5, 22)]
    )
    keep = vol_task.train.rows >= 21
    fit = sm.OLS(vol_task.train.y[keep, 1], design[vol_task.train.rows[keep]]).fit()
    expected = fit.predict(design[vol_task.test.rows])
    np.testing.assert_allclose(
        volatility_baselines(vol_task)["log_har"][:, 1], expected, rtol=1e-4, atol=1e-5
    )


def test_volatility_baselines_beat_a_constant(vol_task):
    base = volatility_baselines(vol_task)
    assert set(base) == {"ewma", "garch", "har", "log_har"}
    y = vol_task.test.y
    constant = np.full_like(y, vol_task.train.y.mean())
    for name, p in base.items():
        assert p.shape == y.shape
        assert mse(y[:, 0], p[:, 0]) < mse(y[:, 0], constant[:, 0]), name


def test_results_table_returns(returns_task):
    preds = return_baselines(returns_task)
    table = results_table(returns_task, preds)
    assert list(table.index.names) == ["horizon", "model"] and len(table) == 6
    assert np.isnan(table.loc[(1, "zero"), "DM"]) and np.isnan(table.loc[(1, "zero"), "DA"])
    assert {"MSE", "MAE", "R2_oos", "DA", "up_rate", "DM", "DM_p", "CW", "CW_p", "in_MCS", "MCS_p"} <= set(
        table.columns
    )
    assert table.attrs["protocol"] == "frozen" and "protocol=frozen" in table.columns.name
    assert table["in_MCS"].dtype == bool and table.groupby(level="horizon")["in_MCS"].any().all()
    with pytest.raises(KeyError, match="benchmark"):
        results_table(returns_task, {"model": preds["zero"]})
    with pytest.raises(ValueError, match="shape"):
        results_table(returns_task, {**preds, "bad": preds["zero"][:, :1]})
    with pytest.raises(ValueError, match="protocol"):  # walk-forward baselines in a frozen table
        results_table(returns_task, return_baselines(returns_task, protocol="walk_forward"))


def test_results_table_volatility_level_correction(vol_task):
    base = volatility_baselines(vol_task)
    val = volatility_baselines(vol_task, "val")
    too_low = {"too_low": base["log_har"] - 0.3}
    table = results_table(
        vol_task,
        {**base, **too_low},
        val_predictions={"too_low": val["log_har"] - 0.3},
        correction="validation",
    )
    assert {"QLIKE", "QLIKE_lc", "DM", "DM_p", "DM_QLIKE", "p_QLIKE", "in_MCS"} <= set(table.columns)
    assert table.attrs["qlike_dm"] == "corrected (validation)"
    assert table.attrs["benchmark"] == benchmark_rule(vol_task) == table.attrs["benchmark_rule"]
    for h in vol_task.horizons:
        # a level error is worse raw, and the correction learnt on validation removes it entirely
        assert table.loc[(h, "too_low"), "QLIKE"] > table.loc[(h, "log_har"), "QLIKE"]
        assert table.loc[(h, "too_low"), "QLIKE_lc"] == pytest.approx(
            table.loc[(h, "log_har"), "QLIKE_lc"], rel=1e-5
        )
        assert table.loc[(h, "log_har"), "QLIKE_lc"] < table.loc[(h, "log_har"), "QLIKE"]  # the Jensen gap
        assert table.loc[(h, "har"), "QLIKE_lc"] == pytest.approx(
            loss_series(
                vol_task.test.y[:, vol_task.horizons.index(h)],
                level_correct(base, val, vol_task.val.y)["har"][:, vol_task.horizons.index(h)],
                "qlike",
            ).mean()
        )
    # a model without validation forecasts: no corrected QLIKE, and DM on QLIKE falls back to raw forecasts
    raw = results_table(vol_task, {**base, **too_low}, correction="validation")
    assert np.isnan(raw.loc[(1, "too_low"), "QLIKE_lc"]) and raw.attrs["qlike_dm"] == "raw"
    # the causal correction needs no validation forecasts: once MIN_KNOWN errors are known it removes the
    # constant level error exactly, row by row
    causal = results_table(vol_task, {**base, **too_low}, mcs_size=None)
    assert causal.attrs["qlike_dm"] == "corrected (causal)" and causal["QLIKE_lc"].notna().all()
    shifted = apply_correction("causal", {**base, **too_low}, y=vol_task.test.y, horizons=vol_task.horizons)
    warm = MIN_KNOWN + max(vol_task.horizons)
    assert np.allclose(shifted["too_low"][warm:], shifted["log_har"][warm:], atol=1e-5)
    assert not np.allclose(shifted["too_low"][:MIN_KNOWN], shifted["log_har"][:MIN_KNOWN])  # raw until then
    with pytest.raises(ValueError, match="protocol"):
        results_table(vol_task, volatility_baselines(vol_task, protocol="walk_forward"))
    wf = results_table(
        vol_task, volatility_baselines(vol_task, protocol="walk_forward"), protocol="walk_forward"
    )
    assert "walk_forward" in wf.columns.name and np.isfinite(wf["QLIKE_lc"]).all()
    with pytest.raises(KeyError, match="val_predictions"):
        results_table(vol_task, base, val_predictions={"ghost": val["har"]})


def test_seed_summary_counts_seeds_and_tests_the_ensemble(vol_task):
    base = volatility_baselines(vol_task)
    val_base = volatility_baselines(vol_task, "val")
    y, yv = vol_task.test.y, vol_task.val.y
    good = [base["log_har"] * 0.5 + y * 0.5 + 0.01 * s for s in range(3)]  # far better than log-HAR
    good_val = [val_base["log_har"] * 0.5 + yv * 0.5 + 0.01 * s for s in range(3)]
    bad = [np.full_like(y, y.mean() + s) for s in range(3)]  # constants: far worse
    bad_val = [np.full_like(yv, y.mean() + s) for s in range(3)]
    table = seed_summary(
        vol_task, {"good": good, "bad": bad}, base, val_predictions={"good": good_val, "bad": bad_val}
    )
    assert table.loc[(1, "good"), "better MSE (p<0.05)"] == "3/3"
    assert table.loc[(1, "good"), "better QLIKE (p<0.05)"] == "3/3"
    assert table.loc[(1, "bad"), "worse MSE (p<0.05)"] == "3/3"
    assert table.loc[(1, "har"), "MSE sd"] == 0.0
    assert table.loc[(1, "good"), "MSE"] == pytest.approx(np.mean([mse(y[:, 0], g[:, 0]) for g in good]))
    assert table.loc[(1, "good"), "QLIKE sd"] > 0
    assert not any(c in table.columns for c in ("DM_p", "p_QLIKE"))  # never an averaged p-value
    ens = results_table(
        vol_task,
        {"good": np.mean(good, 0), "bad": np.mean(bad, 0)} | base,
        val_predictions={"good": np.mean(good_val, 0), "bad": np.mean(bad_val, 0)},
    )
    assert table.loc[(5, "bad"), "ens DM_p"] == pytest.approx(ens.loc[(5, "bad"), "DM_p"])
    assert table.loc[(5, "good"), "ens p_QLIKE"] == pytest.approx(ens.loc[(5, "good"), "p_QLIKE"])
    assert table.loc[(1, "good"), "in_MCS"] and not table.loc[(1, "bad"), "in_MCS"]
    with pytest.raises(ValueError, match="same number of seeds"):
        seed_summary(vol_task, {"good": good, "bad": bad[:2]}, base)
    with pytest.raises(ValueError, match="one array per seed"):
        seed_summary(vol_task, {"good": good}, base, val_predictions={"good": good_val[:2]})


def test_seed_summary_returns(returns_task):
    base = return_baselines(returns_task)
    noisy = [base["ar1"] + 0.01 * np.random.default_rng(s).normal(size=base["ar1"].shape) for s in range(2)]
    table = seed_summary(returns_task, {"net": noisy}, base)
    assert {
        "MSE",
        "MSE sd",
        "R2_oos",
        "ens DM",
        "ens DM_p",
        "better (p<0.05)",
        "worse (p<0.05)",
        "in_MCS",
    } <= set(table.columns)
    assert table.loc[(1, "net"), "better (p<0.05)"].endswith("/2")


def test_verdict_summary_leads_with_the_mcs_and_groups_by_outcome(vol_task, returns_task):
    base = volatility_baselines(vol_task)
    worse = {"shifted": base["log_har"] + 0.3}
    table = results_table(vol_task, worse | base)
    text = verdict_summary(table, models=["shifted"])
    bench = table.attrs["benchmark"]
    first = text.splitlines()[0]
    assert first.startswith("At h = 1, the 90% model confidence set on corrected QLIKE keeps")
    kept = list(table.loc[1].index[table.loc[1, "in_MCS"].astype(bool)])
    assert first.split("keeps ")[1].startswith(", ".join(kept))
    assert ("shifted" not in kept) == ("none of shifted is among the best" in first)
    t = table.loc[1]
    outcome = "worse" if t.loc["shifted", "p_QLIKE"] < 0.05 else "no significant difference"
    assert f"Against {bench} on corrected QLIKE (DM), {outcome}: shifted" in text
    ret = results_table(returns_task, return_baselines(returns_task))
    assert "Clark-West" in verdict_summary(ret) and "squared error" in verdict_summary(ret)
    fake = ret.copy()  # Clark-West is one-sided: a positive statistic with a small p is a win
    fake.loc[(1, "ar1"), ["CW", "CW_p"]] = [3.0, 0.001]
    assert "Clark-West: every return forecast nests zero), better: ar1" in verdict_summary(
        fake, models=["ar1"]
    )
    with pytest.raises(KeyError, match="not rows"):
        verdict_summary(table, models=["ghost"])
    with pytest.raises(ValueError, match="results_table"):
        verdict_summary(pd.DataFrame({"MSE": [1.0]}))


def test_verdicts_read_the_table(vol_task, returns_task):
    base = volatility_baselines(vol_task)
    table = results_table(vol_task, base)
    text = verdicts(table)
    bench = benchmark_rule(vol_task)
    assert text.startswith(f"Against {bench} (protocol=frozen; benchmark={bench} (the rule)")
    for h in vol_task.horizons:
        t = table.loc[h]
        assert f"h = {h}: lowest MSE: {t['MSE'].idxmin()}" in text
        assert f"lowest corrected QLIKE: {t['QLIKE_lc'].idxmin()}" in text
        other = next(n for n in ("har", "log_har") if n != bench)
        p = t.loc[other, "p_QLIKE"]
        assert f"h = {h}: {other}: MSE {t.loc[other, 'MSE']:.4f} vs {t.loc[bench, 'MSE']:.4f}" in text
        assert (
            ("worse" if t.loc[other, "DM_QLIKE"] > 0 else "better") in text
            if p < 0.05
            else "no significant" in text
        )
    summary = seed_summary(
        vol_task, {"net": [base["log_har"] + 0.15, base["log_har"] + 0.2]}, base, correction="validation"
    )
    assert "seeds better / worse on MSE: 0/2 / 2/2" in verdicts(summary, models=["net"])
    assert "raw" in summary.columns.name and "QLIKE 0." in verdicts(summary, models=["net"])
    assert "R2_oos" in verdicts(results_table(returns_task, return_baselines(returns_task)))
    with pytest.raises(KeyError, match="not rows"):
        verdicts(table, models=["ghost"])
    with pytest.raises(ValueError, match="results_table"):
        verdicts(pd.DataFrame({"MSE": [1.0]}))
