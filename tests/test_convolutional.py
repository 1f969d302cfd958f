"""Tests specific to course_lib.models.convolutional: exact receptive fields, the short-window warning and
the source module's defects. The model contract runs in tests/test_contract.py."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import parametrize

from course_lib import set_seed
from course_lib.models.convolutional import (
    CausalConv1d,
    Chomp1d,
    ResidualBlock,
    TemporalBlock,
    TemporalConvNet,
    WaveNet,
    tcn_receptive_field,
    wavenet_layers_for,
    wavenet_receptive_field,
)
from course_lib.testing import input_support

B, L, C = 4, 24, 3


def _x(length: int = L, batch: int = B, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(batch, length, C, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _tcn(**kw) -> TemporalConvNet:
    set_seed(0)
    kw = {"num_channels": (8, 8, 8), "kernel_size": 3, "dropout": 0.1, "output_size": 2} | kw
    return TemporalConvNet(C, **kw)


def _wavenet(**kw) -> WaveNet:
    set_seed(0)
    kw = {"residual_channels": 8, "skip_channels": 8, "output_size": 2, "n_layers_per_block": 3} | kw
    return WaveNet(C, **kw)


MODELS = {"tcn": _tcn, "wavenet": _wavenet}


def _last_steps_mask(length: int, field: int) -> list[bool]:
    return [False] * (length - field) + [True] * field


# ---------------------------------------------------------------- receptive fields (exact, from gradients)


@pytest.mark.parametrize(("kernel_size", "levels"), [(1, 1), (1, 3), (2, 1), (2, 3), (3, 2), (4, 3)])
def test_tcn_receptive_field_equals_gradient_support(kernel_size, levels):
    model = _tcn(num_channels=(8,) * levels, kernel_size=kernel_size).double().eval()
    field = 1 + 2 * (kernel_size - 1) * (2**levels - 1)
    assert model.receptive_field == tcn_receptive_field(kernel_size, levels) == field
    length = field + 5
    support = input_support(model, _x(length, batch=8, dtype=torch.float64))
    assert support.tolist() == _last_steps_mask(length, field)


@pytest.mark.parametrize(
    ("kernel_size", "layers", "blocks"), [(1, 2, 1), (2, 1, 1), (2, 3, 1), (2, 2, 3), (3, 3, 1), (3, 2, 2)]
)
def test_wavenet_receptive_field_equals_gradient_support(kernel_size, layers, blocks):
    model = _wavenet(kernel_size=kernel_size, n_layers_per_block=layers, n_blocks=blocks).double().eval()
    dilations = [2**i for _ in range(blocks) for i in range(layers)]
    field = 1 + (kernel_size - 1) * sum(dilations)
    assert model.receptive_field == wavenet_receptive_field(kernel_size, layers, blocks) == field
    length = field + 5
    support = input_support(model, _x(length, batch=8, dtype=torch.float64))
    assert support.tolist() == _last_steps_mask(length, field)


def test_source_default_wavenet_is_oversized():
    # the module's 4 blocks x 10 layers: 4,093 steps for windows of 20-60 days
    assert wavenet_receptive_field(2, 10, 4) == 4093


@settings(max_examples=60, deadline=None)
@given(lookback=st.integers(1, 600), kernel_size=st.integers(2, 4), blocks=st.integers(1, 3))
def test_wavenet_layers_for_is_the_smallest_cover(lookback, kernel_size, blocks):
    layers = wavenet_layers_for(lookback, kernel_size, blocks)
    assert wavenet_receptive_field(kernel_size, layers, blocks) >= lookback
    if layers > 1:
        assert wavenet_receptive_field(kernel_size, layers - 1, blocks) < lookback


def test_wavenet_for_lookback_covers_the_window():
    model = WaveNet.for_lookback(C, 20, residual_channels=4, skip_channels=4)
    assert model.receptive_field == 32 and len(model.residual_blocks) == 5
    with pytest.raises(ValueError, match="kernel_size >= 2"):
        wavenet_layers_for(20, kernel_size=1)


# ---------------------------------------------------------------- windows shorter than the receptive field


@pytest.mark.parametrize("name", MODELS)
def test_a_window_too_short_for_the_last_layer_warns_with_both_numbers(name):
    model = MODELS[name]()
    field, short = model.receptive_field, model.field_without_last_layer
    assert short < field
    with pytest.warns(UserWarning, match=f"L={short} steps but the receptive field is {field} steps"):
        assert model(_x(length=short)).shape == (B, 2)  # still runs: zero padding
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the last layer is needed for L = short + 1: no warning
        model(_x(length=short + 1))


def test_the_source_wavenet_warns_on_a_20_day_window_and_the_sized_one_does_not():
    with pytest.warns(UserWarning, match="L=20 steps but the receptive field is 4093 steps"):
        WaveNet(C, 4, 4, n_blocks=4, n_layers_per_block=10)(_x(length=20))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # receptive field 32 > 20, but 4 layers would cover only 16
        WaveNet.for_lookback(C, 20, residual_channels=4, skip_channels=4)(_x(length=20))


# ---------------------------------------------------------------- the source module's defects, fixed


def test_chomp_zero_is_refused_and_kernel_size_one_works():
    x = torch.randn(2, 3, 10)
    assert x[:, :, :-0].shape[-1] == 0  # the defect: slicing with -0 keeps nothing
    with pytest.raises(ValueError, match="empty"):
        Chomp1d(0)
    assert Chomp1d(2)(x).shape == (2, 3, 8)
    block = TemporalBlock(3, 5, kernel_size=1, dilation=4, dropout=0.0)
    assert not any(isinstance(m, Chomp1d) for m in block.modules())
    assert block(x).shape == (2, 5, 10)


def test_weight_norm_uses_parametrizations_and_keeps_the_initialisation():
    model = _tcn()
    convs = [
        m for m in model.modules() if isinstance(m, nn.Conv1d) and parametrize.is_parametrized(m, "weight")
    ]
    assert len(convs) == 2 * len(model.network)  # every dilated convolution, none with weight_g/weight_v
    assert not any(name.endswith(("weight_g", "weight_v")) for name, _ in model.named_parameters())
    for conv in convs:  # N(0, 0.01) survived the wrapping (default Kaiming init has std ~0.2 here)
        assert 0.005 < conv.weight.std().item() < 0.02


def test_chomped_convolution_equals_left_padded_reference():
    torch.manual_seed(0)
    block = TemporalBlock(3, 3, kernel_size=3, dilation=2, dropout=0.0)
    conv = block.net[0]
    x = torch.randn(2, 3, 12)
    expected = F.conv1d(F.pad(x, (4, 0)), conv.weight, conv.bias, dilation=2)
    torch.testing.assert_close(block.net[1](conv(x)), expected)


def test_causal_conv_matches_the_sum_formula():
    torch.manual_seed(0)
    conv = CausalConv1d(2, 3, kernel_size=3, dilation=2)
    x = torch.randn(1, 2, 9)
    y = conv(x)
    w, b = conv.weight, conv.bias  # w: (out, in, k); tap j reads x_{t - (k-1-j) d}
    for t in range(9):
        ref = b.clone()
        for j in range(3):
            s = t - (2 - j) * 2
            if s >= 0:
                ref = ref + w[:, :, j] @ x[0, :, s]
        torch.testing.assert_close(y[0, :, t], ref)


def test_residual_block_is_gated_tanh_times_sigmoid():
    torch.manual_seed(0)
    block = ResidualBlock(4, 5, kernel_size=2, dilation=1)
    x = torch.randn(2, 4, 7)
    a = block.dilated_conv(x)
    z = torch.tanh(a[:, :4]) * torch.sigmoid(a[:, 4:])
    residual, skip = block(x)
    torch.testing.assert_close(residual, x + block.residual_conv(z))
    torch.testing.assert_close(skip, block.skip_conv(z))


def test_tcn_units_are_alive_at_initialisation():
    # with N(0, 0.01) weights, a default (uniform) bias on a convolution or on the 1x1 residual fixes the
    # sign before the ReLU for every input: those units would be dead from the start and never recover
    model = _tcn(num_channels=(16, 16, 16)).eval()
    h = _x(batch=64).transpose(1, 2)  # (B, C, L)
    for block in model.network:
        inner = block.net[:2](h)  # first convolution, before its ReLU
        h = block(h)  # block output, after the residual ReLU
        for name, act in [("inner", inner), ("output", h)]:
            never_active = ~(act > 0).any(dim=2).any(dim=0)  # (channels,)
            assert never_active.sum().item() == 0, (
                f"{name} channels dead for every input: {never_active.tolist()}"
            )
