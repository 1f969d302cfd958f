"""Tests of course_lib.evaluation.conformal (split conformal, CQR, ACI/DtACI, interval metrics) and of
course_lib.models.quantile (QuantileRegressionEnsemble)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from course_lib import set_seed
from course_lib.evaluation.conformal import (
    AdaptiveConformalPredictor,
    ConformalizedQuantileRegressor,
    ConformalPredictor,
    MondrianConformalPredictor,
    conformal_quantile,
    conformal_rank,
    coverage,
    interval_metrics,
    interval_score,
    interval_scores,
    mean_width,
    rolling_coverage,
    weighted_conformal_quantile,
)
from course_lib.models.quantile import QuantileRegressionEnsemble, quantile_key
from course_lib.training import PinballLoss, Trainer

# ---------------------------------------------------------------------------------------------
# The finite-sample quantile
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "alpha", "k"),
    [(8, 0.1, 9), (9, 0.1, 9), (19, 0.1, 18), (20, 0.1, 19), (99, 0.05, 95), (9, 0.7, 3), (1, 0.5, 1)],
)
def test_rank_is_ceil_of_n_plus_one_times_one_minus_alpha(n, alpha, k):
    assert (
        conformal_rank(n, alpha) == k
    )  # (9, 0.7): (n+1)(1-alpha) = 3.0000000000000004 in floats, still k = 3


@given(st.integers(1, 300), st.floats(0.01, 0.99), st.integers(0, 2**31 - 1))
@settings(max_examples=60, deadline=None)
def test_quantile_is_the_kth_smallest_score_or_infinite(n, alpha, seed):
    scores = np.random.default_rng(seed).exponential(size=n)
    k = conformal_rank(n, alpha)
    expected = np.sort(scores)[k - 1] if k <= n else math.inf
    assert conformal_quantile(scores, alpha) == expected


def test_small_calibration_sets_give_the_infinite_interval_not_a_crash():
    scores = np.arange(1.0, 9.0)  # n = 8 at alpha = 0.1: the source's level ceil(9 * 0.9) / 8 = 1.125
    with pytest.raises(RuntimeError):
        torch.quantile(torch.from_numpy(scores), math.ceil(9 * 0.9) / 8)  # the source's crash
    assert conformal_quantile(scores, 0.1) == math.inf
    with pytest.raises(ValueError, match=r"n=8 is too small.*at least n=9"):
        ConformalPredictor(0.1).calibrate(scores, np.zeros(8))
    lower, upper = (
        ConformalPredictor(0.1, allow_infinite=True)
        .calibrate(scores, np.zeros(8))
        .predict_interval(np.zeros(3))
    )
    assert np.all(lower == -np.inf) and np.all(upper == np.inf)
    assert np.isfinite(
        ConformalPredictor(0.1).calibrate(np.arange(1.0, 10.0), np.zeros(9)).q_hat
    )  # n = 9 suffices


# ---------------------------------------------------------------------------------------------
# Split conformal: the coverage theorem, measured
# ---------------------------------------------------------------------------------------------


def _repeat_split_conformal(n, alpha, score, reps=4000, n_test=10, seed=0):
    """Per-repetition test coverage of split conformal on exchangeable heteroscedastic, fat-tailed data."""
    rng = np.random.default_rng(seed)
    covers = np.empty(reps)
    for r in range(reps):
        sigma = rng.uniform(0.2, 3.0, size=n + n_test)
        y = sigma * rng.standard_t(df=3, size=n + n_test)
        mu = 0.1 * rng.standard_normal(n + n_test)  # an imperfect point forecast
        forecast = (mu, sigma) if score == "normalized" else (mu,)
        cp = ConformalPredictor(alpha, score=score).calibrate(y[:n], *(f[:n] for f in forecast))
        lower, upper = cp.predict_interval(*(f[n:] for f in forecast))
        covers[r] = coverage(y[n:], lower, upper)
    return covers


@pytest.mark.parametrize(
    ("n", "alpha", "score"), [(20, 0.1, "absolute"), (50, 0.1, "normalized"), (39, 0.05, "absolute")]
)
def test_split_conformal_coverage_lies_in_the_theoretical_band(n, alpha, score):
    covers = _repeat_split_conformal(n, alpha, score)
    tol = 4 * covers.std() / np.sqrt(len(covers))  # CLT tolerance of the mean over repetitions
    mean = covers.mean()
    assert 1 - alpha - tol <= mean <= 1 - alpha + 1 / (n + 1) + tol, (mean, tol)
    # sharper: with continuous scores the coverage is exactly k / (n + 1); an off-by-one (k from n, not
    # n + 1, or an interpolated quantile) moves it by about 1 / (n + 1), far beyond the tolerance
    assert abs(mean - conformal_rank(n, alpha) / (n + 1)) <= tol, (
        mean,
        conformal_rank(n, alpha) / (n + 1),
        tol,
    )
    assert 1 / (n + 1) > 3 * tol


EDGES = (0.8, 1.4, 2.0, 2.6)  # fixed in advance: five bins of the forecast sigma


def _heteroscedastic(rng, n):
    sigma = rng.uniform(0.2, 3.2, n)
    return sigma * rng.standard_normal(n), np.zeros(n), sigma


def _per_bin_coverage(make, reps=600, n_cal=150, n_test=150):
    """Coverage in each sigma bin over repetitions, and the exact k_b / (n_b + 1) the theorem predicts."""
    rng = np.random.default_rng(11)
    hits, counts, exact = np.zeros(len(EDGES) + 1), np.zeros(len(EDGES) + 1), []
    for _ in range(reps):
        y, mu, sigma = _heteroscedastic(rng, n_cal + n_test)
        lower, upper = make(y[:n_cal], mu[:n_cal], sigma[:n_cal], mu[n_cal:], sigma[n_cal:])
        bins = np.searchsorted(EDGES, sigma[n_cal:], side="right")
        covered = (lower <= y[n_cal:]) & (y[n_cal:] <= upper)
        hits += np.bincount(bins, weights=covered, minlength=len(EDGES) + 1)
        counts += np.bincount(bins, minlength=len(EDGES) + 1)
        n_b = np.bincount(np.searchsorted(EDGES, sigma[:n_cal], side="right"), minlength=len(EDGES) + 1)
        exact.append([min(conformal_rank(n, 0.1), n + 1) / (n + 1) for n in n_b])
    return hits / counts, np.mean(exact, axis=0), counts


def test_mondrian_conformal_covers_in_every_bin_where_marginal_conformal_does_not():
    def mondrian(y, mu, sigma, mu_new, sigma_new):
        cp = MondrianConformalPredictor(EDGES, 0.1).calibrate(y, mu, by=sigma)
        return cp.predict_interval(mu_new, by=sigma_new)

    def marginal(y, mu, sigma, mu_new, sigma_new):
        return ConformalPredictor(0.1).calibrate(y, mu).predict_interval(mu_new)

    per_bin, exact, counts = _per_bin_coverage(mondrian)
    tol = 4 * np.sqrt(0.09 / counts)  # CLT tolerance per bin (points within a repetition share q_b)
    assert np.all(per_bin >= 0.9 - tol), per_bin
    # finite-sample exactness: coverage in bin b is E[k_b / (n_b + 1)], not just >= 0.9
    np.testing.assert_allclose(per_bin, exact, atol=float(tol.max()))
    marg, _, _ = _per_bin_coverage(marginal)
    assert marg[0] > 0.99 and marg[-1] < 0.8, marg  # the same data: marginal conformal fails per bin


def test_mondrian_with_no_edges_is_split_conformal_and_refuses_empty_bins():
    rng = np.random.default_rng(3)
    y, mu, sigma = _heteroscedastic(rng, 400)
    one = MondrianConformalPredictor([], 0.1, "normalized").calibrate(
        y[:200], mu[:200], sigma[:200], by=sigma[:200]
    )
    split = ConformalPredictor(0.1, "normalized").calibrate(y[:200], mu[:200], sigma[:200])
    np.testing.assert_array_equal(one.q_hat, [split.q_hat])
    np.testing.assert_allclose(
        one.predict_interval(mu[200:], sigma[200:], by=sigma[200:]),
        split.predict_interval(mu[200:], sigma[200:]),
    )
    with pytest.raises(ValueError, match="bin 4 of 4"):
        MondrianConformalPredictor([1.0, 2.0, 50.0], 0.1).calibrate(y, mu, by=sigma)
    with pytest.raises(ValueError, match="strictly increasing"):
        MondrianConformalPredictor([2.0, 1.0])
    with pytest.raises(RuntimeError, match="calibrate"):
        MondrianConformalPredictor([1.0]).predict_interval(mu, by=sigma)


@pytest.mark.parametrize("alpha", [0.1, 0.05, 0.3, 0.7])
def test_weighted_conformal_with_equal_weights_is_split_conformal(alpha):
    rng = np.random.default_rng(4)
    for n in (1, 5, 8, 9, 19, 20, 57, 200):
        s = rng.exponential(size=n)
        for w in (1.0, 3.5):
            assert weighted_conformal_quantile(s, np.full(n, w), alpha, test_weight=w) == conformal_quantile(
                s, alpha
            )


def test_weighted_conformal_with_decaying_weights_tracks_a_drifting_scale():
    """Scores whose scale doubles over the window: equal weights under-cover the next point; weights
    rho^age cover more the faster they decay, and rho = 0.97 (about 33 effective days) lands near
    1 - alpha (Barber et al. 2023, section 5)."""
    rng = np.random.default_rng(8)
    n, reps = 400, 3000
    scale = np.exp(np.linspace(0.0, np.log(2.0), n + 1))
    draws = np.abs(rng.standard_normal((reps, n + 1))) * scale
    cover = {}
    for rho in (1.0, 0.99, 0.97):
        decay = rho ** np.arange(n, 0, -1)  # the newest calibration point has weight rho
        cover[rho] = np.mean([d[n] <= weighted_conformal_quantile(d[:n], decay, 0.1) for d in draws])
    tol = 4 * np.sqrt(0.09 / reps)
    assert cover[1.0] < 0.9 - 2 * tol and cover[1.0] < cover[0.99] < cover[0.97], cover
    assert abs(cover[0.97] - 0.9) < tol, cover
    with pytest.raises(ValueError, match="weights must be >= 0"):
        weighted_conformal_quantile([1.0, 2.0], [1.0, -1.0], 0.1)


def test_normalized_intervals_are_invariant_to_a_constant_mis_scaling_of_sigma():
    rng = np.random.default_rng(1)
    y, mu, sigma = rng.standard_normal(300), rng.standard_normal(300) * 0.1, rng.uniform(0.5, 2, 300)
    a = ConformalPredictor(0.1, "normalized").calibrate(y[:200], mu[:200], sigma[:200])
    b = ConformalPredictor(0.1, "normalized").calibrate(y[:200], mu[:200], sigma[:200] / 7.0)
    np.testing.assert_allclose(
        a.predict_interval(mu[200:], sigma[200:]), b.predict_interval(mu[200:], sigma[200:] / 7.0)
    )
    assert b.q_hat == pytest.approx(7.0 * a.q_hat)


def test_split_conformal_against_mapie():
    """MAPIE's SplitConformalRegressor (absolute score, prefit) gives the same intervals.

    Where they differ: MAPIE computes ceil((n+1)(1-alpha))/n in floats, so at alpha = 0.7 with n = 9
    it takes the 4th smallest score where the exact rank is 3 (more conservative); we remove that
    round-off. For k > n MAPIE raises (also with ``allow_infinite_bounds=True``, which its symmetric
    absolute score ignores); we return the infinite interval when asked to (``allow_infinite=True``).
    """
    pytest.importorskip("mapie", reason="MAPIE (the dev cross-check, pinned in pyproject) is not installed")
    from mapie.regression import SplitConformalRegressor
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(2)
    X = rng.standard_normal((400, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + rng.standard_t(4, size=400)
    fitted = LinearRegression().fit(X[:200], y[:200])
    for n_cal, level in [(150, 0.9), (150, 0.8), (57, 0.95), (199, 0.5)]:
        cal, test = slice(200, 200 + n_cal), slice(200 + n_cal, 400)
        mapie = SplitConformalRegressor(
            fitted, confidence_level=level, conformity_score="absolute", prefit=True
        )
        mapie.conformalize(X[cal], y[cal])
        _, intervals = mapie.predict_interval(X[test])
        ours = ConformalPredictor(1 - level).calibrate(y[cal], fitted.predict(X[cal]))
        lower, upper = ours.predict_interval(fitted.predict(X[test]))
        np.testing.assert_allclose(intervals[:, 0, 0], lower, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(intervals[:, 1, 0], upper, rtol=1e-12, atol=1e-12)
    # too small a calibration set (n = 8 at 90%): MAPIE 1.6.0 raises, even with allow_infinite_bounds=True
    # (its symmetric-score branch does not pass the flag on); we return the valid infinite interval
    mapie = SplitConformalRegressor(fitted, confidence_level=0.9, prefit=True).conformalize(
        X[200:208], y[200:208]
    )
    with pytest.raises(ValueError, match="too low"):
        mapie.predict_interval(X[300:305], allow_infinite_bounds=True)
    small = ConformalPredictor(0.1, allow_infinite=True).calibrate(y[200:208], fitted.predict(X[200:208]))
    assert small.q_hat == math.inf
    # the documented difference: float round-off in MAPIE's rank at n = 9, alpha = 0.7
    mapie = SplitConformalRegressor(fitted, confidence_level=0.3, prefit=True).conformalize(
        X[200:209], y[200:209]
    )
    _, intervals = mapie.predict_interval(X[300:301])
    residuals = np.sort(np.abs(y[200:209] - fitted.predict(X[200:209])))
    mapie_q = (intervals[0, 1, 0] - intervals[0, 0, 0]) / 2
    assert mapie_q == pytest.approx(residuals[3]) and conformal_quantile(residuals, 0.7) == residuals[2]


# ---------------------------------------------------------------------------------------------
# CQR
# ---------------------------------------------------------------------------------------------


def test_cqr_with_equal_bounds_is_split_conformal():
    rng = np.random.default_rng(3)
    y, mu = rng.standard_normal(500), 0.2 * rng.standard_normal(500)
    cqr = ConformalizedQuantileRegressor(0.1).calibrate(y[:300], mu[:300], mu[:300])
    split = ConformalPredictor(0.1).calibrate(y[:300], mu[:300])
    assert cqr.q_hat == split.q_hat
    np.testing.assert_array_equal(cqr.predict_interval(mu[300:], mu[300:]), split.predict_interval(mu[300:]))


@pytest.mark.parametrize("band_scale", [0.3, 1.0, 3.0])
def test_cqr_repairs_a_mis_sized_quantile_band(band_scale):
    """A band that is 0.3x, 1x or 3x the true 5%-95% band still gets coverage k/(n+1) after CQR."""
    rng = np.random.default_rng(4)
    n, reps, alpha = 100, 2000, 0.1
    z = stats.norm.ppf(0.95)
    covers, q_hats = np.empty(reps), np.empty(reps)
    for r in range(reps):
        sigma = rng.uniform(0.5, 2.0, size=n + 10)
        y = sigma * rng.standard_normal(n + 10)
        lo, hi = -band_scale * z * sigma, band_scale * z * sigma
        cqr = ConformalizedQuantileRegressor(alpha).calibrate(y[:n], lo[:n], hi[:n])
        covers[r] = coverage(y[n:], *cqr.predict_interval(lo[n:], hi[n:]))
        q_hats[r] = cqr.q_hat
    tol = 4 * covers.std() / np.sqrt(reps)
    assert abs(covers.mean() - conformal_rank(n, alpha) / (n + 1)) <= tol
    if band_scale > 1:
        assert np.median(q_hats) < 0, "an over-wide band is shrunk (q-hat < 0)"
    if band_scale < 1:
        assert np.median(q_hats) > 0, "a too-narrow band is widened"


# ---------------------------------------------------------------------------------------------
# ACI and DtACI
# ---------------------------------------------------------------------------------------------


def _adversarial_sequences(T=1500, seed=5):
    rng = np.random.default_rng(seed)
    iid = np.abs(rng.standard_normal(T))
    return {
        "ever larger": np.arange(1.0, T + 1.0) * 10.0,  # every score beats all the past ones
        "all zero": np.zeros(T),  # always covered: alpha_t climbs above 1
        "regime shift x20": np.where(np.arange(T) < T // 3, iid, 20.0 * iid),
        "alternating storms": iid * np.where((np.arange(T) // 50) % 2 == 0, 1.0, 15.0),
        "adversary": np.where(rng.random(T) < 0.5, 1e6, 0.0),
    }


@pytest.mark.parametrize("gamma", [0.005, 0.05, 0.3])
@pytest.mark.parametrize("alpha_1", [None, 0.5, 0.02])
def test_aci_deterministic_coverage_bound_on_adversarial_sequences(gamma, alpha_1):
    alpha = 0.1
    for name, scores in _adversarial_sequences().items():
        cal = np.abs(np.random.default_rng(6).standard_normal(50))
        aci = AdaptiveConformalPredictor(alpha, gamma, alpha_1=alpha_1, window=200).calibrate(
            cal, np.zeros(50)
        )
        res = aci.run(scores, np.zeros(len(scores)))  # y = score, mu = 0
        a1 = alpha if alpha_1 is None else alpha_1
        T = np.arange(1, len(scores) + 1)
        gap = np.abs(np.cumsum(res.err) / T - alpha)
        bound = (max(a1, 1 - a1) + gamma) / (gamma * T)
        assert np.all(gap <= bound + 1e-12), f"{name}: bound violated at T={int(T[np.argmax(gap > bound)])}"
        # the recurrence itself, unclamped
        np.testing.assert_allclose(
            res.alpha_t[1:], res.alpha_t[:-1] + gamma * (alpha - res.err[:-1]), atol=1e-12
        )
        assert np.all((res.alpha_t >= -gamma - 1e-12) & (res.alpha_t <= 1 + gamma + 1e-12))
        # alpha_t <= 0: infinite interval, never an error; alpha_t >= 1: empty interval, always an error
        assert np.all(res.err[res.alpha_t <= 0] == 0) and np.all(np.isinf(res.upper[res.alpha_t <= 0]))
        assert np.all(res.err[res.alpha_t >= 1] == 1)
        # err agrees with the interval it reports
        np.testing.assert_array_equal(res.err, 1.0 - ((scores >= res.lower) & (scores <= res.upper)))


def test_the_source_clamp_breaks_the_guarantee_that_aci_keeps():
    """A reference of the source's update (alpha_t clamped to [0.01, 0.5]) misses far more than alpha."""
    alpha, gamma = 0.1, 0.05
    scores = _adversarial_sequences()["ever larger"]
    cal = np.abs(np.random.default_rng(6).standard_normal(50))
    res = (
        AdaptiveConformalPredictor(alpha, gamma, window=200)
        .calibrate(cal, np.zeros(50))
        .run(scores, np.zeros(len(scores)))
    )
    history, a, errs = list(cal), alpha, []
    for s in scores:
        past = np.array(history[-200:])
        errs.append(float(s > conformal_quantile(past, a)))
        a = min(max(a + gamma * (alpha - errs[-1]), 0.01), 0.5)
        history.append(s)
    assert abs(np.mean(res.err) - alpha) < 0.02
    assert np.mean(errs) > 0.9  # clamped at 0.01, the interval never becomes infinite and misses every time


def test_aci_has_no_look_ahead():
    rng = np.random.default_rng(7)
    y, mu = rng.standard_normal(600) * np.repeat([1.0, 4.0, 1.0], 200), rng.standard_normal(600) * 0.1
    for gamma in (0.01, AdaptiveConformalPredictor.DTACI_GAMMAS):
        aci = AdaptiveConformalPredictor(0.1, gamma, window=100).calibrate(y[:100], mu[:100])
        full = aci.run(y[100:], mu[100:])
        s = 250
        y_future = y[100:].copy()
        y_future[s:] = 100.0 * rng.standard_normal(len(y_future) - s)  # change step s and everything later
        changed = aci.run(y_future, mu[100:])
        np.testing.assert_array_equal(
            full.lower[: s + 1], changed.lower[: s + 1]
        )  # the interval at s ignores y_s
        np.testing.assert_array_equal(full.alpha_t[: s + 1], changed.alpha_t[: s + 1])
        assert not np.array_equal(
            full.lower[s + 1 :], changed.lower[s + 1 :]
        )  # ... and the probe is not blind
        prefix = aci.run(y[100 : 100 + s], mu[100 : 100 + s])
        np.testing.assert_array_equal(prefix.upper, full.upper[:s])


def test_dtaci_with_one_gamma_is_aci_and_tracks_coverage_under_shifts():
    rng = np.random.default_rng(8)
    scale = np.repeat(rng.uniform(0.5, 5.0, size=20), 100)
    y = scale * rng.standard_t(4, size=2000)
    cal = rng.standard_normal(100)
    one = (
        AdaptiveConformalPredictor(0.1, [0.02], window=250)
        .calibrate(cal, np.zeros(100))
        .run(y, np.zeros(2000))
    )
    aci = (
        AdaptiveConformalPredictor(0.1, 0.02, window=250).calibrate(cal, np.zeros(100)).run(y, np.zeros(2000))
    )
    np.testing.assert_array_equal(one.lower, aci.lower)
    dt = AdaptiveConformalPredictor(0.1, AdaptiveConformalPredictor.DTACI_GAMMAS, window=250)
    res = dt.calibrate(cal, np.zeros(100)).run(y, np.zeros(2000))
    split = ConformalPredictor(0.1).calibrate(cal, np.zeros(100))
    assert abs(res.err.mean() - 0.1) < 0.015
    assert (
        abs(coverage(y, *split.predict_interval(np.zeros(2000))) - 0.9) > 0.1
    )  # split conformal is lost here
    assert rolling_coverage(y, res.lower, res.upper, 250).min() > 0.8
    assert res.gamma_t.min() >= min(dt.gammas) and res.gamma_t.max() <= max(dt.gammas)


def test_aci_on_cqr_and_normalized_scores_runs_online():
    rng = np.random.default_rng(9)
    sigma = np.exp(np.sin(np.arange(1200) / 60.0))
    y = sigma * rng.standard_normal(1200)
    for score, forecast in [("normalized", (np.zeros(1200), sigma)), ("cqr", (-1.2 * sigma, 1.2 * sigma))]:
        aci = AdaptiveConformalPredictor(0.1, 0.01, score=score).calibrate(
            y[:200], *(f[:200] for f in forecast)
        )
        res = aci.run(y[200:], *(f[200:] for f in forecast))
        assert abs(res.err.mean() - 0.1) < 0.03
        assert coverage(y[200:], res.lower, res.upper) == pytest.approx(1 - res.err.mean())


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def test_interval_metrics_closed_forms():
    y = np.array([0.0, 2.0, -3.0, 0.5])
    lower, upper = np.array([-1.0, -1.0, -1.0, 1.0]), np.array([1.0, 1.0, 1.0, 0.0])  # the last is empty
    assert coverage(y, lower, upper) == 0.25
    assert mean_width(lower, upper) == pytest.approx((2 + 2 + 2 + 0) / 4)
    # IS = width + 2/alpha * (miss distance): 2; 2 + 20*1; 2 + 20*2; 0 + 20*0.5 (y above the upper bound 0)
    assert interval_score(y, lower, upper, alpha=0.1) == pytest.approx((2 + 22 + 42 + 10) / 4)
    np.testing.assert_allclose(interval_scores(y, lower, upper, alpha=0.1), [2, 22, 42, 10])
    rolled = rolling_coverage(y, lower, upper, window=2)
    np.testing.assert_allclose(rolled, [0.5, 0.0, 0.0])
    m = interval_metrics(y, lower, upper, 0.1, window=2)
    assert m["worst 2d"] == 0.0 and m["infinite"] == 0
    inf = interval_metrics(y, np.full(4, -np.inf), np.full(4, np.inf), 0.1, window=2)
    assert inf["coverage"] == 1.0 and inf["width"] == math.inf and inf["infinite"] == 4


def test_rolling_coverage_matches_a_loop():
    rng = np.random.default_rng(10)
    y, lower, upper = rng.standard_normal(400), -np.ones(400), np.ones(400)
    inside = (y >= -1) & (y <= 1)
    loop = [inside[i : i + 50].mean() for i in range(351)]
    np.testing.assert_allclose(rolling_coverage(y, lower, upper, 50), loop)


def test_clear_errors_on_bad_input():
    y = np.random.default_rng(11).standard_normal(50)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        ConformalPredictor(alpha=1.5)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        ConformalPredictor(alpha=0.0)
    with pytest.raises(ValueError, match="empty"):
        ConformalPredictor(0.1).calibrate(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="NaN"):
        ConformalPredictor(0.1).calibrate(np.where(np.arange(50) == 7, np.nan, y), np.zeros(50))
    with pytest.raises(ValueError, match=r"1-D.*\(N, N\)"):
        ConformalPredictor(0.1).calibrate(y, np.zeros((50, 1)))  # the source's (N,) vs (N, 1) mix-up
    with pytest.raises(ValueError, match="50 values but the forecast has 49"):
        ConformalPredictor(0.1).calibrate(y, np.zeros(49))
    with pytest.raises(ValueError, match="forecast arrays"):
        ConformalPredictor(0.1, "normalized").calibrate(y, np.zeros(50))
    with pytest.raises(ValueError, match="positive"):
        ConformalPredictor(0.1, "normalized").calibrate(y, np.zeros(50), -np.ones(50))
    with pytest.raises(ValueError, match="unknown score"):
        ConformalPredictor(0.1, "squared")
    with pytest.raises(RuntimeError, match="calibrate"):
        ConformalPredictor(0.1).predict_interval(np.zeros(3))
    with pytest.raises(RuntimeError, match="calibrate"):
        AdaptiveConformalPredictor(0.1).run(y, np.zeros(50))
    with pytest.raises(ValueError, match="gamma"):
        AdaptiveConformalPredictor(0.1, gamma=0.0)
    with pytest.raises(ValueError, match="window"):
        AdaptiveConformalPredictor(0.1, window=0)
    with pytest.raises(ValueError, match="same length"):
        coverage(y, np.zeros(50), np.ones(49))
    with pytest.raises(ValueError, match="window"):
        rolling_coverage(y, -np.ones(50), np.ones(50), window=51)


# ---------------------------------------------------------------------------------------------
# QuantileRegressionEnsemble
# ---------------------------------------------------------------------------------------------

LEVELS = (0.05, 0.29, 0.5, 0.71, 0.95)


def make_qre(seed=0, **kw):
    set_seed(seed)
    return QuantileRegressionEnsemble(
        **{
            "input_size": 3,
            "hidden_size": 8,
            "output_size": 2,
            "n_layers": 2,
            "dropout": 0.1,
            "quantiles": LEVELS,
            **kw,
        }
    )


def test_quantile_model_shapes_and_per_step_last_equals_forecast():
    model = make_qre().eval()
    x = torch.randn(4, 12, 3)
    out = model(x)
    assert out.shape == (4, 2, len(LEVELS))
    steps = model(x, per_step=True)
    assert steps.shape == (4, 12, 2, len(LEVELS))
    torch.testing.assert_close(steps[:, -1], out)
    by = model.by_level(out)
    assert list(by) == ["q0.05", "q0.29", "q0.5", "q0.71", "q0.95"] and by["q0.29"].shape == (4, 2)


@given(st.floats(0.1, 200.0), st.integers(0, 10_000))
@settings(max_examples=25, deadline=None)
def test_quantiles_never_cross_even_with_extreme_weights(scale, seed):
    model = make_qre(seed).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
        out = model(torch.randn(16, 10, 3) * scale, per_step=True)
    assert torch.isfinite(out).all()
    assert (out.diff(dim=-1) >= 0).all()


def test_keys_never_round():
    assert int(0.29 * 100) == 28  # the source's key for 0.29 was "q28"
    levels = [k / 100 for k in range(1, 100)] + [0.001, 0.999, 0.0125]
    keys = [quantile_key(q) for q in levels]
    assert len(set(keys)) == len(levels)
    assert all(float(key[1:]) == q for key, q in zip(keys, levels, strict=True))
    assert quantile_key(0.29) == "q0.29"


def test_quantile_model_clear_errors():
    # (the window checks, gradients, batch independence, look-ahead, determinism and save/load are in
    # tests/test_contract.py through the model's registry entry)
    model = make_qre()
    for bad in [(0.5, 0.1), (0.0, 0.5), (0.5, 0.5), (), (0.2, 1.0)]:
        with pytest.raises(ValueError, match="strictly increasing"):
            QuantileRegressionEnsemble(3, quantiles=bad)
    with pytest.raises(ValueError, match="quantile prediction must be"):
        PinballLoss(LEVELS)(model(torch.randn(4, 10, 3)), torch.randn(4))  # (B,) target vs (B, 2, Q)
    with pytest.raises(ValueError, match="quantiles on the last axis"):
        model.by_level(torch.randn(4, 2, 3))


def test_pinball_training_recovers_the_quantiles_of_noise():
    """Inputs carry no information and y ~ N(1, 2^2): the fitted quantiles approach 1 + 2 z_tau."""
    set_seed(0)
    rng = np.random.default_rng(12)
    X = rng.standard_normal((3000, 5, 2)).astype(np.float32)
    y = (1.0 + 2.0 * rng.standard_normal((3000, 1))).astype(np.float32)
    levels = (0.1, 0.5, 0.9)
    model = QuantileRegressionEnsemble(2, hidden_size=4, quantiles=levels)
    trainer = Trainer(
        model,
        loss=PinballLoss(levels),
        lr=2e-2,
        max_epochs=25,
        patience=25,
        batch_size=500,
        device="cpu",
        progress=False,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: several threads only contend (10x slower on a busy machine)
    try:
        trainer.fit(X[:2500], y[:2500], X[2500:], y[2500:])
    finally:
        torch.set_num_threads(threads)
    q = trainer.predict(X[2500:]).mean(axis=0)[0]
    np.testing.assert_allclose(q, 1.0 + 2.0 * stats.norm.ppf(levels), atol=0.2)
