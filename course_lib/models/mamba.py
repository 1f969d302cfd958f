r"""Mamba (chapter 06a): the Mamba block and a forecaster built from it.

Mamba (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces",
arXiv:2312.00752) is an SSM whose :math:`\Delta_t, B_t, C_t` are computed from the input at each step
(selectivity), so it is no longer a convolution (as S4D is, :mod:`course_lib.models.s4d`): it is
computed by a *scan* of

.. math::  h_t = e^{\Delta_t A} h_{t-1} + \Delta_t B_t u_t, \qquad y_t = C_t h_t + D u_t,

which :func:`course_lib.models.ops.selective_scan.selective_scan` computes three ways (``scan=``:
``"sequential"``, ``"chunked"``, ``"fused"``). Around the scan, the block adds a causal depthwise
convolution, a gate and projections (see :class:`MambaBlock`); :meth:`MambaBlock.step` runs one day
with a carried state, the way the model runs online.

Symbols: B batch, L window length (days), H ``hidden_size``, ``d_inner = expand * H`` the channels
of the scan, N ``d_state``, :math:`\Delta` ``dt`` (one step per channel and day).

Defect of the source module fixed here (see docs/errata.md): its Mamba produced a width-1
:math:`\Delta` that its ``dt_proj`` (built for ``d_state`` inputs) cannot read (a crash, or time steps
mixed as features when ``L == d_state``).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .common import check_window, keeps_config
from .ops.selective_scan import SCANS, selective_scan, selective_scan_step

__all__ = ["FinancialMamba", "MambaBlock"]


class MambaBlock(nn.Module):
    r"""The Mamba block (Gu & Dao 2023, arXiv:2312.00752; cf. state-spaces/mamba ``mamba_simple.py``).

    On (B, L, H) with ``d_inner = expand * H``::

        x, z  = in_proj(u)                               (B, L, d_inner) each
        x     = silu(causal depthwise conv1d(x))          kernel d_conv, left padding only
        dt_r, B_t, C_t = x_proj(x)                        widths dt_rank, d_state, d_state
        dt    = softplus(dt_proj(dt_r))                   (B, L, d_inner): a step size per channel and day
        y     = selective_scan(x, dt, A = -exp(A_log), B_t, C_t, D)
        out   = out_proj(y * silu(z))

    ``dt_proj``'s bias is the inverse softplus of a log-uniform draw in ``[dt_min, dt_max]``, so
    :math:`\Delta` starts in that range; :math:`A_n = -(n+1)` (S4D-Real). :meth:`step` runs one day
    with a carried state ``(conv_state (B, d_inner, d_conv-1), ssm_state (B, d_inner, d_state))``.
    """

    def __init__(
        self,
        hidden_size: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        scan: str = "chunked",
    ):
        super().__init__()
        if min(hidden_size, d_state, d_conv, expand) < 1:
            raise ValueError(
                f"need hidden_size, d_state, d_conv, expand >= 1, got {hidden_size}, {d_state}, {d_conv}, {expand}"
            )
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        if scan not in SCANS:
            raise ValueError(f"unknown scan {scan!r}; choose from {SCANS}")
        self.d_inner, self.d_state, self.d_conv, self.scan = expand * hidden_size, d_state, d_conv, scan
        self.dt_rank = dt_rank or math.ceil(hidden_size / 16)
        d_inner = self.d_inner
        self.in_proj = nn.Linear(hidden_size, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)  # dt, B, C
        self.dt_proj = nn.Linear(self.dt_rank, d_inner, bias=True)
        nn.init.uniform_(self.dt_proj.weight, -(self.dt_rank**-0.5), self.dt_rank**-0.5)
        dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        with torch.no_grad():  # softplus(bias) = dt: bias = dt + log(1 - exp(-dt))
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(
            torch.log(torch.arange(1, d_state + 1).float()).repeat(d_inner, 1)
        )  # (D, N)
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, hidden_size, bias=False)

    def _ssm_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.softplus(self.dt_proj(dt)), B, C  # dt: (..., d_inner), B and C: (..., d_state)

    def _conv_branch(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, z = self.in_proj(u).chunk(2, dim=-1)  # (B, L, d_inner) each
        x = self.conv1d(x.transpose(1, 2))[..., : u.shape[1]].transpose(1, 2)  # causal: keep the first L
        return F.silu(x), z

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # (B, L, H) -> (B, L, H)
        x, z = self._conv_branch(u)
        dt, B, C = self._ssm_inputs(x)
        y = selective_scan(x, dt, -torch.exp(self.A_log), B, C, self.D, scan=self.scan)
        return self.out_proj(y * F.silu(z))

    def step_sizes(self, u: torch.Tensor) -> torch.Tensor:
        """The selective step sizes ``dt`` (B, L, d_inner) that the block uses on ``u`` (B, L, H)."""
        return self._ssm_inputs(self._conv_branch(u)[0])[0]

    def initial_state(self, batch: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero ``(conv_state, ssm_state)`` with the dtype and device of ``like``."""
        conv = like.new_zeros(batch, self.d_inner, self.d_conv - 1)
        return conv, like.new_zeros(batch, self.d_inner, self.d_state)

    def step(self, u: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        """One day: ``u`` (B, H) -> ``(out (B, H), new state)``; equals ``forward`` on the whole window."""
        conv_state, ssm_state = state
        x, z = self.in_proj(u).chunk(2, dim=-1)  # (B, d_inner) each
        window = torch.cat(
            [conv_state, x.unsqueeze(-1)], dim=-1
        )  # (B, d_inner, d_conv): the last d_conv days
        x = F.silu((window * self.conv1d.weight.squeeze(1)).sum(-1) + self.conv1d.bias)
        dt, B, C = self._ssm_inputs(x)
        y, ssm_state = selective_scan_step(ssm_state, x, dt, -torch.exp(self.A_log), B, C, self.D)
        return self.out_proj(y * F.silu(z)), (window[..., 1:], ssm_state)


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x^2) + eps) * weight`` over the last axis (Zhang & Sennrich, 2019), written out.

    The same function and ``weight`` as ``nn.RMSNorm`` (eps = the dtype's machine epsilon), whose
    ``aten::rms_norm`` has no ONNX operator in the tracing exporter: written out, the model exports.
    """

    def __init__(self, hidden_size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., H) -> (..., H)
        eps = torch.finfo(x.dtype).eps
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * self.weight


class FinancialMamba(nn.Module):
    """Mamba forecaster: linear embedding, ``n_layers`` pre-norm residual Mamba blocks, a norm, a head.

    ``x <- x + Dropout(MambaBlock(RMSNorm(x)))``. ``forward(x)`` -> (B, output_size);
    ``per_step=True`` -> (B, L, output_size). :meth:`step` forecasts day by day with a carried state,
    the way the model runs online (constant cost per new day, whatever the history length).
    ``scan`` picks the scan of :func:`selective_scan`: ``"chunked"`` (the default, any device),
    ``"fused"`` (the C kernel, CPU only, needs a C compiler) or ``"sequential"`` (the reference).
    """

    @keeps_config
    def __init__(
        self,
        input_size: int,
        hidden_size: int = 32,
        n_layers: int = 2,
        output_size: int = 1,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dropout: float = 0.0,
        scan: str = "chunked",
    ):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"need n_layers >= 1, got {n_layers}")
        self.input_size = input_size
        self.embedding = nn.Linear(input_size, hidden_size)
        self.norms = nn.ModuleList(RMSNorm(hidden_size) for _ in range(n_layers))
        self.layers = nn.ModuleList(
            MambaBlock(hidden_size, d_state, d_conv, expand, scan=scan) for _ in range(n_layers)
        )
        self.dropout = nn.Dropout(dropout)
        self.norm = RMSNorm(hidden_size)
        self.head = nn.Linear(hidden_size, output_size)

    def forward(self, x: torch.Tensor, per_step: bool = False) -> torch.Tensor:
        check_window(x, self.input_size, model=type(self).__name__, module=self)
        h = self.embedding(x)  # (B, L, H)
        for norm, layer in zip(self.norms, self.layers, strict=True):
            h = h + self.dropout(layer(norm(h)))
        h = self.norm(h)
        return self.head(h if per_step else h[:, -1])

    def step(self, x: torch.Tensor, state: list | None = None) -> tuple[torch.Tensor, list]:
        """One day ``x`` (B, C) -> ``(forecast (B, output_size), state)``; ``state=None`` starts from zeros."""
        if x.dim() != 2 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"FinancialMamba.step expects x of shape (B, {self.input_size}), got {tuple(x.shape)}"
            )
        if not torch.isfinite(x).all():
            raise ValueError("FinancialMamba.step got an input with NaN or inf values")
        h = self.embedding(x)  # (B, H)
        if state is None:
            state = [layer.initial_state(x.shape[0], h) for layer in self.layers]
        new_state = []
        for norm, layer, layer_state in zip(self.norms, self.layers, state, strict=True):
            out, layer_state = layer.step(norm(h), layer_state)
            h = h + self.dropout(out)
            new_state.append(layer_state)
        return self.head(self.norm(h)), new_state
