"""Chapter 06e's linear Koopman tools against closed forms: Hankel DMD as an AR model, the block
bootstrap of DMD eigenvalues (coverage of a known eigenvalue), DMD with control on a known forced
system, impulse responses and half-lives, HAR as a restricted AR(22), GARCH persistence."""

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from course_lib.evaluation.persistence import garch_persistence, har_ar_coefficients
from course_lib.models.koopman import (
    ar_eigenvalues,
    bootstrap_dmd,
    dmd,
    dmd_control,
    half_lives,
    hankel_ar_coefficients,
    impulse_response,
    response_half_life,
)


def _ar(coefs, n, seed):
    rng = np.random.default_rng(seed)
    x = np.zeros(n + 200)
    for t in range(len(coefs), len(x)):
        x[t] = np.dot(coefs, x[t - 1 :: -1][: len(coefs)]) + rng.standard_normal()
    return x[200:]


def test_full_rank_hankel_dmd_is_the_least_squares_ar_and_reduced_rank_restricts_it():
    x = _ar([0.5, 0.2, 0.1], 2000, seed=0)
    D = 5
    delays = sliding_window_view(x, D)  # (T, D): oldest ... newest
    full = hankel_ar_coefficients(dmd(delays))
    lags = sliding_window_view(x[:-1], D)[:, ::-1]  # lag 1 first
    ols, *_ = np.linalg.lstsq(lags, x[D:], rcond=None)
    assert np.allclose(full, ols, atol=1e-8)
    reduced = dmd(delays, rank=2)
    forecast = reduced.predict(delays[:-1], 1)[:, 0, -1]
    assert np.allclose(forecast, delays[:-1, ::-1] @ hankel_ar_coefficients(reduced))
    # the full-rank Hankel DMD's eigenvalues are the fitted AR's companion roots
    assert np.allclose(np.sort_complex(dmd(delays).eigenvalues), np.sort_complex(ar_eigenvalues(full)))


def test_block_bootstrap_interval_of_an_ar1_eigenvalue_covers_it():
    hits = []
    for seed in range(40):
        x = _ar([0.9], 600, seed)
        draws = bootstrap_dmd(x[:, None], n_boot=100, block=30, seed=seed)[:, 0].real
        lower, upper = np.quantile(draws, [0.05, 0.95])
        hits.append(lower <= 0.9 <= upper)
    assert np.mean(hits) >= 0.75, f"a 90% interval covered 0.9 in {np.mean(hits):.0%} of runs"


def test_dmd_with_control_recovers_a_and_b_where_plain_dmd_does_not():
    rng = np.random.default_rng(0)
    A = np.array([[0.9, 0.1], [0.0, 0.5]])
    B = np.array([[0.0], [1.0]])
    u = rng.standard_normal((299, 1))
    x = np.zeros((300, 2))
    x[0] = [1.0, -1.0]
    for t in range(299):
        x[t + 1] = A @ x[t] + B @ u[t]
    fit = dmd_control(x, u)
    assert np.allclose(fit.A, A) and np.allclose(fit.B, B)
    assert np.allclose(np.sort(fit.eigenvalues.real), [0.5, 0.9])
    assert not np.allclose(np.sort(dmd(x).eigenvalues.real), [0.5, 0.9], atol=0.05)


def test_impulse_response_of_an_ar1_is_a_geometric_decay_with_the_eigenvalue_half_life():
    response = impulse_response([0.8], 10)
    assert np.allclose(response, 0.8 ** np.arange(11))
    assert response_half_life(response) == np.ceil(half_lives(0.8))
    two = impulse_response([0.5, 0.3], 3)
    assert np.allclose(two, [1, 0.5, 0.25 + 0.3, 0.5 * 0.55 + 0.3 * 0.5])


def test_har_is_a_restricted_ar22():
    rng = np.random.default_rng(1)
    v = _ar([0.4, 0.1, 0.1, 0.05, 0.05] + [0.01] * 17, 3000, seed=1) + rng.standard_normal(3000) * 0.01
    ar, intercept = har_ar_coefficients(v)
    assert ar.shape == (22,)
    assert np.allclose(ar[1:5], ar[1]) and np.allclose(ar[5:], ar[5]), "equal weights inside each average"
    window = sliding_window_view(v[:-1], 22)[:, ::-1]
    design = np.c_[np.ones(len(window)), window[:, 0], window[:, :5].mean(1), window[:, :22].mean(1)]
    beta = np.linalg.lstsq(design, v[22:], rcond=None)[0]
    assert np.allclose(intercept + window @ ar, design @ beta)


def test_garch_persistence_recovers_a_simulated_garch():
    from arch.univariate import GARCH, ConstantMean, Normal

    # seeded: an unseeded draw lands outside the tolerance about one run in twenty
    shocks = Normal(seed=np.random.default_rng(0))
    model = ConstantMean(None, volatility=GARCH(1, 0, 1), distribution=shocks)
    sim = model.simulate([0.0, 0.05, 0.08, 0.9], 4000, burn=500)
    fit = garch_persistence(pd.Series(sim["data"]))
    assert abs(fit["persistence"] - 0.98) < 0.02
    assert np.isclose(fit["half-life"], np.log(0.5) / np.log(fit["persistence"]))
