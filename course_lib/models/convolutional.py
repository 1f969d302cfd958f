r"""Causal convolutional forecasters: the Temporal Convolutional Network and WaveNet.

A causal dilated convolution with kernel size :math:`k` and dilation :math:`d` maps a sequence
:math:`x_1, \dots, x_L` of channel vectors to

.. math::  y_t = b + \sum_{j=0}^{k-1} W_j \, x_{t - j d},

where inputs before the window are zeros. Step :math:`t` never sees a later step. Stacking such
layers grows the *receptive field* (the number of input steps the last output depends on) by
:math:`(k-1) d` per convolution, so with dilations doubling per level it grows exponentially:

* TCN (Bai, Kolter & Koltun 2018, "An Empirical Evaluation of Generic Convolutional and Recurrent
  Networks for Sequence Modeling", arXiv:1803.01271): ``n`` residual blocks of two convolutions with
  dilation :math:`2^i` in block :math:`i`:  :math:`R = 1 + 2 (k-1) (2^n - 1)`.
* WaveNet (van den Oord et al. 2016, "WaveNet: A Generative Model for Raw Audio", arXiv:1609.03499):
  one gated convolution :math:`z = \tanh(W_f * x) \odot \sigma(W_g * x)` per layer, dilations
  :math:`1, 2, \dots, 2^{m-1}` repeated over ``b`` blocks:  :math:`R = 1 + (k-1)\, b\, (2^m - 1)`.

The tests check both formulas against the gradient support of the last output, step for step.

Input convention (all course_lib models): ``x`` is ``(B, L, C)``; convolutions want ``(B, C, L)``,
so the models transpose inside. By default a model returns the forecast made at the last step,
``(B, output_size)``; ``per_step=True`` returns ``(B, L, output_size)``, one causal forecast per step.

Defects of the source module fixed here (see docs/errata.md): ``Chomp1d(0)`` returned an empty tensor
(``x[:, :, :-0]``), so ``kernel_size=1`` crashed; WaveNet defaulted to 4 x 10 layers, a receptive field
of 4,093 steps for 20-60 step windows, and nothing said so: a window that the network would cover
even without its last layer now gives a warning with both numbers. The TCN also uses the current ``weight_norm`` parametrization
with the weights initialised *before* it wraps them (initialising ``conv.weight`` afterwards writes
into a recomputed tensor and is silently lost).
"""

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from .common import check_window, keeps_config

__all__ = [
    "CausalConv1d",
    "Chomp1d",
    "ResidualBlock",
    "TemporalBlock",
    "TemporalConvNet",
    "WaveNet",
    "tcn_receptive_field",
    "warn_if_window_too_short",
    "wavenet_layers_for",
    "wavenet_receptive_field",
]


def tcn_receptive_field(kernel_size: int, n_levels: int) -> int:
    """Input steps seen by one output of a TCN: ``1 + 2 (k-1) (2^n - 1)`` (two convolutions per block)."""
    return 1 + 2 * (kernel_size - 1) * (2**n_levels - 1)


def wavenet_receptive_field(kernel_size: int, n_layers_per_block: int, n_blocks: int = 1) -> int:
    """Input steps seen by one output of a WaveNet: ``1 + (k-1) * sum of the dilations``."""
    return 1 + (kernel_size - 1) * n_blocks * (2**n_layers_per_block - 1)


def warn_if_window_too_short(model: nn.Module, length: int) -> None:
    """Warn when a window of ``length`` steps leaves the model's last layer nothing but zero padding.

    A receptive field somewhat longer than the window is what the sizing rule gives (the smallest
    network that covers it, e.g. :meth:`WaveNet.for_lookback`). The warning is for the source module's
    mistake: a window that the network would still cover without its last layer
    (``model.field_without_last_layer``), so that layer, and often several before it, only read
    the padding. The message gives the window length and the receptive field.
    """
    if model.receptive_field > length and length <= model.field_without_last_layer:
        warnings.warn(
            f"{type(model).__name__}: the window has L={length} steps but the receptive field is "
            f"{model.receptive_field} steps; even without its last layer the network covers "
            f"{model.field_without_last_layer} steps, so its deepest layers only read zero padding. "
            "Use fewer levels or layers (or longer windows)",
            UserWarning,
            stacklevel=2,  # the forward of the model (shown once per notebook)
        )


def wavenet_layers_for(lookback: int, kernel_size: int = 2, n_blocks: int = 1) -> int:
    """The fewest layers per block whose receptive field covers ``lookback`` steps.

    >>> wavenet_layers_for(20)            # 1 + (2^5 - 1) = 32 >= 20, while 4 layers give only 16
    5
    """
    if lookback < 1 or kernel_size < 2 or n_blocks < 1:
        raise ValueError(
            f"need lookback >= 1, kernel_size >= 2 and n_blocks >= 1, got {lookback}, {kernel_size}, {n_blocks}"
        )
    # 1 + (k-1) b (2^m - 1) >= lookback  <=>  2^m >= 1 + (lookback - 1) / ((k-1) b)
    return max(1, math.ceil(math.log2(1 + (lookback - 1) / ((kernel_size - 1) * n_blocks))))


class Chomp1d(nn.Module):
    """Drop the last ``chomp_size`` steps: the right half of a symmetric padding, which would see the future.

    ``chomp_size`` must be positive: ``x[:, :, :-0]`` is an *empty* tensor, so a layer without padding
    (``kernel_size=1``) must use no chomp at all (the source module crashed there).
    """

    def __init__(self, chomp_size: int):
        super().__init__()
        if chomp_size < 1:
            raise ValueError(
                f"Chomp1d({chomp_size}) would return an empty tensor (x[:, :, :-0]); "
                "with padding 0 use no chomp (nn.Identity())"
            )
        self.chomp_size = chomp_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, L + chomp) -> (B, C, L)
        return x[:, :, : -self.chomp_size].contiguous()


class CausalConv1d(nn.Conv1d):
    """A ``Conv1d`` padded on the left only, so output ``t`` sees inputs ``t - (k-1) d, ..., t``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation)
        self.left_padding = (kernel_size - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, L) -> (B, C_out, L)
        return super().forward(F.pad(x, (self.left_padding, 0)))


def _weight_normed_conv(n_in: int, n_out: int, kernel_size: int, dilation: int, padding: int) -> nn.Conv1d:
    conv = nn.Conv1d(n_in, n_out, kernel_size, padding=padding, dilation=dilation)
    # Initialise before weight_norm wraps the weight: afterwards conv.weight is recomputed from (g, v) at
    # every access and anything written into it is lost. Zero bias: with weights this small, PyTorch's
    # default bias would decide the sign before the ReLU on its own and leave about half the units dead
    # for every input (no gradient, so they never recover). The same holds for the 1x1 residual path.
    nn.init.normal_(conv.weight, 0.0, 0.01)
    nn.init.zeros_(conv.bias)
    return weight_norm(conv)


class TemporalBlock(nn.Module):
    """Two weight-normalised causal dilated convolutions with ReLU and dropout, plus a residual path.

    ``out = ReLU(net(x) + res(x))``, ``res`` a 1x1 convolution when the widths differ.
    """

    def __init__(self, n_inputs: int, n_outputs: int, kernel_size: int, dilation: int, dropout: float = 0.2):
        super().__init__()
        padding = (kernel_size - 1) * dilation  # both sides by Conv1d; the right side is chomped off

        def chomp() -> nn.Module:
            return Chomp1d(padding) if padding > 0 else nn.Identity()

        self.net = nn.Sequential(
            _weight_normed_conv(n_inputs, n_outputs, kernel_size, dilation, padding),
            chomp(),
            nn.ReLU(),
            nn.Dropout(dropout),
            _weight_normed_conv(n_outputs, n_outputs, kernel_size, dilation, padding),
            chomp(),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.downsample = nn.Conv1d(n_inputs, n_outputs, 1) if n_inputs != n_outputs else nn.Identity()
        if isinstance(self.downsample, nn.Conv1d):  # same scale as the convolutions, zero bias (see above)
            nn.init.normal_(self.downsample.weight, 0.0, 0.01)
            nn.init.zeros_(self.downsample.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, L) -> (B, C_out, L)
        return torch.relu(self.net(x) + self.downsample(x))


class TemporalConvNet(nn.Module):
    """TCN forecaster: ``len(num_channels)`` temporal blocks (dilation ``2^i``) and a linear head.

    Args:
        input_size: features per step ``C``.
        num_channels: width of each block, e.g. ``(32, 32, 32)``; its length is the number of levels.
        kernel_size: taps per convolution (1 is allowed: no chomp, receptive field 1).
        dropout: dropout after each convolution.
        output_size: forecasts per step (e.g. the number of horizons).
    """

    @keeps_config
    def __init__(
        self,
        input_size: int,
        num_channels: tuple[int, ...] | list[int] = (32, 32, 32),
        kernel_size: int = 2,
        dropout: float = 0.2,
        output_size: int = 1,
    ):
        super().__init__()
        if kernel_size < 1 or len(num_channels) == 0:
            raise ValueError(
                f"need kernel_size >= 1 and at least one level, got {kernel_size}, {num_channels}"
            )
        self.input_size = input_size
        widths = [input_size, *num_channels]
        self.network = nn.Sequential(
            *[
                TemporalBlock(widths[i], widths[i + 1], kernel_size, dilation=2**i, dropout=dropout)
                for i in range(len(num_channels))
            ]
        )
        self.head = nn.Linear(widths[-1], output_size)
        self.receptive_field = tcn_receptive_field(kernel_size, len(num_channels))
        self.field_without_last_layer = tcn_receptive_field(kernel_size, len(num_channels) - 1)

    def forward(self, x: torch.Tensor, per_step: bool = False) -> torch.Tensor:
        check_window(x, self.input_size, model=type(self).__name__, module=self)
        warn_if_window_too_short(self, x.shape[1])
        h = self.network(x.transpose(1, 2)).transpose(1, 2)  # (B, L, C) -> (B, L, H)
        return self.head(h if per_step else h[:, -1])  # (B, L, n_out) or (B, n_out)


class ResidualBlock(nn.Module):
    """One WaveNet layer: a gated causal convolution feeding a residual and a skip 1x1 convolution.

    ``z = tanh(filter) * sigmoid(gate)``; returns ``(x + residual_conv(z), skip_conv(z))``.
    The network's last layer is built with ``residual=False``: only its skip output is read, so a
    residual convolution there would be a parameter that never gets a gradient.
    """

    def __init__(
        self,
        residual_channels: int,
        skip_channels: int,
        kernel_size: int,
        dilation: int,
        residual: bool = True,
    ):
        super().__init__()
        self.dilated_conv = CausalConv1d(residual_channels, 2 * residual_channels, kernel_size, dilation)
        self.residual_conv = nn.Conv1d(residual_channels, residual_channels, 1) if residual else None
        self.skip_conv = nn.Conv1d(residual_channels, skip_channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # x: (B, R, L)
        filter_out, gate = self.dilated_conv(x).chunk(2, dim=1)  # (B, R, L) each
        z = torch.tanh(filter_out) * torch.sigmoid(gate)  # (B, R, L)
        h = x if self.residual_conv is None else x + self.residual_conv(z)  # (B, R, L)
        return h, self.skip_conv(z)  # (B, S, L)


class WaveNet(nn.Module):
    """WaveNet forecaster: gated dilated causal convolutions, residual and skip paths, a 1x1 head.

    Args: ``input_size`` features per step, ``residual_channels`` and ``skip_channels`` the widths of the
    two paths, ``output_size`` forecasts per step, ``n_blocks`` x ``n_layers_per_block`` gated layers
    (dilations 1, 2, ..., 2^(m-1) in each block), ``kernel_size`` taps per convolution.

    Size it from the receptive field, not from the audio paper: ``WaveNet.for_lookback(C, 20)`` picks
    the fewest layers that cover 20 steps (5 with ``kernel_size=2``). The source's 4 blocks x 10 layers
    see 4,093 steps, so on a 20-step window all but the first few layers only read zero padding.
    """

    @keeps_config
    def __init__(
        self,
        input_size: int,
        residual_channels: int = 16,
        skip_channels: int = 16,
        output_size: int = 1,
        n_blocks: int = 1,
        n_layers_per_block: int = 5,
        kernel_size: int = 2,
    ):
        super().__init__()
        if kernel_size < 1 or n_blocks < 1 or n_layers_per_block < 1:
            raise ValueError(
                f"need kernel_size, n_blocks, n_layers_per_block >= 1, "
                f"got {kernel_size}, {n_blocks}, {n_layers_per_block}"
            )
        self.input_size = input_size
        self.input_conv = nn.Conv1d(input_size, residual_channels, 1)
        dilations = [2**i for _ in range(n_blocks) for i in range(n_layers_per_block)]
        self.residual_blocks = nn.ModuleList(
            ResidualBlock(residual_channels, skip_channels, kernel_size, d, residual=n < len(dilations) - 1)
            for n, d in enumerate(dilations)
        )
        self.output_conv1 = nn.Conv1d(skip_channels, skip_channels, 1)
        self.output_conv2 = nn.Conv1d(skip_channels, output_size, 1)
        self.receptive_field = wavenet_receptive_field(kernel_size, n_layers_per_block, n_blocks)
        self.field_without_last_layer = self.receptive_field - (kernel_size - 1) * dilations[-1]

    @classmethod
    def for_lookback(cls, input_size: int, lookback: int, kernel_size: int = 2, n_blocks: int = 1, **kwargs):
        """A WaveNet whose receptive field is the smallest of its family that covers ``lookback`` steps."""
        layers = wavenet_layers_for(lookback, kernel_size, n_blocks)
        return cls(
            input_size, kernel_size=kernel_size, n_blocks=n_blocks, n_layers_per_block=layers, **kwargs
        )

    def forward(self, x: torch.Tensor, per_step: bool = False) -> torch.Tensor:
        check_window(x, self.input_size, model=type(self).__name__, module=self)
        warn_if_window_too_short(self, x.shape[1])
        h = self.input_conv(x.transpose(1, 2))  # (B, R, L)
        skips = 0
        for block in self.residual_blocks:
            h, skip = block(h)  # (B, R, L), (B, S, L)
            skips = skips + skip
        out = self.output_conv2(torch.relu(self.output_conv1(torch.relu(skips))))  # (B, n_out, L)
        out = out.transpose(1, 2)  # (B, L, n_out)
        return out if per_step else out[:, -1]
