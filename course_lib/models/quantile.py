"""QuantileRegressionEnsemble: several quantiles of the forecast from one shared network, never crossing.

Quantile regression (Koenker & Bassett 1978) learns the tau-quantile of y given x by minimising the
pinball loss rho_tau(y - q) = max(tau (y - q), (tau - 1)(y - q)) (``course_lib.losses.PinballLoss``).
Q levels tau_1 < ... < tau_Q share one LSTM backbone h = LSTM(x)_L (B, H) and one linear layer whose
Q outputs per horizon a_1..a_Q become the quantiles by cumulative softplus increments
(``course_lib.models.heads.monotone_quantiles``)

    q_1 = a_1,     q_j = q_{j-1} + softplus(a_j)   (j = 2..Q),

so q_1 <= q_2 <= ... <= q_Q for every input and every weight: the quantiles cannot cross. The source
module trained one independent network per level (quantiles crossed, and nothing was shared), keyed its
outputs ``f"q{int(q * 100)}"`` (0.29 * 100 = 28.999999999999996, so 0.29 became "q28") and compared
(B,) targets with (B, 1) outputs, which broadcasts to (B, B): rows of docs/errata.md. Here the output is
one tensor (B, output_size, Q) for ``PinballLoss(model.quantiles)`` (which checks shapes), and
:meth:`by_level` names the slices with keys that are the exact levels (``"q0.29"``).

Its forecasts feed conformalised quantile regression (``course_lib.evaluation.conformal.ConformalizedQuantileRegressor``):
a quantile model learns the *shape* of the band (wide in storms, narrow in calm), conformal calibration
fixes its *level*.
"""

from itertools import pairwise

import torch
from torch import nn

from .common import check_window, keeps_config
from .heads import monotone_quantiles

__all__ = ["QuantileRegressionEnsemble", "quantile_key"]


def quantile_key(level: float) -> str:
    """The key of a quantile level: ``"q"`` + the shortest repr of the float, so it never rounds (0.29 -> "q0.29")."""
    return f"q{float(level)!r}"


class QuantileRegressionEnsemble(nn.Module):
    """LSTM backbone -> dropout -> linear -> cumulative-softplus quantiles (see the module docstring).

    Input x: (B, L, input_size). Output: (B, output_size, Q) quantiles, increasing along the last axis;
    with ``per_step=True`` (B, L, output_size, Q), the forecast made at every step of the window (causal).
    """

    @keeps_config
    def __init__(
        self,
        input_size: int,
        hidden_size: int = 32,
        output_size: int = 1,
        n_layers: int = 1,
        dropout: float = 0.0,
        quantiles: tuple[float, ...] | list[float] = (0.05, 0.5, 0.95),
    ):
        super().__init__()
        levels = tuple(float(q) for q in quantiles)
        if not levels or any(not 0.0 < q < 1.0 for q in levels) or list(levels) != sorted(set(levels)):
            raise ValueError(
                f"quantiles must be strictly increasing levels in (0, 1), got {tuple(quantiles)}"
            )
        if min(input_size, hidden_size, output_size, n_layers) < 1:
            raise ValueError("input_size, hidden_size, output_size and n_layers must be >= 1")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.input_size, self.output_size, self.quantiles = input_size, output_size, levels
        sizes = [input_size] + [hidden_size] * n_layers
        self.lstms = nn.ModuleList(nn.LSTM(i, o, batch_first=True) for i, o in pairwise(sizes))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, output_size * len(levels))

    def forward(self, x: torch.Tensor, per_step: bool = False) -> torch.Tensor:
        check_window(x, self.input_size, model=type(self).__name__, module=self)
        h = x
        for lstm in self.lstms:
            h, _ = lstm(h)  # (B, L, H)
            h = self.dropout(h)
        if not per_step:
            h = h[:, -1]  # (B, H)
        raw = self.head(h).unflatten(-1, (self.output_size, len(self.quantiles)))  # (..., n_out, Q)
        return monotone_quantiles(raw)  # (..., n_out, Q)

    def by_level(self, output: torch.Tensor) -> dict[str, torch.Tensor]:
        """{quantile_key(tau): output[..., j]} for each level tau_j: (B, output_size) tensors."""
        if output.shape[-1] != len(self.quantiles):
            raise ValueError(
                f"expected {len(self.quantiles)} quantiles on the last axis, got shape {tuple(output.shape)}"
            )
        return {quantile_key(q): output[..., j] for j, q in enumerate(self.quantiles)}
