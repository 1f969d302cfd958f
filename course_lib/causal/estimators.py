"""Effect estimators with standard errors (chapter 06f), each valid under assumptions stated below.

Point treatment (one decision a given covariates X; no hidden confounding, overlap 0 < e(X) < 1):

* :func:`naive_effect`: difference of means, the effect only in a randomised trial.
* :func:`regression_effect`: the coefficient of a in OLS of y on (1, a, X), heteroskedasticity-robust
  (HC3) standard error; right when the outcome is linear in X with a constant effect.
* :func:`ipw_effect`: inverse probability weighting, the Hajek form
  sum(a y / e) / sum(a / e) - sum((1-a) y / (1-e)) / sum((1-a) / (1-e)), propensity e(X) by logistic
  regression (Rosenbaum & Rubin 1983; Horvitz & Thompson 1952). Its influence-function standard error
  treats e as known, which is conservative when e is estimated (Hirano, Imbens & Ridder 2003).
* :func:`aipw_effect`: augmented IPW, the doubly robust estimator (Robins, Rotnitzky & Zhao 1994):
  mean of mu1 - mu0 + a (y - mu1) / e - (1 - a)(y - mu0) / (1 - e); consistent if either the outcome
  model mu or the propensity e is right; standard error from the influence function.
* :func:`propensity_scores`, :func:`overlap_table`: the diagnostics that come before any weighting.

Treatment regimes with treatment-confounder feedback (:class:`~.simulate.FeedbackData`):

* :func:`history_regression`: OLS of Y on the whole history; the sum of the treatment coefficients.
  Biased under feedback: it holds the mediating confounders fixed.
* :func:`g_computation`: the g-formula by iterated conditional expectations (Robins 1986; Bang &
  Robins 2005), with linear regressions or any outcome model you pass (a recurrent network).
* :func:`msm_ipw`: a marginal structural model E[Y(a)] = theta_0 + sum_t theta_t a_t fitted by least
  squares weighted by stabilised inverse probability weights (Robins, Hernan & Brumback 2000).
* :func:`bootstrap`: nonparametric bootstrap over units (percentile interval and standard error).
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .simulate import FeedbackData

__all__ = [
    "EffectEstimate",
    "aipw_effect",
    "bootstrap",
    "g_computation",
    "history_regression",
    "ipw_effect",
    "msm_ipw",
    "naive_effect",
    "overlap_table",
    "propensity_scores",
    "regression_effect",
    "stabilised_weights",
]


@dataclass
class EffectEstimate:
    """An effect, its standard error and a (1 - alpha) interval; ``dof`` for a regression's t test."""

    method: str
    estimate: float
    se: float
    lower: float
    upper: float
    dof: float = np.inf

    @classmethod
    def normal(cls, method: str, estimate: float, se: float, level: float = 0.95, dof: float = np.inf):
        z = stats.norm.ppf(0.5 + level / 2) if np.isinf(dof) else stats.t.ppf(0.5 + level / 2, dof)
        return cls(method, float(estimate), float(se), estimate - z * se, estimate + z * se, dof)

    def covers(self, value: float) -> bool:
        return bool(self.lower <= value <= self.upper)


def _point_inputs(outcome, treatment, covariates):
    y, a = np.asarray(outcome, dtype=float), np.asarray(treatment, dtype=float)
    X = np.asarray(covariates, dtype=float)
    X = X[:, None] if X.ndim == 1 else X
    if y.ndim != 1 or a.shape != y.shape or X.ndim != 2 or len(X) != len(y):
        raise ValueError(
            f"outcome and treatment must be (N,) and covariates (N, k), got {y.shape}, {a.shape}, {X.shape}"
        )
    if not np.isin(a, (0, 1)).all():
        raise ValueError("treatment must be 0 or 1")
    if a.min() == a.max():
        raise ValueError("need treated and control units; all have the same treatment")
    if not (np.isfinite(y).all() and np.isfinite(X).all()):
        raise ValueError("outcome or covariates hold NaN or inf values")
    return y, a, X


def naive_effect(outcome, treatment) -> float:
    """Mean outcome of the treated minus that of the controls: the effect only in a randomised trial."""
    outcome, treatment = np.asarray(outcome, dtype=float), np.asarray(treatment)
    if outcome.shape != treatment.shape or outcome.ndim != 1:
        raise ValueError(
            f"outcome and treatment must be 1-D of equal length, got {outcome.shape}, {treatment.shape}"
        )
    if not np.isin(treatment, (0, 1)).all():
        raise ValueError("treatment must be 0 or 1")
    if treatment.min() == treatment.max():
        raise ValueError("naive_effect needs treated and control samples; all have the same treatment")
    return float(outcome[treatment == 1].mean() - outcome[treatment == 0].mean())


def regression_effect(outcome, treatment, covariates, cov_type: str = "HC3") -> EffectEstimate:
    """Coefficient of the treatment in OLS of y on (1, a, X), statsmodels' robust ``cov_type`` error."""
    import statsmodels.api as sm

    y, a, X = _point_inputs(outcome, treatment, covariates)
    fit = sm.OLS(y, np.column_stack([np.ones(len(y)), a, X])).fit(cov_type=cov_type)
    return EffectEstimate.normal("regression", fit.params[1], fit.bse[1], dof=fit.df_resid)


def propensity_scores(covariates, treatment) -> np.ndarray:
    """e(X) = P(a = 1 | X) by logistic regression on (1, X) (statsmodels ``Logit``), shape (N,)."""
    import statsmodels.api as sm

    X = np.asarray(covariates, dtype=float)
    X = X[:, None] if X.ndim == 1 else X
    design = np.column_stack([np.ones(len(X)), X])
    return np.asarray(sm.Logit(np.asarray(treatment, dtype=float), design).fit(disp=0).predict(design))


def overlap_table(propensity, treatment, bounds=(0.05, 0.95)) -> pd.DataFrame:
    """Per arm: units, range of e(X), share outside ``bounds`` (near-violations of overlap), and the
    effective sample size (sum w)^2 / sum w^2 of the inverse probability weights (Kish 1965)."""
    e, a = np.asarray(propensity, dtype=float), np.asarray(treatment)
    rows = {}
    for arm, w in (("treated", 1 / e), ("control", 1 / (1 - e))):
        mask = a == (arm == "treated")
        rows[arm] = {
            "units": int(mask.sum()),
            "min e": e[mask].min(),
            "max e": e[mask].max(),
            f"share outside {bounds}": float(((e[mask] < bounds[0]) | (e[mask] > bounds[1])).mean()),
            "effective size": float(w[mask].sum() ** 2 / (w[mask] ** 2).sum()),
        }
    return pd.DataFrame(rows).T


def ipw_effect(outcome, treatment, covariates, propensity=None) -> EffectEstimate:
    """Hajek IPW with the influence-function standard error (propensity treated as known: conservative)."""
    y, a, X = _point_inputs(outcome, treatment, covariates)
    e = propensity_scores(X, a) if propensity is None else np.asarray(propensity, dtype=float)
    w1, w0 = a / e, (1 - a) / (1 - e)
    m1, m0 = (w1 * y).sum() / w1.sum(), (w0 * y).sum() / w0.sum()
    influence = w1 * (y - m1) / w1.mean() - w0 * (y - m0) / w0.mean()  # (N,)
    return EffectEstimate.normal("IPW", m1 - m0, influence.std(ddof=1) / np.sqrt(len(y)))


def aipw_effect(outcome, treatment, covariates, propensity=None) -> EffectEstimate:
    """Doubly robust AIPW: linear outcome model per arm, logistic propensity; influence-function error."""
    y, a, X = _point_inputs(outcome, treatment, covariates)
    e = propensity_scores(X, a) if propensity is None else np.asarray(propensity, dtype=float)
    design = np.column_stack([np.ones(len(y)), X])
    mu = {}
    for arm in (0, 1):
        beta, *_ = np.linalg.lstsq(design[a == arm], y[a == arm], rcond=None)
        mu[arm] = design @ beta
    psi = mu[1] - mu[0] + a * (y - mu[1]) / e - (1 - a) * (y - mu[0]) / (1 - e)  # (N,)
    return EffectEstimate.normal("AIPW", psi.mean(), psi.std(ddof=1) / np.sqrt(len(y)))


# ---------------------------------------------------------------- regimes under feedback


def _flat_history(data: FeedbackData, t: int) -> np.ndarray:
    """(N, 2t + 1): L_0..L_t and A_0..A_{t-1}, the covariates known at decision t."""
    return np.column_stack([data.L[:, : t + 1], data.A[:, :t]])


def _ols(design: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.linalg.lstsq(np.column_stack([np.ones(len(y)), design]), y, rcond=None)[0]


def history_regression(data: FeedbackData) -> float:
    """Sum of the treatment coefficients of OLS of Y on (1, L_0..L_{T-1}, A_0..A_{T-1}): biased for
    the regime effect when treatments move later covariates."""
    T = data.A.shape[1]
    beta = _ols(np.column_stack([data.L, data.A]), data.outcome)
    return float(beta[1 + T :].sum())


LinearOrModel = Callable[[np.ndarray, np.ndarray, np.ndarray, float], np.ndarray]


def _linear_q(history, treatment, target, value):
    """Linear Q-model: OLS of the target on (flattened history, treatment), predicted at a = value."""
    flat = history.reshape(len(history), -1)
    beta = _ols(np.column_stack([flat, treatment]), target)
    return beta[0] + np.column_stack([flat, np.full(len(flat), value)]) @ beta[1:]


def g_computation(data: FeedbackData, regime, fit_predict: LinearOrModel | None = None) -> float:
    """E[Y(regime)] by iterated conditional expectations, t = T-1 down to 0:

        Q_T = Y;   Q_t = E[Q_{t+1} | history_t, A_t = regime_t]   (fitted on all units, predicted at regime_t)

    and E[Y(regime)] = mean(Q_0). ``fit_predict(history (N, t+1, 2), treatment (N,), target (N,), value)``
    fits an outcome model and returns its predictions (N,) at treatment ``value``; default: linear OLS.
    """
    T = data.A.shape[1]
    regime = np.broadcast_to(np.asarray(regime, dtype=float), (T,))
    fit_predict = fit_predict or _linear_q
    q = np.asarray(data.outcome, dtype=float)
    for t in range(T - 1, -1, -1):
        q = np.asarray(fit_predict(data.history(t), data.A[:, t], q, float(regime[t])), dtype=float)
        if q.shape != data.outcome.shape:
            raise ValueError(f"fit_predict must return one prediction per unit, got shape {q.shape}")
    return float(q.mean())


def stabilised_weights(data: FeedbackData) -> np.ndarray:
    """prod_t P(A_t | A_0..A_{t-1}) / P(A_t | L_0..L_t, A_0..A_{t-1}), both by logistic regression, (N,)."""
    import statsmodels.api as sm

    weights = np.ones(len(data.outcome))
    for t in range(data.A.shape[1]):
        a = data.A[:, t]
        full = sm.add_constant(_flat_history(data, t), has_constant="add")
        past = sm.add_constant(data.A[:, :t], has_constant="add")
        p_full = sm.Logit(a, full).fit(disp=0).predict(full)
        p_past = sm.Logit(a, past).fit(disp=0).predict(past)
        weights *= np.where(a == 1, p_past / p_full, (1 - p_past) / (1 - p_full))
    return weights


def msm_ipw(data: FeedbackData, weights=None) -> float:
    """always-minus-never from the MSM E[Y(a)] = theta_0 + sum_t theta_t a_t, fitted by weighted least
    squares with :func:`stabilised_weights`: sum_t theta_t."""
    w = stabilised_weights(data) if weights is None else np.asarray(weights, dtype=float)
    design = np.column_stack([np.ones(len(w)), data.A]) * np.sqrt(w)[:, None]
    theta = np.linalg.lstsq(design, data.outcome * np.sqrt(w), rcond=None)[0]
    return float(theta[1:].sum())


def _take(data, idx):
    if isinstance(data, FeedbackData):
        return FeedbackData(
            data.L[idx], data.A[idx], data.outcome[idx], data.y_always[idx], data.y_never[idx], data.effect
        )
    return tuple(np.asarray(d)[idx] for d in data)


def bootstrap(
    estimator: Callable, data, n_boot: int = 200, level: float = 0.95, seed: int = 0, method: str = ""
) -> EffectEstimate:
    """Nonparametric bootstrap over units (rows): ``estimator(data)`` on ``n_boot`` resamples of
    ``data`` (a :class:`FeedbackData` or a tuple of arrays); percentile interval, bootstrap standard error."""
    if n_boot < 20:
        raise ValueError(f"n_boot must be >= 20 for a percentile interval, got {n_boot}")
    n = len(data.outcome) if isinstance(data, FeedbackData) else len(data[0])
    rng = np.random.default_rng(seed)
    draws = np.array([estimator(_take(data, rng.integers(0, n, n))) for _ in range(n_boot)])
    lower, upper = np.quantile(draws, [0.5 - level / 2, 0.5 + level / 2])
    name = method or getattr(estimator, "__name__", "estimate")
    return EffectEstimate(name, float(estimator(data)), float(draws.std(ddof=1)), float(lower), float(upper))
