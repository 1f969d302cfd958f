r"""Hybrid forecasters: local convolutions feeding an LSTM, and an LSTM with additive attention.

CNN-LSTM. Two causal convolutions extract local patterns (a few days), each followed by a
per-step LayerNorm over channels, a ReLU and a max-pool of 2 that halves the sequence; an LSTM then
summarises the shorter, smoother sequence. At each pooled step the LSTM also reads the raw inputs of
that block's last day (a skip path): without it the LSTM never saw today's inputs, only pooled
filters of them, and lost to HAR on every seed (benchmarks/recurrent_ablation.py; docs/errata.md:
CNNLSTM). The source module's version had three defects:
centred convolutions (``padding=k//2``, step t sees t+1, ..., t+k//2), BatchNorm (in training the
output of a sample depends on the other samples of the batch, and its statistics pool over time, so
step t sees later steps too) and a crash in MaxPool for windows shorter than 4 steps. Here the
convolutions are padded on the left only, the normalisation is ``LayerNorm`` over the channels of
each step (no coupling of samples or of steps), and the pools are aligned to the *end* of the window
(when the length is odd the oldest step is dropped, never the newest). Windows shorter than 4 steps
raise a clear error.

Attention LSTM (Bahdanau, Cho & Bengio 2015, "Neural Machine Translation by Jointly Learning to Align
and Translate", arXiv:1409.0473). With LSTM states :math:`h_1, \dots, h_L` and a query :math:`q`
(the last state :math:`h_L` for a forecast at the end of the window, :math:`h_t` for the forecast at t):

.. math::  e_i = v^\top \tanh(W h_i + U q + b), \qquad \alpha = \operatorname{softmax}(e), \qquad
           c = \sum_i \alpha_i h_i, \qquad \hat y = \mathrm{MLP}([c; q]).

For the forecast at step t the scores of steps :math:`i > t` are masked out, so ``per_step=True`` is
causal. The source's ``BahdanauAttention`` scored :math:`v^\top \tanh(W h_i)` with no query at all
(its ``Ua`` was never used and got no gradient: plain additive pooling), and ``AttentionLSTM`` returned
a ``(out, weights)`` tuple that breaks every generic consumer. Here the model returns a tensor, or
``{"prediction": ..., "attention": ...}`` when called with ``return_attention=True``
(see course_lib.outputs). The scoring vector has no bias: a constant added to every score cancels in
the softmax, so such a bias never gets a gradient.
"""

import torch
from torch import nn

from .common import causal_mask, check_window, keeps_config, mlp_head, rnn_dropout
from .convolutional import CausalConv1d

__all__ = ["CNNLSTM", "AttentionLSTM", "BahdanauAttention"]


def _pool_end_aligned(x: torch.Tensor, pool: nn.MaxPool1d) -> torch.Tensor:
    """Max-pool by 2 over time, dropping the oldest step when the length is odd. (B, C, L) -> (B, C, L // 2)."""
    return pool(x[:, :, x.shape[-1] % 2 :])


class CNNLSTM(nn.Module):
    """Causal conv -> LayerNorm -> ReLU -> pool, twice, then an LSTM and an MLP head.

    The LSTM's input at pooled step j is ``[conv features_j ; x_{e_j}]`` with ``e_j = pooled_ends(L)[j]``,
    the last input day of block j (the skip path keeps the latest raw values in view).

    Args:
        input_size: features per step ``C``.
        n_filters: channels of the first convolution (the second has twice as many).
        kernel_size: taps of both causal convolutions.
        hidden_size, n_layers: the LSTM on the pooled sequence.
        output_size: forecasts per step (e.g. the number of horizons).
        dropout: between LSTM layers (if several) and in the head.
    """

    num_pools = 2

    @keeps_config
    def __init__(
        self,
        input_size: int,
        n_filters: int = 16,
        kernel_size: int = 3,
        hidden_size: int = 32,
        n_layers: int = 1,
        output_size: int = 1,
        dropout: float = 0.2,
    ):
        super().__init__()
        self.input_size = input_size
        self.conv1 = CausalConv1d(input_size, n_filters, kernel_size)
        self.norm1 = nn.LayerNorm(n_filters)
        self.conv2 = CausalConv1d(n_filters, 2 * n_filters, kernel_size)
        self.norm2 = nn.LayerNorm(2 * n_filters)
        self.pool = nn.MaxPool1d(2)
        self.lstm = nn.LSTM(
            2 * n_filters + input_size,  # pooled conv features and the raw inputs of each block's last day
            hidden_size,
            num_layers=n_layers,
            batch_first=True,
            dropout=rnn_dropout(dropout, n_layers),
        )
        self.fc = mlp_head(hidden_size, max(1, hidden_size // 2), output_size, dropout)

    @property
    def min_length(self) -> int:
        return 2**self.num_pools

    @staticmethod
    def pooled_ends(length: int) -> list[int]:
        """For each step of the pooled sequence, the last input step (0-based) it has seen.

        ``per_step=True`` outputs are on the pooled grid: output ``j`` is a forecast made at input
        step ``pooled_ends(L)[j]``. The last one is always ``L - 1``.
        """
        ends = list(range(length))
        for _ in range(CNNLSTM.num_pools):
            ends = ends[len(ends) % 2 :][1::2]  # drop the oldest if odd, keep the later step of each pair
        return ends

    def _conv_stage(self, x: torch.Tensor, conv: CausalConv1d, norm: nn.LayerNorm) -> torch.Tensor:
        h = conv(x)  # (B, F, L)
        h = torch.relu(norm(h.transpose(1, 2)).transpose(1, 2))  # LayerNorm over channels, step by step
        return _pool_end_aligned(h, self.pool)  # (B, F, L // 2)

    def forward(self, x: torch.Tensor, per_step: bool = False) -> torch.Tensor:
        check_window(
            x,
            self.input_size,
            min_length=self.min_length,
            model=f"{type(self).__name__} ({self.num_pools} pools of 2)",
            module=self,
        )
        h = self._conv_stage(x.transpose(1, 2), self.conv1, self.norm1)  # (B, F, L/2)
        h = self._conv_stage(h, self.conv2, self.norm2)  # (B, 2F, L/4)
        skip = x[:, self.pooled_ends(x.shape[1])]  # (B, L/4, C): the raw inputs of each block's last day
        out, _ = self.lstm(torch.cat([h.transpose(1, 2), skip], dim=-1))  # (B, L/4, H)
        return self.fc(out if per_step else out[:, -1])  # (B, L/4, n_out) or (B, n_out)


class BahdanauAttention(nn.Module):
    """Additive attention with a query: ``score_i = v^T tanh(W h_i + U q)``.

    ``forward(keys, query, mask)``: keys ``(B, L, H)``; query ``(B, H)`` (one query) or ``(B, T, H)``
    (one per output step); ``mask`` a boolean ``(T, L)`` (or ``(L,)``) that is True where a key is
    *hidden*. Returns ``(context, weights)``: ``(B, H)`` and ``(B, L)``, or ``(B, T, H)`` and ``(B, T, L)``.
    This layer is an internal building block; models wrap its weights into the output dict.
    """

    def __init__(self, hidden_size: int, attention_size: int | None = None):
        super().__init__()
        attention_size = attention_size or hidden_size
        self.Wa = nn.Linear(hidden_size, attention_size, bias=False)
        self.Ua = nn.Linear(hidden_size, attention_size)
        self.va = nn.Linear(attention_size, 1, bias=False)

    def forward(
        self, keys: torch.Tensor, query: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        single = query.dim() == 2
        q = query.unsqueeze(1) if single else query  # (B, T, H)
        scores = self.va(torch.tanh(self.Wa(keys).unsqueeze(1) + self.Ua(q).unsqueeze(2))).squeeze(
            -1
        )  # (B, T, L)
        if mask is not None:
            scores = scores.masked_fill(mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (B, T, L)
        context = weights @ keys  # (B, T, H)
        return (context.squeeze(1), weights.squeeze(1)) if single else (context, weights)


class AttentionLSTM(nn.Module):
    """LSTM whose forecast reads its last state and a Bahdanau context over the window's states.

    ``forward(x)`` -> ``(B, output_size)``; ``per_step=True`` -> ``(B, L, output_size)`` with a causal
    mask (step t attends to steps <= t); ``return_attention=True`` -> ``{"prediction", "attention"}``
    with weights ``(B, L)`` (or ``(B, L, L)`` per step, rows summing to 1).
    """

    @keeps_config
    def __init__(
        self,
        input_size: int,
        hidden_size: int = 32,
        n_layers: int = 1,
        output_size: int = 1,
        dropout: float = 0.2,
    ):
        super().__init__()
        self.input_size = input_size
        self.lstm = nn.LSTM(
            input_size,
            hidden_size,
            num_layers=n_layers,
            batch_first=True,
            dropout=rnn_dropout(dropout, n_layers),
        )
        self.attention = BahdanauAttention(hidden_size)
        self.fc = mlp_head(2 * hidden_size, hidden_size, output_size, dropout)

    def forward(self, x: torch.Tensor, per_step: bool = False, return_attention: bool = False):
        check_window(x, self.input_size, model=type(self).__name__, module=self)
        states, _ = self.lstm(x)  # (B, L, H)
        if per_step:
            future = causal_mask(x.shape[1], x.device)  # (L, L): key i > query t
            context, weights = self.attention(states, states, mask=future)  # (B, L, H), (B, L, L)
            query = states
        else:
            query = states[:, -1]  # (B, H)
            context, weights = self.attention(states, query)  # (B, H), (B, L)
        prediction = self.fc(torch.cat([context, query], dim=-1))  # (B, [L,] n_out)
        if return_attention:
            return {"prediction": prediction, "attention": weights}
        return prediction
