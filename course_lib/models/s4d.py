r"""S4D, the diagonal structured state space model (chapter 06a).

A continuous linear state space model maps an input signal :math:`u(t)` to an output :math:`y(t)`
through a hidden state :math:`h(t) \in \mathbb{C}^N`:

.. math::  h'(t) = A h(t) + B u(t), \qquad y(t) = C h(t) + D u(t).

Sampled with a step :math:`\Delta` and the input held constant between samples (zero-order hold,
ZOH), it becomes the linear recurrence

.. math::  h_l = \bar A h_{l-1} + \bar B u_l, \qquad y_l = C h_l + D u_l, \qquad
           \bar A = e^{\Delta A}, \quad \bar B = (\Delta A)^{-1} (e^{\Delta A} - I)\, \Delta B .

Unrolled from :math:`h_{-1} = 0` the recurrence *is* a causal convolution
:math:`y_l = \sum_{j \le l} K_j u_{l-j} + D u_l` with the kernel :math:`K_j = C \bar A^j \bar B`
(:mod:`course_lib.models.ops.convolution` computes it).

**S4D** (Gu, Gupta, Goel & Re 2022, "On the Parameterization and Initialization of Diagonal State
Space Models", arXiv:2206.11893): one SSM per channel with a diagonal :math:`A`,
:math:`A_n = -\tfrac12 + i \pi n` (S4D-Lin), whose kernel is a Vandermonde product
:math:`K_l = 2\,\mathrm{Re} \sum_n C_n \bar B_n e^{\Delta A_n l}` (the factor 2 and the real part
account for the complex-conjugate modes) and whose convolution is an FFT of length :math:`2L`.
Mamba (:mod:`course_lib.models.mamba`) makes :math:`\Delta, B, C` depend on the input, so that it is
no longer a convolution.

Symbols: B batch, L window length (days), H channels (``hidden_size``), N state size per channel
(``d_state``), :math:`\Delta` the step (``dt``), :math:`\bar A, \bar B` the discretised A and B.

Defect of the source module fixed here (see docs/errata.md): its S4D kernel dropped the ZOH input
factor :math:`(e^{\Delta A} - 1)/A` (off by one to three orders of magnitude).
"""

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from .common import check_window, keeps_config
from .ops.convolution import _cexp, causal_conv_direct, fft_causal_conv

__all__ = ["S4D", "FinancialS4D", "FrozenKernel", "S4DKernel"]


class S4DKernel(nn.Module):
    r"""The S4D convolution kernel of ``hidden_size`` independent diagonal SSMs (one per channel).

    Per channel :math:`h` and mode :math:`n = 0, \dots, N-1` (``N = d_state``):
    :math:`A_n = -e^{a_n} + i \pi n` (learnable real part, initialised at :math:`-\tfrac12`),
    :math:`\Delta = e^{\log\Delta}` (learnable, initialised log-uniform in ``[dt_min, dt_max]``),
    :math:`B_n = 1` (absorbed into the learnable complex :math:`C_n`), and the ZOH discretisation

    .. math::  \bar A_n = e^{\Delta A_n}, \quad \bar B_n = (e^{\Delta A_n} - 1)/A_n, \quad
               K_l = 2\,\mathrm{Re} \sum_n C_n \bar B_n e^{\Delta A_n l}.

    ``forward(L)`` returns ``K`` (H, L); :meth:`recurrence` runs the same SSM step by step.
    Gu et al. (2022), arXiv:2206.11893; cf. state-spaces/s4 ``models/s4/s4d.py``.
    """

    def __init__(self, hidden_size: int, d_state: int = 32, dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        if hidden_size < 1 or d_state < 1:
            raise ValueError(f"need hidden_size >= 1 and d_state >= 1, got {hidden_size}, {d_state}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        log_dt = torch.rand(hidden_size) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)  # (H,)
        self.log_A_real = nn.Parameter(torch.full((hidden_size, d_state), math.log(0.5)))  # (H, N)
        self.register_buffer(
            "A_imag", math.pi * torch.arange(d_state).float().repeat(hidden_size, 1)
        )  # (H, N)
        # C is complex; stored as (H, N, 2) real so that .double() and every optimiser handle it
        self.C = nn.Parameter(torch.randn(hidden_size, d_state, 2) * 0.5**0.5)

    def discretize(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(dtA, dB, C)``, each (H, N) complex: the exponent of A-bar, the ZOH B-bar and C."""
        A = torch.complex(-torch.exp(self.log_A_real), self.A_imag)  # (H, N)
        dtA = torch.exp(self.log_dt).unsqueeze(-1) * A  # (H, N)
        dB = (torch.exp(dtA) - 1) / A  # ZOH input factor with B = 1 (the source module left it out)
        return dtA, dB, torch.view_as_complex(self.C)

    def forward(self, length: int) -> torch.Tensor:  # -> (H, L)
        """``K_l = 2 Re sum_n C_n B-bar_n z_n^l`` with ``z_n = exp(dt A_n)``, for ``l = 0, ..., L-1``.

        The Vandermonde matrix ``z_n^l`` is factored with ``l = T i + j`` (``T`` about sqrt(L)):
        ``z_n^l = z_n^{T i} z_n^j``, so the sum over ``n`` is one batched (L/T x N) @ (N x T)
        complex matrix product, and only 2 sqrt(L) exponentials per mode are taken instead of L.
        """
        dtA, dB, C = self.discretize()  # (H, N) each
        T = math.isqrt(max(length - 1, 0)) + 1
        n_blocks = -(-length // T)
        j = torch.arange(T, device=dtA.device, dtype=self.log_dt.dtype)  # (T,)
        i = torch.arange(n_blocks, device=dtA.device, dtype=self.log_dt.dtype) * T  # (L/T,)
        inner = _cexp(dtA.unsqueeze(-1) * j)  # (H, N, T): z^j
        outer = (C * dB).unsqueeze(1) * _cexp(dtA.unsqueeze(1) * i.unsqueeze(-1))  # (H, L/T, N): C B z^{Ti}
        # Re(outer @ inner) = Re(outer) @ Re(inner) - Im(outer) @ Im(inner): one real matmul
        K = (
            2 * torch.cat([outer.real, -outer.imag], -1) @ torch.cat([inner.real, inner.imag], -2)
        )  # (H, L/T, T)
        return K.reshape(K.shape[0], -1)[:, :length]

    def recurrence(self, u: torch.Tensor) -> torch.Tensor:
        """The convolution ``K * u`` computed as the recurrence ``h_l = A-bar h_{l-1} + B-bar u_l``.

        ``u`` (B, L, H) -> (B, L, H), ``y_l = 2 Re(C h_l)``. O(L) Python steps: a reference, and the
        way a trained S4D would run online, one new day at a time.
        """
        dtA, dB, C = self.discretize()
        dA = torch.exp(dtA)  # (H, N)
        h = torch.zeros(u.shape[0], *dA.shape, dtype=dA.dtype, device=u.device)  # (B, H, N)
        ys = []
        for u_t in u.unbind(1):  # u_t: (B, H)
            h = dA * h + dB * u_t.unsqueeze(-1)
            ys.append(2 * (C * h).sum(-1).real)
        return torch.stack(ys, dim=1)


class FrozenKernel(nn.Module):
    """A trained layer's kernel K (H, L) at one window length, kept as a constant.

    In eval mode the kernel depends only on the parameters and L, so a model that always sees
    L-day windows (a deployed one) can compute it once: what :meth:`FinancialS4D.for_export` does, since
    ONNX has no complex numbers and no FFT.
    """

    def __init__(self, kernel: torch.Tensor):
        super().__init__()
        self.register_buffer("K", kernel.detach().clone())  # (H, L)

    def forward(self, length: int) -> torch.Tensor:  # -> (H, L)
        if length != self.K.shape[-1]:
            raise ValueError(
                f"this S4D layer was frozen for {self.K.shape[-1]}-day windows, got {length} days"
            )
        return self.K


class S4D(nn.Module):
    r"""One S4D layer on (B, L, H): ``y = GELU(K * u + D u)``, then a position-wise ``Linear(H, 2H)`` + GLU.

    The SSM mixes time (one kernel per channel); the GLU mixes channels. Both are causal.
    """

    def __init__(
        self,
        hidden_size: int,
        d_state: int = 32,
        dropout: float = 0.0,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
    ):
        super().__init__()
        self.kernel = S4DKernel(hidden_size, d_state, dt_min, dt_max)
        self.D = nn.Parameter(torch.randn(hidden_size))
        self.dropout = nn.Dropout(dropout)
        self.output_linear = nn.Linear(hidden_size, 2 * hidden_size)
        self.convolve = fft_causal_conv  # O(L log L); the export form sums directly (causal_conv_direct)

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # (B, L, H) -> (B, L, H)
        k = self.kernel(u.shape[1])  # (H, L)
        y = self.convolve(u, k) + self.D * u  # (B, L, H)
        y = self.dropout(F.gelu(y))
        return F.glu(self.output_linear(y), dim=-1)  # (B, L, 2H) -> (B, L, H)


class FinancialS4D(nn.Module):
    """S4D forecaster: linear encoder, ``n_layers`` pre-norm residual S4D layers, a norm and a linear head.

    ``x <- x + Dropout(S4D(LayerNorm(x)))`` per layer. ``forward(x)`` -> (B, output_size);
    ``per_step=True`` -> (B, L, output_size). The FFT convolution is causal up to round-off
    (about 1e-7 of the signal in float32, 1e-16 in float64).
    """

    @keeps_config
    def __init__(
        self,
        input_size: int,
        hidden_size: int = 32,
        n_layers: int = 2,
        output_size: int = 1,
        d_state: int = 32,
        dropout: float = 0.0,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
    ):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"need n_layers >= 1, got {n_layers}")
        self.input_size = input_size
        self.encoder = nn.Linear(input_size, hidden_size)
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_size) for _ in range(n_layers))
        self.layers = nn.ModuleList(
            S4D(hidden_size, d_state, dropout, dt_min, dt_max) for _ in range(n_layers)
        )
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden_size)
        self.head = nn.Linear(hidden_size, output_size)

    def forward(self, x: torch.Tensor, per_step: bool = False) -> torch.Tensor:
        check_window(x, self.input_size, model=type(self).__name__, module=self)
        h = self.encoder(x)  # (B, L, H)
        for norm, layer in zip(self.norms, self.layers, strict=True):
            h = h + self.dropout(layer(norm(h)))
        h = self.norm(h)
        return self.head(h if per_step else h[:, -1])  # (B, L, n_out) or (B, n_out)

    def for_export(self, length: int) -> "FinancialS4D":
        """A copy for ``length``-day windows in eval mode, with real operations only (for ONNX).

        Each layer's kernel is computed once (:class:`FrozenKernel`) and convolved directly, as a
        Toeplitz product (a grouped ``conv1d``), instead of by complex FFTs: the same function of the
        window, to float32 round-off.
        """
        frozen = copy.deepcopy(self).eval()
        with torch.no_grad():
            for layer in frozen.layers:
                layer.kernel = FrozenKernel(layer.kernel(length))
                layer.convolve = causal_conv_direct
        return frozen
