"""Koopman operators (chapter 06e): DMD and EDMD in numpy, and the deep Koopman network.

A dynamical system x_{t+1} = F(x_t) may be nonlinear in x, yet linear in well-chosen *observables*
g(x): if the span of g_1..g_d is invariant under composition with F, then

    g(x_{t+1}) = K g(x_t)            (K: a d x d matrix, the Koopman operator restricted to the span)

and everything a linear system offers follows: eigenvalues lambda_j (|lambda_j| < 1 decays with a
half-life of ln 0.5 / ln |lambda_j| steps, arg lambda_j is a frequency), modes, and h-step forecasts
by the matrix power K^h.

* :func:`dmd`: exact dynamic mode decomposition (Schmid 2010; Tu et al. 2014), the observables are
  the state itself: K = Y X^+ on a rank-r SVD.
* :func:`edmd`: extended DMD (Williams, Kevrekidis & Rowley 2015), observables from a dictionary you
  choose: K = Psi(X)^+ Psi(Y).
* :class:`DeepKoopmanFinance`: the observables are *learnt* by an encoder, with a decoder back to
  the state (Lusch, Kutz & Brunton 2018).

Why numpy and not pykoopman: the two algorithms are a least-squares solve on an SVD (the lesson
itself, a dozen lines), and pykoopman is not a dependency of the course (nor installed).
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._moved import moved_names
from ..data.features import log_vol_targets
from .common import check_window, keeps_config

__all__ = [
    "DMDResult",
    "DMDcResult",
    "DeepKoopmanFinance",
    "HAVOKResult",
    "ar_eigenvalues",
    "attenuation",
    "bootstrap_dmd",
    "burst_precedence",
    "dmd",
    "dmd_control",
    "edmd",
    "eigenfunctions",
    "half_lives",
    "hankel_ar_coefficients",
    "havok",
    "impulse_response",
    "koopman_loss",
    "logvol_path_to_targets",
    "lorenz",
    "monomials",
    "ou_eigenfunctions",
    "ou_koopman_eigenvalues",
    "response_half_life",
    "simulate_ou",
    "switches",
]


@dataclass
class DMDResult:
    """A fitted linear operator on observables: ``operator`` (d, d) with g_{t+1} = operator @ g_t."""

    operator: np.ndarray  # (d, d) in the coordinates of the observables (reduced for DMD with a rank)
    eigenvalues: np.ndarray  # (r,) complex
    modes: np.ndarray  # (d, r) complex: the eigenvectors in the observables' space
    basis: np.ndarray  # (d_state, r): maps reduced coordinates to the state (identity for EDMD)

    def predict(self, g0: np.ndarray, steps: int) -> np.ndarray:
        """Forecasts g_1..g_steps by repeated application of the operator: (d,) -> (steps, d), or
        (N, d) -> (N, steps, d) for N starting points at once."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        g0 = np.asarray(g0, dtype=float)
        if g0.shape[-1] != self.basis.shape[0]:
            raise ValueError(f"g0 must end with the {self.basis.shape[0]} observables, got shape {g0.shape}")
        z = g0 @ self.basis  # (..., r) reduced coordinates
        out = []
        for _ in range(steps):
            z = z @ self.operator.T
            out.append(z @ self.basis.T)
        return np.stack(out, axis=-2)


def _snapshots(snapshots: np.ndarray) -> np.ndarray:
    snapshots = np.asarray(snapshots, dtype=float)
    if snapshots.ndim != 2 or snapshots.shape[0] < 3:
        raise ValueError(
            f"snapshots must be a (T >= 3, d) array, one row per time step, got shape {snapshots.shape}"
        )
    if not np.isfinite(snapshots).all():
        raise ValueError("snapshots contain NaN or inf values")
    return snapshots


def _dmd_pairs(X: np.ndarray, Y: np.ndarray, rank: int | None) -> DMDResult:
    """DMD from snapshot pairs as columns, X (d, m) and Y (d, m) with y_j = F(x_j)."""
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    r = len(s) if rank is None else int(rank)
    if not 1 <= r <= len(s):
        raise ValueError(f"rank must lie in 1..{len(s)} (the state dimension), got {rank}")
    U, s, V = U[:, :r], s[:r], Vt[:r].T
    A_r = U.T @ Y @ V / s  # (r, r)
    eigenvalues, w = np.linalg.eig(A_r)
    modes = (Y @ V / s) @ w / np.where(np.abs(eigenvalues) > 1e-12, eigenvalues, 1.0)
    return DMDResult(operator=A_r, eigenvalues=eigenvalues, modes=modes, basis=U)


def dmd(snapshots: np.ndarray, rank: int | None = None) -> DMDResult:
    """Exact DMD of a (T, d) trajectory: the best linear map x_{t+1} ~ A x_t, on a rank-r SVD of X.

    With X = [x_0 .. x_{T-2}], Y = [x_1 .. x_{T-1}] (columns) and X ~ U S V^T (rank r):
    A_r = U^T Y V S^{-1} (r, r); its eigenvalues are the DMD eigenvalues and the exact modes are
    Y V S^{-1} w / lambda (Tu et al. 2014).

    On a delay embedding (Hankel DMD: row t holds x_{t-D+1} .. x_t) the newest coordinate of the forecast
    is a linear combination of the last D values: Hankel DMD *is* an AR(D) model, of reduced rank r
    (:func:`hankel_ar_coefficients`); at full rank, the AR(D) fitted by least squares without intercept.
    """
    data = _snapshots(snapshots)
    return _dmd_pairs(data[:-1].T, data[1:].T, rank)


def bootstrap_dmd(
    snapshots: np.ndarray, rank: int | None = None, n_boot: int = 200, block: int = 50, seed: int = 0
) -> np.ndarray:
    """Eigenvalues of DMD refitted on moving-block bootstrap resamples (Kunsch 1989) of the snapshot
    pairs (x_t, x_{t+1}): blocks of ``block`` consecutive pairs keep the serial dependence.

    Returns (n_boot, r) complex eigenvalues, each row sorted by modulus, largest (slowest) first: the
    j-th column is "the j-th slowest mode" (matching by rank; modes of similar modulus may swap).
    """
    data = _snapshots(snapshots)
    X, Y = data[:-1].T, data[1:].T
    m = X.shape[1]
    if not 1 <= block < m or n_boot < 1:
        raise ValueError(
            f"need 1 <= block < {m} (the number of pairs) and n_boot >= 1, got {block}, {n_boot}"
        )
    rng = np.random.default_rng(seed)
    starts_per_draw = int(np.ceil(m / block))
    out = []
    for _ in range(n_boot):
        starts = rng.integers(0, m - block + 1, starts_per_draw)
        idx = (starts[:, None] + np.arange(block)).ravel()[:m]
        values = _dmd_pairs(X[:, idx], Y[:, idx], rank).eigenvalues
        out.append(values[np.argsort(-np.abs(values), kind="stable")])
    return np.array(out)


def hankel_ar_coefficients(result: DMDResult) -> np.ndarray:
    """The AR coefficients of a Hankel DMD, (D,), lag 1 first: x_{t+1} ~ sum_k c_k x_{t+1-k}.

    The one-step map on delay vectors (oldest ... newest) is basis @ operator @ basis^T; its last row
    forecasts the newest value from the D values in the window.
    """
    row = (result.basis @ result.operator @ result.basis.T)[-1]  # (D,) weights on oldest ... newest
    return row[::-1].real


def impulse_response(ar: np.ndarray, steps: int) -> np.ndarray:
    """Response of an AR(p) with coefficients ``ar`` (lag 1 first) to a unit shock at step 0, (steps + 1,)."""
    ar = np.asarray(ar, dtype=float)
    path = np.zeros(steps + 1)
    path[0] = 1.0
    for t in range(1, steps + 1):
        k = min(t, len(ar))
        path[t] = ar[:k] @ path[t - 1 :: -1][:k]  # sum_j ar_j path_{t-j}
    return path


def ar_eigenvalues(ar: np.ndarray) -> np.ndarray:
    """Eigenvalues of an AR(p)'s companion matrix (the roots of z^p - sum_k ar_k z^(p-k)), largest first."""
    ar = np.asarray(ar, dtype=float)
    companion = np.eye(len(ar), k=-1)
    companion[0] = ar
    values = np.linalg.eigvals(companion)
    return values[np.argsort(-np.abs(values), kind="stable")]


def response_half_life(response: np.ndarray) -> float:
    """First step at which an impulse response has fallen to half its initial size or below (inf if never)."""
    below = np.nonzero(np.abs(response) <= 0.5 * abs(response[0]))[0]
    return float(below[0]) if len(below) else np.inf


@dataclass
class DMDcResult:
    """DMD with control: x_{t+1} ~ A x_t + B u_t; ``eigenvalues`` are A's (the unforced dynamics)."""

    A: np.ndarray  # (d, d)
    B: np.ndarray  # (d, q)
    eigenvalues: np.ndarray

    def simulate(self, x0: np.ndarray, controls: np.ndarray) -> np.ndarray:
        """Run the fitted model x_{t+1} = A x_t + B u_t from x0 (d,) under the inputs ``controls``
        (T - 1, q) or (T - 1,): the trajectory (T, d), x0 first. Errors compound: nothing is corrected
        from the data along the way (HAVOK's reconstruction, :func:`havok`)."""
        x0 = np.asarray(x0, dtype=float)
        u = np.asarray(controls, dtype=float)
        u = u[:, None] if u.ndim == 1 else u
        if x0.shape != (self.A.shape[0],):
            raise ValueError(f"x0 must have shape ({self.A.shape[0]},), got {x0.shape}")
        if u.ndim != 2 or u.shape[1] != self.B.shape[1]:
            raise ValueError(f"controls must be (T - 1, {self.B.shape[1]}) inputs, got shape {u.shape}")
        path = np.empty((len(u) + 1, len(x0)))  # (T, d)
        path[0] = x0
        for t in range(len(u)):
            path[t + 1] = self.A @ path[t] + self.B @ u[t]
        return path


def dmd_control(snapshots: np.ndarray, controls: np.ndarray) -> DMDcResult:
    """DMD with control (Proctor, Brunton & Kutz 2016): [A B] = Y [X; U]^+ for a (T, d) trajectory and
    the (T - 1, q) inputs u_0 .. u_{T-2} applied between its steps.

    Plain DMD on a forced system folds the inputs into A and gets its eigenvalues wrong; with the inputs
    in the regression, B is the response of x_{t+1} to a change of u_t with x_t held fixed: the
    effect of an intervention on the input, if the inputs vary independently of the noise.
    """
    data = _snapshots(snapshots)
    u = np.asarray(controls, dtype=float)
    u = u[:, None] if u.ndim == 1 else u
    if u.shape[0] != data.shape[0] - 1:
        raise ValueError(f"controls must have T - 1 = {data.shape[0] - 1} rows (one per step), got {u.shape}")
    d = data.shape[1]
    G = np.linalg.lstsq(np.column_stack([data[:-1], u]), data[1:], rcond=None)[0].T  # (d, d + q)
    A, B = G[:, :d], G[:, d:]
    return DMDcResult(A=A, B=B, eigenvalues=np.linalg.eigvals(A))


def edmd(snapshots: np.ndarray, dictionary) -> DMDResult:
    """Extended DMD: K = Psi(X)^+ Psi(Y) for observables ``dictionary(x)`` (T, d) -> (T, m).

    Row convention inside (Psi(Y) ~ Psi(X) K^T); the returned operator acts on column vectors like
    :func:`dmd`'s: psi(x_{t+1}) ~ operator @ psi(x_t).
    """
    data = _snapshots(snapshots)
    psi = np.asarray(dictionary(data), dtype=float)
    if psi.ndim != 2 or psi.shape[0] != data.shape[0]:
        raise ValueError(f"dictionary must map (T, d) to (T, m) observables, got shape {psi.shape}")
    coefficients, *_ = np.linalg.lstsq(psi[:-1], psi[1:], rcond=None)  # (m, m): Psi(Y) ~ Psi(X) C
    operator = coefficients.T
    eigenvalues, modes = np.linalg.eig(operator)
    return DMDResult(operator=operator, eigenvalues=eigenvalues, modes=modes, basis=np.eye(psi.shape[1]))


def discrete_spectrum_flow(
    x0: np.ndarray, steps: int, mu: float = -0.05, lam: float = -1.0, dt: float = 0.1
) -> np.ndarray:
    """Exact samples every ``dt`` of Lusch et al.'s discrete-spectrum example, x1' = mu x1,
    x2' = lam (x2 - x1^2): (2,) -> (steps, 2), or (N, 2) -> (N, steps, 2), starting at x0.

    Linear in the observables (x1, x2, x1^2), with eigenvalues exp(mu dt), exp(lam dt), exp(2 mu dt).
    """
    x0 = np.asarray(x0, dtype=float)
    if x0.shape[-1] != 2 or x0.ndim > 2 or steps < 1:
        raise ValueError(f"x0 must be (2,) or (N, 2) and steps >= 1, got {x0.shape} and {steps}")
    a, b, c = np.exp(mu * dt), np.exp(lam * dt), lam / (lam - 2 * mu)
    x = [x0]
    for _ in range(steps - 1):
        x1, x2 = x[-1][..., 0], x[-1][..., 1]
        x.append(np.stack([a * x1, b * (x2 - c * x1**2) + c * a**2 * x1**2], axis=-1))
    return np.stack(x, axis=-2)


def half_lives(eigenvalues, dt: float = 1.0) -> np.ndarray:
    """Half-life ln(0.5) / ln|lambda| * dt of each mode (inf for |lambda| >= 1: it never halves)."""
    modulus = np.abs(np.asarray(eigenvalues))
    with np.errstate(divide="ignore"):
        life = np.log(0.5) / np.log(np.where(modulus > 0, modulus, 1e-300)) * dt
    return np.where(modulus < 1, life, np.inf)


def logvol_path_to_targets(path: np.ndarray, horizons) -> np.ndarray:
    """Daily log-volatility forecasts (N, H) -> the course's targets 0.5 log(mean variance over h days),
    (N, n_horizons), for each h in ``horizons`` (h <= H): a plug-in that ignores Jensen's gap.

    The variances exp(2 v) of the path are aggregated by :func:`course_lib.data.features.log_vol_targets`.
    """
    path = np.asarray(path, dtype=float)
    if path.ndim != 2 or max(horizons) > path.shape[1]:
        raise ValueError(f"path must be (N, H >= {max(horizons)}) daily log volatilities, got {path.shape}")
    return log_vol_targets(np.exp(2 * path), horizons)


class DeepKoopmanFinance(nn.Module):
    """Deep Koopman network (Lusch, Kutz & Brunton 2018, Nature Communications 9:4950).

        z_t = phi(x_{t-D+1}, ..., x_t)        encoder: observables of the last D steps (a delay embedding)
        z_{t+1} = K z_t                         linear latent dynamics, K a (d, d) matrix
        x_hat_{t+h} = psi(K^h z_t)              decoder back to the state

    ``forward(x)`` returns the one-step forecast of the state, psi(K z_L) (B, input_size), or with
    ``per_step=True`` the forecast made at every step (B, L, input_size); ``rollout(x, steps)`` gives
    psi(K^h z_L) for h = 1..steps. Train with :func:`koopman_loss`: reconstruction, linearity of the
    latent dynamics and prediction over a horizon of several steps, plus an optional penalty on
    eigenvalues of modulus > 1. Early steps of a window are left-padded with zeros (the training mean
    of scaled inputs) when fewer than D steps exist.

    Not in the source module's version: its ``eigenvalue_predictor`` layer was never called, so it
    never learnt (docs/errata.md). Lusch's *auxiliary network*, which makes the eigenvalues depend on
    the state for a continuous spectrum, is what it was meant to be; here K is one matrix (a discrete
    spectrum), whose eigenvalues :meth:`eigen` reads.
    """

    @keeps_config
    def __init__(
        self,
        input_size: int,
        hidden_size: int = 32,
        latent_size: int = 4,
        n_delays: int = 1,
        dropout: float = 0.0,
    ):
        super().__init__()
        if min(input_size, hidden_size, latent_size, n_delays) < 1:
            raise ValueError("input_size, hidden_size, latent_size and n_delays must all be >= 1")
        self.input_size, self.n_delays = input_size, n_delays
        self.encoder = nn.Sequential(
            nn.Linear(input_size * n_delays, hidden_size),
            nn.Tanh(),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, latent_size),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_size, hidden_size), nn.Tanh(), nn.Linear(hidden_size, input_size)
        )
        # distinct, stable eigenvalues at the start (eigvals' gradient is singular for repeated ones)
        start = torch.diag(torch.linspace(0.5, 0.95, latent_size)) + 0.01 * torch.randn(
            latent_size, latent_size
        )
        self.K = nn.Parameter(start)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Observables at every step: (B, L, C) -> (B, L, d), z_t from x_{t-D+1..t} (causal)."""
        check_window(x, self.input_size, model=type(self).__name__, module=self)
        padded = F.pad(x, (0, 0, self.n_delays - 1, 0))  # (B, L + D - 1, C), zeros before the window
        delays = padded.unfold(1, self.n_delays, 1)  # (B, L, C, D): step t holds x_{t-D+1..t}
        return self.encoder(delays.transpose(2, 3).flatten(2))  # (B, L, d)

    def step(self, z: torch.Tensor) -> torch.Tensor:
        """One step of the latent dynamics, z K^T for row vectors z (..., d)."""
        return z @ self.K.T

    def forward(self, x: torch.Tensor, per_step: bool = False) -> torch.Tensor:
        z = self.encode(x)  # (B, L, d)
        z = z if per_step else z[:, -1]
        return self.decoder(self.step(z))  # (B, L, C) or (B, C)

    def rollout(self, x: torch.Tensor, steps: int) -> torch.Tensor:
        """Forecasts psi(K^h z_L) for h = 1..steps, (B, steps, C), with K^h by matrix powers."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        z = self.encode(x)[:, -1]  # (B, d)
        powers = torch.stack([torch.linalg.matrix_power(self.K, h) for h in range(1, steps + 1)])  # (H, d, d)
        return self.decoder(torch.einsum("hij,bj->bhi", powers, z))  # (B, H, C)

    def eigen(self) -> tuple[np.ndarray, np.ndarray]:
        """Eigenvalues (d,) and modes (d, d, columns) of K, as complex numpy arrays."""
        eigenvalues, modes = np.linalg.eig(self.K.detach().cpu().double().numpy())
        return eigenvalues, modes

    def stability_penalty(self) -> torch.Tensor:
        """sum_j relu(|lambda_j(K)| - 1)^2: zero while every mode decays (no gradient through eig then)."""
        with torch.no_grad():
            unstable = bool((torch.linalg.eigvals(self.K).abs() > 1).any())
        if not unstable:
            return self.K.sum() * 0.0
        return F.relu(torch.linalg.eigvals(self.K).abs() - 1).pow(2).sum()


def koopman_loss(
    model: DeepKoopmanFinance, x: torch.Tensor, horizon: int, stability: float = 0.0
) -> dict[str, torch.Tensor]:
    """The losses of Lusch et al. on sequences x (B, T, C), over a prediction horizon H (T > D - 1 + H).

    With z_t the encoding at step t (t >= D - 1, so that every delay is real data):
    ``reconstruction`` mean |psi(z_t) - x_t|^2; ``linearity`` mean over h = 1..H of |K^h z_t - z_{t+h}|^2;
    ``prediction`` mean over h of |psi(K^h z_t) - x_{t+h}|^2; ``stability`` the eigenvalue penalty
    (weighted by ``stability``). ``total`` is their sum.
    """
    check_window(x, model.input_size, min_length=model.n_delays + horizon, model="koopman_loss", module=model)
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    first = model.n_delays - 1
    z = model.encode(x)[:, first:]  # (B, T', d) from complete delay windows only
    target = x[:, first:]  # (B, T', C)
    n = z.shape[1] - horizon  # origins with H future steps
    losses = {"reconstruction": F.mse_loss(model.decoder(z), target)}
    linear, pred = [], []
    z_h = z[:, :n]
    for h in range(1, horizon + 1):
        z_h = model.step(z_h)  # K^h z_t
        linear.append(F.mse_loss(z_h, z[:, h : h + n]))
        pred.append(F.mse_loss(model.decoder(z_h), target[:, h : h + n]))
    losses["linearity"] = torch.stack(linear).mean()
    losses["prediction"] = torch.stack(pred).mean()
    losses["stability"] = model.stability_penalty()
    losses["total"] = (
        losses["reconstruction"]
        + losses["linearity"]
        + losses["prediction"]
        + stability * losses["stability"]
    )
    return losses


@torch.no_grad()
def linearity_residual(model: DeepKoopmanFinance, x: torch.Tensor) -> float:
    """|K z_t - z_{t+1}| / |z_{t+1} - mean z| over sequences x (B, T, C): how far the latent dynamics are
    from linear. Scale-free, so an encoder that shrinks every z towards 0 cannot make it small."""
    z = model.encode(x)
    target = z[:, 1:]
    return ((model.step(z[:, :-1]) - target).norm() / (target - target.mean((0, 1))).norm()).item()


# --- HAVOK: chaos as an intermittently forced linear system ---------------------------------------


@dataclass
class HAVOKResult:
    """A HAVOK fit (:func:`havok`): v_{t+1} = A v_t + B f_t on the eigen-time-delay coordinates.

    ``coordinates`` (T', r) are the first r right singular vectors of the Hankel matrix, one row per
    delay window (unit-norm columns, so their size is comparable, not their variance), ``forcing`` is
    their last column v_r, ``reconstruction`` (T', r - 1) is the model run from the first row under the
    measured forcing, never corrected by the data. ``modes`` (n_delays, r) are the delay-space shapes
    (oldest lag first), ``singular_values`` all of them, ``dt`` the sampling step.
    """

    A: np.ndarray  # (r - 1, r - 1) discrete-time: A = exp(dt A_c)
    B: np.ndarray  # (r - 1, 1)
    forcing: np.ndarray  # (T',) v_r
    coordinates: np.ndarray  # (T', r) v_1 .. v_r
    reconstruction: np.ndarray  # (T', r - 1)
    modes: np.ndarray  # (n_delays, r)
    singular_values: np.ndarray  # (n_delays,)
    dt: float

    def simulate(self, forcing: np.ndarray) -> np.ndarray:
        """The fitted model run from the first row of the coordinates under ``forcing`` (T' - 1,): (T', r - 1).
        The measured forcing gives :attr:`reconstruction`; zeros give the unforced linear part alone."""
        model = DMDcResult(A=self.A, B=self.B, eigenvalues=np.linalg.eigvals(self.A))
        return model.simulate(self.coordinates[0, :-1], forcing)

    @property
    def generator(self) -> tuple[np.ndarray, np.ndarray]:
        """The continuous-time model dv/dt = A_c v + B_c v_r of Brunton et al.'s paper, read off the
        discrete one: A_c = log(A) / dt (matrix logarithm) and, holding v_r constant over each step
        (zero-order hold, B = A_c^{-1} (A - I) B_c), B_c = (A - I)^{-1} A_c B."""
        from scipy.linalg import logm

        A_c = np.real_if_close(logm(self.A), tol=1e6) / self.dt  # (r - 1, r - 1)
        B_c = np.linalg.solve(self.A - np.eye(len(self.A)), A_c @ self.B)  # (r - 1, 1)
        return np.real(A_c), np.real(B_c)


def havok(x: np.ndarray, n_delays: int, rank: int, dt: float = 1.0) -> HAVOKResult:
    """HAVOK (Brunton, Brunton, Proctor, Kaiser & Kutz 2017, "Chaos as an intermittently forced linear
    system"): a linear model on delay coordinates, driven by its last coordinate.

    1. Hankel matrix of the scalar series x (T,): row t is the window (x_t .. x_{t+D-1}), D = ``n_delays``,
       H (T - D + 1, D) (numpy's sliding_window_view, the layout of Hankel DMD in this module).
    2. SVD H = V S U^T; the first r columns of V are the eigen-time-delay coordinates v_1 .. v_r.
    3. Fit, in discrete time, v_{t+1} = A v_t + B v_r(t) on v = (v_1 .. v_{r-1}): that is DMD with control
       (:func:`dmd_control`) with v_r as the input. The paper regresses dv/dt (a finite-difference
       derivative) on v instead; the two describe one model, A = exp(dt A_c) (see
       :attr:`HAVOKResult.generator`), and the discrete form needs no derivative of noisy data.
    4. Reconstruction: the model run from v(0) under the measured forcing (:meth:`DMDcResult.simulate`).

    On a linear system with at most r - 1 modes the delay coordinates evolve exactly linearly and the
    forcing does nothing (B ~ 0, S_r ~ 0); on a chaotic one the first r - 1 coordinates are nearly
    linear and v_r is quiet most of the time, with bursts where the dynamics switch (the Lorenz lobes).
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"x must be a 1-D series (T,), got shape {x.shape}; pass one column")
    if not np.isfinite(x).all():
        raise ValueError("x contains NaN or inf values; drop or fill them first")
    if not isinstance(n_delays, (int, np.integer)) or n_delays < 2:
        raise ValueError(f"n_delays must be an integer >= 2, got {n_delays!r}")
    if len(x) < n_delays + 3:
        raise ValueError(f"x needs at least n_delays + 3 = {n_delays + 3} values, got {len(x)}")
    if not isinstance(rank, (int, np.integer)) or not 2 <= rank <= n_delays:
        raise ValueError(f"rank must be an integer in 2..n_delays = {n_delays}, got {rank!r}")
    if not dt > 0:
        raise ValueError(f"dt must be > 0, got {dt}")
    hankel = np.lib.stride_tricks.sliding_window_view(x, n_delays)  # (T', D): oldest ... newest
    V, s, Ut = np.linalg.svd(hankel, full_matrices=False)  # V (T', D), s (D,), Ut (D, D)
    v = V[:, :rank]  # (T', r)
    fit = dmd_control(v[:, :-1], v[:-1, -1])  # v_{t+1} = A v_t + B v_r(t)
    return HAVOKResult(
        A=fit.A,
        B=fit.B,
        forcing=v[:, -1],
        coordinates=v,
        reconstruction=fit.simulate(v[0, :-1], v[:-1, -1]),
        modes=Ut[:rank].T,
        singular_values=s,
        dt=float(dt),
    )


def switches(x: np.ndarray, band: float = 0.0) -> np.ndarray:
    """Regime switches of a series (T,) -> bool (T,): True at t when the regime changes at t.

    The regime is the side of zero x is on, with hysteresis: it turns positive when x > band and
    negative when x < -band (a Schmitt trigger), so a series wandering inside the band does not
    chatter. band = 0 gives the sign changes (the Lorenz lobe switches of x). The first regime is set
    by the first value outside the band; no switch is counted before it.
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 1 or not np.isfinite(x).all():
        raise ValueError(f"x must be a finite 1-D series (T,), got shape {x.shape}")
    if band < 0:
        raise ValueError(f"band must be >= 0, got {band}")
    out = np.zeros(len(x), dtype=bool)
    state = 0
    for t, value in enumerate(x):
        new = 1 if value > band else -1 if value < -band else state
        out[t] = state != 0 and new != state
        state = new
    return out


def burst_precedence(events: np.ndarray, bursts: np.ndarray, window: int) -> dict:
    """How often an event is preceded by a burst, against chance.

    ``events`` and ``bursts`` are bool (T,). ``hit_rate``: the share of events at t with a burst in
    t - window .. t - 1; ``base_rate``: the same share over every t >= window (how often *any* step is so
    preceded). ``lift`` = hit_rate / base_rate (1: no more than chance); ``p_value``: one-sided binomial
    test of the hits against the base rate, which treats the events as independent (an approximation
    when they cluster). An association in time, not a cause: a burst may only mark that a switch is
    under way.
    """
    from scipy.stats import binomtest

    events, bursts = np.asarray(events, dtype=bool), np.asarray(bursts, dtype=bool)
    if events.shape != bursts.shape or events.ndim != 1:
        raise ValueError(
            f"events and bursts must be bool (T,) of one length, got {events.shape}, {bursts.shape}"
        )
    if not isinstance(window, (int, np.integer)) or not 1 <= window < len(events):
        raise ValueError(f"window must be an integer in 1..{len(events) - 1}, got {window!r}")
    counts = np.concatenate([[0], np.cumsum(bursts)])
    preceded = (counts[window:-1] - counts[: -window - 1]) > 0  # (T - window,): a burst in t-window..t-1
    at = events[window:]
    hits, n = int(preceded[at].sum()), int(at.sum())
    base = float(preceded.mean())
    return {
        "events": n,
        "hits": hits,
        "hit_rate": hits / n if n else np.nan,
        "base_rate": base,
        "lift": hits / n / base if n and base > 0 else np.nan,
        "p_value": binomtest(hits, n, base, alternative="greater").pvalue if n and 0 < base < 1 else np.nan,
    }


def lorenz(
    x0=(-8.0, 8.0, 27.0), t_end: float = 50.0, dt: float = 0.01, sigma=10.0, rho=28.0, beta=8.0 / 3.0
) -> np.ndarray:
    """The Lorenz system x' = sigma (y - x), y' = x (rho - z) - y, z' = x y - beta z sampled every dt
    from x0 (scipy's solve_ivp, RK45 at rtol 1e-10): (round(t_end / dt) + 1, 3)."""
    from scipy.integrate import solve_ivp

    if not (t_end > 0 and dt > 0):
        raise ValueError(f"t_end and dt must be > 0, got {t_end} and {dt}")

    def rhs(_, s):
        return [sigma * (s[1] - s[0]), s[0] * (rho - s[2]) - s[1], s[0] * s[1] - beta * s[2]]

    t = np.arange(round(t_end / dt) + 1) * dt
    sol = solve_ivp(rhs, (0.0, t[-1]), np.asarray(x0, dtype=float), t_eval=t, rtol=1e-10, atol=1e-10)
    return sol.y.T


# --- The stochastic Koopman operator ----------------------------------------------------------------


def simulate_ou(
    n: int, theta: float = 1.0, sigma: float = 1.0, dt: float = 0.1, n_paths: int = 1, seed: int = 0
) -> np.ndarray:
    """Exact samples of the Ornstein-Uhlenbeck process dX = -theta X dt + sigma dW every dt, started in
    its stationary law N(0, sigma^2 / (2 theta)): (n_paths, n). An AR(1) with phi = exp(-theta dt) and
    innovation variance sigma^2 (1 - phi^2) / (2 theta)."""
    if not (theta > 0 and sigma > 0 and dt > 0) or n < 2 or n_paths < 1:
        raise ValueError(
            f"need theta, sigma, dt > 0, n >= 2 and n_paths >= 1, got {theta}, {sigma}, {dt}, {n}, {n_paths}"
        )
    rng = np.random.default_rng(seed)
    phi, sd = np.exp(-theta * dt), sigma / np.sqrt(2 * theta)
    x = np.empty((n_paths, n))
    x[:, 0] = sd * rng.standard_normal(n_paths)
    shocks = sd * np.sqrt(1 - phi**2) * rng.standard_normal((n_paths, n - 1))
    for t in range(n - 1):
        x[:, t + 1] = phi * x[:, t] + shocks[:, t]
    return x


def monomials(degree: int):
    """The dictionary psi(x) = (1, x, x^2, .., x^degree) for EDMD on a scalar state: (T, 1) -> (T, degree + 1)."""
    if not isinstance(degree, (int, np.integer)) or degree < 1:
        raise ValueError(f"degree must be an integer >= 1, got {degree!r}")

    def dictionary(x):
        x = np.asarray(x, dtype=float)
        if x.ndim != 2 or x.shape[1] != 1:
            raise ValueError(f"monomials act on a scalar state (T, 1), got shape {x.shape}")
        return x ** np.arange(degree + 1)  # (T, degree + 1)

    return dictionary


def ou_koopman_eigenvalues(theta: float, dt: float, degree: int) -> np.ndarray:
    """Eigenvalues exp(-k theta dt), k = 0 .. degree, of the stochastic Koopman operator
    K f(x) = E[f(X_{t+dt}) | X_t = x] of the OU process dX = -theta X dt + sigma dW (Mezic 2005): its
    eigenfunctions are the Hermite polynomials He_k(x / s), s^2 = sigma^2 / (2 theta), whatever sigma.

    The polynomials of degree <= n are an invariant subspace (E[X_{t+dt}^k | X_t = x] is a polynomial of
    degree k in x), so EDMD on :func:`monomials` up to n estimates these eigenvalues without bias."""
    if not (theta > 0 and dt > 0):
        raise ValueError(f"theta and dt must be > 0, got {theta} and {dt}")
    return np.exp(-np.arange(degree + 1) * theta * dt)


def eigenfunctions(result: DMDResult) -> tuple[np.ndarray, np.ndarray]:
    """Koopman eigenfunctions of an EDMD fit: phi_j(x) = psi(x) @ W[:, j], slowest (largest modulus) first.

    psi(x_{t+1}) ~ K psi(x_t) makes phi = w^T psi an eigenfunction, phi(x_{t+1}) ~ lambda phi(x_t), when
    w is a *left* eigenvector of K (w^T K = lambda w^T). Returns the eigenvalues (m,) and W (m, m), each
    column scaled so that its largest entry is 1 (an eigenfunction is defined up to a factor).
    """
    values, W = np.linalg.eig(np.asarray(result.operator).T)  # left eigenvectors of K
    order = np.argsort(-np.abs(values), kind="stable")
    values, W = values[order], W[:, order]
    W = W / W[np.abs(W).argmax(axis=0), np.arange(W.shape[1])]
    return values, W


def ou_eigenfunctions(theta: float, sigma: float, degree: int) -> np.ndarray:
    """Monomial coefficients of the OU process's Koopman eigenfunctions, the Hermite polynomials
    He_k(x / s) with s^2 = sigma^2 / (2 theta), k = 0 .. degree: (degree + 1, degree + 1), column k holds
    the coefficients of 1, x, .., x^degree, scaled like :func:`eigenfunctions` (largest entry 1)."""
    if not (theta > 0 and sigma > 0):
        raise ValueError(f"theta and sigma must be > 0, got {theta} and {sigma}")
    s = sigma / np.sqrt(2 * theta)
    out = np.zeros((degree + 1, degree + 1))
    for k in range(degree + 1):
        coef = np.polynomial.hermite_e.herme2poly(np.eye(degree + 1)[k])[: k + 1]  # He_k(y) in powers of y
        out[: k + 1, k] = coef / s ** np.arange(k + 1)
    return out / out[np.abs(out).argmax(axis=0), np.arange(degree + 1)]


def attenuation(state_var: float, noise_var: float) -> float:
    """Errors-in-variables factor var(x) / (var(x) + var(noise)): least squares of y_{t+1} on y_t, with
    y = x + noise observed and x an AR(1) with coefficient phi, estimates phi times this factor
    (cov(y_{t+1}, y_t) = phi var(x), var(y_t) = var(x) + var(noise)): DMD's eigenvalue is pulled to 0."""
    if state_var <= 0 or noise_var < 0:
        raise ValueError(f"need state_var > 0 and noise_var >= 0, got {state_var} and {noise_var}")
    return state_var / (state_var + noise_var)


__getattr__ = moved_names(__name__, {"fit_koopman": "course_lib.training"})
