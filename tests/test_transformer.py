"""Tests of course_lib.models.transformer: positional encoding, causal attention, FinancialTransformer."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib import set_seed
from course_lib.models.transformer import CausalSelfAttention, FinancialTransformer, PositionalEncoding
from course_lib.testing import batch_coupling, future_gradient, parameters_without_gradient

B, L, C = 4, 12, 5


def small_model(**kwargs) -> FinancialTransformer:
    set_seed(0)
    config = dict(
        input_size=C, d_model=16, n_heads=4, num_layers=2, dim_feedforward=32, output_size=2, dropout=0.1
    )
    config.update(kwargs)
    return FinancialTransformer(**config)


@settings(max_examples=25, deadline=None)
@given(d_model=st.integers(1, 33), length=st.integers(1, 40))
def test_positional_encoding_matches_formula_any_width(d_model, length):
    pe = PositionalEncoding(d_model, dropout=0.0, max_len=64)
    x = torch.zeros(2, length, d_model)
    got = pe(x)[0].numpy()
    expected = np.zeros((length, d_model))
    for p in range(length):
        for i in range(d_model):
            angle = p / 10000 ** ((i - i % 2) / d_model)
            expected[p, i] = math.sin(angle) if i % 2 == 0 else math.cos(angle)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_positional_encoding_adds_to_input_and_checks_length():
    pe = PositionalEncoding(7, dropout=0.0, max_len=10)
    x = torch.randn(3, 10, 7)
    torch.testing.assert_close(pe(x) - x, pe.pe[:10].expand(3, -1, -1))
    with pytest.raises(ValueError, match="longer than max_len"):
        pe(torch.randn(1, 11, 7))
    with pytest.raises(ValueError, match=r"expected \(batch, time, 7\)"):
        pe(torch.randn(1, 5, 6))


def test_causal_self_attention_matches_pytorch_reference():
    set_seed(1)
    attn = CausalSelfAttention(d_model=12, n_heads=3).eval()
    x = torch.randn(2, 9, 12)
    out, weights = attn(x)
    q, k, v = attn.qkv(x).split(12, dim=2)
    q, k, v = (z.view(2, 9, 3, 4).transpose(1, 2) for z in (q, k, v))
    reference = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(2, 9, 12)
    torch.testing.assert_close(out, attn.proj(reference), atol=1e-5, rtol=1e-5)
    assert torch.all(weights.triu(diagonal=1) == 0), "weights on future keys must be exactly 0"
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 9))


def test_output_shapes():
    model = small_model().eval()
    x = torch.randn(B, L, C)
    assert model(x).shape == (B, 2)
    assert model(x, per_step=True).shape == (B, L, 2)
    out = model(x, return_attention=True)
    assert out["prediction"].shape == (B, 2)
    assert out["attention"].shape == (B, 2, 4, L, L)
    torch.testing.assert_close(out["prediction"], model(x, per_step=True)[:, -1])


@pytest.mark.parametrize("per_step", [False, True])
def test_gradients_reach_every_parameter(per_step):
    model = small_model()
    y = model(torch.randn(B, L, C), per_step=per_step)
    assert parameters_without_gradient(model, (torch.randn_like(y) * y).sum()) == []


def test_batch_independence():
    model = small_model()
    assert batch_coupling(model, torch.randn(B, L, C)) < 1e-6
    assert batch_coupling(model, torch.randn(B, L, C), per_step=True) < 1e-6


@pytest.mark.parametrize("train_mode", [False, True])
def test_no_look_ahead(train_mode):
    model = small_model().train(train_mode)
    x = torch.randn(B, L, C)
    for t in range(L - 1):
        assert future_gradient(lambda z: model(z, per_step=True), x, t) == 0.0, (
            f"output at {t} sees the future"
        )


def test_without_mask_the_future_leaks():
    """The check can fail: remove the mask and the output at step t depends on later inputs."""
    model = small_model(causal=False).eval()
    x = torch.randn(B, L, C)
    assert future_gradient(lambda z: model(z, per_step=True), x, 3) > 1e-4


def test_deterministic_for_a_fixed_seed():
    x = torch.randn(B, L, C)
    a, b = small_model().eval(), small_model().eval()
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def test_learns_a_lagged_copy():
    """Per-step target = feature 0 three steps back: needs attention to a past position."""
    set_seed(0)
    model = FinancialTransformer(1, d_model=16, n_heads=2, num_layers=1, dim_feedforward=32, dropout=0.0)
    x = torch.randn(64, 16, 1)
    y = torch.zeros(64, 16, 1)
    y[:, 3:] = x[:, :-3]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        loss = F.mse_loss(model(x, per_step=True)[:, 3:], y[:, 3:])
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1, f"could not learn a lag-3 copy: loss {loss.item():.3f} (variance 1)"


def test_bad_inputs_raise_clear_errors():
    model = small_model()
    with pytest.raises(ValueError, match="features"):
        model(torch.randn(B, L, C + 1))
    with pytest.raises(ValueError, match=r"\(batch, time, features\)"):
        model(torch.randn(L, C))
    x = torch.randn(B, L, C)
    x[1, 3, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model(x)
    with pytest.raises(ValueError, match="must divide"):
        FinancialTransformer(C, d_model=10, n_heads=4)
