"""Causal inference for time series (chapter 06e): effects of an intervention, and Granger causality.

Prediction asks E[y | history, a]; an intervention asks E[y | history, do(a)]. The two agree only
when every common cause of the treatment a and the outcome y is in the observed history (no hidden
confounding), and every history has a chance of each treatment (overlap). Then

    tau = E[ E[y | h, a=1] - E[y | h, a=0] ]            (adjustment over the observed history h)

and a model of the outcome given (h, a) estimates it. No method, balancing included, recovers tau
when a confounder is not observed: :func:`simulate_treatment` has a knob for that, to show it.

* The outcome models, :class:`~course_lib.models.causal.CausalLSTM` and the balanced
  :class:`~course_lib.models.causal.CounterfactualRecurrentNetwork` (Bica, Alaa, Jordon & van der
  Schaar, ICLR 2020), live in :mod:`course_lib.models.causal`; :func:`fit_outcome_model` trains them.
* :func:`simulate_treatment`: time-varying confounding with a known effect and potential outcomes.
* :func:`simulate_var`, :func:`granger_matrix`, :func:`adf_table`: Granger causality on a VAR
  (statsmodels). Null hypothesis: the lags of the cause add nothing to predicting the effect, given
  the lags of every variable in the VAR. It needs stationary series; a rejection is about
  predictability, not intervention.

PCMCI (tigramite) is not used: it is GPL-3 and not a dependency of the course.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ._moved import moved_names
from .models import causal as outcome_models
from .training import fit_minibatches

__all__ = [
    "TreatmentData",
    "adf_table",
    "fit_outcome_model",
    "granger_matrix",
    "naive_effect",
    "simulate_treatment",
    "simulate_var",
]

# The models left for the models layer (course_lib.models.causal); the old names work for one release.
__getattr__ = moved_names(
    __name__,
    {
        "CausalLSTM": "course_lib.models.causal",
        "CounterfactualRecurrentNetwork": "course_lib.models.causal",
        "GradientReversal": "course_lib.models.causal",
        "crn_loss": "course_lib.models.causal",
    },
)


def fit_outcome_model(
    model: outcome_models.CausalLSTM,
    x: torch.Tensor,
    treatment: torch.Tensor,
    outcome: torch.Tensor,
    epochs: int = 30,
    lr: float = 1e-2,
    batch_size: int = 256,
    seed: int = 0,
) -> list[float]:
    """Adam on MSE (CausalLSTM) or :func:`~course_lib.models.causal.crn_loss` (CRN) for (N, L, C)
    histories; returns the mean loss per epoch."""
    if not (len(x) == len(treatment) == len(outcome)) or len(x) == 0:
        raise ValueError(
            f"x, treatment and outcome need the same non-zero length, got {len(x)}, "
            f"{len(treatment)}, {len(outcome)}"
        )
    outcome = outcome.reshape(len(outcome), -1)
    balanced = isinstance(model, outcome_models.CounterfactualRecurrentNetwork)

    def batch_loss(idx):
        output = model(x[idx], treatment[idx])
        if balanced:
            return outcome_models.crn_loss(output, outcome[idx], treatment[idx])
        return F.mse_loss(output, outcome[idx])

    return fit_minibatches(model, len(x), batch_loss, epochs, lr, batch_size, seed, x.device)


# ---------------------------------------------------------------- a simulator with a known effect


@dataclass
class TreatmentData:
    """Histories x (N, L, 2): covariate and past treatment; the decision ``treatment`` (N,) at the end;
    the observed ``outcome`` (N,) and both potential outcomes ``y0``, ``y1``; the true ``effect``."""

    x: np.ndarray
    treatment: np.ndarray
    outcome: np.ndarray
    y0: np.ndarray
    y1: np.ndarray
    effect: float


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
    return TreatmentData(x.astype(np.float32), treatment.astype(np.float32), outcome, y0, y1, float(effect))


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


# ---------------------------------------------------------------- Granger causality


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


def adf_table(data: pd.DataFrame) -> pd.DataFrame:
    """Augmented Dickey-Fuller test per column (null: a unit root, i.e. NOT stationary; constant included)."""
    from statsmodels.tsa.stattools import adfuller  # imported here: the models need no statsmodels

    rows = {}
    for name in data.columns:
        stat, p, lags, *_ = adfuller(data[name].to_numpy(), autolag="AIC", result_object=False)
        rows[name] = {"ADF": stat, "p": p, "lags": lags, "stationary at 5%": p < 0.05}
    return pd.DataFrame(rows).T


def granger_matrix(data: pd.DataFrame, lags: int, check_stationary: bool = True) -> pd.DataFrame:
    """p-values of Granger tests in one VAR(lags): entry [cause, effect] tests the null that every lag of
    ``cause`` has a zero coefficient in the equation of ``effect`` (F test, statsmodels' ``test_causality``).

    A small p-value rejects "cause does not Granger-cause effect": its past helps predict the effect
    beyond the past of all variables in the VAR. Unobserved common drivers, a wrong lag length or
    non-stationarity invalidate the test, hence the ADF check (refuses a column with a unit root at 5%).
    """
    if not isinstance(data, pd.DataFrame) or data.shape[1] < 2:
        raise ValueError("granger_matrix needs a DataFrame with at least two columns (one series each)")
    if lags < 1 or len(data) < 10 * lags * data.shape[1]:
        raise ValueError(f"lags must be >= 1 and the data long enough: {len(data)} rows for {lags} lags")
    if data.isna().any().any() or not np.isfinite(data.to_numpy()).all():
        raise ValueError(
            f"data has NaN or inf values in columns {list(data.columns[~np.isfinite(data).all()])}"
        )
    if check_stationary:
        adf = adf_table(data)
        bad = list(adf.index[~adf["stationary at 5%"].astype(bool)])
        if bad:
            raise ValueError(f"columns {bad} have a unit root by the ADF test at 5%: difference them first")
    from statsmodels.tsa.api import VAR

    fitted = VAR(data.reset_index(drop=True)).fit(lags, trend="c")  # rows are steps: no date frequency needed
    names = list(data.columns)
    out = pd.DataFrame(np.nan, index=pd.Index(names, name="cause"), columns=pd.Index(names, name="effect"))
    for cause in names:
        for effect in names:
            if cause != effect:
                out.loc[cause, effect] = fitted.test_causality(effect, [cause], kind="f").pvalue
    return out
