"""Continuous-time models (chapter 06c): neural ODEs and neural CDEs on irregularly sampled windows.

All four models take ``forward(x, times=None, mask=None, per_step=False)`` with the convention of
:mod:`course_lib.data.irregular`: ``x`` (B, L, C), NaN allowed only where ``mask`` (B, L) is 0, ``times``
(B, L) strictly increasing (default 0, 1, ..., L-1: a regular window); :class:`AttentionNeuralODE`
takes regular windows only. They return the forecast made at the last slot (B, output_size), or
causal per-slot forecasts (B, L, output_size) with ``per_step=True``.

Solvers come from ``torchdiffeq`` and ``torchcde``. Fixed-step methods (``"euler"``, ``"midpoint"``,
``"rk4"``) take ``steps_per_gap`` steps between consecutive slots; adaptive ones (``"dopri5"``...)
use ``rtol``/``atol``. ``adjoint=True`` backpropagates by solving the adjoint ODE backwards instead of
storing the forward graph: memory independent of the number of steps, at extra compute, and gradients
equal to backprop's only up to the solver's error. For the CDE that error is large at a few fixed steps
per gap (80% at one RK4 step), so :class:`NeuralCDEFinance` warns below ``CDE_ADJOINT_MIN_STEPS``.
The source module's defects that these classes fix are listed in ``docs/errata.md`` (chapter 06c).
"""

import warnings

import torch
import torchcde
import torchdiffeq
from torch import nn

from .common import causal_mask, check_window, keeps_config, mlp_head

FIXED_STEP = ("euler", "midpoint", "rk4")
ADAPTIVE = ("dopri5", "bosh3", "adaptive_heun")
CDE_ADJOINT_MIN_STEPS = 8  # fewer fixed steps per gap: the CDE's adjoint gradients are far from backprop's


def _solver_options(method: str, steps_per_gap: int, rtol: float, atol: float) -> dict:
    """Keyword arguments for ``odeint``/``cdeint``; the step size is in units of one slot (gap)."""
    if method in FIXED_STEP:
        if not isinstance(steps_per_gap, int) or steps_per_gap < 1:
            raise ValueError(f"steps_per_gap must be an integer >= 1, got {steps_per_gap!r}")
        return {"method": method, "options": {"step_size": 1.0 / steps_per_gap}}
    if method in ADAPTIVE:
        return {"method": method, "rtol": rtol, "atol": atol}
    raise ValueError(f"unknown method {method!r}; choose from {FIXED_STEP + ADAPTIVE}")


def check_irregular(
    x: torch.Tensor,
    times: torch.Tensor | None,
    mask: torch.Tensor | None,
    n_features: int,
    min_length: int = 1,
    model: str = "model",
    module: nn.Module | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate an irregular window and return ``(x filled with 0 at missing, times (B, L), mask (B, L))``.

    Without ``times`` the slots are 0, 1, ..., L-1; without ``mask`` every slot is observed (and
    :func:`course_lib.models.common.check_window` forbids NaN). Raises a ``ValueError`` naming the
    sample and step for unsorted or duplicate times and for NaN at an observed entry. ``module``: the
    model, whose weights' dtype and device the window must have.
    """
    if mask is None:
        check_window(x, n_features, min_length, model=model, module=module)
        mask = torch.ones(x.shape[:2], dtype=x.dtype, device=x.device)
    else:
        check_window(torch.nan_to_num(x), n_features, min_length, model=model, module=module)
        if mask.shape != x.shape[:2]:
            raise ValueError(f"{model}: mask must be (B, L) = {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
        if not torch.all((mask == 0) | (mask == 1)):
            raise ValueError(f"{model}: mask must hold only 0 (missing) and 1 (observed)")
        mask = mask.to(x.dtype)
        bad = torch.isnan(x) & (mask == 1).unsqueeze(-1)  # (B, L, C)
        if bad.any():
            b, k, c = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"{model}: x is NaN at an observed entry (sample {b}, step {k}), index ({b}, {k}, {c}); "
                "NaN is allowed only where mask == 0: set the mask to 0 there"
            )
        if torch.isinf(x).any():
            raise ValueError(f"{model} got an input with inf values")
    B, L = x.shape[:2]
    if times is None:
        times = torch.arange(L, dtype=x.dtype, device=x.device).expand(B, L)
    else:
        times = times.to(x.dtype)
        if times.dim() == 1:
            times = times.expand(B, -1)
        if times.shape != (B, L):
            raise ValueError(f"{model}: times must be (B, L) = {(B, L)} or (L,), got {tuple(times.shape)}")
        if not torch.isfinite(times).all():
            raise ValueError(f"{model}: times must be finite")
        steps = times.diff(dim=1)
        if (steps <= 0).any():
            b, k = (int(i) for i in (steps <= 0).nonzero()[0])
            what = "duplicate" if steps[b, k] == 0 else "unsorted"
            raise ValueError(
                f"{model}: times must be strictly increasing in each window; sample {b} has {what} "
                f"times at steps {k} and {k + 1} ({times[b, k].item()} then {times[b, k + 1].item()})"
            )
    x = torch.where(mask.unsqueeze(-1) == 1, x, torch.zeros_like(x))
    return x, times, mask


def forward_fill(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Carry the last observed value forward along time (causal); 0 before the first observation.

    ``x`` (B, L, C), ``mask`` (B, L) with 1 = observed. Differentiable in the observed values.
    """
    B, L, _ = x.shape
    steps = torch.arange(L, device=x.device).expand(B, L)
    last = torch.where(mask == 1, steps, torch.full_like(steps, -1)).cummax(dim=1).values  # (B, L)
    filled = torch.gather(x, 1, last.clamp(min=0).unsqueeze(-1).expand_as(x))
    return filled * (last >= 0).unsqueeze(-1).to(x.dtype)


def gap_features(x: torch.Tensor, times: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Inputs for a discrete RNN on irregular data: (B, L, C + 2) = [forward-filled x, mask, gap].

    ``gap`` is the time since the last observation before the slot (its own time minus that of the
    previous observed slot; the time since the window's first slot when there is none). Everything
    at slot k uses slots <= k only.
    """
    x, times, mask = check_irregular(x, times, mask, x.shape[-1], model="gap_features")
    B, L = mask.shape
    steps = torch.arange(L, device=x.device).expand(B, L)
    last = torch.where(mask == 1, steps, torch.full_like(steps, -1)).cummax(dim=1).values
    previous = torch.cat([torch.full_like(last[:, :1], -1), last[:, :-1]], dim=1)  # last obs before k
    previous_time = torch.gather(times, 1, previous.clamp(min=0))
    previous_time = torch.where(previous >= 0, previous_time, times[:, :1])
    gap = times - previous_time
    return torch.cat([forward_fill(x, mask), mask.unsqueeze(-1), gap.unsqueeze(-1)], dim=-1)


class ODEFunc(nn.Module):
    """An autonomous vector field ``dh/dt = f_theta(h)``: Linear -> tanh -> Linear.

    ``nfe`` counts the function evaluations (reset it to 0 before a solve to measure the solver).
    """

    def __init__(self, hidden_size: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(hidden_size, 2 * hidden_size), nn.Tanh(), nn.Linear(2 * hidden_size, hidden_size)
        )
        self.nfe = 0

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        return self.net(h)  # (B, H)


class _OverGap(nn.Module):
    """``dh/ds = dt * f(h)`` for ``s`` in [0, 1]: one solve covers a different gap ``dt`` per sample.

    With ``t = t0 + s dt`` this is the same ODE as ``dh/dt = f(h)`` on [t0, t0 + dt], so a batch
    whose samples have different gaps shares one solver grid (in ``s``).
    """

    def __init__(self, func: nn.Module, dt: torch.Tensor):
        super().__init__()
        self.func, self.dt = func, dt  # dt: (B,), data, not a parameter

    def forward(self, s: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.dt.unsqueeze(-1) * self.func(s, h)


def evolve(
    func: nn.Module, h: torch.Tensor, dt: torch.Tensor, adjoint: bool = False, **solver
) -> torch.Tensor:
    """Solve ``dh/dt = func(t, h)`` from each sample's state ``h`` (B, H) over its own gap ``dt`` (B,).

    ``solver``: keyword arguments of ``torchdiffeq.odeint`` (``method``, ``options``, ``rtol``...),
    with steps measured in fractions of the gap. ``func`` must be autonomous (ignore ``t``).
    """
    field = _OverGap(func, dt)
    s = torch.tensor([0.0, 1.0], dtype=h.dtype, device=h.device)
    if adjoint:
        return torchdiffeq.odeint_adjoint(field, h, s, adjoint_params=tuple(func.parameters()), **solver)[-1]
    return torchdiffeq.odeint(field, h, s, **solver)[-1]


class NeuralODE(nn.Module):
    """ODE-RNN (Rubanova, Chen & Duvenaud, 2019): an ODE between observations, a GRU update at each.

        between slots:   dh/dt = f_theta(h)             on [t_{k-1}, t_k]   (ODEFunc, odeint)
        at slot k:       h_k = m_k GRUCell(x_k, h_k^-) + (1 - m_k) h_k^-     (m_k = 1 if observed)

    Every slot of the window is read, so every input step gets gradient (the source encoded only
    ``x[:, 0]``, the oldest step). The forecast is a head on the state at the last slot (the origin),
    which the ODE has carried forward from the last observation through the real elapsed time.
    """

    @keeps_config
    def __init__(
        self,
        input_size: int,
        hidden_size: int = 32,
        output_size: int = 1,
        method: str = "rk4",
        steps_per_gap: int = 1,
        rtol: float = 1e-3,
        atol: float = 1e-4,
        adjoint: bool = False,
    ):
        super().__init__()
        self.input_size, self.adjoint = input_size, adjoint
        self.solver = _solver_options(method, steps_per_gap, rtol, atol)
        self.func = ODEFunc(hidden_size)
        self.cell = nn.GRUCell(input_size, hidden_size)
        self.head = mlp_head(hidden_size, hidden_size, output_size)

    def states(self, x: torch.Tensor, times: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        """Hidden states after the update at each slot: (B, L, H)."""
        x, times, mask = check_irregular(
            x, times, mask, self.input_size, model=type(self).__name__, module=self
        )
        h = x.new_zeros(x.shape[0], self.cell.hidden_size)  # (B, H)
        states = []
        for k in range(x.shape[1]):
            if k > 0:
                h = evolve(self.func, h, times[:, k] - times[:, k - 1], self.adjoint, **self.solver)
            m = mask[:, k : k + 1]  # (B, 1)
            h = m * self.cell(x[:, k], h) + (1 - m) * h
            states.append(h)
        return torch.stack(states, dim=1)  # (B, L, H)

    def forward(self, x, times=None, mask=None, per_step: bool = False) -> torch.Tensor:
        h = self.states(x, times, mask)
        return self.head(h) if per_step else self.head(h[:, -1])


class GRUD(nn.Module):
    """GRU-D (Che, Purushotham, Cho, Sontag & Liu, 2018): a GRU whose input and state decay with the gap.

        delta_k = t_k - t_(last observed slot before k)                  (the gap of gap_features)
        gamma_x = exp(-relu(w_x * delta_k + b_x))      (C,) per feature, learned
        gamma_h = exp(-relu(W_h delta_k + b_h))        (H,) per hidden unit, learned
        x_hat_k = m_k x_k + (1 - m_k) (gamma_x x_last + (1 - gamma_x) x_mean)
        h_k     = GRUCell([x_hat_k, m_k], gamma_h * h_(k-1))

    A missing value decays from the last observation towards a learned mean ``x_mean`` (the scaled
    features' mean is near 0, its start), and the state decays towards 0, both faster for longer gaps.
    "GRU + gaps" (a GRU on :func:`gap_features`) is GRU-D without the two decays. Before the first
    observation of a window ``x_last`` is ``x_mean``. Reads slots <= k only at slot k.
    """

    @keeps_config
    def __init__(self, input_size: int, hidden_size: int = 32, output_size: int = 1):
        super().__init__()
        self.input_size = input_size
        self.input_decay_weight = nn.Parameter(torch.full((input_size,), 0.1))  # w_x >= 0 at the start
        self.input_decay_bias = nn.Parameter(torch.zeros(input_size))
        self.x_mean = nn.Parameter(torch.zeros(input_size))
        self.state_decay = nn.Linear(1, hidden_size)
        self.cell = nn.GRUCell(input_size + 1, hidden_size)  # [x_hat, mask]
        self.head = mlp_head(hidden_size, hidden_size, output_size)

    def states(self, x: torch.Tensor, times: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        """Hidden states after the update at each slot: (B, L, H)."""
        x, times, mask = check_irregular(
            x, times, mask, self.input_size, model=type(self).__name__, module=self
        )
        gap = gap_features(x, times, mask)[..., -1:]  # (B, L, 1) time since the last observation
        seen = mask.cummax(dim=1).values  # (B, L) 1 once a slot was observed
        before = torch.cat([torch.zeros_like(seen[:, :1]), seen[:, :-1]], dim=1).unsqueeze(-1)  # seen < k
        filled = forward_fill(x, mask)  # (B, L, C) last observed value at or before k
        last = torch.cat([torch.zeros_like(filled[:, :1]), filled[:, :-1]], dim=1)  # last observed before k
        x_last = before * last + (1 - before) * self.x_mean
        gamma_x = torch.exp(-torch.relu(self.input_decay_weight * gap + self.input_decay_bias))  # (B, L, C)
        gamma_h = torch.exp(-torch.relu(self.state_decay(gap)))  # (B, L, H)
        m = mask.unsqueeze(-1)  # (B, L, 1)
        x_hat = m * x + (1 - m) * (gamma_x * x_last + (1 - gamma_x) * self.x_mean)
        inputs = torch.cat([x_hat, m], dim=-1)  # (B, L, C + 1)
        h = x.new_zeros(x.shape[0], self.cell.hidden_size)
        states = []
        for k in range(x.shape[1]):
            h = self.cell(inputs[:, k], gamma_h[:, k] * h)
            states.append(h)
        return torch.stack(states, dim=1)  # (B, L, H)

    def forward(self, x, times=None, mask=None, per_step: bool = False) -> torch.Tensor:
        h = self.states(x, times, mask)
        return self.head(h) if per_step else self.head(h[:, -1])


class CDEFunc(nn.Module):
    """The CDE vector field: ``f_theta(z)`` is a (hidden, channels) matrix, ``dz = f_theta(z) dX``.

    It returns the matrix, not the product: ``torchcde.cdeint`` multiplies it by ``dX/ds`` itself
    (the source returned the product and failed the shape check). Final tanh as in Kidger et al.
    """

    def __init__(self, channels: int, hidden_size: int):
        super().__init__()
        self.channels, self.hidden_size = channels, hidden_size
        self.net = nn.Sequential(
            nn.Linear(hidden_size, 2 * hidden_size),
            nn.Tanh(),
            nn.Linear(2 * hidden_size, hidden_size * channels),
        )
        self.nfe = 0

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        return torch.tanh(self.net(z)).view(*z.shape[:-1], self.hidden_size, self.channels)  # (B, H, D)


class NeuralCDEFinance(nn.Module):
    """Neural controlled differential equation (Kidger, Morrill, Foster & Lyons, 2020).

        X(s) = interpolation of [t_k, x_k (forward-filled), c_k]  at s = 0, 1, ..., L-1
        z(0) = zeta_theta(X(0)),   z(s) = z(0) + int_0^s f_theta(z(u)) dX(u),   y = head(z(L-1))

    ``t_k``: the slot's real time (relative to the window's first slot), a channel of the path, so
    the model sees elapsed time even though the path is parameterised by the slot index ``s`` (a
    CDE's solution depends only on the path, not on its speed: see the tests). ``c_k``: the running
    count of observations (the observation-mask channel), so a missing day is visible. Missing
    values are forward-filled: torchcde's own NaN handling interpolates across a gap, which reads
    the next observation (look-ahead). The path is the cubic Hermite spline with backward differences:
    causal (z(k) depends on slots <= k only) and with a continuous derivative. (The natural cubic
    spline reads the whole window; the linear one has jumps in dX/ds at the knots, where a
    fixed-step solver starting a step on a knot reads the slope of the previous segment.)
    """

    @keeps_config
    def __init__(
        self,
        input_size: int,
        hidden_size: int = 32,
        output_size: int = 1,
        method: str = "rk4",
        steps_per_gap: int = 1,
        rtol: float = 1e-3,
        atol: float = 1e-4,
        adjoint: bool = False,
    ):
        super().__init__()
        self.input_size, self.adjoint = input_size, adjoint
        self.method = method
        self.min_length = 2  # a path needs two points
        if adjoint and method in FIXED_STEP and steps_per_gap < CDE_ADJOINT_MIN_STEPS:
            warnings.warn(
                f"NeuralCDEFinance(adjoint=True, method={method!r}, steps_per_gap={steps_per_gap}): the adjoint's "
                "gradients are far from backprop's at so few steps (rk4, measured in tests/test_continuous.py: "
                "about 80% at 1 step per gap, 20% at 2, 1% at 4, 0.04% at 8). One step spans a whole gap of the "
                "data's path, and the backward solve re-integrates it with the same coarse steps. Use "
                f"steps_per_gap >= {CDE_ADJOINT_MIN_STEPS} with the adjoint, or adjoint=False",
                stacklevel=3,  # the caller of the model, past keeps_config
            )
        self.solver = _solver_options(method, steps_per_gap, rtol, atol)
        channels = input_size + 2  # time, the features, the observation count
        self.initial = nn.Linear(channels, hidden_size)
        self.func = CDEFunc(channels, hidden_size)
        self.head = mlp_head(hidden_size, hidden_size, output_size)

    def path(self, x: torch.Tensor, times=None, mask=None) -> torch.Tensor:
        """The control's data at the slots: (B, L, C + 2) = [time, forward-filled x, observation count]."""
        x, times, mask = check_irregular(
            x,
            times,
            mask,
            self.input_size,
            min_length=self.min_length,
            model=type(self).__name__,
            module=self,
        )
        elapsed = (times - times[:, :1]).unsqueeze(-1)  # (B, L, 1)
        count = mask.cumsum(dim=1).unsqueeze(-1)  # (B, L, 1)
        return torch.cat([elapsed, forward_fill(x, mask), count], dim=-1)

    def control(self, path: torch.Tensor):
        """The interpolated path X(s) and its coefficients (computed once per batch; s = slot index)."""
        coeffs = torchcde.hermite_cubic_coefficients_with_backward_differences(path)
        return torchcde.CubicSpline(coeffs), coeffs

    def trajectory(self, x, times=None, mask=None, per_step: bool = True) -> torch.Tensor:
        """z at every slot (B, L, H), or at the first and last slot (B, 2, H) with ``per_step=False``."""
        if per_step and self.method not in FIXED_STEP:
            raise ValueError(
                f"per_step outputs need a fixed-step method {FIXED_STEP}: an adaptive solver ({self.method}) "
                "steps past an output time and interpolates back, reading the path after it (look-ahead)"
            )
        X, coeffs = self.control(self.path(x, times, mask))
        z0 = self.initial(X.evaluate(X.interval[0]))  # (B, H)
        t = X.grid_points if per_step else X.interval
        extra = {"adjoint_params": (*self.func.parameters(), coeffs)} if self.adjoint else {}
        return torchcde.cdeint(X=X, func=self.func, z0=z0, t=t, adjoint=self.adjoint, **self.solver, **extra)

    def forward(self, x, times=None, mask=None, per_step: bool = False) -> torch.Tensor:
        z = self.trajectory(x, times, mask, per_step=per_step)  # (B, T, H): time is dimension 1
        return self.head(z) if per_step else self.head(z[:, -1])


class _AttendedField(nn.Module):
    """``dh/dt = g([h, Attention(h, context)])`` with ``context`` carried in the state, ``d context/dt = 0``.

    Query slot k attends to the context of slots <= k (the causal mask), so no step reads the future.
    """

    def __init__(self, hidden_size: int, n_heads: int):
        super().__init__()
        self.attention = nn.MultiheadAttention(hidden_size, n_heads, batch_first=True)
        self.net = nn.Sequential(
            nn.Linear(2 * hidden_size, 2 * hidden_size), nn.Tanh(), nn.Linear(2 * hidden_size, hidden_size)
        )
        self.nfe = 0

    def forward(self, t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        self.nfe += 1
        h, context = state  # (B, L, H) each
        future = causal_mask(h.shape[1], h.device)  # (L, L), True hides the future
        attended, _ = self.attention(h, context, context, attn_mask=future, need_weights=False)
        return self.net(torch.cat([h, attended], dim=-1)), torch.zeros_like(context)


class AttentionNeuralODE(nn.Module):
    """An ODE whose vector field attends to the encoded history (the source's class, with a forward).

        context c_1..c_L = GRU(x_1..x_L)                   (causal encoder)
        h_k(0) = c_k,   dh_k/dt = g([h_k, Attn(h_k, c_1..c_k)])   for t in [0, horizon]
        y_k = head(h_k(horizon))

    The ODE carries the state from the forecast origin across the forecast horizon (one unit of
    time by default), shaped by what it recalls from the window. Regular windows only.
    """

    @keeps_config
    def __init__(
        self,
        input_size: int,
        hidden_size: int = 32,
        output_size: int = 1,
        n_heads: int = 2,
        horizon: float = 1.0,
        method: str = "rk4",
        steps_per_gap: int = 2,
        rtol: float = 1e-3,
        atol: float = 1e-4,
        adjoint: bool = False,
    ):
        super().__init__()
        if hidden_size % n_heads != 0:
            raise ValueError(f"hidden_size {hidden_size} must be divisible by n_heads {n_heads}")
        if horizon <= 0:
            raise ValueError(f"horizon must be > 0, got {horizon}")
        self.input_size, self.horizon, self.adjoint = input_size, horizon, adjoint
        self.solver = _solver_options(method, steps_per_gap, rtol, atol)
        if method in FIXED_STEP:
            self.solver["options"] = {"step_size": horizon / steps_per_gap}
        self.encoder = nn.GRU(input_size, hidden_size, batch_first=True)
        self.func = _AttendedField(hidden_size, n_heads)
        self.head = mlp_head(hidden_size, hidden_size, output_size)

    def forward(self, x: torch.Tensor, per_step: bool = False) -> torch.Tensor:
        x, _, _ = check_irregular(x, None, None, self.input_size, model=type(self).__name__, module=self)
        context, _ = self.encoder(x)  # (B, L, H)
        t = torch.tensor([0.0, self.horizon], dtype=x.dtype, device=x.device)
        odeint = torchdiffeq.odeint_adjoint if self.adjoint else torchdiffeq.odeint
        h, _ = odeint(self.func, (context, context), t, **self.solver)
        h = h[-1]  # (B, L, H) at the end of the horizon
        return self.head(h) if per_step else self.head(h[:, -1])
