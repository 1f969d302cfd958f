r"""The causal convolution of S4D, two ways, and a fast complex exponential.

Unrolled from :math:`h_{-1} = 0`, a linear time-invariant SSM :math:`h_l = \bar A h_{l-1} + \bar B u_l`,
:math:`y_l = C h_l` *is* the causal convolution

.. math::  y_l = \sum_{j \le l} K_j u_{l-j}, \qquad K_j = C \bar A^j \bar B,

one kernel :math:`K` (H, L) per channel. :func:`fft_causal_conv` computes it in O(L log L) with FFTs
of length :math:`2L`; :func:`causal_conv_direct` sums it in O(L^2) (the reference the tests compare with).

Symbols: B batch, L window length (days), H channels (``hidden_size``).
"""

import torch
import torch.nn.functional as F

__all__ = ["causal_conv_direct", "fft_causal_conv"]


def fft_causal_conv(u: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``y_l = sum_{j <= l} K_j u_{l-j}`` per channel, with FFTs of length 2L (no wrap-around).

    ``u`` (B, L, H), ``kernel`` (H, L) -> (B, L, H). O(L log L) instead of O(L^2).
    """
    length = u.shape[1]
    n = 2 * length  # zero padding to 2L turns the FFT's circular convolution into a linear one
    u_f = torch.fft.rfft(u.transpose(1, 2), n=n)  # (B, H, n/2+1): time on the last, contiguous axis
    u_f.mul_(torch.fft.rfft(kernel, n=n))  # times the kernel's (H, n/2+1), in place: no third buffer
    return torch.fft.irfft(u_f, n=n)[..., :length].transpose(1, 2)  # (B, L, H)


def causal_conv_direct(u: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """The same convolution as :func:`fft_causal_conv`, summed directly in O(L^2) (a reference)."""
    length = u.shape[1]
    weight = kernel.flip(-1).unsqueeze(1)  # (H, 1, L): conv1d correlates, so flip the kernel
    y = F.conv1d(F.pad(u.transpose(1, 2), (length - 1, 0)), weight, groups=u.shape[-1])  # (B, H, L)
    return y.transpose(1, 2)


def _cexp(z: torch.Tensor) -> torch.Tensor:
    """``exp(z)`` of a complex tensor as ``e^{Re z} (cos Im z + i sin Im z)``: the same numbers, and on
    CPU several times faster than the complex ``torch.exp`` (benchmarks/ssm_scan.py times both)."""
    return torch.polar(torch.exp(z.real), z.imag)
