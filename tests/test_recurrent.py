"""Tests for course_lib.models.recurrent: shapes, gradients, batch independence, causality, determinism,
attention weights, and the from-scratch LSTM cell against nn.LSTM."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from course_lib.models.recurrent import (
    FinancialGRU,
    FinancialLSTM,
    LSTMCellScratch,
    MultiHorizonLSTM,
    ResidualLSTM,
)
from course_lib.testing import batch_coupling, future_gradient, parameters_without_gradient

B, L, C, H = 4, 12, 5, 16

# name -> (constructor, expected output width)
MODELS = {
    "lstm": (lambda: FinancialLSTM(C, H, num_layers=2, output_size=2, num_heads=4, dropout=0.1), 2),
    "bilstm": (lambda: FinancialLSTM(C, H, output_size=2, num_heads=4, bidirectional=True), 2),
    "multi_horizon": (lambda: MultiHorizonLSTM(C, H, horizons=(1, 5, 22), num_layers=2, dropout=0.1), 3),
    "residual": (lambda: ResidualLSTM(C, H, num_layers=3, output_size=2, dropout=0.1), 2),
    "gru": (lambda: FinancialGRU(C, H, num_layers=2, output_size=2, dropout=0.1), 2),
}
CAUSAL = ["lstm", "multi_horizon", "residual", "gru"]  # models that offer per_step outputs
ATTENTIVE = ["lstm", "bilstm", "gru"]  # models that return attention weights


def make(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return MODELS[name][0]()


def window(seed: int = 1, b: int = B, length: int = L) -> torch.Tensor:
    return torch.randn(b, length, C, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", MODELS)
def test_output_shape(name):
    model, n_out = make(name), MODELS[name][1]
    assert model(window()).shape == (B, n_out)
    assert model(window(b=1, length=1)).shape == (1, n_out)  # one sample, one step


@pytest.mark.parametrize("name", CAUSAL)
def test_per_step_shape_and_last_step_agrees(name):
    model, n_out = make(name).eval(), MODELS[name][1]
    x = window()
    with torch.no_grad():
        seq = model(x, per_step=True)
        last = model(x)
    assert seq.shape == (B, L, n_out)
    # the last step of the per-step output sees the whole window: it is the ordinary forecast
    torch.testing.assert_close(seq[:, -1], last, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_parameter(name):
    model = make(name).train()
    loss = model(window()).pow(2).mean()
    assert parameters_without_gradient(model, loss) == []


@pytest.mark.parametrize("name", MODELS)
def test_batch_independence_in_eval_mode(name):
    assert batch_coupling(make(name), window()) < 1e-6


@pytest.mark.parametrize("name", CAUSAL)
@pytest.mark.parametrize("t", [0, 5, L - 2])
def test_no_look_ahead_per_step(name, t):
    model = make(name).eval()
    assert future_gradient(lambda x: model(x, per_step=True), window(), t) == 0.0


@pytest.mark.parametrize("name", CAUSAL)
def test_look_ahead_check_sees_the_past(name):
    # the same probe with respect to the past must be non-zero, or the check above proves nothing
    model = make(name).eval()
    x = window().requires_grad_(True)
    y = model(x, per_step=True)[:, 5]
    (grad,) = torch.autograd.grad((torch.randn_like(y) * y).sum(), x)
    assert grad[:, :6].abs().max() > 0


def test_bidirectional_refuses_per_step():
    with pytest.raises(ValueError, match="bidirectional"):
        make("bilstm")(window(), per_step=True)


def test_bidirectional_last_step_backward_half_sees_only_last_input():
    # the erratum's "other fact": pooling h[:, -1] of a bidirectional LSTM wastes its backward half
    torch.manual_seed(0)
    lstm = nn.LSTM(C, H, batch_first=True, bidirectional=True)
    x = window().requires_grad_(True)
    out, _ = lstm(x)
    backward_last = out[:, -1, H:]  # (B, H)
    (grad,) = torch.autograd.grad((torch.randn_like(backward_last) * backward_last).sum(), x)
    seen = grad.abs().sum(dim=(0, 2)) > 0
    assert seen.tolist() == [False] * (L - 1) + [True]


@pytest.mark.parametrize("name", MODELS)
def test_deterministic_for_a_fixed_seed(name):
    a, b = make(name, seed=3), make(name, seed=3)
    torch.manual_seed(7)
    ya = a.train()(window())  # dropout active: the seed must fix it too
    torch.manual_seed(7)
    yb = b.train()(window())
    assert torch.equal(ya, yb)
    assert not torch.equal(make(name, seed=4).eval()(window()), a.eval()(window()))


@pytest.mark.parametrize("name", ATTENTIVE)
def test_attention_weights_are_a_distribution_over_time(name):
    model = make(name).eval()
    out = model(window(), return_attention=True)
    assert set(out) == {"prediction", "attention"}
    w = out["attention"]
    assert w.shape == (B, L)
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(dim=-1), torch.ones(B))
    torch.testing.assert_close(out["prediction"], model(window()))


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_per_step_attention_is_causal_and_normalised(name):
    model = make(name).eval()
    w = model(window(), return_attention=True, per_step=True)["attention"]
    assert w.shape == (B, L, L)
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(dim=-1), torch.ones(B, L))
    assert (w.triu(diagonal=1) == 0).all()  # no weight on the future


def test_financial_lstm_head_count_must_divide_width():
    with pytest.raises(ValueError, match="num_heads=4 must divide"):
        FinancialLSTM(C, hidden_size=18, num_heads=4)
    FinancialLSTM(C, hidden_size=18, num_heads=4, bidirectional=True)  # width 36: fine


def test_multi_horizon_columns_follow_the_horizons():
    model = make("multi_horizon").eval()
    assert model.horizons == (1, 5, 22)
    x = window()
    y = model(x)
    h, _ = model.encoder(x)
    for k, head in enumerate(model.heads):  # column k is head k on the last hidden state
        torch.testing.assert_close(y[:, k : k + 1], head(h[:, -1]))
    with pytest.raises(ValueError, match="horizons"):
        MultiHorizonLSTM(C, H, horizons=())


def test_residual_lstm_has_separate_norms():
    model = make("residual")
    assert len(model.norms) == len(model.lstms) == 3
    assert len({id(n) for n in model.norms}) == 3


@pytest.mark.parametrize("name", MODELS)
def test_bad_input_raises_clear_errors(name):
    model = make(name)
    with pytest.raises(ValueError, match=r"\(B, L, C\)"):
        model(torch.randn(L, C))
    with pytest.raises(ValueError, match="features"):
        model(torch.randn(B, L, C + 1))
    with pytest.raises(ValueError, match="empty"):
        model(torch.randn(B, 0, C))
    x = window()
    x[2, 3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model(x)


# ---- reference check: the from-scratch cell against nn.LSTM -------------------------------------------


@settings(max_examples=15, deadline=None)
@given(
    input_size=st.integers(1, 6),
    hidden_size=st.integers(1, 8),
    batch=st.integers(1, 3),
    length=st.integers(1, 10),
    seed=st.integers(0, 2**16),
)
def test_scratch_cell_matches_nn_lstm(input_size, hidden_size, batch, length, seed):
    torch.manual_seed(seed)
    lstm = nn.LSTM(input_size, hidden_size, batch_first=True).double()
    cell = LSTMCellScratch.from_lstm(lstm)
    x = torch.randn(batch, length, input_size, dtype=torch.float64)
    h0 = torch.randn(1, batch, hidden_size, dtype=torch.float64)
    c0 = torch.randn(1, batch, hidden_size, dtype=torch.float64)
    ref, (h_ref, c_ref) = lstm(x, (h0, c0))
    out, (h, c) = cell.scan(x, (h0[0], c0[0]))
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(h, h_ref[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(c, c_ref[0], rtol=0, atol=1e-6)


def test_scratch_cell_reference_check_can_fail():
    # swap two gates (a classic slip: order i, f, o, g instead of PyTorch's i, f, g, o): the check must fail
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 4, batch_first=True).double()
    cell = LSTMCellScratch.from_lstm(lstm)
    with torch.no_grad():
        for w in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh):
            i, f, g, o = w.chunk(4, dim=0)
            w.copy_(torch.cat([i, f, o, g]))
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    assert (cell.scan(x)[0] - lstm(x)[0]).abs().max() > 1e-3


def test_scratch_cell_gradients_and_copy_without_bias():
    lstm = nn.LSTM(3, 4, batch_first=True, bias=False).double()
    cell = LSTMCellScratch.from_lstm(lstm)
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    torch.testing.assert_close(cell.scan(x)[0], lstm(x)[0], rtol=0, atol=1e-6)
    loss = cell.scan(x)[0].pow(2).sum()
    # biases are zero but still trainable: all four tensors get a gradient
    assert parameters_without_gradient(cell, loss) == []


# ---- the erratum: the check catches attention across the batch ----------------------------------------


class _BatchMixingAttentionLSTM(nn.Module):
    """The source module's FinancialLSTM defect: nn.MultiheadAttention WITHOUT batch_first on (B, L, H)."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(C, H, batch_first=True)
        self.attention = nn.MultiheadAttention(H, 4)  # batch_first=False: reads (B, L, H) as (L, B, H)
        self.head = nn.Linear(H, 1)

    def forward(self, x):
        h, _ = self.lstm(x)
        context, _ = self.attention(h, h, h)
        return self.head(context[:, -1])


def test_batch_coupling_catches_the_erratum():
    torch.manual_seed(0)
    assert batch_coupling(_BatchMixingAttentionLSTM(), window()) > 1e-3
