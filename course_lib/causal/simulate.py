"""Simulators with a known causal answer (chapter 06f): every estimator of the chapter is scored on them.

* :func:`simulate_treatment`: one decision at the end of a history, confounded by a covariate
  (optionally by a hidden one too): a *point-treatment* problem.
* :func:`simulate_feedback`: a treatment at every step that changes the future confounder
  (treatment-confounder feedback): the effect of a treatment *regime*, where regression on the history
  is biased and the g-methods are not (Robins 1986; Robins, Hernan & Brumback 2000).
* :func:`simulate_var`: a stationary VAR with a known Granger graph.
* :func:`simulate_common_driver`: a driver z that moves x and, later, y; leave z out and x
  "Granger-causes" y though it has no effect on it.
* :func:`simulate_heteroskedastic_pair`: no Granger causality, but the cause's past sets the effect's
  noise variance: the homoskedastic F test over-rejects, a heteroskedasticity-robust Wald test does not.
"""

from dataclasses import dataclass

import numpy as np

__all__ = [
    "FeedbackData",
    "TreatmentData",
    "simulate_common_driver",
    "simulate_feedback",
    "simulate_heteroskedastic_pair",
    "simulate_treatment",
    "simulate_var",
]


@dataclass
class TreatmentData:
    """Histories x (N, L, 2): covariate and past treatment; the decision ``treatment`` (N,) at the end;
    the observed ``outcome`` (N,) and both potential outcomes ``y0``, ``y1``; the true ``effect``; and
    ``unobserved`` (N,), the draw of the hidden confounder v (an oracle's view, for sensitivity analysis)."""

    x: np.ndarray
    treatment: np.ndarray
    outcome: np.ndarray
    y0: np.ndarray
    y1: np.ndarray
    effect: float
    unobserved: np.ndarray


def simulate_treatment(
    n: int = 2000,
    length: int = 10,
    effect: float = 1.0,
    confounding: float = 1.0,
    hidden: float = 0.0,
    noise: float = 0.5,
    seed: int = 0,
) -> TreatmentData:
    """Time-varying confounding with feedback, a known constant effect and both potential outcomes.

        c_t = 0.7 c_{t-1} - 0.5 a_{t-1} + u + e_t           covariate (a volatility-like state); past
                                                                treatment lowers it (feedback)
        P(a_t = 1) = sigmoid(confounding * (c_t + hidden * v))   treatment chosen on the state
        y(a) = effect * a + c_L + 0.5 c_{L-1} + hidden * v + noise

    u ~ N(0, 0.3^2) per sample is a level seen through the history of c. v ~ N(0, 1) is never observed:
    with ``hidden > 0`` it drives both the treatment and the outcome, a hidden confounder that leaves
    the effect unidentified from (x, a, y). ``confounding = 0`` is a randomised trial.
    """
    if n < 2 or length < 2:
        raise ValueError(f"need n >= 2 samples and length >= 2 steps, got n={n}, length={length}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    u, v = 0.3 * rng.standard_normal(n), rng.standard_normal(n)
    c = np.zeros((n, length))
    a = np.zeros((n, length))
    prev_c, prev_a = np.zeros(n), np.zeros(n)
    for t in range(length):
        c[:, t] = 0.7 * prev_c - 0.5 * prev_a + u + 0.5 * rng.standard_normal(n)
        p = 1.0 / (1.0 + np.exp(-confounding * (c[:, t] + hidden * v)))
        a[:, t] = rng.random(n) < p
        prev_c, prev_a = c[:, t], a[:, t]
    base = c[:, -1] + 0.5 * c[:, -2] + hidden * v + noise * rng.standard_normal(n)
    y0, y1 = base, base + effect
    treatment = a[:, -1]
    x = np.stack([c, np.concatenate([np.zeros((n, 1)), a[:, :-1]], axis=1)], axis=-1)  # past treatments only
    outcome = np.where(treatment == 1, y1, y0)
    return TreatmentData(
        x.astype(np.float32), treatment.astype(np.float32), outcome, y0, y1, float(effect), v
    )


def simulate_var(coefs: np.ndarray, n: int, noise: float = 1.0, seed: int = 0, burn: int = 200) -> np.ndarray:
    """(n, k) draws of the VAR(p) x_t = sum_i A_i x_{t-i} + e_t, ``coefs`` (p, k, k), e_t ~ N(0, noise^2 I).

    Entry A_i[j, m] != 0 is the edge m -> j at lag i: the true Granger graph. Refuses a non-stationary VAR.
    """
    coefs = np.asarray(coefs, dtype=float)
    if coefs.ndim != 3 or coefs.shape[1] != coefs.shape[2]:
        raise ValueError(f"coefs must have shape (p, k, k), got {coefs.shape}")
    p, k, _ = coefs.shape
    companion = np.zeros((p * k, p * k))
    companion[:k] = np.concatenate(list(coefs), axis=1)
    companion[k:, :-k] = np.eye((p - 1) * k)
    if np.abs(np.linalg.eigvals(companion)).max() >= 1:
        raise ValueError("this VAR is not stationary (a companion eigenvalue has modulus >= 1)")
    rng = np.random.default_rng(seed)
    x = np.zeros((n + burn, k))
    for t in range(p, n + burn):
        x[t] = sum(coefs[i] @ x[t - 1 - i] for i in range(p)) + noise * rng.standard_normal(k)
    return x[burn:]


@dataclass
class FeedbackData:
    """Covariates ``L`` (N, T), treatments ``A`` (N, T) and the final ``outcome`` (N,) of
    :func:`simulate_feedback`; ``y_always`` and ``y_never`` are each unit's potential outcomes under the
    regimes "treat at every step" and "never treat" (same noise), ``effect`` the closed-form
    E[Y(always)] - E[Y(never)]."""

    L: np.ndarray
    A: np.ndarray
    outcome: np.ndarray
    y_always: np.ndarray
    y_never: np.ndarray
    effect: float

    def history(self, t: int) -> np.ndarray:
        """The history up to the decision at step t, (N, t + 1, 2): column 0 holds L_0..L_t, column 1
        the treatment of the step before (0 at step 0), the layout of :func:`simulate_treatment`'s x."""
        if not 0 <= t < self.A.shape[1]:
            raise ValueError(f"t must lie in 0..{self.A.shape[1] - 1}, got {t}")
        past = np.concatenate([np.zeros((len(self.A), 1)), self.A[:, :t]], axis=1)
        return np.stack([self.L[:, : t + 1], past], axis=-1).astype(np.float32)


def simulate_feedback(
    n: int = 2000,
    steps: int = 3,
    effect: float = 0.6,
    feedback: float = -0.5,
    persistence: float = 0.6,
    confounding: float = 0.7,
    loading: float = 1.0,
    level: float = 0.5,
    noise: float = 0.5,
    seed: int = 0,
) -> FeedbackData:
    """Time-varying confounding with treatment-confounder feedback, and a known regime effect.

        L_t = persistence L_{t-1} + feedback A_{t-1} + U + e_t      (L_{-1} = A_{-1} = 0; a risk state)
        P(A_t = 1 | past) = sigmoid(confounding * L_t)               (treat when the risk is high)
        Y = effect * sum_t A_t + loading * L_{T-1} + U + noise       (U ~ N(0, level^2), never observed)

    A treatment lowers the next risk state (``feedback`` < 0: a hedge that calms the book), and the risk
    state drives the next treatment: L_t is a confounder of A_t *and* a mediator of A_{t-1}. The effect of
    "always treat" against "never treat" is

        psi = T * effect + loading * feedback * (1 - persistence^(T-1)) / (1 - persistence),

    the direct part plus the part that flows through the lowered risk. Regression of Y on the whole
    history keeps only the direct part (it holds L fixed) and, through U, adds collider bias; the
    g-formula and inverse-probability weighting recover psi. U does not touch A: no hidden confounding.
    """
    if n < 2 or steps < 2:
        raise ValueError(f"need n >= 2 units and steps >= 2, got n={n}, steps={steps}")
    if not 0 <= persistence < 1 or noise < 0 or level < 0:
        raise ValueError(
            f"need 0 <= persistence < 1 and noise, level >= 0, got {persistence}, {noise}, {level}"
        )
    rng = np.random.default_rng(seed)
    u = level * rng.standard_normal(n)
    shocks = 0.5 * rng.standard_normal((n, steps))
    draws, y_noise = rng.random((n, steps)), noise * rng.standard_normal(n)

    def run(regime):  # regime None: the observational policy; else the treatment forced at every step
        L, A = np.zeros((n, steps)), np.zeros((n, steps))
        prev_l, prev_a = np.zeros(n), np.zeros(n)
        for t in range(steps):
            L[:, t] = persistence * prev_l + feedback * prev_a + u + shocks[:, t]
            p = 1.0 / (1.0 + np.exp(-confounding * L[:, t]))
            A[:, t] = (draws[:, t] < p) if regime is None else regime
            prev_l, prev_a = L[:, t], A[:, t]
        return L, A, effect * A.sum(1) + loading * L[:, -1] + u + y_noise

    L, A, y = run(None)
    psi = steps * effect + loading * feedback * (1 - persistence ** (steps - 1)) / (1 - persistence)
    return FeedbackData(L, A, y, run(1.0)[2], run(0.0)[2], float(psi))


def simulate_common_driver(n: int = 1000, strength: float = 0.8, seed: int = 0):
    """A hidden driver z_t (AR(1), 0.8) that moves x one day later and y three days later:

        x_t = 0.3 x_{t-1} + strength z_{t-1} + e,     y_t = 0.3 y_{t-1} + strength z_{t-3} + e.

    x has no effect on y, yet x's past predicts y (it carries news of z two days before y sees it), so a
    Granger test of x -> y without z rejects; with z in the VAR it does not. Returns (n, 3): x, y, z.
    """
    rng = np.random.default_rng(seed)
    burn = 100
    e = rng.standard_normal((n + burn, 3))
    out = np.zeros((n + burn, 3))
    for t in range(3, n + burn):
        x_prev, y_prev, z_prev = out[t - 1]
        out[t] = [
            0.3 * x_prev + strength * z_prev + e[t, 0],
            0.3 * y_prev + strength * out[t - 3, 2] + e[t, 1],
            0.8 * z_prev + e[t, 2],
        ]
    return out[burn:]


def simulate_heteroskedastic_pair(n: int = 500, scale: float = 1.0, seed: int = 0) -> np.ndarray:
    """(n, 2): x and y with *no* Granger causality from x to y in the mean, but a noise variance of y
    set by x's past: y_t = 0.3 y_{t-1} + sqrt(0.1 + scale x_{t-1}^2) e_t, x_t a fat-tailed AR(1)
    (Student-t(5) shocks). The conditional-mean null holds; the homoskedastic F test's size does not."""
    rng = np.random.default_rng(seed)
    burn = 100
    x, y = np.zeros(n + burn), np.zeros(n + burn)
    ex = rng.standard_t(5, n + burn) / np.sqrt(5 / 3)
    ey = rng.standard_normal(n + burn)
    for t in range(1, n + burn):
        x[t] = 0.5 * x[t - 1] + ex[t]
        y[t] = 0.3 * y[t - 1] + np.sqrt(0.1 + scale * x[t - 1] ** 2) * ey[t]
    return np.c_[x, y][burn:]
