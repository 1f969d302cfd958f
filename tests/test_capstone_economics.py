"""Chapter 08's economic reading: costs, Sharpe, certainty equivalent, the performance fee, three VaRs."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from course_lib import capstone as cap
from course_lib.capstone import economics as eco
from course_lib.evaluation import standard_baselines


@pytest.fixture(scope="module")
def task():
    return cap.capstone_task()


def test_performance_fee_of_a_shifted_portfolio_is_the_shift():
    # r_model = r_bench + 1% a day: the investor pays exactly 1% a day, whatever gamma
    # (on paper, gamma = 2: Delta^2 + (1 - 2 * 0.01) Delta - (U_model - U_bench) = 0 with
    # U_model = mean(0.02 - 0.0004, 0) = 0.0098, U_bench = mean(0.0099, -0.0101) = -0.0001:
    # Delta^2 + 0.98 Delta - 0.0099 = 0, Delta = (-0.98 + sqrt(0.9604 + 0.0396)) / 2 = 0.01)
    r_bench, r_model = np.array([0.01, -0.01]), np.array([0.02, 0.00])
    for gamma in (1.0, 2.0, 10.0):
        assert eco.performance_fee(r_model, r_bench, gamma, periods=1) == pytest.approx(0.01 * 1e4)


def test_performance_fee_against_a_hand_computed_case():
    # same mean (0), lower risk: r_model = (0, 0), r_bench = (0.1, -0.1), gamma = 2.
    # u(r) = r - r^2: U_model = 0, U_bench = mean(0.1 - 0.01, -0.1 - 0.01) = -0.01, m = 0:
    # Delta^2 + Delta - 0.01 = 0, Delta = (-1 + sqrt(1.04)) / 2 = 0.0099019514 a day
    fee = eco.performance_fee(np.zeros(2), np.array([0.1, -0.1]), gamma=2.0, periods=1)
    assert fee == pytest.approx(1e4 * (np.sqrt(1.04) - 1) / 2, rel=1e-12)
    assert fee / 1e4 == pytest.approx(0.0099019514, abs=1e-10)
    # the definition: the fee equalises the average utilities
    d = fee / 1e4
    assert np.mean(-d - d**2) == pytest.approx(np.mean([0.1 - 0.01, -0.1 - 0.01]), abs=1e-14)
    # annualised: 252 times the daily fee; switching the other way costs the investor (negative fee)
    assert eco.performance_fee(np.zeros(2), np.array([0.1, -0.1]), 2.0) == pytest.approx(252 * fee)
    assert eco.performance_fee(np.array([0.1, -0.1]), np.zeros(2), 2.0, periods=1) < 0


def test_performance_fee_solves_the_utility_equation_on_random_returns():
    rng = np.random.default_rng(0)
    a, b = rng.normal(4e-4, 0.006, 2000), rng.normal(3e-4, 0.008, 2000)
    gamma = 10.0
    d = eco.performance_fee(a, b, gamma, periods=1) / 1e4

    def u(x):
        return np.mean(x - gamma / 2 * x**2)

    assert u(a - d) == pytest.approx(u(b), abs=1e-15)
    # a root finder on the utility equation agrees with the closed form
    from scipy import optimize

    root = optimize.brentq(lambda x: u(a - x) - u(b), -0.01, 0.01, xtol=1e-16)
    assert d == pytest.approx(root, abs=1e-12)


def test_certainty_equivalent_and_sharpe_of_known_returns():
    r = np.array([0.01, -0.01, 0.02, 0.0])
    assert eco.certainty_equivalent(r, gamma=4.0, periods=1) == pytest.approx(0.005 - 2 * np.var(r))
    assert eco.sharpe_ratio(r, periods=4) == pytest.approx(2 * 0.005 / np.std(r, ddof=1))
    with pytest.raises(ValueError, match="NaN"):
        eco.sharpe_ratio([0.01, np.nan])


def test_costs_reduce_returns_by_exactly_cost_times_turnover(task):
    base_t, base_v = standard_baselines(task, "test", "frozen"), standard_baselines(task, "val", "frozen")
    gross, turnover = eco.portfolio_returns(task, base_t["har"], base_v["har"])
    assert gross.shape == turnover.shape == (cap.N_TEST,) and turnover[0] == 0 and (turnover[1:] > 0).any()
    # the turnover is that of vol_targeting's positions
    vt = cap.vol_targeting(task, base_t["har"], base_v["har"])
    assert turnover[1:].mean() == pytest.approx(vt["turnover"])
    for c in (0.0, 5.0, 10.0):
        net = eco.net_of_costs(gross, turnover, c)
        np.testing.assert_allclose(gross - net, c * 1e-4 * turnover, rtol=0, atol=1e-15)
    assert eco.sharpe_ratio(eco.net_of_costs(gross, turnover, 10)) < eco.sharpe_ratio(gross)
    with pytest.raises(ValueError, match="cost"):
        eco.net_of_costs(gross, turnover, -1)


def test_bootstrap_interval_contains_the_estimate_and_is_reproducible():
    rng = np.random.default_rng(1)
    n = 1500
    gross, gross_b = rng.normal(5e-4, 0.006, n), rng.normal(3e-4, 0.007, n)
    turn, turn_b = np.abs(rng.normal(0, 0.03, n)), np.abs(rng.normal(0, 0.02, n))
    kw = {"costs_bp": (0, 10), "gamma": 10.0, "reps": 300, "block_size": 20}
    a = eco.economic_value((gross, turn), (gross_b, turn_b), seed=7, **kw)
    b = eco.economic_value((gross, turn), (gross_b, turn_b), seed=7, **kw)
    c = eco.economic_value((gross, turn), (gross_b, turn_b), seed=8, **kw)
    assert a == b, "the same seed must give the same intervals"
    assert a["fee 0bp lo"] != c["fee 0bp lo"], "another seed draws other blocks"
    for stat in ("Sharpe", "fee"):
        for cost in ("0bp", "10bp"):
            assert a[f"{stat} {cost} lo"] < a[f"{stat} {cost}"] < a[f"{stat} {cost} hi"], (stat, cost)
    assert a["Sharpe 0bp"] == pytest.approx(eco.sharpe_ratio(gross))
    assert a["fee 10bp"] == pytest.approx(
        eco.performance_fee(eco.net_of_costs(gross, turn, 10), eco.net_of_costs(gross_b, turn_b, 10), 10.0)
    )
    # trading more than the benchmark: costs lower the fee
    assert a["fee 10bp"] < a["fee 0bp"]
    assert a["CE 10bp"] == pytest.approx(
        100 * eco.certainty_equivalent(eco.net_of_costs(gross, turn, 10), 10.0)
    )


def test_fhs_var_tends_to_the_gaussian_closed_form_on_gaussian_shocks():
    rng = np.random.default_rng(2)
    n, alpha = 200_000, 0.01
    sigma_fit = np.exp(rng.normal(0, 0.4, n))  # known volatilities
    z = rng.standard_normal(n)
    r = sigma_fit * z
    sigma_new = np.array([0.5, 1.0, 2.0])
    var = eco.value_at_risk(sigma_new, r / sigma_fit, alpha, "fhs")
    closed = -sigma_new * stats.norm.ppf(alpha)  # sigma_t Phi^-1(alpha), as a loss
    np.testing.assert_allclose(var, closed, rtol=0.02)
    # and the Student-t fit on Gaussian shocks is (nearly) Gaussian: large nu
    assert eco.fit_student_t(z[:20_000]) > 30


def test_student_t_var_has_the_nominal_breach_rate_on_t_shocks():
    rng = np.random.default_rng(3)
    nu, alpha = 5.0, 0.01
    scale = np.sqrt((nu - 2) / nu)
    fit = rng.standard_t(nu, 20_000) * scale  # unit-variance t shocks to fit on
    assert eco.fit_student_t(fit) == pytest.approx(nu, rel=0.15)
    sigma = np.exp(rng.normal(0, 0.4, 100_000))
    r = sigma * rng.standard_t(nu, len(sigma)) * scale
    t_rate = eco.breach_tests(r, eco.value_at_risk(sigma, fit, alpha, "student-t"), alpha)["rate"]
    g_rate = eco.breach_tests(r, eco.value_at_risk(sigma, fit, alpha, "gaussian"), alpha)["rate"]
    assert abs(t_rate - alpha) < 0.0015, t_rate
    assert g_rate > 1.1 * alpha, "a Gaussian VaR under fat tails is breached too often"


def test_var_methods_refuse_bad_input():
    z = np.random.default_rng(0).standard_normal(50)
    with pytest.raises(ValueError, match="unknown VaR method"):
        eco.shock_quantile(z, 0.01, "cornish-fisher")
    with pytest.raises(ValueError, match="alpha"):
        eco.shock_quantile(z, 1.5)
    with pytest.raises(ValueError, match="empirical"):
        eco.shock_quantile(z, 0.01, "fhs")  # 50 residuals hold no 1% quantile


def test_economic_table_has_the_three_vars_and_the_fee_at_each_cost(task):
    base_t, base_v = standard_baselines(task, "test", "frozen"), standard_baselines(task, "val", "frozen")
    entry = cap.Entry("ewma_copy", [base_t["ewma"]], [base_v["ewma"]])
    table = pd.DataFrame()
    table.attrs.update(weights=None, benchmark="har")
    econ = cap.economic_table(task, table, [entry], reps=50)
    assert list(econ.index) == ["ewma_copy", "har", "garch"]
    for col in ("vt realised vol", "vt turnover", "VaR rate", "VaR p_kupiec", "VaR p_cc"):
        assert col in econ.columns  # the columns before the economic value are kept
    for c in ("0bp", "5bp", "10bp"):
        assert {f"Sharpe {c}", f"CE {c}", f"fee {c}", f"fee {c} lo", f"fee {c} hi"} <= set(econ.columns)
    assert (econ.loc["har", ["fee 0bp", "fee 10bp"]] == 0).all(), "the benchmark's fee against itself"
    for prefix in ("VaR", "VaR-t", "VaR-FHS"):
        assert 0 < econ.loc["har", f"{prefix} rate"] < 0.05
    assert econ.loc["har", "VaR-t nu"] > 2
    # z rms: 1 on validation by construction of k; the test column is that of the test years
    z_val = cap.standardised_residuals(task, "val", base_v["har"], base_v["har"])
    assert np.sqrt(np.mean(z_val**2)) == pytest.approx(1.0)
    z_test = cap.standardised_residuals(task, "test", base_t["har"], base_v["har"])
    assert econ.loc["har", "z rms"] == pytest.approx(np.sqrt(np.mean(z_test**2)))
    # the Gaussian row is var_backtest's
    g = cap.var_backtest(task, base_t["har"], base_v["har"])
    assert econ.loc["har", "VaR rate"] == pytest.approx(g["rate"])
    summary = cap.summary_columns(econ)
    assert {"fee 0bp", "fee 10bp hi", "VaR-FHS p_kupiec", "z rms"} <= set(summary) <= set(econ.columns)
    assert "fee 5bp" not in summary
    with pytest.raises(ValueError, match="no forecasts"):
        cap.economic_table(task, table, [entry], models=["nope"], reps=10)


def test_the_return_scale_learnt_three_ways_and_the_causal_one_never_looks_ahead(task):
    base_t, base_v = standard_baselines(task, "test", "frozen"), standard_baselines(task, "val", "frozen")
    t, v = base_t["har"], base_v["har"]
    r, raw = eco._return_sigma(task, "test", t, v, "none")
    assert np.allclose(raw, np.exp(t[:, 0]))
    _, val = eco._return_sigma(task, "test", t, v, "validation")
    assert np.allclose(val, eco.return_scale(task, v) * raw)
    _, causal = eco._return_sigma(task, "test", t, v, "causal")
    day = 300  # k at origin `day`: the mean of r^2 / sigma^2 over the target days already known
    k2 = np.mean(np.maximum(r[:day] ** 2, 1e-12) / raw[:day] ** 2)
    assert causal[day] == pytest.approx(np.sqrt(k2) * raw[day])
    # a probe: returns from the origin's own target day on do not move its scale
    later = r.copy()
    later[day:] *= 3.0
    rows = task.test.rows[day:] + 1
    shocked = task.frame.copy()
    shocked.iloc[rows, shocked.columns.get_loc("ret")] = later[day:]
    original = task.frame
    try:
        object.__setattr__(task, "frame", shocked)
        _, again = eco._return_sigma(task, "test", t, v, "causal")
    finally:
        object.__setattr__(task, "frame", original)
    assert np.allclose(again[: day + 1], causal[: day + 1]) and not np.allclose(again, causal)
    table = eco.scale_variants(task, {"har": (t, v)})
    assert table.loc["har", ("vt realised vol", "causal")] == pytest.approx(
        eco.vol_targeting(task, t, v, scale="causal")["realised vol"]
    )
    with pytest.raises(ValueError, match="scale must be one of"):
        eco.vol_targeting(task, t, v, scale="test")
