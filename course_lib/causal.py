"""Causal inference for time series (chapter 06e): effects of an intervention, and Granger causality.

Prediction asks E[y | history, a]; an intervention asks E[y | history, do(a)]. The two agree only
when every common cause of the treatment a and the outcome y is in the observed history (no hidden
confounding), and every history has a chance of each treatment (overlap). Then

    tau = E[ E[y | h, a=1] - E[y | h, a=0] ]            (adjustment over the observed history h)

and a model of the outcome given (h, a) estimates it. No method, balancing included, recovers tau
when a confounder is not observed: :func:`simulate_treatment` has a knob for that, to show it.

* :class:`CausalLSTM`: an outcome model, LSTM over the covariate history plus the treatment.
* :class:`CounterfactualRecurrentNetwork`: the same, with a representation balanced by gradient
  reversal, so it cannot predict the treatment (Bica, Alaa, Jordon & van der Schaar, ICLR 2020).
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
from torch import nn

from .models.common import check_window, keeps_config, mlp_head, rnn_dropout
from .outputs import prediction_of
from .training import fit_minibatches

__all__ = [
    "CausalLSTM",
    "CounterfactualRecurrentNetwork",
    "GradientReversal",
    "TreatmentData",
    "adf_table",
    "crn_loss",
    "fit_outcome_model",
    "granger_matrix",
    "naive_effect",
    "simulate_treatment",
    "simulate_var",
]


def _treatment(treatment, x: torch.Tensor, model: str) -> torch.Tensor:
    """One treatment per sample, as a (B, 1) tensor on x's device and dtype, or a clear error."""
    treatment = torch.as_tensor(treatment)
    if treatment.dim() == 2 and treatment.shape[1] == 1:
        treatment = treatment[:, 0]
    if treatment.dim() != 1 or treatment.shape[0] != x.shape[0]:
        raise ValueError(
            f"{model} expects one treatment per sample, shape ({x.shape[0]},) or ({x.shape[0]}, 1), got "
            f"{tuple(treatment.shape)}; past treatments belong in the history x, as a covariate column"
        )
    if not torch.isfinite(treatment.double()).all():
        raise ValueError(f"{model} got a treatment with NaN or inf values")
    return treatment.to(device=x.device, dtype=x.dtype).unsqueeze(-1)  # (B, 1)


class CausalLSTM(nn.Module):
    """Outcome model y_hat(h, a) = head([LSTM(h)_L, a]) for a history h (B, L, C) and a treatment a (B,).

    The split is by argument: ``x`` holds the covariates (and past treatments, as columns) up to the
    decision, ``treatment`` the one decision per sample whose effect we want. :meth:`effect` gives
    y_hat(h, 1) - y_hat(h, 0) per sample: a causal effect only under no hidden confounding and overlap
    (module docstring). Fixes of the source module (docs/errata.md): it passed a (B, L) treatment to
    a layer that wants one value per sample (a crash) and built it on the CPU whatever the device.
    """

    @keeps_config
    def __init__(
        self,
        input_size: int,
        hidden_size: int = 16,
        n_layers: int = 1,
        output_size: int = 1,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.input_size = input_size
        self.lstm = nn.LSTM(
            input_size, hidden_size, n_layers, batch_first=True, dropout=rnn_dropout(dropout, n_layers)
        )
        self.dropout = nn.Dropout(dropout)
        self.head = mlp_head(hidden_size + 1, hidden_size, output_size)

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        """The history's representation at the decision, (B, L, C) -> (B, H)."""
        check_window(x, self.input_size, model=type(self).__name__)
        out, _ = self.lstm(x)  # (B, L, H)
        return self.dropout(out[:, -1])

    def forward(self, x: torch.Tensor, treatment) -> torch.Tensor:
        r = self.represent(x)  # (B, H), after the window's own checks
        a = _treatment(treatment, x, type(self).__name__)  # (B, 1)
        return self.head(torch.cat([r, a], dim=-1))  # (B, output_size)

    @torch.no_grad()
    def effect(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample y_hat(h, 1) - y_hat(h, 0), (B, output_size), in eval mode (the mode is restored)."""
        was_training = self.training
        self.eval()
        try:
            ones = torch.ones(x.shape[0], device=x.device)
            treated, control = self(x, ones), self(x, torch.zeros_like(ones))
        finally:
            self.train(was_training)
        return (prediction_of(treated) - prediction_of(control)).detach()


class GradientReversal(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by -alpha (Ganin & Lempitsky 2015)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.alpha * grad, None


class CounterfactualRecurrentNetwork(CausalLSTM):
    """CausalLSTM with a balanced representation (Bica et al. 2020, the Counterfactual Recurrent Network).

        r = LSTM(h)_L;   y_hat = head([r, a]);   logit_a = g(GradientReversal(r))

    Trained with :func:`crn_loss` = MSE(y_hat, y) + CE(logit_a, a): the treatment classifier g learns to
    predict a from r, while the reversed gradient pushes the encoder to make r uninformative about
    a, so the outcome head compares like with like across treatments. ``alpha`` scales the reversal.
    Output: a dict with ``"prediction"`` (B, output_size) and ``"treatment_logit"`` (B, 1).
    """

    @keeps_config
    def __init__(
        self,
        input_size: int,
        hidden_size: int = 16,
        n_layers: int = 1,
        output_size: int = 1,
        dropout: float = 0.0,
        alpha: float = 1.0,
    ):
        super().__init__(input_size, hidden_size, n_layers, output_size, dropout)
        self.alpha = alpha
        self.treatment_head = mlp_head(hidden_size, hidden_size, 1)

    def forward(self, x: torch.Tensor, treatment) -> dict[str, torch.Tensor]:
        r = self.represent(x)  # (B, H)
        a = _treatment(treatment, x, type(self).__name__)  # (B, 1)
        return {
            "prediction": self.head(torch.cat([r, a], dim=-1)),
            "treatment_logit": self.treatment_head(GradientReversal.apply(r, self.alpha)),
        }


def crn_loss(output: dict, outcome: torch.Tensor, treatment: torch.Tensor) -> torch.Tensor:
    """Outcome MSE plus the treatment classifier's cross-entropy (its gradient reversed in the encoder)."""
    y_hat, logit = output["prediction"], output["treatment_logit"]
    if outcome.shape != y_hat.shape:
        raise ValueError(f"outcome has shape {tuple(outcome.shape)}, the prediction {tuple(y_hat.shape)}")
    return F.mse_loss(y_hat, outcome) + F.binary_cross_entropy_with_logits(
        logit[:, 0], treatment.to(logit.dtype).reshape(-1)
    )


def fit_outcome_model(
    model: CausalLSTM,
    x: torch.Tensor,
    treatment: torch.Tensor,
    outcome: torch.Tensor,
    epochs: int = 30,
    lr: float = 1e-2,
    batch_size: int = 256,
    seed: int = 0,
) -> list[float]:
    """Adam on MSE (CausalLSTM) or :func:`crn_loss` (CRN) for (N, L, C) histories; mean loss per epoch."""
    if not (len(x) == len(treatment) == len(outcome)) or len(x) == 0:
        raise ValueError(
            f"x, treatment and outcome need the same non-zero length, got {len(x)}, "
            f"{len(treatment)}, {len(outcome)}"
        )
    outcome = outcome.reshape(len(outcome), -1)
    balanced = isinstance(model, CounterfactualRecurrentNetwork)

    def batch_loss(idx):
        output = model(x[idx], treatment[idx])
        if balanced:
            return crn_loss(output, outcome[idx], treatment[idx])
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
