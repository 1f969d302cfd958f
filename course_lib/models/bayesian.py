"""BayesianLSTM: a heteroscedastic LSTM with Monte Carlo dropout, and calibration checks.

Two kinds of uncertainty, after Kendall & Gal (2017), "What uncertainties do we need in Bayesian
deep learning for computer vision?":

* aleatoric (noise in the data): the network predicts a mean mu(x) and a scale sigma(x) and is
  trained with the Gaussian negative log-likelihood
      NLL = 1/2 log(2 pi sigma^2) + (y - mu)^2 / (2 sigma^2),
  with sigma = softplus(s) + sigma_min (softplus grows linearly, so a large s cannot overflow the
  variance the way exp(s) does, and sigma_min keeps the NLL finite);
* epistemic (uncertainty about the weights): dropout kept active at prediction time samples
  networks from an approximate posterior (Gal & Ghahramani 2016, "Dropout as a Bayesian
  approximation"). With T samples (mu_t, sigma_t^2), the predictive mixture has
      mean  = 1/T sum_t mu_t
      var   = 1/T sum_t sigma_t^2   +   1/T sum_t (mu_t - mean)^2
              (aleatoric)               (epistemic)
  by the law of total variance.

``mc_dropout_predict`` turns on ONLY the dropout modules (everything else, e.g. normalisation
layers, stays in eval mode), runs under ``torch.no_grad()`` and restores every module's mode
afterwards. The source module's ``predict_with_uncertainty`` left the whole model in train mode,
kept 100 autograd graphs alive and used an unbounded exp scale (see docs/errata.md).

Calibration: a predictive distribution F is calibrated when the probability integral transform
PIT = F(y) is uniform on [0, 1], equivalently when every central interval of nominal level p
covers the target a fraction p of the time.
"""

from itertools import pairwise

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from .common import check_window, keeps_config

__all__ = [
    "BayesianLSTM",
    "gaussian_interval",
    "gaussian_pit",
    "interval_coverage",
    "mc_dropout_predict",
]


class BayesianLSTM(nn.Module):
    """LSTM over the window -> dropout -> mean head and softplus scale head.

    Input x: (B, L, input_size). Output: ``{"prediction": mean (B, output_size), "var": variance (B, output_size)}``,
    for ``course_lib.training.GaussianNLLLoss``. Dropout (an ``nn.Dropout`` module, so that MC dropout
    can find it) acts on every LSTM layer's output sequence.
    """

    @keeps_config
    def __init__(
        self,
        input_size: int,
        hidden_size: int = 32,
        n_layers: int = 1,
        output_size: int = 1,
        dropout: float = 0.2,
        min_scale: float = 1e-3,
    ):
        super().__init__()
        if not 0.0 < dropout < 1.0:
            raise ValueError(f"MC dropout needs 0 < dropout < 1, got {dropout}")
        if min_scale <= 0:
            raise ValueError(f"min_scale must be positive, got {min_scale}")
        self.input_size = input_size
        self.min_scale = min_scale
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        sizes = [input_size] + [hidden_size] * n_layers
        self.lstms = nn.ModuleList(nn.LSTM(i, o, batch_first=True) for i, o in pairwise(sizes))
        self.dropout = nn.Dropout(dropout)
        self.mean_head = nn.Linear(hidden_size, output_size)
        self.scale_head = nn.Linear(hidden_size, output_size)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_window(x, self.input_size, model=type(self).__name__, module=self)
        h = x
        for lstm in self.lstms:
            h, _ = lstm(h)  # (B, L, H)
            h = self.dropout(h)
        last = h[:, -1]  # (B, H)
        mean = self.mean_head(last)  # (B, output_size)
        scale = F.softplus(self.scale_head(last)) + self.min_scale  # (B, output_size), > 0
        return {"prediction": mean, "var": scale**2}

    def predict_with_uncertainty(self, x: torch.Tensor, n_samples: int = 50) -> dict[str, torch.Tensor]:
        """MC-dropout predictive mean and variances; see :func:`mc_dropout_predict`."""
        return mc_dropout_predict(self, x, n_samples)


def mc_dropout_predict(model: nn.Module, x: torch.Tensor, n_samples: int = 50) -> dict[str, torch.Tensor]:
    """Monte Carlo dropout: ``n_samples`` forward passes with only the dropout modules active.

    Returns a dict of (B, n_out) tensors: ``"prediction"`` (mean of the sampled means), ``"var"``
    (total predictive variance), ``"aleatoric"`` (mean of the sampled variances; zero for a model
    that returns a plain tensor), ``"epistemic"`` (variance of the sampled means), and
    ``"samples"`` (n_samples, B, n_out), the sampled means.
    """
    if n_samples < 2:
        raise ValueError(f"n_samples must be at least 2 to estimate a variance, got {n_samples}")
    dropouts = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    if not dropouts:
        raise ValueError(
            f"{type(model).__name__} has no nn.Dropout module: MC dropout samples would all be equal"
        )
    modes = {m: m.training for m in model.modules()}
    model.eval()
    for m in dropouts:
        m.train()
    try:
        with torch.no_grad():
            means, variances = [], []
            for _ in range(n_samples):
                out = model(x)
                if isinstance(out, torch.Tensor):
                    means.append(out)
                    variances.append(torch.zeros_like(out))
                else:
                    means.append(out["prediction"])
                    variances.append(out["var"])
    finally:
        for m, training in modes.items():
            m.training = training
    samples = torch.stack(means)  # (T, B, n_out)
    aleatoric = torch.stack(variances).mean(dim=0)  # (B, n_out)
    epistemic = samples.var(dim=0, unbiased=False)  # (B, n_out)
    return {
        "prediction": samples.mean(dim=0),
        "var": aleatoric + epistemic,
        "aleatoric": aleatoric,
        "epistemic": epistemic,
        "samples": samples,
    }


def _check_same_shape(**arrays) -> list[np.ndarray]:
    out = [np.asarray(a, dtype=float) for a in arrays.values()]
    shapes = {name: a.shape for name, a in zip(arrays, out, strict=True)}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"arrays must have the same shape (no silent broadcasting), got {shapes}")
    return out


def gaussian_interval(mean, var, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Central interval of probability ``level`` of N(mean, var): mean -/+ z_{(1+level)/2} sqrt(var)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    mean, var = _check_same_shape(mean=mean, var=var)
    if np.any(var <= 0):
        raise ValueError("variances must be positive")
    half = stats.norm.ppf(0.5 + level / 2) * np.sqrt(var)
    return mean - half, mean + half


def interval_coverage(y, lower, upper) -> float:
    """Fraction of targets inside [lower, upper]: the empirical coverage of an interval forecast."""
    y, lower, upper = _check_same_shape(y=y, lower=lower, upper=upper)
    return float(np.mean((y >= lower) & (y <= upper)))


def gaussian_pit(y, mean, var) -> np.ndarray:
    """Probability integral transform Phi((y - mean) / sd): uniform on [0, 1] when calibrated."""
    y, mean, var = _check_same_shape(y=y, mean=mean, var=var)
    if np.any(var <= 0):
        raise ValueError("variances must be positive")
    return stats.norm.cdf((y - mean) / np.sqrt(var))
