"""The training losses of the course, each written once, and the one table that names them.

A loss is a callable ``loss(output, target) -> scalar tensor`` where ``output`` follows
:mod:`course_lib.outputs` (a tensor, or a dict with ``"prediction"`` and the extras the loss reads):

* ``mse``: mean (y - f)^2;
* ``qlike``: mean(exp(e) - e - 1), e = 2 (y - f), for log-volatility forecasts f (Patton 2011);
* ``gaussian_nll``: -log Normal(y; f, var), the model returning ``"var"``;
* ``student_t_nll``: -log StudentT(y; df, f, scale), the model returning ``"scale"`` and ``"df"``;
* ``pinball``: the quantile loss max(tau (y - q), (tau - 1)(y - q)) of Koenker & Bassett (1978),
  averaged over the levels tau;
* ``crps_samples``: the continuous ranked probability score of sampled forecasts, the model returning
  ``"samples"`` (a neural SDE's paths).

``loss_by_name("pinball", quantiles=(0.1, 0.5, 0.9))`` builds one from :data:`LOSSES`; the Trainer
takes ``loss="qlike"`` the same way. This module sits at the bottom of the layers (torch and
:mod:`course_lib.outputs` only), so the models' own objectives (the foundation models' pretraining
losses, MAML's default) use these same functions.
"""

import math
from collections.abc import Callable, Sequence

import torch

from .outputs import prediction_of

__all__ = [
    "LOSSES",
    "GaussianNLLLoss",
    "PinballLoss",
    "SampleCRPSLoss",
    "StudentTNLLLoss",
    "loss_by_name",
    "mse_loss",
    "pinball_loss",
    "qlike_loss",
    "sample_crps",
    "student_t_nll",
]


def _check_target(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(
            f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}; "
            "refusing to broadcast (an (N,) vs (N, 1) mix-up silently builds an (N, N) loss)"
        )


def mse_loss(output, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the prediction."""
    pred = prediction_of(output)
    _check_target(pred, target)
    return torch.mean((pred - target) ** 2)


def qlike_loss(output, target: torch.Tensor) -> torch.Tensor:
    """QLIKE of log-volatility forecasts as a training loss: mean(exp(e) - e - 1), e = 2 (y - p).

    Its minimiser is the log of E[s^2] (not E[log s], as under MSE), so a network trained with it needs
    no Jensen correction; the exponential makes it sensitive to outliers, so clip gradients (the
    Trainer does by default).
    """
    pred = prediction_of(output)
    _check_target(pred, target)
    e = 2.0 * (target - pred)
    return torch.mean(torch.exp(e) - e - 1.0)


class GaussianNLLLoss:
    """Negative log-likelihood of ``target ~ Normal(mean, var)``, averaged.

    The model returns ``{"prediction": mean, "var": variance}`` with a positive variance
    (softplus, not exp: an exp head can overflow). The constant ``0.5 log(2 pi)`` is included, so
    the value equals ``-Normal(mean, sqrt(var)).log_prob(target).mean()`` exactly.
    """

    def __call__(self, output, target: torch.Tensor) -> torch.Tensor:
        mean, var = prediction_of(output), output["var"]
        _check_target(mean, target)
        _check_target(var, target)
        return 0.5 * torch.mean(torch.log(2 * math.pi * var) + (target - mean) ** 2 / var)


def student_t_nll(y: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, df: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of ``y`` under StudentT(df, loc, scale), written out::

    -log p = -lgamma((df+1)/2) + lgamma(df/2) + 0.5 log(df pi) + log scale + (df+1)/2 log(1 + z^2/df)

    with z = (y - loc) / scale; equal to ``-torch.distributions.StudentT(df, loc, scale).log_prob(y).mean()``
    up to round-off. ``df`` broadcasts (a scalar tensor is fine).
    """
    z = (y - loc) / scale
    nll = (
        torch.lgamma(df / 2)
        - torch.lgamma((df + 1) / 2)
        + 0.5 * torch.log(df * math.pi)
        + torch.log(scale)
        + 0.5 * (df + 1) * torch.log1p(z**2 / df)
    )
    return nll.mean()


class StudentTNLLLoss:
    """Negative log-likelihood of a Student-t with location, scale and degrees of freedom (:func:`student_t_nll`).

    The model returns ``{"prediction": loc, "scale": s, "df": nu}`` (scale and df positive; df may
    be a scalar tensor). Fat tails make it a better fit than the Gaussian for daily returns.
    """

    def __call__(self, output, target: torch.Tensor) -> torch.Tensor:
        loc = prediction_of(output)
        _check_target(loc, target)
        df = torch.as_tensor(output["df"], dtype=loc.dtype, device=loc.device)
        return student_t_nll(target, loc, output["scale"], df)


def pinball_loss(pred: torch.Tensor, target: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Mean pinball loss rho_tau(y - q) = max(tau (y - q), (tau - 1)(y - q)) over every entry and level.

    pred (..., Q) holds the quantiles q_tau of target (...), one per level of ``levels`` (Q,).
    """
    err = target.unsqueeze(-1) - pred  # (..., Q)
    return torch.mean(torch.maximum(levels * err, (levels - 1) * err))


class PinballLoss:
    """Pinball (quantile) loss averaged over quantiles (:func:`pinball_loss`).

    The prediction has one more trailing dimension than the target, one entry per quantile:
    target ``(B, H)`` and prediction ``(B, H, Q)``.
    """

    def __init__(self, quantiles: Sequence[float]) -> None:
        q = torch.as_tensor(list(quantiles), dtype=torch.float32)
        if q.ndim != 1 or len(q) == 0 or not torch.all((q > 0) & (q < 1)):
            raise ValueError(f"quantiles must be a non-empty list in (0, 1), got {list(quantiles)}")
        self.quantiles = q

    def __call__(self, output, target: torch.Tensor) -> torch.Tensor:
        pred = prediction_of(output)
        if pred.shape != (*target.shape, len(self.quantiles)):
            raise ValueError(
                f"quantile prediction must be {(*target.shape, len(self.quantiles))} for target "
                f"{tuple(target.shape)}, got {tuple(pred.shape)}"
            )
        return pinball_loss(pred, target, self.quantiles.to(pred.device))


def sample_crps(samples: torch.Tensor, target: torch.Tensor, fair: bool = True) -> torch.Tensor:
    """CRPS of sampled forecasts, per outcome: samples (..., M), target (...) -> (...).

    The energy form ``CRPS(F, y) = E|X - y| - 1/2 E|X - X'|`` (Gneiting & Raftery, 2007) with the M draws
    x_1..x_M of F; ``E|X - X'|`` from the sorted draws, ``sum_i (2 i - M - 1) x_(i) * 2 / (M (M - 1))``
    when ``fair`` (the unbiased estimate: the expected score is then the CRPS of F itself, for any M;
    Ferro, 2014) or ``* 2 / M^2`` otherwise (the plain one of
    :func:`course_lib.evaluation.probabilistic.crps_samples`, which at small M rewards too narrow a
    spread). Differentiable in the samples (the sort's gradient routes to each draw).
    """
    m = samples.shape[-1]
    if m < 2:
        raise ValueError(
            f"sample_crps needs at least 2 samples per outcome, got {m} (samples {tuple(samples.shape)})"
        )
    if samples.shape[:-1] != target.shape:
        raise ValueError(
            f"samples must be (*target.shape, M) = {(*target.shape, 'M')}, got {tuple(samples.shape)}; "
            "the draws go on the last axis"
        )
    x = samples.sort(dim=-1).values
    weights = 2 * torch.arange(1, m + 1, dtype=x.dtype, device=x.device) - m - 1  # (M,)
    spread = 2 * (x * weights).sum(dim=-1) / (m * (m - 1) if fair else m**2)  # E|X - X'|
    return (x - target.unsqueeze(-1)).abs().mean(dim=-1) - spread / 2


class SampleCRPSLoss:
    """Mean sample CRPS (:func:`sample_crps`, the fair estimate): a proper scoring rule on sampled forecasts.

    The model returns ``{"prediction": ..., "samples": (*target.shape, M)}``; its prediction is not read.
    The score is lowest in expectation when the samples are drawn from the outcome's true law, so it
    trains the spread as well as the centre (:class:`course_lib.models.sde.NeuralSDE`).
    """

    def __init__(self, fair: bool = True) -> None:
        self.fair = fair

    def __call__(self, output, target: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, dict) or "samples" not in output:
            raise ValueError(
                "the crps_samples loss needs a model that returns {'prediction': ..., 'samples': ...} "
                "(e.g. NeuralSDE); for point forecasts use 'mse'"
            )
        return sample_crps(output["samples"], target, self.fair).mean()


# A loss function, or a loss class whose constructor takes the keyword arguments of loss_by_name.
LOSSES: dict[str, Callable] = {
    "mse": mse_loss,
    "qlike": qlike_loss,
    "gaussian_nll": GaussianNLLLoss,
    "student_t_nll": StudentTNLLLoss,
    "pinball": PinballLoss,
    "crps_samples": SampleCRPSLoss,
}


def loss_by_name(name: str, **kwargs) -> Callable:
    """The loss called ``name`` in :data:`LOSSES`, built with ``kwargs`` (``loss_by_name("pinball", quantiles=...)``)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; use one of {list(LOSSES)} or pass a loss callable")
    entry = LOSSES[name]
    if not isinstance(entry, type):
        if kwargs:
            raise TypeError(f"the {name!r} loss takes no arguments, got {sorted(kwargs)}")
        return entry
    try:
        return entry(**kwargs)
    except TypeError as err:
        raise TypeError(
            f"the {name!r} loss could not be built from {kwargs}: {err}; e.g. "
            'loss_by_name("pinball", quantiles=(0.1, 0.5, 0.9))'
        ) from None
