"""Causal outcome models (chapter 06e): y_hat(h, a) for a history h and one treatment a per sample.

Under no hidden confounding and overlap (see :mod:`course_lib.causal`), the effect of the decision is

    tau = E[ y_hat(h, 1) - y_hat(h, 0) ]                 (adjustment over the observed history h)

* :class:`CausalLSTM`: an outcome model, LSTM over the covariate history plus the treatment.
* :class:`CounterfactualRecurrentNetwork`: the same, with a representation balanced by gradient
  reversal (:class:`GradientReversal`, Ganin & Lempitsky 2015), so that it cannot predict the
  treatment (Bica, Alaa, Jordon & van der Schaar, ICLR 2020); trained with :func:`crn_loss`.

The simulators, the naive estimator, the Granger tests and the training loop
(``fit_outcome_model``) are causal-inference tools, not models: they stay in :mod:`course_lib.causal`.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ..outputs import prediction_of
from .common import check_window, keeps_config, mlp_head, rnn_dropout

__all__ = ["CausalLSTM", "CounterfactualRecurrentNetwork", "GradientReversal", "crn_loss"]


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
        check_window(x, self.input_size, model=type(self).__name__, module=self)
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
