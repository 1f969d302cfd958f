"""Output heads that several model families share: non-crossing quantiles.

Q quantile levels tau_1 < ... < tau_Q are forecast from Q raw outputs a_1..a_Q by cumulative softplus
increments (the TFT of Lim et al. 2021; the quantile network of chapter 06d; the quantile head of the
foundation models)::

    q_1 = a_1,     q_k = q_1 + sum_{j=2..k} softplus(a_j)   (k = 2..Q),

so q_1 <= q_2 <= ... <= q_Q for every input and every weight: the quantiles cannot cross (independent
heads per level do cross, and then the "90% band" can be narrower than the "80% band").
"""

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["QuantileHead", "monotone_quantiles"]


def monotone_quantiles(raw: torch.Tensor) -> torch.Tensor:
    """Raw outputs (..., Q) -> non-decreasing quantiles (..., Q): first value plus cumulative softplus increments."""
    increments = F.softplus(raw[..., 1:])  # (..., Q - 1), >= 0
    return torch.cat([raw[..., :1], raw[..., :1] + increments.cumsum(dim=-1)], dim=-1)  # (..., Q)


class QuantileHead(nn.Module):
    """(..., input_size) -> (..., n_quantiles) non-crossing quantiles: a linear map ``fc``, then
    :func:`monotone_quantiles`."""

    def __init__(self, input_size: int, n_quantiles: int):
        super().__init__()
        self.fc = nn.Linear(input_size, n_quantiles)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return monotone_quantiles(self.fc(x))  # (..., Q)
