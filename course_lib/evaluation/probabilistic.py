"""Proper scoring rules for probabilistic forecasts: CRPS and the weighted quantile loss (numpy, scipy).

Coverage and the PIT say whether a forecast's bands are *calibrated*; they do not rank two calibrated
forecasts (the climatological distribution is calibrated too). A proper scoring rule does: its
expectation is smallest when the forecast is the true distribution. The continuous ranked probability
score (Matheson & Winkler, 1976; Gneiting & Raftery, 2007) of a forecast CDF F and an outcome y is::

    CRPS(F, y) = int (F(x) - 1{y <= x})^2 dx                        # in the units of y; lower is better
               = E|X - y| - 1/2 E|X - X'|,         X, X' ~ F independent   (the energy form)
               = 2 int_0^1 rho_tau(y - F^{-1}(tau)) dtau,   rho_tau(u) = u (tau - 1{u < 0})   (quantile form)

Closed forms used here: for a Gaussian N(mu, sigma^2), with z = (y - mu) / sigma,
``sigma [z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)]``; for a Student-t with nu > 1 degrees of freedom
(Jordan, Krueger & Lerch, 2019, scoringRules)::

    sigma [ z (2 F_nu(z) - 1) + 2 f_nu(z) (nu + z^2) / (nu - 1)
            - 2 sqrt(nu) B(1/2, nu - 1/2) / ((nu - 1) B(1/2, nu/2)^2) ]

From M samples (sorted x_(1) <= ... <= x_(M)), the energy form with E|X - X'| estimated by
``2 / M^2 sum_i (2 i - M - 1) x_(i)``. From K quantiles at levels tau_k, the quantile form with the
integral replaced by the mean over the levels: ``(2 / K) sum_k rho_tau_k(y - q_k)``, which is what
Chronos, TimesFM and GIFT-Eval report as the mean weighted quantile loss once it is scaled by the
outcomes' size: ``WQL = (2 / K) sum_k sum_t rho_tau_k(y_t - q_tk) / sum_t |y_t|`` (Gasthaus et al.,
2019; GluonTS). WQL is meant for positive series (sales, loads, volatility in %): on a series near zero
the denominator, not the forecast, drives it.
"""

import numpy as np
from scipy import special, stats

__all__ = [
    "crps_gaussian",
    "crps_quantiles",
    "crps_samples",
    "crps_student_t",
    "pinball",
    "weighted_quantile_loss",
]


def _positive(name: str, value) -> np.ndarray:
    value = np.asarray(value, dtype=np.float64)
    if not np.all(value > 0):
        raise ValueError(f"{name} must be > 0 everywhere, got a minimum of {np.min(value)}")
    return value


def crps_gaussian(y, mu, sigma) -> np.ndarray:
    """CRPS of N(mu, sigma^2) forecasts at outcomes y (broadcast arrays), in y's units."""
    sigma = _positive("sigma", sigma)
    z = (np.asarray(y, dtype=np.float64) - mu) / sigma
    return sigma * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi))


def crps_student_t(y, loc, scale, df) -> np.ndarray:
    """CRPS of Student-t forecasts (location, scale, df > 1) at outcomes y (broadcast arrays)."""
    scale = _positive("scale", scale)
    df = np.asarray(df, dtype=np.float64)
    if not np.all(df > 1):
        raise ValueError(f"the CRPS of a Student-t needs df > 1 (a finite mean), got a minimum of {df.min()}")
    z = (np.asarray(y, dtype=np.float64) - loc) / scale
    spread = 2 * np.sqrt(df) * special.beta(0.5, df - 0.5) / ((df - 1) * special.beta(0.5, df / 2) ** 2)
    return scale * (
        z * (2 * stats.t.cdf(z, df) - 1) + 2 * stats.t.pdf(z, df) * (df + z**2) / (df - 1) - spread
    )


def crps_samples(y, samples) -> np.ndarray:
    """CRPS from sampled forecasts: y (N,), samples (N, M), M draws per outcome -> (N,).

    The energy form with the plain (1 / M^2) estimate of E|X - X'|, computed from the sorted draws in
    O(M log M): equal to scoringrules' ``crps_ensemble(..., estimator="nrg")``.
    """
    y = np.asarray(y, dtype=np.float64)
    x = np.sort(np.asarray(samples, dtype=np.float64), axis=-1)
    if x.ndim != 2 or y.shape != x.shape[:1]:
        raise ValueError(f"samples must be (N, M) for y of shape (N,), got y {y.shape} and samples {x.shape}")
    m = x.shape[1]
    weights = 2 * np.arange(1, m + 1) - m - 1  # (M,)
    spread = 2 * (x @ weights) / m**2  # E|X - X'|
    return np.mean(np.abs(x - y[:, None]), axis=1) - spread / 2


def pinball(y, quantiles, levels) -> np.ndarray:
    """rho_tau(y - q) for y (N,), quantiles (N, K) at levels (K,) -> (N, K)."""
    y = np.asarray(y, dtype=np.float64)
    q = np.asarray(quantiles, dtype=np.float64)
    tau = np.asarray(levels, dtype=np.float64)
    if q.ndim != 2 or y.shape != q.shape[:1] or tau.shape != q.shape[1:]:
        raise ValueError(
            f"quantiles must be (N, K) for y (N,) and levels (K,), got {q.shape}, {y.shape} and {tau.shape}"
        )
    if not np.all((tau > 0) & (tau < 1)) or np.any(np.diff(tau) <= 0):
        raise ValueError(f"levels must be increasing and inside (0, 1), got {tau}")
    u = y[:, None] - q
    return u * (tau - (u < 0))


def crps_quantiles(y, quantiles, levels) -> np.ndarray:
    """CRPS approximated from K quantiles: (2 / K) sum_k rho_tau_k(y - q_k) -> (N,).

    Exact in the limit of a fine, evenly spread grid of levels; with the nine deciles 0.1..0.9 it
    ignores the tails beyond them, so compare forecasts at the *same* levels only.
    """
    return 2 * pinball(y, quantiles, levels).mean(axis=1)


def weighted_quantile_loss(y, quantiles, levels) -> float:
    """Mean weighted quantile loss: (2 / K) sum_k sum_t rho_tau_k(y_t - q_tk) / sum_t |y_t|."""
    scale = np.sum(np.abs(np.asarray(y, dtype=np.float64)))
    if scale == 0:
        raise ValueError(
            "weighted_quantile_loss: the outcomes sum to 0 in absolute value; use crps_quantiles"
        )
    return float(2 * pinball(y, quantiles, levels).sum(axis=0).mean() / scale)
