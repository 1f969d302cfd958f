"""Koopman family (chapter 06e): DMD/EDMD spectra against known eigenvalues, the deep Koopman network on
Lusch's discrete-spectrum example, rollouts against repeated steps, the losses and the errata.
The model contract (shapes, gradients, look-ahead, save/load...) runs in tests/test_contract.py."""

import warnings

import numpy as np
import pytest
import torch

from course_lib.models.koopman import (
    DeepKoopmanFinance,
    discrete_spectrum_flow,
    dmd,
    edmd,
    half_lives,
    koopman_loss,
    linearity_residual,
    logvol_path_to_targets,
)
from course_lib.training import fit_koopman

MU, LAM, DT = -0.05, -1.0, 0.1  # Lusch et al. (2018), discrete-spectrum example


def lusch_trajectories(n: int, length: int, seed: int = 0) -> np.ndarray:
    """(n, length, 2) exact trajectories from uniform starting points in [-0.5, 0.5]^2."""
    x0 = np.random.default_rng(seed).uniform(-0.5, 0.5, (n, 2))
    return discrete_spectrum_flow(x0, length, MU, LAM, DT)


def test_the_discrete_spectrum_flow_solves_the_ode():
    # against a fine Euler integration of x1' = mu x1, x2' = lam (x2 - x1^2)
    x, fine = np.array([0.4, -0.3]), 10_000
    for _ in range(fine):
        x = x + DT / fine * np.array([MU * x[0], LAM * (x[1] - x[0] ** 2)])
    np.testing.assert_allclose(discrete_spectrum_flow(np.array([0.4, -0.3]), 2, MU, LAM, DT)[1], x, atol=1e-5)
    with pytest.raises(ValueError, match="x0 must be"):
        discrete_spectrum_flow(np.zeros(3), 5)


LUSCH_EIGENVALUES = np.sort(np.exp(np.array([MU, LAM, 2 * MU]) * DT))


def linear_system(n: int = 200, seed: int = 0):
    """x_{t+1} = A x_t + small noise, A with eigenvalues 0.9 e^{+-0.3i} and 0.6 (in a rotated basis)."""
    rng = np.random.default_rng(seed)
    r, theta = 0.9, 0.3
    block = np.array(
        [[r * np.cos(theta), -r * np.sin(theta), 0], [r * np.sin(theta), r * np.cos(theta), 0], [0, 0, 0.6]]
    )
    basis = rng.standard_normal((3, 3))
    A = basis @ block @ np.linalg.inv(basis)
    x = np.zeros((n, 3))
    x[0] = rng.standard_normal(3)
    for t in range(1, n):
        x[t] = A @ x[t - 1] + 1e-3 * rng.standard_normal(3)
        if t % 40 == 0:
            x[t] += rng.standard_normal(3)  # kicks keep every mode excited
    return x, np.array([r * np.exp(1j * theta), r * np.exp(-1j * theta), 0.6])


def sort_complex(z):
    return np.array(sorted(z, key=lambda v: (round(v.real, 6), v.imag)))


def test_dmd_recovers_the_eigenvalues_of_a_linear_system():
    x, truth = linear_system()
    result = dmd(x)
    np.testing.assert_allclose(sort_complex(result.eigenvalues), sort_complex(truth), atol=5e-3)
    np.testing.assert_allclose(
        half_lives(np.array([0.5, 0.9, 1.0])), [1.0, np.log(0.5) / np.log(0.9), np.inf]
    )
    # the exact modes are eigenvectors of the full operator Y X^+
    A = x[1:].T @ np.linalg.pinv(x[:-1].T)
    for lam, mode in zip(result.eigenvalues, result.modes.T, strict=True):
        np.testing.assert_allclose(A @ mode, lam * mode, atol=1e-6)


def test_dmd_rank_truncation_keeps_the_dominant_modes_and_prediction_is_repeated_steps():
    x, _ = linear_system()
    result = dmd(x, rank=2)
    assert result.eigenvalues.shape == (2,) and result.basis.shape == (3, 2)
    steps = result.predict(x[10], 3)
    z = result.basis.T @ x[10]
    for h in range(3):
        z = result.operator @ z
        np.testing.assert_allclose(steps[h], result.basis @ z)
    batch = result.predict(x[10:13], 3)  # (N, d) starting points at once
    assert batch.shape == (3, 3, 3)
    np.testing.assert_allclose(batch[0], steps)


def test_logvol_path_to_targets_is_the_log_of_the_mean_variance():
    path = np.log(np.array([[1.0, 2.0, 3.0, 4.0]]))  # daily volatilities 1..4 (variances 1, 4, 9, 16)
    targets = logvol_path_to_targets(path, (1, 2, 4))
    np.testing.assert_allclose(targets[0], 0.5 * np.log([1.0, 2.5, 7.5]))
    with pytest.raises(ValueError, match="H >= 5"):
        logvol_path_to_targets(path, (5,))


def test_edmd_with_the_invariant_dictionary_is_exact_and_plain_dmd_is_not():
    x = lusch_trajectories(1, 60)[0]
    exact = edmd(x, lambda s: np.c_[s, s[:, 0] ** 2])
    np.testing.assert_allclose(np.sort(exact.eigenvalues.real), LUSCH_EIGENVALUES, atol=1e-8)
    np.testing.assert_allclose(exact.predict(np.r_[x[0], x[0, 0] ** 2], 5)[:, :2], x[1:6], atol=1e-10)
    # DMD on the state alone has no x1^2 observable: its one-step residual is far from zero
    linear = dmd(x)
    residual = np.abs(x[1:] - (linear.basis @ linear.operator @ linear.basis.T @ x[:-1].T).T).max()
    exact_residual = np.abs(x[1:] - exact.predict(np.r_[x[0], x[0, 0] ** 2], 59)[:, :2]).max()
    assert residual > 1e3 * max(exact_residual, 1e-14)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: several threads only contend (10x slower on a busy machine)
    yield
    torch.set_num_threads(threads)


def test_deep_koopman_learns_linear_latent_dynamics_on_lusch_example(one_thread):
    torch.manual_seed(0)
    x = torch.tensor(lusch_trajectories(256, 30), dtype=torch.float32)
    model = DeepKoopmanFinance(2, hidden_size=32, latent_size=3)
    before = linearity_residual(model, x)
    history = fit_koopman(model, x, horizon=5, epochs=100, lr=3e-3, batch_size=64)
    after = linearity_residual(model, x)
    assert history[-1] < 0.02 * history[0]
    assert after < 0.05 and after < before / 5, f"latent dynamics not linear: {before:.3f} -> {after:.3f}"
    # the multi-step prediction on held-out trajectories, relative to the state's spread
    test = torch.tensor(lusch_trajectories(64, 30, seed=1), dtype=torch.float32)
    with torch.no_grad():
        forecast = model.rollout(test[:, :1], 20)
    error = (forecast - test[:, 1:21]).pow(2).mean().sqrt() / test.std()
    persistence = (test[:, :1] - test[:, 1:21]).pow(2).mean().sqrt() / test.std()
    assert error < 0.2 and error < persistence / 3, (
        f"20-step rollout error {error:.3f} (persistence {persistence:.3f})"
    )
    assert np.abs(model.eigen()[0]).max() < 1.01  # a decaying system gives a (nearly) stable spectrum


def test_rollout_equals_repeated_one_step_application():
    torch.manual_seed(1)
    model = DeepKoopmanFinance(3, hidden_size=8, latent_size=4, n_delays=2).double().eval()
    x = torch.randn(5, 7, 3, dtype=torch.float64)
    with torch.no_grad():
        rolled = model.rollout(x, 6)
        z = model.encode(x)[:, -1]
        for h in range(6):
            z = model.step(z)
            torch.testing.assert_close(rolled[:, h], model.decoder(z))
        torch.testing.assert_close(rolled[:, 0], model(x))


def test_delay_embedding_reads_exactly_the_last_n_delays_steps():
    model = DeepKoopmanFinance(2, hidden_size=6, latent_size=3, n_delays=4).double()
    x = torch.randn(3, 12, 2, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad((torch.randn(3, 3, dtype=torch.float64) * model.encode(x)[:, -1]).sum(), x)
    assert (grad.abs().sum(dim=(0, 2)) > 0).tolist() == [False] * 8 + [True] * 4


def test_losses_and_the_stability_penalty():
    torch.manual_seed(0)
    model = DeepKoopmanFinance(2, hidden_size=8, latent_size=3)
    x = torch.randn(4, 9, 2)
    losses = koopman_loss(model, x, horizon=3, stability=0.5)
    assert set(losses) == {"reconstruction", "linearity", "prediction", "stability", "total"}
    assert losses["stability"].item() == 0.0  # the initial spectrum is stable
    # the horizon-1 linearity loss by hand
    z = model.encode(x)
    one = koopman_loss(model, x, horizon=1)
    torch.testing.assert_close(one["linearity"], ((z[:, :-1] @ model.K.T - z[:, 1:]) ** 2).mean())
    with torch.no_grad():
        model.K.copy_(torch.diag(torch.tensor([1.2, 0.5, 0.3])))
    penalty = model.stability_penalty()
    torch.testing.assert_close(penalty, torch.tensor(0.04), rtol=1e-4, atol=1e-6)
    penalty.backward()
    assert model.K.grad[0, 0] > 0  # gradient descent shrinks the unstable eigenvalue


def test_the_source_unused_eigenvalue_network_is_gone():
    # erratum: the source's eigenvalue_predictor was never called, so it never learnt; every module of
    # ours takes part in the forward pass (the contract's gradient check proves it for every parameter)
    model = DeepKoopmanFinance(2)
    assert {name for name, _ in model.named_children()} == {"encoder", "decoder"}
    assert not hasattr(model, "eigenvalue_predictor")


def test_clear_errors():
    with pytest.raises(ValueError, match="snapshots must be"):
        dmd(np.zeros(10))
    with pytest.raises(ValueError, match="NaN"):
        dmd(np.full((10, 2), np.nan))
    with pytest.raises(ValueError, match="rank must lie"):
        dmd(np.random.default_rng(0).standard_normal((20, 3)), rank=5)
    with pytest.raises(ValueError, match="g0 must end with the 2"):
        dmd(np.random.default_rng(0).standard_normal((20, 2))).predict(np.zeros(3), 2)
    with pytest.raises(ValueError, match="dictionary"):
        edmd(np.ones((10, 2)), lambda s: s[:-1])
    model = DeepKoopmanFinance(2, n_delays=3)
    with pytest.raises(ValueError, match="at least 5 steps"):
        koopman_loss(model, torch.randn(2, 4, 2), horizon=2)
    with pytest.raises(ValueError, match="steps must be"):
        model.rollout(torch.randn(2, 4, 2), 0)
    with pytest.raises(ValueError, match=">= 1"):
        DeepKoopmanFinance(2, latent_size=0)


def test_fit_koopman_keeps_its_old_path_for_one_release():
    import course_lib.models.koopman as koopman

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # it warns once per process: maybe already seen
        assert koopman.fit_koopman is fit_koopman
