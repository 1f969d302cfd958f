"""Tests specific to course_lib.models.transformer: positional encoding, causal attention against PyTorch,
the leak without a mask, a learning check. The model contract runs in tests/test_contract.py."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib import set_seed
from course_lib.models.transformer import CausalSelfAttention, FinancialTransformer, PositionalEncoding
from course_lib.testing import future_gradient, parameters_without_gradient

B, L, C = 4, 12, 5


def small_model(**kwargs) -> FinancialTransformer:
    set_seed(0)
    config = dict(
        input_size=C, hidden_size=16, n_heads=4, n_layers=2, dim_feedforward=32, output_size=2, dropout=0.1
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
    attn = CausalSelfAttention(hidden_size=12, n_heads=3).eval()
    x = torch.randn(2, 9, 12)
    out, weights = attn(x)
    q, k, v = attn.query(x), attn.key(x), attn.value(x)
    q, k, v = (z.view(2, 9, 3, 4).transpose(1, 2) for z in (q, k, v))
    reference = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(2, 9, 12)
    torch.testing.assert_close(out, attn.proj(reference), atol=1e-5, rtol=1e-5)
    assert torch.all(weights.triu(diagonal=1) == 0), "weights on future keys must be exactly 0"
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 9))


def test_attention_weights_shape_and_prediction():
    model = small_model().eval()
    x = torch.randn(B, L, C)
    out = model(x, return_attention=True)
    assert out["prediction"].shape == (B, 2)
    assert out["attention"].shape == (B, 2, 4, L, L)
    torch.testing.assert_close(out["prediction"], model(x, per_step=True)[:, -1])


def test_key_projection_has_no_dead_bias():
    # q . b_K is the same for every key: it cancels in the softmax, so the key projection has no bias
    model = small_model()
    assert all(block.attn.key.bias is None for block in model.blocks)
    attn = CausalSelfAttention(hidden_size=8, n_heads=2).double()
    attn.key = torch.nn.Linear(8, 8).double()  # plant the bias back: the gradient check names it
    y, _ = attn(torch.randn(3, 6, 8, dtype=torch.float64))
    assert parameters_without_gradient(attn, (torch.randn_like(y) * y).sum()) == ["key.bias"]


def test_without_mask_the_future_leaks():
    """The check can fail: remove the mask and the output at step t depends on later inputs."""
    model = small_model(causal=False).eval()
    x = torch.randn(B, L, C)
    assert future_gradient(lambda z: model(z, per_step=True), x, 3) > 1e-4


def test_learns_a_lagged_copy():
    """Per-step target = feature 0 three steps back: needs attention to a past position."""
    set_seed(0)
    model = FinancialTransformer(1, hidden_size=16, n_heads=2, n_layers=1, dim_feedforward=32, dropout=0.0)
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


def test_head_count_must_divide_the_width():
    with pytest.raises(ValueError, match="must divide"):
        FinancialTransformer(C, hidden_size=10, n_heads=4)
