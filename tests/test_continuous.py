"""Chapter 06c: neural ODEs and CDEs against closed forms and libraries, and the irregular-data utilities.

The model contract (shapes, gradients, batch independence, look-ahead on regular and irregular times,
save/load) runs over the registry entries in tests/test_contract.py; here: masks, closed forms, the adjoint.
"""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import torchcde
import torchdiffeq
from torch import nn

from course_lib.data.irregular import calendar_days, make_irregular, removal_mask
from course_lib.data.windows import make_task
from course_lib.models.continuous import (
    GRUD,
    AttentionNeuralODE,
    NeuralCDEFinance,
    NeuralODE,
    check_irregular,
    evolve,
    forward_fill,
    gap_features,
)
from course_lib.testing import parameters_without_gradient

C = 3
MODELS = {
    "NeuralODE": lambda **kw: NeuralODE(C, 8, 2, **kw),
    "NeuralCDEFinance": lambda **kw: NeuralCDEFinance(C, 8, 2, **kw),
    "AttentionNeuralODE": lambda **kw: AttentionNeuralODE(C, 8, 2, **kw),
    "GRUD": lambda **kw: GRUD(C, 8, 2, **kw),
}
IRREGULAR = [name for name in MODELS if name != "AttentionNeuralODE"]
SOLVED = [name for name in MODELS if name != "GRUD"]  # the models with an ODE or CDE solver


def _window(B=3, L=9, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, L, C, generator=g, dtype=dtype)
    times = torch.cumsum(0.5 + 3 * torch.rand(B, L, generator=g, dtype=dtype), dim=1)
    mask = (torch.rand(B, L, generator=g) > 0.3).to(dtype)
    mask[:, 0] = 1
    return torch.where(mask.unsqueeze(-1) == 1, x, torch.nan), times, mask


def _build(name, **kw):
    torch.manual_seed(0)
    return MODELS[name](**kw).double()


# ------------------------------------------------------------------------------ irregular inputs


@pytest.mark.parametrize("name", IRREGULAR)
def test_irregular_inputs_reach_every_parameter(name):
    model = _build(name)
    x, times, mask = _window()
    out = model(x, times, mask)
    assert out.shape == (3, 2) and torch.isfinite(out).all()
    assert parameters_without_gradient(model, (torch.randn_like(out) * out).sum()) == []


@pytest.mark.parametrize("name", MODELS)
def test_every_input_step_gets_gradient(name):
    """The source's NeuralODE encoded only x[:, 0]: the other steps had exactly zero gradient."""
    model = _build(name)
    x = torch.randn(2, 10, C, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad((torch.randn(2, 2, dtype=torch.float64) * model(x)).sum(), x)
    per_step = grad.abs().sum(dim=(0, 2))
    assert (per_step > 1e-8 * per_step.max()).all(), f"steps without gradient: {per_step}"


@pytest.mark.parametrize("name", IRREGULAR)
def test_no_look_ahead_in_times_mask_or_values(name):
    """The forecast at slot k ignores everything after k: later values, times and mask."""
    model = _build(name)
    x, times, mask = _window()
    k = 4
    before = model(x, times, mask, per_step=True)[:, : k + 1]
    x2, times2, mask2 = x.clone(), times.clone(), mask.clone()
    x2[:, k + 1 :] = torch.randn_like(x2[:, k + 1 :])
    times2[:, k + 1 :] = times2[:, k + 1 :] + 5.0 * torch.arange(1, 9 - k, dtype=torch.float64)
    mask2[:, k + 1 :] = 1.0
    after = model(x2, times2, mask2, per_step=True)[:, : k + 1]
    assert torch.equal(before, after)


@pytest.mark.parametrize("name", IRREGULAR)
def test_missing_values_are_ignored_and_times_matter(name):
    model = _build(name)
    x, times, mask = _window()
    out = model(x, times, mask)
    other = torch.where(mask.unsqueeze(-1) == 1, x, 123.0)  # any value where mask == 0
    assert torch.equal(model(other, times, mask), out)
    assert not torch.allclose(model(x, 2.0 * times, mask), out), "the model must see elapsed time"


def test_regular_default_equals_unit_times_and_full_mask():
    x = torch.randn(2, 6, C, dtype=torch.float64)
    ones, unit = torch.ones(2, 6, dtype=torch.float64), torch.arange(6, dtype=torch.float64)
    for name in IRREGULAR:
        model = _build(name)
        assert torch.equal(model(x), model(x, unit, ones))


# --------------------------------------------------------------------------- clear errors


@pytest.mark.parametrize("name", IRREGULAR)
def test_clear_errors(name):
    model = _build(name)
    x, times, mask = _window()
    unsorted = times.clone()
    unsorted[1, 3] = unsorted[1, 5]
    with pytest.raises(ValueError, match=r"strictly increasing.*sample 1 has unsorted"):
        model(x, unsorted, mask)
    duplicate = times.clone()
    duplicate[2, 4] = duplicate[2, 3]
    with pytest.raises(ValueError, match="sample 2 has duplicate times at steps 3 and 4"):
        model(x, duplicate, mask)
    observed_nan = mask.clone()
    observed_nan[torch.isnan(x).any(-1)] = 1
    with pytest.raises(ValueError, match=r"NaN at an observed entry \(sample \d, step \d\)"):
        model(x, times, observed_nan)
    with pytest.raises(ValueError, match="NaN"):
        model(x)  # NaN and no mask
    with pytest.raises(ValueError, match="mask must be"):
        model(x, times, mask[:, :-1])
    with pytest.raises(ValueError, match="only 0"):
        model(x, times, 0.5 * mask)
    with pytest.raises(ValueError, match="times must be"):
        model(x, times[:, :-1], mask)
    with pytest.raises(ValueError, match="built for 3 features"):
        model(torch.randn(2, 5, C + 1, dtype=torch.float64))


def test_too_few_points_and_bad_configuration():
    with pytest.raises(ValueError, match="at least 2 steps"):
        _build("NeuralCDEFinance")(torch.randn(2, 1, C, dtype=torch.float64))
    with pytest.raises(ValueError, match="unknown method"):
        NeuralODE(C, method="rk45")
    with pytest.raises(ValueError, match="steps_per_gap"):
        NeuralCDEFinance(C, steps_per_gap=0)
    with pytest.raises(ValueError, match="divisible"):
        AttentionNeuralODE(C, hidden_size=9, n_heads=2)
    adaptive = NeuralCDEFinance(C, 8, method="dopri5").double()
    x = torch.randn(2, 5, C, dtype=torch.float64)
    assert adaptive(x).shape == (2, 1)
    with pytest.raises(ValueError, match="look-ahead"):
        adaptive(x, per_step=True)


# ------------------------------------------------------------------------ references: closed forms


def test_spline_evaluates_to_the_data_at_the_grid_points():
    model = _build("NeuralCDEFinance")
    x, times, mask = _window()
    path = model.path(x, times, mask)  # (B, L, C + 2)
    linear = torchcde.LinearInterpolation(torchcde.linear_interpolation_coeffs(path))
    for X in (model.control(path)[0], linear):
        assert X.grid_points.tolist() == list(range(path.shape[1]))
        for k in range(path.shape[1]):
            torch.testing.assert_close(X.evaluate(X.grid_points[k]), path[:, k], atol=1e-12, rtol=0)
    # the path's channels: elapsed real time, forward-filled values, running observation count
    torch.testing.assert_close(path[..., 0], times - times[:, :1])
    torch.testing.assert_close(path[..., -1], mask.cumsum(1))
    torch.testing.assert_close(path[..., 1:-1], forward_fill(check_irregular(x, times, mask, C)[0], mask))


def test_constant_vector_field_gives_z0_plus_M_times_the_increment():
    """With f(z) = M constant, z_T = z_0 + M (X_T - X_0) exactly (RK4 integrates the cubic path's quadratic
    derivative exactly), whatever the path in between."""
    model = _build("NeuralCDEFinance")
    last = model.func.net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.uniform_(-1, 1)
    M = torch.tanh(last.bias).view(8, C + 2)
    x, times, mask = _window()
    z = model.trajectory(x, times, mask)  # (B, L, H)
    path = model.path(x, times, mask)
    expected = z[:, :1] + (path - path[:, :1]) @ M.T
    torch.testing.assert_close(z, expected, atol=1e-10, rtol=0)


class _Linear(nn.Module):
    def __init__(self, A):
        super().__init__()
        self.A = nn.Parameter(A)

    def forward(self, t, h):
        return h @ self.A.T


def test_odeint_on_a_linear_ode_equals_the_matrix_exponential():
    torch.manual_seed(0)
    A = 0.5 * torch.randn(4, 4, dtype=torch.float64)
    h0 = torch.randn(3, 4, dtype=torch.float64)
    dt = torch.tensor([0.3, 1.0, 2.5], dtype=torch.float64)  # a different gap per sample
    exact = torch.stack([torch.linalg.matrix_exp(A * d) @ h for d, h in zip(dt, h0, strict=True)])
    func = _Linear(A)
    for solver, tol in [({"method": "rk4", "options": {"step_size": 0.01}}, 1e-8),
                        ({"method": "dopri5", "rtol": 1e-10, "atol": 1e-12}, 1e-8)]:  # fmt: skip
        torch.testing.assert_close(evolve(func, h0, dt, **solver), exact, atol=tol, rtol=0)
    t = torch.tensor([0.0, 2.5], dtype=torch.float64)
    plain = torchdiffeq.odeint(func, h0, t, method="rk4", options={"step_size": 0.01})[-1]
    torch.testing.assert_close(plain, h0 @ torch.linalg.matrix_exp(2.5 * A).T, atol=1e-8, rtol=0)


def _adjoint_gap(name, steps_per_gap, relative=False):
    """Largest difference between adjoint and direct gradients (inputs and every parameter), or with
    ``relative`` that difference over the largest direct gradient."""
    direct = _build(name, steps_per_gap=steps_per_gap)
    adjoint = _build(name, steps_per_gap=steps_per_gap, adjoint=True)
    adjoint.load_state_dict(direct.state_dict())
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 6, C, dtype=torch.float64, generator=g)
    probe = torch.randn(2, 2, dtype=torch.float64, generator=g)
    grads = []
    for model in (direct, adjoint):
        xg = x.clone().requires_grad_(True)
        grads.append(torch.autograd.grad((probe * model(xg)).sum(), [xg, *model.parameters()]))
    gap = max((a - d).abs().max().item() for d, a in zip(*grads, strict=True))
    return gap / max(d.abs().max().item() for d in grads[0]) if relative else gap


@pytest.mark.parametrize("name", SOLVED)
def test_adjoint_gradients_equal_direct_backprop(name):
    """The adjoint solves a second ODE backwards, so it matches backprop up to the solver's error: RK4's
    error falls 4^4 = 256-fold when the step is 4 times smaller."""
    coarse, fine = _adjoint_gap(name, 8), _adjoint_gap(name, 32)
    assert fine < 1e-6, f"adjoint and direct gradients differ by {fine}"
    assert fine < coarse / 100 or coarse < 1e-12, f"no fourth-order convergence: {coarse} -> {fine}"


def test_the_cde_adjoint_at_few_steps_warns_and_is_far_from_backprop():
    """At the default solver (rk4, one step per gap) the adjoint's gradient is far from backprop's, so the
    model warns; at 8 steps it is close and it does not."""
    with pytest.warns(
        UserWarning, match=r"adjoint=True, method='rk4', steps_per_gap=1\): the adjoint's gradients"
    ):
        _build("NeuralCDEFinance", adjoint=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NeuralCDEFinance(C, adjoint=True, steps_per_gap=8)
        NeuralCDEFinance(C, adjoint=True, method="dopri5")
        with pytest.warns(UserWarning, match="far from backprop"):
            default = _adjoint_gap("NeuralCDEFinance", 1, relative=True)
    assert default > 0.1, f"the adjoint at one step per gap is off by {default:.1%} only: revise the warning"
    assert _adjoint_gap("NeuralCDEFinance", 8, relative=True) < 1e-2


class _Warped(nn.Module):
    """The control Y(u) = X(phi(u)) with phi(u) = (L-1) (u^2 + u) / 2 on [0, 1]: same path, other speed."""

    def __init__(self, X, length):
        super().__init__()
        self.X, self.scale = X, length - 1

    def phi(self, u):
        return self.scale * (u**2 + u) / 2

    def derivative(self, u):
        return self.X.derivative(self.phi(u)) * self.scale * (2 * u + 1) / 2


def test_cde_is_invariant_to_reparameterising_time():
    """z_T depends on the path, not on how fast it is traversed (the reason time is a channel)."""
    model = _build("NeuralCDEFinance")
    x, times, mask = _window(L=6)
    X, coeffs = model.control(model.path(x, times, mask))
    z0 = model.initial(X.evaluate(X.interval[0]))
    tight = {"method": "dopri5", "rtol": 1e-10, "atol": 1e-10, "adjoint": False}
    reference = torchcde.cdeint(X=X, func=model.func, z0=z0, t=X.interval, **tight)[:, -1]
    # an affine change s -> 3 s + 2: the knots move, the path's image does not
    shifted = torchcde.CubicSpline(coeffs_t := torchcde.hermite_cubic_coefficients_with_backward_differences(
        model.path(x, times, mask), t=3 * X.grid_points + 2), t=3 * X.grid_points + 2)  # fmt: skip
    assert coeffs_t.shape == coeffs.shape
    z_affine = torchcde.cdeint(X=shifted, func=model.func, z0=z0, t=shifted.interval, **tight)[:, -1]
    torch.testing.assert_close(z_affine, reference, atol=1e-7, rtol=0)
    # a non-linear warp of the same path
    u = torch.tensor([0.0, 1.0], dtype=torch.float64)
    z_warped = torchcde.cdeint(X=_Warped(X, 6), func=model.func, z0=z0, t=u, **tight)[:, -1]
    torch.testing.assert_close(z_warped, reference, atol=1e-7, rtol=0)


def test_wrong_cdeint_signature_is_refused():
    """The source's vector field returned the product f(z) dX/dt (B, H): cdeint wants the matrix (B, H, D)."""
    model = _build("NeuralCDEFinance")
    X, _ = model.control(model.path(torch.randn(2, 5, C, dtype=torch.float64)))
    z0 = torch.zeros(2, 8, dtype=torch.float64)

    def product_field(t, z):
        return torch.einsum("bhd,bd->bh", model.func(t, z), X.derivative(t))

    with pytest.raises(ValueError, match="shape"):
        torchcde.cdeint(X=X, func=product_field, z0=z0, t=X.interval, adjoint=False)


def test_plain_function_vector_field_gets_no_gradient_under_the_adjoint():
    """Why the vector field must be an nn.Module: under the adjoint a closure's parameters are invisible."""
    model = _build("NeuralCDEFinance")
    X, _ = model.control(model.path(torch.randn(2, 5, C, dtype=torch.float64)))
    z0 = torch.zeros(2, 8, dtype=torch.float64)
    solver = {"t": X.interval, "adjoint": True, "method": "rk4", "options": {"step_size": 1.0}}
    z = torchcde.cdeint(X=X, func=lambda t, z: model.func(t, z), z0=z0, **solver)
    assert not z.requires_grad, "no parameter of the closure is part of the adjoint's graph"
    z = torchcde.cdeint(X=X, func=model.func, z0=z0, **solver)
    z[:, -1].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.func.parameters())


def test_solver_statistics_count_function_evaluations():
    model = _build("NeuralODE")
    x = torch.randn(2, 6, C, dtype=torch.float64)
    for method, steps, per_gap in [("euler", 1, 1), ("rk4", 1, 4), ("rk4", 3, 12)]:
        model.func.nfe = 0
        model.solver = {"method": method, "options": {"step_size": 1.0 / steps}}
        model(x)
        assert model.func.nfe == 5 * per_gap  # 5 gaps in a window of 6 slots


# ------------------------------------------------------------------------------ irregular data


def test_calendar_days_measure_weekends_and_holidays():
    dates = pd.DatetimeIndex(["2024-12-20", "2024-12-23", "2024-12-24", "2024-12-26", "2024-12-27"])
    assert calendar_days(dates).tolist() == [0.0, 3.0, 4.0, 6.0, 7.0]
    with pytest.raises(ValueError, match="strictly increasing"):
        calendar_days(dates[::-1])
    with pytest.raises(ValueError, match="strictly increasing"):
        calendar_days(dates.append(dates[-1:]))


def test_removal_masks_hit_their_rate_and_bursts_last():
    n = 200_000
    for kind in ("random", "bursty"):
        kept = removal_mask(n, 0.3, kind=kind, mean_burst=5.0, seed=1)
        assert abs((~kept).mean() - 0.3) < 0.01, kind
    kept = removal_mask(n, 0.3, kind="bursty", mean_burst=5.0, seed=1)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], (~kept).astype(int), [0]])))
    bursts = edges[1::2] - edges[::2]
    assert abs(bursts.mean() - 5.0) < 0.2
    random_bursts = np.diff(
        np.flatnonzero(np.diff(np.concatenate([[0], (~removal_mask(n, 0.3)).astype(int), [0]])))
    )
    assert random_bursts[::2].mean() < 1.6  # independent removals: mean run 1 / (1 - 0.3)
    assert removal_mask(100, 0.0).all()
    with pytest.raises(ValueError, match="rate"):
        removal_mask(10, 1.0)
    with pytest.raises(ValueError, match="unknown removal kind"):
        removal_mask(10, 0.1, kind="poisson")
    with pytest.raises(ValueError, match="unreachable"):
        removal_mask(10, 0.9, kind="bursty", mean_burst=1.0)


@pytest.fixture(scope="module")
def vol_task():
    return make_task("volatility", lookback=10)


def test_irregular_task_sees_nothing_after_the_origin(vol_task):
    irr = make_irregular(vol_task, 0.3, seed=2)
    days = calendar_days(vol_task.frame.index)
    for name in ("train", "val", "test"):
        s, r = vol_task.split(name), irr.split(name)
        assert r.values.shape == s.X.shape and r.times.shape == s.X.shape[:2]
        assert (r.times[:, -1] == 0).all() and (np.diff(r.times, axis=1) >= 1).all()
        np.testing.assert_array_equal(r.y, s.y)
        observed = r.mask == 1
        np.testing.assert_array_equal(r.values[observed], s.X[observed])
        assert np.isnan(r.values[~observed]).all()
        # slot k of the window with origin row t is day t - L + 1 + k: its time is days[t - L + 1 + k] - days[t]
        i = len(s) // 2
        rows = s.rows[i] - 9 + np.arange(10)
        np.testing.assert_array_equal(r.times[i], (days[rows] - days[s.rows[i]]).astype(np.float32))
        np.testing.assert_array_equal(r.mask[i], irr.observed[rows])
    assert abs(1 - irr.observed.mean() - 0.3) < 0.03
    # the removal of one day is the same in every window that holds it
    assert (irr.train.mask[1:, :-1] == irr.train.mask[:-1, 1:]).all()


def test_gap_features_are_causal_and_measure_time_since_the_last_observation():
    times = torch.tensor([[0.0, 1.0, 4.0, 5.0, 6.0, 8.0]])
    mask = torch.tensor([[1.0, 0.0, 0.0, 1.0, 1.0, 0.0]])
    x = torch.tensor([[[1.0], [math.nan], [math.nan], [2.0], [3.0], [math.nan]]])
    feats = gap_features(x, times, mask)  # [filled, mask, gap]
    assert feats[0, :, 0].tolist() == [1.0, 1.0, 1.0, 2.0, 3.0, 3.0]
    assert feats[0, :, 1].tolist() == mask[0].tolist()
    assert feats[0, :, 2].tolist() == [0.0, 1.0, 4.0, 5.0, 1.0, 2.0]
    first_missing = torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, 1.0]])
    assert forward_fill(torch.tensor([[[math.nan], [5.0]]]).nan_to_num(), first_missing[1])[
        0, :, 0
    ].tolist() == [0.0, 5.0]


# ---------------------------------------------------------------- GRU-D


def _grud_reference(model: GRUD, x, times, mask):
    """GRU-D written from Che et al. (2018), one sample and one slot at a time, with their delta recursion:
    delta_0 = 0, delta_k = t_k - t_(k-1) + (delta_(k-1) if slot k-1 was missing else 0)."""
    out = []
    for b in range(x.shape[0]):
        h = torch.zeros(model.cell.hidden_size, dtype=x.dtype)
        delta, x_last, states = torch.zeros((), dtype=x.dtype), model.x_mean, []
        for k in range(x.shape[1]):
            if k > 0:
                delta = times[b, k] - times[b, k - 1] + (delta if mask[b, k - 1] == 0 else 0.0)
            gamma_x = torch.exp(-torch.relu(model.input_decay_weight * delta + model.input_decay_bias))
            gamma_h = torch.exp(-torch.relu(model.state_decay(delta.reshape(1))))
            x_k = x[b, k] if mask[b, k] == 1 else gamma_x * x_last + (1 - gamma_x) * model.x_mean
            h = model.cell(torch.cat([x_k, mask[b, k : k + 1]])[None], (gamma_h * h)[None])[0]
            if mask[b, k] == 1:
                x_last = x[b, k]
            states.append(h)
        out.append(torch.stack(states))
    return torch.stack(out)


def test_grud_equals_the_papers_equations_slot_by_slot():
    torch.manual_seed(0)
    model = GRUD(3, 5).double()
    with torch.no_grad():  # move every parameter off its start (x_mean = 0, equal decay weights)
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
        model.input_decay_weight.abs_()  # decays that act: positive rates
    x = torch.randn(4, 9, 3, dtype=torch.float64)
    times = torch.cumsum(0.5 + 3 * torch.rand(4, 9, dtype=torch.float64), dim=1)
    mask = (torch.rand(4, 9) > 0.4).double()
    mask[0, :3] = 0  # a window that starts with missing slots: x_last is x_mean there
    torch.testing.assert_close(model.states(x, times, mask), _grud_reference(model, x, times, mask))


def test_grud_ignores_missing_values_and_uses_the_gaps():
    torch.manual_seed(1)
    model = GRUD(2, 6)
    x, times = torch.randn(3, 8, 2), torch.cumsum(1 + torch.rand(3, 8), dim=1)
    mask = torch.ones(3, 8)
    mask[:, 4] = 0
    with_nan = x.clone()
    with_nan[:, 4] = float("nan")
    torch.testing.assert_close(model(with_nan, times, mask), model(x, times, mask))
    stretched = times.clone()
    stretched[:, 5:] += 10.0  # a ten-day longer gap before slot 5, every slot still observed there
    assert not torch.allclose(model(x, stretched, mask), model(x, times, mask))
