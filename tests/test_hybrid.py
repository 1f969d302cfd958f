"""Tests specific to course_lib.models.hybrid: the CNN-LSTM's pooled grid, its normalisation and padding,
and the attention LSTM's query. The model contract runs in tests/test_contract.py."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from course_lib import set_seed
from course_lib.models.convolutional import CausalConv1d
from course_lib.models.hybrid import CNNLSTM, AttentionLSTM, BahdanauAttention
from course_lib.outputs import prediction_of
from course_lib.testing import batch_coupling, future_gradient, input_support, parameters_without_gradient

B, L, C = 4, 22, 3


def _x(length: int = L, batch: int = B, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, length, C, generator=torch.Generator().manual_seed(seed))


def _cnn_lstm(**kw) -> CNNLSTM:
    set_seed(0)
    kw = {"n_filters": 4, "kernel_size": 3, "hidden_size": 8, "output_size": 2, "dropout": 0.1} | kw
    return CNNLSTM(C, **kw)


def _attention_lstm(**kw) -> AttentionLSTM:
    set_seed(0)
    kw = {"hidden_size": 8, "n_layers": 2, "output_size": 2, "dropout": 0.1} | kw
    return AttentionLSTM(C, **kw)


def _train_mode_coupling(model: nn.Module, x: torch.Tensor) -> float:
    """Like course_lib.testing.batch_coupling, but in training mode (where BatchNorm uses batch statistics)."""
    model.train()
    with torch.no_grad():
        before = prediction_of(model(x))[0].clone()
        x2 = x.clone()
        x2[1] = x2[1] + 3.0 * torch.randn_like(x2[1])
        after = prediction_of(model(x2))[0]
    return (before - after).abs().max().item()


def _cnn_lstm_on_input_grid(model: CNNLSTM):
    """Per-step CNN-LSTM outputs moved to the input grid: step t holds the latest pooled forecast made by t."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        pooled = model(x, per_step=True)  # (B, J, n_out)
        ends = CNNLSTM.pooled_ends(x.shape[1])
        columns = []
        for t in range(x.shape[1]):
            done = [j for j, end in enumerate(ends) if end <= t]
            columns.append(pooled[:, done[-1]] if done else torch.zeros_like(pooled[:, 0]))
        return torch.stack(columns, dim=1)  # (B, L, n_out)

    return fn


# ---------------------------------------------------------------- CNN-LSTM


@pytest.mark.parametrize("length", [4, 5, 21, 22, 23])
def test_cnn_lstm_shapes_and_pooled_grid(length):
    model = _cnn_lstm()
    ends = CNNLSTM.pooled_ends(length)
    assert model(_x(length)).shape == (B, 2)
    assert model(_x(length), per_step=True).shape == (B, len(ends), 2)
    assert ends[-1] == length - 1 and len(ends) == length // 2 // 2
    # the newest day always reaches the forecast (an odd length drops the oldest day, never the newest)
    assert input_support(model.eval(), _x(length))[-1]


def test_cnn_lstm_lstm_reads_the_raw_inputs_of_each_block_s_last_day():
    # the fix of the CNN-LSTM that lost to HAR: a skip path gives the LSTM the latest raw inputs
    # (benchmarks/recurrent_ablation.py cnnlstm; docs/errata.md: CNNLSTM)
    model = _cnn_lstm().eval()
    x = _x(length=21)  # odd: the oldest day is dropped, the pooled blocks end on days 4, 8, ..., 20
    ends = CNNLSTM.pooled_ends(21)
    assert ends == [4, 8, 12, 16, 20]
    h = model._conv_stage(
        model._conv_stage(x.transpose(1, 2), model.conv1, model.norm1), model.conv2, model.norm2
    )
    out, _ = model.lstm(torch.cat([h.transpose(1, 2), x[:, ends]], dim=-1))
    torch.testing.assert_close(model(x), model.fc(out[:, -1]))
    x2 = x.clone()
    x2[:, -1] += 1.0  # today's raw inputs reach the LSTM directly, not only through pooled filters
    assert (model(x2) - model(x)).abs().max() > 1e-4


@settings(max_examples=10, deadline=None)
@given(t=st.integers(0, L - 2), seed=st.integers(0, 1000))
def test_cnn_lstm_no_look_ahead(t, seed):
    model = _cnn_lstm()
    assert future_gradient(_cnn_lstm_on_input_grid(model), _x(seed=seed), t) == 0.0


def test_cnn_lstm_too_short_window_raises():
    assert _cnn_lstm()(_x(4)).shape == (B, 2)
    with pytest.raises(ValueError, match="at least 4 steps"):
        _cnn_lstm()(_x(3))


def test_cnn_lstm_does_not_couple_samples_even_in_training():
    assert _train_mode_coupling(_cnn_lstm(dropout=0.0), _x()) < 1e-6


class _BatchNormConv(nn.Module):
    """The source module's normalisation: Conv1d + BatchNorm1d over (B, F, L). Used to show the failure."""

    def __init__(self, conv: nn.Conv1d):
        super().__init__()
        self.conv, self.norm = conv, nn.BatchNorm1d(conv.out_channels)

    def forward(self, x: torch.Tensor, per_step: bool = True) -> torch.Tensor:  # (B, L, C) -> (B, L, F)
        h = self.norm(self.conv(x.transpose(1, 2))).transpose(1, 2)
        return h if per_step else h[:, -1]


def test_batchnorm_couples_samples_in_training_and_the_check_sees_it():
    torch.manual_seed(0)
    model = _BatchNormConv(CausalConv1d(C, 4, 3))
    assert _train_mode_coupling(model, _x()) > 1e-3  # sample 0 moves when sample 1 changes
    assert batch_coupling(model, _x()) < 1e-6  # eval mode hides it: running statistics
    # in training its statistics also pool over time: step t sees later steps
    assert future_gradient(model.train(), _x(), t=5) > 1e-4


def test_centred_convolution_leaks_the_future_and_causal_does_not():
    torch.manual_seed(0)
    centred = nn.Conv1d(C, 4, 3, padding="same")  # the source's padding=k//2
    causal = CausalConv1d(C, 4, 3)

    def per_step(conv):
        return lambda x: conv(x.transpose(1, 2)).transpose(1, 2)

    assert future_gradient(per_step(centred), _x(), t=5) > 1e-4
    assert future_gradient(per_step(causal), _x(), t=5) == 0.0


def test_groupnorm_over_time_would_leak_the_future():
    # why the norm is a per-step LayerNorm over channels: GroupNorm on (B, F, L) averages over time
    torch.manual_seed(0)
    conv, norm = CausalConv1d(C, 4, 3), nn.GroupNorm(1, 4)
    assert future_gradient(lambda x: norm(conv(x.transpose(1, 2))).transpose(1, 2), _x(), t=5) > 1e-4


# ---------------------------------------------------------------- attention LSTM


def test_attention_lstm_output_convention():
    model = _attention_lstm().eval()
    x = _x()
    plain = model(x)
    assert isinstance(plain, torch.Tensor) and plain.shape == (B, 2)
    out = model(x, return_attention=True)
    assert isinstance(out, dict) and set(out) == {"prediction", "attention"}
    torch.testing.assert_close(prediction_of(out), plain)
    weights = out["attention"]
    assert weights.shape == (B, L) and (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(B))


def test_attention_lstm_per_step_is_masked_and_ends_with_the_last_step_forecast():
    model = _attention_lstm().eval()
    x = _x()
    out = model(x, per_step=True, return_attention=True)
    assert out["prediction"].shape == (B, L, 2) and out["attention"].shape == (B, L, L)
    assert torch.all(out["attention"].triu(1) == 0)  # step t puts no weight on steps after t
    torch.testing.assert_close(out["attention"].sum(-1), torch.ones(B, L))
    torch.testing.assert_close(out["prediction"][:, -1], model(x))
    torch.testing.assert_close(out["attention"][:, -1], model(x, return_attention=True)["attention"])


def test_bahdanau_ua_gets_a_gradient_and_the_query_matters():
    model = _attention_lstm()
    missing = parameters_without_gradient(model, model(_x()).pow(2).mean())
    assert "attention.Ua.weight" not in missing and missing == []
    attention = model.attention
    keys = torch.randn(2, 6, 8)
    _, w1 = attention(keys, torch.randn(2, 8))
    _, w2 = attention(keys, torch.randn(2, 8))
    assert (w1 - w2).abs().max() > 1e-4  # a real query: different queries, different weights


def test_query_free_scoring_leaves_ua_without_gradient():
    # the source module's score v^T tanh(W h_i) never calls Ua: the gradient check catches it
    attention = BahdanauAttention(8)
    keys = torch.randn(2, 6, 8)
    weights = torch.softmax(attention.va(torch.tanh(attention.Wa(keys))).squeeze(-1), dim=1)
    loss = (weights.unsqueeze(-1) * keys).sum(1).pow(2).mean()
    assert set(parameters_without_gradient(attention, loss)) == {"Ua.weight", "Ua.bias"}


def test_bahdanau_matches_the_formula():
    torch.manual_seed(0)
    attention = BahdanauAttention(5, attention_size=7)
    keys, query = torch.randn(2, 4, 5), torch.randn(2, 5)
    context, weights = attention(keys, query)
    W, U, b, v = attention.Wa.weight, attention.Ua.weight, attention.Ua.bias, attention.va.weight[0]
    for n in range(2):
        scores = torch.stack([v @ torch.tanh(W @ keys[n, i] + U @ query[n] + b) for i in range(4)])
        alpha = torch.softmax(scores, 0)
        torch.testing.assert_close(weights[n], alpha)
        torch.testing.assert_close(context[n], alpha @ keys[n])
