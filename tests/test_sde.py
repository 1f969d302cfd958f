"""The neural SDE (course_lib.models.sde) against closed forms, and the sample CRPS it trains on.

The model contract (shapes, gradients, batch independence, no look-ahead, determinism, errors, save/load)
runs over its registry entry in tests/test_contract.py. Here: with no noise the simulator is the ODE's
Euler method (against a hand recursion and torchdiffeq); on an Ornstein-Uhlenbeck SDE the simulated
endpoints have the closed-form mean and variance, within Monte Carlo error; the evaluation noise is
fixed per model and shared by the rows; the sample CRPS equals the evaluation module's and is proper.
"""

import math

import numpy as np
import pytest
import torch
import torchdiffeq
from torch import nn

from course_lib.evaluation.probabilistic import crps_gaussian, crps_samples
from course_lib.losses import SampleCRPSLoss, loss_by_name, sample_crps
from course_lib.models.sde import NeuralSDE, euler_maruyama


class _Zero(nn.Module):
    def forward(self, z):
        return torch.zeros_like(z)


class _Constant(nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, z):
        return torch.full_like(z, self.value)


def _model(**kwargs) -> NeuralSDE:
    torch.manual_seed(0)
    return NeuralSDE(**{"input_size": 3, "hidden_size": 4, "n_paths": 16, "n_steps": 5, **kwargs}).double()


def _window(batch: int = 3, length: int = 7, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, length, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---------------------------------------------------------------- sigma = 0: the ODE's Euler method


def test_without_noise_the_simulator_is_the_euler_method_of_the_ode():
    torch.manual_seed(0)
    drift = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    z0, dt, steps = torch.randn(5, 3, dtype=torch.float64), 0.1, 8
    noise = torch.randn(steps, 5, 3, dtype=torch.float64)  # ignored: the diffusion is 0
    path = euler_maruyama(drift, _Zero(), z0, dt, noise)
    assert path.shape == (steps + 1, 5, 3)
    z = z0
    for k in range(steps):  # the recursion by hand
        torch.testing.assert_close(path[k], z, rtol=0, atol=0)
        z = z + dt * drift(z)
    torch.testing.assert_close(path[-1], z, rtol=0, atol=1e-15)
    grid = torch.arange(steps + 1, dtype=torch.float64) * dt
    ode = torchdiffeq.odeint(lambda t, h: drift(h), z0, grid, method="euler", options={"step_size": dt})
    torch.testing.assert_close(path, ode, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("train_mode", [False, True])
def test_the_model_with_zero_diffusion_is_a_neural_ode_read_by_the_head(train_mode):
    model = _model(n_steps=6, horizon=2.0)
    model.diffusion = _Zero()
    model.train(train_mode)
    x = _window()
    out = model(x)
    assert out["samples"].shape == (3, 1, 16)
    assert torch.equal(out["samples"], out["samples"][..., :1].expand_as(out["samples"])), "every path is one"
    h, _ = model.encoder(x)
    z = model.initial(h[:, -1])
    for _ in range(6):  # Euler steps of dt = horizon / n_steps = 1/3
        z = z + model.drift(z) / 3
    torch.testing.assert_close(out["prediction"], model.head(z), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- an Ornstein-Uhlenbeck SDE: closed-form moments


def _ou_model(kappa: float, sigma: float, antithetic: bool, n_steps: int) -> NeuralSDE:
    """dz = -kappa z dt + sigma dW in every coordinate; the forecast is the first coordinate, z_1(1)."""
    model = _model(hidden_size=2, n_steps=n_steps, antithetic=antithetic)
    model.drift = nn.Linear(2, 2, bias=False).double()
    model.head = nn.Linear(2, 1).double()
    with torch.no_grad():
        model.drift.weight.copy_(-kappa * torch.eye(2, dtype=torch.float64))
        model.head.weight.copy_(torch.tensor([[1.0, 0.0]]))
        model.head.bias.zero_()
    model.diffusion = _Constant(sigma)
    return model


def test_ou_endpoints_have_the_closed_form_mean_and_variance_within_monte_carlo_error():
    kappa, sigma, steps, paths = 1.0, 0.8, 400, 20_000
    model = _ou_model(kappa, sigma, antithetic=False, n_steps=steps).train()  # fresh independent noise
    x = _window(batch=2)
    torch.manual_seed(3)
    with torch.no_grad():
        ends = model.sample(x, n_paths=paths)[:, 0]  # (2, paths)
        start = model.origin(x)[:, 0]  # z_1(0) of each window
    mean = math.exp(-kappa) * start  # E z(1) = e^{-kappa} z(0)
    var = sigma**2 / (2 * kappa) * (1 - math.exp(-2 * kappa))  # Var z(1)
    # Euler-Maruyama's own bias at dt = 1/400 (weak order 1): far below the Monte Carlo error
    assert abs((1 - kappa / steps) ** steps - math.exp(-kappa)) * start.abs().max() < 0.25 * math.sqrt(
        var / paths
    )
    se_mean, se_var = math.sqrt(var / paths), var * math.sqrt(2 / (paths - 1))  # Gaussian endpoints
    assert (ends.mean(dim=1) - mean).abs().max() < 4 * se_mean
    assert (ends.var(dim=1) - var).abs().max() < 4 * se_var
    # the test can fail: a wrong variance (sigma off by 5%) is many standard errors away
    assert abs(var * 1.05**2 - var) > 10 * se_var


def test_antithetic_paths_give_the_exact_mean_of_a_linear_sde_in_eval_mode():
    kappa, sigma, steps = 0.7, 0.5, 10
    model = _ou_model(kappa, sigma, antithetic=True, n_steps=steps).eval()
    x = _window()
    with torch.no_grad():
        out = model(x)
        start = model.origin(x)[:, :1]
    # the scheme is z_{k+1} = (1 - kappa dt) z_k + sigma sqrt(dt) eps_k, linear in the draws: +eps and -eps cancel
    torch.testing.assert_close(
        out["prediction"], (1 - kappa / steps) ** steps * start, rtol=1e-12, atol=1e-12
    )
    assert out["samples"].std(dim=-1).min() > 0.1, "the paths themselves still spread"


def test_the_endpoint_variance_grows_with_the_horizon_and_vanishes_with_the_diffusion():
    x = _window(batch=2)
    spread = {}
    for horizon in (0.25, 1.0, 4.0):
        model = _model(horizon=horizon, n_steps=8, n_paths=400).eval()
        model.diffusion = _Constant(0.3)
        with torch.no_grad():
            spread[horizon] = model.latent_paths(x)[-1].var(dim=0).mean().item()
    assert spread[0.25] < spread[1.0] < spread[4.0]
    model.diffusion = _Constant(0.0)
    with torch.no_grad():
        assert model.latent_paths(x)[-1].var(dim=0).max().item() == 0.0


# ---------------------------------------------------------------- the noise: fixed in eval, per row, per seed


def test_eval_forecasts_do_not_depend_on_the_batch_they_sit_in():
    model = _model().eval()
    x = _window(batch=5)
    with torch.no_grad():
        together = model(x)["samples"]
        for i in range(5):
            torch.testing.assert_close(model(x[i : i + 1])["samples"][0], together[i], rtol=0, atol=1e-14)
        torch.testing.assert_close(model(x.flip(0))["samples"], together.flip(0), rtol=0, atol=1e-14)


def test_training_noise_is_independent_per_row_and_eval_noise_is_the_models_seed():
    x = _window(batch=1).expand(2, -1, -1)  # the same window twice
    model = _model()
    with torch.no_grad():
        train = model.train()(x)["samples"]
        assert not torch.allclose(train[0], train[1]), "two rows must get different draws in training"
        a, b = model.eval()(x)["samples"], model(x)["samples"]
    assert torch.equal(a, b) and torch.equal(a[0], a[1])
    other = _model(seed=1).eval()  # same weights (manual_seed(0)), other noise seed
    with torch.no_grad():
        assert not torch.equal(other(x)["samples"], a)
    with torch.no_grad():
        more = model.sample(x, n_paths=64)
    assert more.shape == (2, 1, 64)


def test_bad_path_counts_name_the_argument():
    with pytest.raises(ValueError, match=r"n_paths must be an integer >= 2.*even with antithetic"):
        NeuralSDE(3, n_paths=7)
    with pytest.raises(ValueError, match="n_paths"):
        _model().sample(_window(), n_paths=1)
    with pytest.raises(ValueError, match="n_steps"):
        NeuralSDE(3, n_steps=0)
    with pytest.raises(ValueError, match="horizon"):
        NeuralSDE(3, horizon=0.0)
    with pytest.raises(ValueError, match="dt must be > 0"):
        euler_maruyama(_Zero(), _Zero(), torch.zeros(1, 1), 0.0, torch.zeros(1, 1, 1))


# ---------------------------------------------------------------- the sample CRPS


def test_sample_crps_equals_the_evaluation_modules_and_its_fair_version_rescales_the_spread():
    rng = np.random.default_rng(0)
    y, draws = rng.normal(size=40), rng.normal(0.3, 1.2, size=(40, 9))
    plain = sample_crps(torch.tensor(draws), torch.tensor(y), fair=False).numpy()
    np.testing.assert_allclose(plain, crps_samples(y, draws), rtol=1e-12)
    pairs = np.abs(draws[:, :, None] - draws[:, None, :]).sum(axis=(1, 2))  # sum_ij |x_i - x_j|
    fair = np.abs(draws - y[:, None]).mean(axis=1) - pairs / (2 * 9 * 8)
    np.testing.assert_allclose(sample_crps(torch.tensor(draws), torch.tensor(y)).numpy(), fair, rtol=1e-12)


def test_the_fair_sample_crps_is_unbiased_for_the_gaussian_closed_form_with_few_samples():
    gen = torch.Generator().manual_seed(0)
    n, m = 200_000, 4
    y = torch.randn(n, generator=gen, dtype=torch.float64)
    draws = 0.5 + 1.5 * torch.randn(n, m, generator=gen, dtype=torch.float64)
    exact = crps_gaussian(y.numpy(), 0.5, 1.5).mean()
    fair, plain = sample_crps(draws, y), sample_crps(draws, y, fair=False)
    se = fair.std().item() / math.sqrt(n)
    assert abs(fair.mean().item() - exact) < 4 * se
    assert plain.mean().item() - exact > 10 * se, "the plain estimate is biased upwards at M = 4"


def test_the_crps_loss_reads_the_samples_and_is_chosen_by_name():
    loss = loss_by_name("crps_samples")
    assert isinstance(loss, SampleCRPSLoss)
    samples = torch.randn(6, 2, 5, requires_grad=True)
    value = loss({"prediction": samples.mean(-1), "samples": samples}, torch.zeros(6, 2))
    value.backward()
    assert samples.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="needs a model that returns"):
        loss(torch.zeros(6, 2), torch.zeros(6, 2))
    with pytest.raises(ValueError, match="draws go on the last axis"):
        sample_crps(torch.zeros(6, 5, 2), torch.zeros(6, 2))
