"""Tests of the panel designs of course_lib.causal.designs: two-way fixed effects
difference-in-differences (with unit-clustered and Driscoll-Kraay standard errors) and synthetic
control with placebos in space, on simulated panels with a known effect."""

import numpy as np
import pandas as pd
import pytest

from course_lib.causal import difference_in_differences, synthetic_control, synthetic_weights


def did_panel(n_units=40, n_periods=60, n_treated=10, start=40, effect=0.5, rho=0.5, seed=0):
    """y_it = a_i + l_t + effect 1{i treated, t >= start} + e_it, AR(1) errors: parallel trends hold."""
    rng = np.random.default_rng(seed)
    e = np.zeros((n_periods, n_units))
    shocks = rng.standard_normal((n_periods, n_units))
    for t in range(n_periods):
        e[t] = (rho * e[t - 1] if t else 0) + shocks[t]
    y = rng.normal(0, 2, n_units) + np.cumsum(rng.normal(0, 1, n_periods))[:, None] + e
    y[start:, :n_treated] += effect
    columns = [f"u{i}" for i in range(n_units)]
    return pd.DataFrame(y, columns=columns), columns[:n_treated], start


def test_did_recovers_a_known_effect_and_is_the_difference_of_mean_changes():
    panel, treated, start = did_panel(effect=0.5)
    res = difference_in_differences(panel, treated, start)
    assert abs(res.effect - 0.5) < 3 * res.se and res.p < 0.01 and res.ci[0] < 0.5 < res.ci[1]
    treat, control = panel[treated].mean(axis=1), panel.drop(columns=treated).mean(axis=1)
    by_hand = (treat[start:].mean() - treat[:start].mean()) - (
        control[start:].mean() - control[:start].mean()
    )
    assert res.effect == pytest.approx(by_hand, abs=1e-10)
    assert (res.n_units, res.n_treated, res.n_periods, res.n_pre) == (40, 10, 60, 40)


@pytest.mark.parametrize(
    ("cov", "shape"),
    [("cluster", {"n_units": 40, "n_treated": 10}), ("driscoll-kraay", {"n_units": 5, "n_treated": 1})],
)
def test_did_with_no_effect_rejects_at_about_the_nominal_rate(cov, shape):
    """A placebo: no effect, 100 panels; the 5% test rejects rarely (clustered SE with many units;
    Driscoll-Kraay with one treated unit among five and many periods)."""
    n_periods, start = (60, 40) if cov == "cluster" else (300, 200)
    rejections = [
        difference_in_differences(
            *did_panel(**shape, n_periods=n_periods, start=start, effect=0.0, seed=s)[:2], start, cov=cov
        ).p
        < 0.05
        for s in range(100)
    ]
    assert np.mean(rejections) <= 0.12  # nominal 0.05; binomial sd over 100 panels is 0.022


@pytest.mark.parametrize(("cov", "sm_cov"), [("cluster", "cluster"), ("driscoll-kraay", "hac-groupsum")])
def test_did_equals_the_regression_with_every_dummy(cov, sm_cov):
    """The within transformation gives the tau and the standard error of OLS on unit and period dummies."""
    import statsmodels.api as sm

    panel, treated, start = did_panel(n_units=6, n_periods=30, n_treated=2, start=20, seed=7)
    n_t, n_u = panel.shape
    period, unit = np.repeat(np.arange(n_t), n_u), np.tile(np.arange(n_u), n_t)
    d = ((unit < 2) & (period >= start)).astype(float)
    full = np.column_stack([d, np.ones_like(d), np.eye(n_u)[unit][:, 1:], np.eye(n_t)[period][:, 1:]])
    kwds = {"groups": unit} if sm_cov == "cluster" else {"time": period, "maxlags": 3}
    fit = sm.OLS(panel.to_numpy().ravel(), full).fit(cov_type=sm_cov, cov_kwds=kwds)
    ours = difference_in_differences(panel, treated, start, cov=cov, maxlags=3)
    assert ours.effect == pytest.approx(fit.params[0], abs=1e-10)
    assert ours.se == pytest.approx(fit.bse[0], rel=1e-8)


def test_did_rejects_bad_input():
    panel, treated, start = did_panel()
    with pytest.raises(ValueError, match="not columns"):
        difference_in_differences(panel, ["nope"], start)
    with pytest.raises(ValueError, match="cov"):
        difference_in_differences(panel, treated, start, cov="robust")
    with pytest.raises(ValueError, match="control"):
        difference_in_differences(panel, list(panel.columns), start)
    with pytest.raises(ValueError, match="at least two periods"):
        difference_in_differences(panel, treated, 1)
    holed = panel.copy()
    holed.iloc[3, 2] = np.nan
    with pytest.raises(ValueError, match="missing"):
        difference_in_differences(holed, treated, start)


def sc_panel(n_donors=10, n_periods=80, start=60, effect=2.0, noise=0.1, seed=0):
    """Donors load on two common factors; the treated unit's loadings are a convex mix of three donors'."""
    rng = np.random.default_rng(seed)
    factors = np.cumsum(rng.standard_normal((n_periods, 2)), axis=0)  # (T, 2)
    loadings = rng.uniform(0, 2, (2, n_donors))  # (2, J)
    donors = factors @ loadings + noise * rng.standard_normal((n_periods, n_donors))
    mix = np.zeros(n_donors)
    mix[:3] = [0.5, 0.3, 0.2]
    treated = factors @ (loadings @ mix) + noise * rng.standard_normal(n_periods)
    treated[start:] += effect
    panel = pd.DataFrame(donors, columns=[f"d{j}" for j in range(n_donors)])
    panel.insert(0, "treated", treated)
    return panel, start, mix


def test_synthetic_weights_recover_an_exact_convex_mix():
    rng = np.random.default_rng(1)
    D = rng.standard_normal((50, 6))
    w = np.array([0.0, 0.6, 0.0, 0.4, 0.0, 0.0])
    found = synthetic_weights(D @ w, D)
    assert np.all(found >= 0) and found.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(found, w, atol=1e-5)
    with pytest.raises(ValueError, match="T0"):
        synthetic_weights(D[:, 0], D[:10])


def test_synthetic_control_recovers_a_known_effect_and_ranks_first_among_placebos():
    panel, start, _ = sc_panel(effect=2.0)
    res = synthetic_control(panel, "treated", start)
    assert abs(res.effect - 2.0) < 0.2
    assert res.weights.sum() == pytest.approx(1.0) and (res.weights >= 0).all()
    # two factors, ten donors: many mixes reproduce the loadings (the weights are not unique), but the
    # pre-event fit is at the noise level (noise sd 0.1; a mix of noisy donors adds a little)
    assert res.pre_rmspe < 0.2 and res.post_rmspe > 1.5
    assert res.p == pytest.approx(1 / 11)  # the largest post/pre RMSPE ratio of 11 units
    assert list(res.placebos.index) == ["treated"] + [f"d{j}" for j in range(10)]
    np.testing.assert_allclose(res.gap, panel["treated"] - res.synthetic)
    np.testing.assert_allclose(res.placebo_gaps["treated"], res.gap)
    assert res.placebo_gaps.shape == (80, 11)


def test_synthetic_control_placebo_with_no_effect_is_rarely_significant():
    """No effect, 40 panels: the placebo-in-space p-value is at most 0.1 (rank 1 of 11) about 1 time in 11."""
    ps = [synthetic_control(sc_panel(effect=0.0, seed=s)[0], "treated", 60).p for s in range(40)]
    assert np.mean(np.array(ps) <= 0.1) <= 0.25
    assert min(ps) >= 1 / 11  # no p-value can fall below 1 / (J + 1)


def test_synthetic_control_rejects_bad_input():
    panel, start, _ = sc_panel()
    with pytest.raises(ValueError, match="not columns"):
        synthetic_control(panel, "nope", start)
    with pytest.raises(ValueError, match="two donors"):
        synthetic_control(panel[["treated", "d0"]], "treated", start)
    with pytest.raises(ValueError, match="sorted"):
        synthetic_control(panel.iloc[::-1], "treated", start)
