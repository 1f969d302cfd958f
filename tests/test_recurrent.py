"""Tests specific to course_lib.models.recurrent: attention weights, horizons, the dead score bias, and the
from-scratch LSTM cell against nn.LSTM. The model contract (shapes, gradients, batch independence,
look-ahead, determinism, bad inputs, save/load) runs over the registry in tests/test_contract.py."""

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
from course_lib.testing import batch_coupling, parameters_without_gradient

B, L, C, H = 4, 12, 5, 16

# name -> (constructor, expected output width)
MODELS = {
    "lstm": (lambda: FinancialLSTM(C, H, n_layers=2, output_size=2, n_heads=4, dropout=0.1), 2),
    "bilstm": (lambda: FinancialLSTM(C, H, output_size=2, n_heads=4, bidirectional=True), 2),
    "multi_horizon": (lambda: MultiHorizonLSTM(C, H, horizons=(1, 5, 22), n_layers=2, dropout=0.1), 3),
    "residual": (lambda: ResidualLSTM(C, H, n_layers=3, output_size=2, dropout=0.1), 2),
    "gru": (lambda: FinancialGRU(C, H, n_layers=2, output_size=2, dropout=0.1), 2),
}
ATTENTIVE = ["lstm", "bilstm", "gru"]  # models that return attention weights


def make(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return MODELS[name][0]()


def window(seed: int = 1, b: int = B, length: int = L) -> torch.Tensor:
    return torch.randn(b, length, C, generator=torch.Generator().manual_seed(seed))


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
    with pytest.raises(ValueError, match="n_heads=4 must divide"):
        FinancialLSTM(C, hidden_size=18, n_heads=4)
    FinancialLSTM(C, hidden_size=18, n_heads=4, bidirectional=True)  # width 36: fine


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


def test_gru_score_has_no_dead_bias_and_the_check_would_catch_one():
    # a bias added to every attention score cancels in the softmax: moving it changes nothing, and the
    # gradient check (relative to the other gradients, not `!= 0`) names it
    model = make("gru").double()
    assert model.score[-1].bias is None
    x = window().double()
    y = model(x)
    assert parameters_without_gradient(model, (torch.randn_like(y) * y).sum()) == []
    model.score[-1] = nn.Linear(H, 1).double()  # the old layer, with its bias
    y = model(x)
    assert parameters_without_gradient(model, (torch.randn_like(y) * y).sum()) == ["score.2.bias"]
    with torch.no_grad():
        before = model.eval()(x)
        model.score[-1].bias += 5.0
        torch.testing.assert_close(model(x), before, rtol=0, atol=1e-12)


def test_financial_lstm_attention_has_no_dead_key_bias():
    # nn.MultiheadAttention fuses the q, k and v biases in one tensor: its key part adds q . b_K to every
    # score of a query, cancels in the softmax, and gets only round-off gradients; a per-tensor check
    # cannot see it, so FinancialLSTM uses CausalSelfAttention, whose key projection has no bias
    model = make("lstm").double()
    assert model.attention.key.bias is None
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(H, 4, batch_first=True).double()
    h = torch.randn(B, L, H, dtype=torch.float64)
    context, _ = mha(h[:, -1:], h, h)
    (torch.randn_like(context) * context).sum().backward()
    q_part, k_part, v_part = mha.in_proj_bias.grad.abs().chunk(3)
    assert k_part.max() < 1e-12 * min(q_part.max(), v_part.max())


def test_gru_head_reads_the_last_state_and_the_context():
    # the fix of the GRU that lost to HAR: the head sees LayerNorm(h_L + sum_t a_t h_t), not the pooled mean
    # alone (benchmarks/recurrent_ablation.py gru; docs/errata.md: FinancialGRU)
    model = make("gru").eval()
    x = window()
    out = model(x, return_attention=True)
    h, _ = model.gru(x)
    context = (out["attention"].unsqueeze(-1) * h).sum(dim=1)  # (B, H)
    torch.testing.assert_close(out["prediction"], model.head(model.norm(h[:, -1] + context)))


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


def test_scratch_cell_refuses_the_nn_lstm_state_layout():
    lstm = nn.LSTM(3, 4, batch_first=True)
    cell = LSTMCellScratch.from_lstm(lstm)
    x, h0 = torch.randn(2, 5, 3), torch.randn(1, 2, 4)
    with pytest.raises(ValueError, match=r"\(n_layers, B, H\) layout: pass h0\[0\], c0\[0\]"):
        cell.scan(x, (h0, h0))  # used to broadcast silently into a (1, L, B, H) output
    with pytest.raises(ValueError, match=r"state c must have shape \(B, H\) = \(2, 4\)"):
        cell.scan(x, (h0[0], torch.zeros(3, 4)))
    assert cell.scan(x, (h0[0], h0[0]))[0].shape == (2, 5, 4)
    assert LSTMCellScratch(**cell.config).config == {"input_size": 3, "hidden_size": 4}


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
