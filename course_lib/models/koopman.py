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
    "ar_eigenvalues",
    "bootstrap_dmd",
    "dmd",
    "dmd_control",
    "edmd",
    "half_lives",
    "hankel_ar_coefficients",
    "impulse_response",
    "koopman_loss",
    "logvol_path_to_targets",
    "response_half_life",
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


__getattr__ = moved_names(__name__, {"fit_koopman": "course_lib.training"})
