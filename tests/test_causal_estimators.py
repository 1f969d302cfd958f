"""Chapter 06f's estimators against closed forms and simulated effects: IPW, AIPW (coverage over
repetitions, double robustness), g-computation and the IPW marginal structural model under
treatment-confounder feedback (where regression on the history is biased), the E-value and
Cinelli-Hazlett's sensitivity quantities, robust Granger tests, and the market-model event study."""

import numpy as np
import pandas as pd
import pytest

from course_lib.causal import (
    aipw_effect,
    bootstrap,
    e_value,
    event_study,
    g_computation,
    granger_tests,
    history_regression,
    ipw_effect,
    msm_ipw,
    omitted_variable_bias,
    overlap_table,
    partial_r2,
    propensity_scores,
    regression_effect,
    robustness_value,
    simulate_common_driver,
    simulate_feedback,
    simulate_heteroskedastic_pair,
    simulate_treatment,
)


def _covariates(data):
    return data.x[:, -2:, 0]  # c_{L-1}, c_L: the outcome's covariates (c_L alone drives the treatment)


def test_feedback_simulator_closed_form_effect_is_each_units_effect():
    for kwargs in ({}, {"steps": 4, "feedback": -1.0, "persistence": 0.3, "effect": 0.2}):
        data = simulate_feedback(500, seed=1, **kwargs)
        assert np.allclose(data.y_always - data.y_never, data.effect)
    assert np.isclose(simulate_feedback(10).effect, 3 * 0.6 - 0.5 * (1 + 0.6))


def test_history_regression_is_biased_under_feedback_and_the_g_methods_are_not():
    rows = []
    for seed in range(12):
        data = simulate_feedback(2000, seed=seed)
        g = g_computation(data, 1) - g_computation(data, 0)
        rows.append([history_regression(data), g, msm_ipw(data)])
    history, g, msm = np.mean(rows, axis=0)
    assert history > 1.8, f"regression on the history should overstate the effect 1.0 by far, got {history}"
    assert abs(g - 1.0) < 0.05, f"g-computation is correctly specified here, got {g}"
    assert abs(msm - 1.0) < 0.15, f"the IPW marginal structural model is consistent, got {msm}"


def test_g_computation_bootstrap_interval_covers_the_truth():
    def effect(d):
        return g_computation(d, 1) - g_computation(d, 0)

    hits = [
        bootstrap(effect, simulate_feedback(1000, seed=seed), n_boot=40, seed=seed).covers(1.0)
        for seed in range(30)
    ]
    assert np.mean(hits) >= 0.8, f"a 95% bootstrap interval covered the truth in {np.mean(hits):.0%} of runs"


def test_ipw_and_aipw_intervals_cover_the_true_effect_over_repetitions():
    hits = {"IPW": [], "AIPW": [], "regression": []}
    for seed in range(60):
        data = simulate_treatment(1000, confounding=1.0, seed=seed)
        for est in (
            ipw_effect(data.outcome, data.treatment, _covariates(data)),
            aipw_effect(data.outcome, data.treatment, _covariates(data)),
            regression_effect(data.outcome, data.treatment, _covariates(data)),
        ):
            hits[est.method].append(est.covers(1.0))
    for method, h in hits.items():
        assert np.mean(h) >= 0.88, f"{method}: the 95% interval covered the truth in {np.mean(h):.0%} of runs"


def test_aipw_is_doubly_robust_and_ipw_needs_the_right_propensity():
    rng = np.random.default_rng(0)
    ipw_wrong, aipw_wrong_e, aipw_wrong_mu = [], [], []
    for seed in range(10):
        data = simulate_treatment(3000, confounding=1.0, seed=seed)
        c = data.x[:, :, 0]
        true_e = 1 / (1 + np.exp(-c[:, -1]))  # the simulator's propensity at confounding 1
        noise = rng.standard_normal((len(c), 1))  # covariates that explain nothing
        flat = np.full(len(c), data.treatment.mean())  # a propensity that ignores the confounder
        ipw_wrong.append(ipw_effect(data.outcome, data.treatment, noise, propensity=flat).estimate)
        aipw_wrong_e.append(aipw_effect(data.outcome, data.treatment, _covariates(data), flat).estimate)
        aipw_wrong_mu.append(aipw_effect(data.outcome, data.treatment, noise, true_e).estimate)
    assert np.mean(ipw_wrong) > 1.5, "IPW with a propensity blind to the confounder is the naive estimate"
    assert abs(np.mean(aipw_wrong_e) - 1.0) < 0.05, "right outcome model, wrong propensity: still unbiased"
    assert abs(np.mean(aipw_wrong_mu) - 1.0) < 0.1, "wrong outcome model, right propensity: still unbiased"


def test_overlap_table_flags_extreme_propensities():
    data = simulate_treatment(2000, confounding=3.0, seed=0)
    e = propensity_scores(_covariates(data), data.treatment)
    table = overlap_table(e, data.treatment)
    assert table.loc["control", "share outside (0.05, 0.95)"] > 0.2
    assert (table["effective size"] < table["units"]).all()


def test_e_value_closed_form():
    # RR = exp(0.91 d) with d = estimate / sd; E = RR + sqrt(RR (RR - 1))
    rr = 2.0
    point, _ = e_value(np.log(rr) / 0.91, 1.0)
    assert np.isclose(point, 2 + np.sqrt(2))
    assert np.isclose(e_value(-np.log(rr) / 0.91, 1.0)[0], 2 + np.sqrt(2)), "protective effects invert RR"
    assert e_value(0.5, 1.0, lower=-0.1, upper=1.1)[1] == 1.0, "an interval through 0 needs no confounder"
    assert 1 < e_value(0.5, 1.0, lower=0.2, upper=0.8)[1] < point


def test_cinelli_hazlett_bias_formula_is_exact_and_the_robustness_value_explains_away():
    import statsmodels.api as sm

    data = simulate_treatment(3000, confounding=2.0, hidden=2.0, seed=0)
    X, a, y, v = _covariates(data), data.treatment, data.outcome, data.unobserved
    short = sm.OLS(y, sm.add_constant(np.column_stack([a, X]))).fit()  # classical errors, as in the paper
    long = sm.OLS(y, sm.add_constant(np.column_stack([a, X, v]))).fit()
    r2_yz = partial_r2(y, v, np.column_stack([a, X]))
    r2_dz = partial_r2(a, v, X)
    bias = omitted_variable_bias(short.bse[1], short.df_resid, r2_yz, r2_dz)
    assert np.isclose(abs(short.params[1] - long.params[1]), bias, rtol=1e-8)
    rv = robustness_value(short.tvalues[1], short.df_resid)
    assert np.isclose(omitted_variable_bias(short.bse[1], short.df_resid, rv, rv), abs(short.params[1]))
    assert robustness_value(short.tvalues[1], short.df_resid, alpha=0.05) < rv
    assert robustness_value(0.5, 100, alpha=0.05) == 0.0, "an insignificant estimate has RV_alpha = 0"


def test_robust_granger_keeps_its_size_where_the_f_test_does_not():
    rejections = {"nonrobust": 0, "HC3": 0}
    for seed in range(80):
        df = pd.DataFrame(simulate_heteroskedastic_pair(500, seed=seed), columns=["x", "y"])
        for cov in rejections:
            table = granger_tests(
                df, 2, cov_type=cov, correction="bonferroni", check_stationary=False
            ).set_index(["cause", "effect"])
            rejections[cov] += table.loc[("x", "y"), "p"] < 0.05
    assert rejections["nonrobust"] / 80 > 0.15, "x's past sets y's variance: the F test over-rejects"
    assert rejections["HC3"] / 80 < 0.1, "the robust Wald test keeps its 5% size"


def test_an_omitted_common_driver_creates_granger_causality_that_vanishes_with_it():
    df = pd.DataFrame(simulate_common_driver(1000, seed=0), columns=["x", "y", "z"])
    without = granger_tests(df[["x", "y"]], 3).set_index(["cause", "effect"])
    with_z = granger_tests(df, 3).set_index(["cause", "effect"])
    assert without.loc[("x", "y"), "reject"], "without z, x's past predicts y"
    assert not with_z.loc[("x", "y"), "reject"], "with z in the VAR, x adds nothing"
    m = len(with_z)
    assert np.allclose(
        granger_tests(df, 3, correction="bonferroni")["p (bonferroni)"],
        np.minimum(1, granger_tests(df, 3)["p"] * m),
    )


def test_event_study_recovers_a_planted_abnormal_return():
    rng = np.random.default_rng(0)
    dates = pd.bdate_range("2010-01-01", periods=600)
    market = pd.Series(0.01 * rng.standard_normal(600), index=dates)
    asset = 0.0002 + 1.3 * market + 0.005 * rng.standard_normal(600)
    asset.iloc[500] += 0.05  # the event
    study = event_study(asset, market, dates[500], window=(-1, 1))
    assert abs(study.beta - 1.3) < 0.1
    assert abs(study.car - 0.05) < 0.02 and study.p < 1e-4 and study.placebo_p < 0.01
    quiet = event_study(asset, market, dates[400], window=(-1, 1))
    assert quiet.p > 0.01
    with pytest.raises(ValueError, match="not enough data"):
        event_study(asset, market, dates[100])
