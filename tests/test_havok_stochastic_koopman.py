"""Chapter 06e's HAVOK and stochastic Koopman tools against closed forms: HAVOK on a sum of damped
sinusoids (exactly linear in delay coordinates: exact reconstruction, no forcing), the burst statistics,
EDMD on an Ornstein-Uhlenbeck path (eigenvalues exp(-k theta dt), Hermite eigenfunctions) and the
errors-in-variables attenuation of DMD under observation noise."""

import numpy as np
import pytest

from course_lib.models.koopman import (
    attenuation,
    burst_precedence,
    dmd,
    dmd_control,
    edmd,
    eigenfunctions,
    havok,
    lorenz,
    monomials,
    ou_eigenfunctions,
    ou_koopman_eigenvalues,
    simulate_ou,
    switches,
)

DT = 0.05


def damped_sinusoids(n=600):
    t = np.arange(n) * DT
    return np.exp(-0.1 * t) * np.sin(2.0 * t) + 0.5 * np.exp(-0.05 * t) * np.cos(3.3 * t + 0.4)  # 4 modes


def test_havok_on_a_linear_system_reconstructs_exactly_and_needs_no_forcing():
    x = damped_sinusoids()
    fit = havok(x, n_delays=20, rank=5, dt=DT)
    s = fit.singular_values
    assert s[4] / s[0] < 1e-8, "four exponential modes: the Hankel matrix has rank 4"
    v = fit.coordinates[:, :4]
    err = np.abs(fit.reconstruction - v).max() / np.abs(v).max()
    assert err < 1e-6, f"the linear model run under the forcing should reproduce v_1..v_4, error {err:.1e}"
    # the forcing's contribution to the next step is nil: B v_r is at rounding level
    contribution = np.abs(fit.B @ fit.forcing[None, :]).max() / np.abs(v).max()
    assert contribution < 1e-6, f"forcing contribution {contribution:.1e}"
    # the modes of A are the signal's: exp((-0.1 +- 2i) dt), exp((-0.05 +- 3.3i) dt)
    truth = np.exp(np.array([-0.1 + 2j, -0.1 - 2j, -0.05 + 3.3j, -0.05 - 3.3j]) * DT)  # discrete time
    found = np.linalg.eigvals(fit.A)
    assert np.allclose(np.sort_complex(found), np.sort_complex(truth), atol=1e-6)
    A_c, B_c = fit.generator  # continuous time: the rates themselves
    rates = np.array([-0.1 + 2j, -0.1 - 2j, -0.05 + 3.3j, -0.05 - 3.3j])
    assert np.allclose(np.sort_complex(np.linalg.eigvals(A_c)), np.sort_complex(rates), atol=1e-5)
    assert np.abs(B_c).max() < 1e-3 * np.abs(A_c).max()


def test_havok_is_dmd_with_control_on_the_delay_coordinates():
    x = lorenz(t_end=20.0, dt=0.01)[:, 0]
    fit = havok(x, n_delays=15, rank=6, dt=0.01)
    ref = dmd_control(fit.coordinates[:, :5], fit.coordinates[:-1, 5])
    assert np.allclose(fit.A, ref.A) and np.allclose(fit.B, ref.B)
    assert fit.coordinates.shape == (len(x) - 14, 6) and fit.modes.shape == (15, 6)
    assert np.allclose(fit.forcing, fit.coordinates[:, -1])
    assert np.allclose(fit.simulate(fit.forcing[:-1]), fit.reconstruction)
    # a chaotic signal is not exactly linear: without the forcing the one-step fit is worse
    v, u = fit.coordinates[:, :5], fit.coordinates[:-1, 5:]
    forced = np.linalg.norm(v[1:] - v[:-1] @ fit.A.T - u @ fit.B.T)
    free = np.linalg.norm(v[1:] - dmd(v).predict(v[:-1], 1)[:, 0])
    assert forced < 0.9 * free, (forced, free)


def test_simulate_compounds_the_fitted_model():
    rng = np.random.default_rng(0)
    x, u = rng.standard_normal((50, 2)), rng.standard_normal(49)
    fit = dmd_control(x, u)
    path = fit.simulate(x[0], u)
    assert path.shape == (50, 2) and np.allclose(path[0], x[0])
    assert np.allclose(path[3], fit.A @ path[2] + fit.B[:, 0] * u[2])


def test_switches_and_burst_precedence():
    x = np.array([1.0, 0.5, 0.1, -0.1, -2.0, 0.05, 2.0])
    assert list(np.flatnonzero(switches(x))) == [3, 5]
    assert list(np.flatnonzero(switches(x, band=0.2))) == [4, 6], "inside the band the regime holds"
    events = np.zeros(100, bool)
    events[[20, 50, 80]] = True
    bursts = np.zeros(100, bool)
    bursts[[18, 47, 60]] = True
    res = burst_precedence(events, bursts, window=5)
    assert (res["events"], res["hits"]) == (3, 2)
    # steps t >= 5 with a burst in t-5 .. t-1: 19..23, 48..52, 61..65 -> 15 of 95
    assert np.isclose(res["base_rate"], 15 / 95) and np.isclose(res["lift"], (2 / 3) / (15 / 95))
    late = burst_precedence(events, np.roll(bursts, 5), window=5)  # bursts after the events
    assert late["hits"] < res["hits"]


def test_havok_argument_errors_name_the_argument():
    x = damped_sinusoids()
    with pytest.raises(ValueError, match="x must be a 1-D"):
        havok(np.c_[x, x], 10, 3)
    with pytest.raises(ValueError, match="NaN"):
        havok(np.r_[x, np.nan], 10, 3)
    with pytest.raises(ValueError, match="n_delays"):
        havok(x, 1, 2)
    with pytest.raises(ValueError, match="rank"):
        havok(x, 10, 11)
    with pytest.raises(ValueError, match="rank"):
        havok(x, 10, 1)
    with pytest.raises(ValueError, match="dt"):
        havok(x, 10, 3, dt=0.0)
    with pytest.raises(ValueError, match="x needs at least"):
        havok(x[:12], 10, 3)
    with pytest.raises(ValueError, match="window"):
        burst_precedence(np.zeros(10, bool), np.zeros(10, bool), 0)
    with pytest.raises(ValueError, match="events and bursts"):
        burst_precedence(np.zeros(10, bool), np.zeros(9, bool), 2)
    with pytest.raises(ValueError, match="band"):
        switches(x, band=-1.0)
    with pytest.raises(ValueError, match="x0 must have shape"):
        dmd_control(np.ones((5, 2)) + np.eye(5, 2), np.ones(4)).simulate(np.zeros(3), np.ones(4))


THETA, SIGMA, OU_DT = 1.0, 1.0, 0.2


@pytest.fixture(scope="module")
def ou_fit():
    path = simulate_ou(50_000, THETA, SIGMA, OU_DT, seed=0)[0]
    return edmd(path[:, None], monomials(3))


def test_simulate_ou_has_the_stationary_variance_and_autocorrelation():
    x = simulate_ou(20_000, THETA, SIGMA, OU_DT, n_paths=4, seed=1)
    assert x.shape == (4, 20_000)
    assert np.isclose(x.var(), SIGMA**2 / (2 * THETA), rtol=0.05)
    lag1 = np.mean([np.corrcoef(p[:-1], p[1:])[0, 1] for p in x])
    assert np.isclose(lag1, np.exp(-THETA * OU_DT), atol=0.01)


def test_edmd_on_an_ou_path_recovers_the_stochastic_koopman_eigenvalues(ou_fit):
    found = np.sort(ou_fit.eigenvalues.real)[::-1]
    assert np.abs(ou_fit.eigenvalues.imag).max() < 1e-8
    assert np.allclose(found, ou_koopman_eigenvalues(THETA, OU_DT, 3), atol=0.02)
    # with the wrong mean-reversion speed the closed form does not match: the check can fail
    assert not np.allclose(found, ou_koopman_eigenvalues(1.5 * THETA, OU_DT, 3), atol=0.02)


def test_edmd_eigenfunctions_are_the_hermite_polynomials(ou_fit):
    values, W = eigenfunctions(ou_fit)
    truth = ou_eigenfunctions(THETA, SIGMA, 3)
    assert np.allclose(W.real, truth, atol=0.06), np.round(W.real, 3)
    # He_2(x / s) is x^2 - s^2 with s^2 = sigma^2 / (2 theta); another sigma gives another constant
    assert not np.allclose(W.real[:, 2], ou_eigenfunctions(THETA, 2 * SIGMA, 3)[:, 2], atol=0.06)
    assert np.isclose(truth[0, 2], -(SIGMA**2) / (2 * THETA)) and np.isclose(truth[2, 2], 1.0)


def test_observation_noise_attenuates_the_dmd_eigenvalue_by_the_closed_form():
    phi, var_x = np.exp(-THETA * OU_DT), SIGMA**2 / (2 * THETA)
    x = simulate_ou(100_000, THETA, SIGMA, OU_DT, seed=2)[0]
    noise_sd = 0.5
    y = x + noise_sd * np.random.default_rng(3).standard_normal(len(x))
    clean, noisy = dmd(x[:, None]).eigenvalues[0].real, dmd(y[:, None]).eigenvalues[0].real
    factor = attenuation(var_x, noise_sd**2)
    assert np.isclose(factor, 2 / 3)
    assert np.isclose(clean, phi, atol=0.01)
    assert np.isclose(noisy, phi * factor, atol=0.01)
    assert noisy < phi - 0.1, "the noisy estimate is biased towards zero"
    with pytest.raises(ValueError, match="state_var"):
        attenuation(0.0, 1.0)
