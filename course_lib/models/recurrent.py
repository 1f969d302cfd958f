r"""Recurrent models: LSTM and GRU networks for daily financial series.

Every model takes a window ``x`` of shape (B, L, C) (batch, time, features) and returns a forecast made
at the last step, (B, n_out), or per-step outputs (B, L, n_out) with ``per_step=True`` (all of them are
causal: the output at step t depends only on inputs up to t). Outputs follow ``course_lib.outputs``.

LSTM cell (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000), PyTorch's gate order::

    i_t = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)      input gate
    f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)      forget gate
    g_t = tanh   (W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)      candidate cell
    o_t = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho)      output gate
    c_t = f_t * c_{t-1} + i_t * g_t                           cell state: an additive memory
    h_t = o_t * tanh(c_t)                                     hidden state (the output)

GRU cell (Cho et al. 2014)::

    r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)      reset gate
    z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)      update gate
    n_t = tanh   (W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

Models (the class names of the source module, with its defects fixed; see docs/errata.md):

* ``LSTMCellScratch``: the LSTM equations above written out, checked against ``nn.LSTM``.
* ``FinancialLSTM``: LSTM -> multi-head self-attention over the window (the source module attended across
  the *batch*) -> residual + LayerNorm -> MLP head. Returns its attention
  weights with ``return_attention=True``. Per-step outputs use a causal mask; a bidirectional LSTM
  refuses them (its backward half at step t has read steps after t).
* ``MultiHorizonLSTM``: one LSTM encoder, one head per horizon, stacked into (B, n_horizons) so that the
  generic MSE loss trains all horizons at once (the source module returned a dict no loss could use).
* ``ResidualLSTM``: input projection, then stacked one-layer LSTMs, each wrapped as
  ``x <- LayerNorm(x + LSTM(x))`` with its own norm.
* ``FinancialGRU``: GRU -> additive attention pooling ``a_t = softmax_t(w^T tanh(W h_t + b))`` (Bahdanau
  et al. 2015 without a query, i.e. a learned weighted mean over time) -> LayerNorm(h_L + context) -> MLP head.
"""

import torch
from torch import nn

from .common import CausalSelfAttention, causal_mask, check_window, keeps_config, mlp_head, rnn_dropout

__all__ = ["FinancialGRU", "FinancialLSTM", "LSTMCellScratch", "MultiHorizonLSTM", "ResidualLSTM"]


class LSTMCellScratch(nn.Module):
    """One LSTM step written out gate by gate, with ``nn.LSTM``'s parameter layout (gate order i, f, g, o).

    ``weight_ih`` is (4H, C), ``weight_hh`` is (4H, H); copy ``nn.LSTM``'s ``weight_ih_l0`` etc. into it
    with :meth:`from_lstm` to check the equations against PyTorch.
    """

    @keeps_config
    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        bound = hidden_size**-0.5  # nn.LSTM's initialisation: U(-1/sqrt(H), 1/sqrt(H))
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size).uniform_(-bound, bound))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size).uniform_(-bound, bound))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size).uniform_(-bound, bound))
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size).uniform_(-bound, bound))

    @classmethod
    def from_lstm(cls, lstm: nn.LSTM) -> "LSTMCellScratch":
        """A cell holding a copy of the first layer (forward direction) of ``lstm``."""
        if lstm.proj_size:
            raise ValueError("from_lstm does not support an nn.LSTM with proj_size > 0")
        cell = cls(lstm.input_size, lstm.hidden_size).to(lstm.weight_ih_l0.dtype)
        with torch.no_grad():
            cell.weight_ih.copy_(lstm.weight_ih_l0)
            cell.weight_hh.copy_(lstm.weight_hh_l0)
            if lstm.bias:
                cell.bias_ih.copy_(lstm.bias_ih_l0)
                cell.bias_hh.copy_(lstm.bias_hh_l0)
            else:
                cell.bias_ih.zero_()
                cell.bias_hh.zero_()
        return cell

    def forward(
        self, x_t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: x_t (B, C), state (h, c) each (B, H) -> new (h, c)."""
        h, c = state
        gates = x_t @ self.weight_ih.T + self.bias_ih + h @ self.weight_hh.T + self.bias_hh  # (B, 4H)
        i, f, g, o = gates.chunk(4, dim=-1)  # each (B, H)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c = f * c + i * g  # forget part of the old memory, write part of the candidate
        h = o * torch.tanh(c)  # expose part of the memory
        return h, c

    def scan(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Run the cell over a window x (B, L, C) like ``nn.LSTM(batch_first=True)``: -> (B, L, H), (h, c).

        ``state`` is (h, c), each (B, H). ``nn.LSTM`` keeps a leading layer axis, (n_layers, B, H): pass
        ``(h0[0], c0[0])``; such a state is refused (broadcasting it would give a (1, L, B, H) output).
        """
        check_window(x, self.input_size, model=type(self).__name__, module=self)
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_size)
            state = (zeros, zeros)
        expected = (x.shape[0], self.hidden_size)
        for label, s in zip(("h", "c"), state, strict=True):
            if tuple(s.shape) != expected:
                hint = " (nn.LSTM's (n_layers, B, H) layout: pass h0[0], c0[0])" if s.dim() == 3 else ""
                raise ValueError(
                    f"LSTMCellScratch.scan: state {label} must have shape (B, H) = {expected}, "
                    f"got {tuple(s.shape)}{hint}"
                )
        outputs = []
        for x_t in x.unbind(dim=1):  # x_t (B, C)
            state = self(x_t, state)
            outputs.append(state[0])
        return torch.stack(outputs, dim=1), state  # (B, L, H)


class FinancialLSTM(nn.Module):
    """LSTM + multi-head self-attention over the window + MLP head.

    forward(x (B, L, C)) -> (B, output_size): the last step queries every step of the window.
    ``per_step=True`` -> (B, L, output_size): step t queries steps <= t only (causal mask), so the model
    can be trained on every step without look-ahead. Not allowed with ``bidirectional=True``.
    ``return_attention=True`` -> {"prediction": ..., "attention": (B, L) or (B, L, L)} (mean over heads;
    each row is non-negative and sums to one over the keys, i.e. over time).
    """

    @keeps_config
    def __init__(
        self,
        input_size: int,
        hidden_size: int = 32,
        n_layers: int = 1,
        output_size: int = 1,
        n_heads: int = 4,
        dropout: float = 0.0,
        bidirectional: bool = False,
    ):
        super().__init__()
        width = hidden_size * (2 if bidirectional else 1)
        if width % n_heads != 0:
            raise ValueError(
                f"n_heads={n_heads} must divide the attention width {width} "
                f"(hidden_size={hidden_size}{' x 2 directions' if bidirectional else ''})"
            )
        self.input_size, self.bidirectional = input_size, bidirectional
        self.lstm = nn.LSTM(
            input_size,
            hidden_size,
            num_layers=n_layers,
            batch_first=True,
            dropout=rnn_dropout(dropout, n_layers),
            bidirectional=bidirectional,
        )
        # Attention over the window of each sample: the source module's nn.MultiheadAttention lacked
        # batch_first=True, so (B, L, H) was read as (L, B, H) and every sample attended to the other
        # samples of its batch; its fused q/k/v bias also holds a key bias that cancels in the softmax
        # (docs/errata.md: FinancialLSTM). CausalSelfAttention works on (B, L, H), without a key bias.
        self.attention = CausalSelfAttention(width, n_heads)
        self.norm = nn.LayerNorm(width)
        self.head = mlp_head(width, hidden_size, output_size, dropout)

    def forward(self, x: torch.Tensor, return_attention: bool = False, per_step: bool = False):
        check_window(x, self.input_size, model=type(self).__name__, module=self)
        if per_step and self.bidirectional:
            raise ValueError(
                "per_step=True is refused for a bidirectional LSTM: its backward half at step t has read "
                "the inputs after t, so per-step outputs would look ahead"
            )
        h, _ = self.lstm(x)  # (B, L, W)
        context, weights = self.attention(h)  # (B, L, W), (B, heads, L, L): step t sees steps <= t only
        weights = weights.mean(dim=1)  # (B, L, L), averaged over heads
        if not per_step:  # only the forecast origin, the last step, asks: it sees the whole window
            h, context, weights = h[:, -1:], context[:, -1:], weights[:, -1:]
        prediction = self.head(self.norm(h + context))  # residual + LayerNorm, then (B, Lq, output_size)
        if not per_step:
            prediction, weights = prediction[:, -1], weights[:, -1]  # (B, output_size), (B, L)
        if return_attention:
            return {"prediction": prediction, "attention": weights}
        return prediction


class MultiHorizonLSTM(nn.Module):
    """One LSTM encoder, one small head per forecast horizon; output stacked as (B, n_horizons).

    Column k is the forecast for ``horizons[k]`` days, in the order of ``task.y``, so ``loss="mse"``
    trains all horizons at once and the Trainer's per-column validation MSE is the per-horizon loss.
    ``per_step=True`` -> (B, L, n_horizons) (causal: a unidirectional LSTM).
    """

    @keeps_config
    def __init__(
        self,
        input_size: int,
        hidden_size: int = 32,
        horizons: tuple[int, ...] = (1, 5, 22),
        n_layers: int = 1,
        dropout: float = 0.0,
    ):
        super().__init__()
        if len(horizons) == 0 or any(int(h) < 1 for h in horizons):
            raise ValueError(f"horizons must be a non-empty sequence of positive integers, got {horizons!r}")
        self.input_size, self.horizons = input_size, tuple(int(h) for h in horizons)
        self.encoder = nn.LSTM(
            input_size,
            hidden_size,
            num_layers=n_layers,
            batch_first=True,
            dropout=rnn_dropout(dropout, n_layers),
        )
        self.heads = nn.ModuleList(mlp_head(hidden_size, hidden_size, 1, dropout) for _ in self.horizons)

    def forward(self, x: torch.Tensor, per_step: bool = False) -> torch.Tensor:
        check_window(x, self.input_size, model=type(self).__name__, module=self)
        h, _ = self.encoder(x)  # (B, L, H)
        z = h if per_step else h[:, -1]  # (B, L, H) or (B, H)
        return torch.cat([head(z) for head in self.heads], dim=-1)  # (B, [L,] n_horizons)


class ResidualLSTM(nn.Module):
    """Input projection, then ``n_layers`` blocks ``x <- LayerNorm(x + Dropout(LSTM(x)))``, then a linear head.

    Each block has its own LSTM and its own LayerNorm. The skip connections give the gradient a short
    path through deep stacks. ``per_step=True`` -> (B, L, output_size) (causal).
    """

    @keeps_config
    def __init__(
        self,
        input_size: int,
        hidden_size: int = 32,
        n_layers: int = 2,
        output_size: int = 1,
        dropout: float = 0.0,
    ):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.input_size = input_size
        self.input_projection = nn.Linear(input_size, hidden_size)
        self.lstms = nn.ModuleList(
            nn.LSTM(hidden_size, hidden_size, batch_first=True) for _ in range(n_layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_size) for _ in range(n_layers))
        self.dropout = nn.Dropout(dropout)
        self.output_layer = nn.Linear(hidden_size, output_size)

    def forward(self, x: torch.Tensor, per_step: bool = False) -> torch.Tensor:
        check_window(x, self.input_size, model=type(self).__name__, module=self)
        z = self.input_projection(x)  # (B, L, H)
        for lstm, norm in zip(self.lstms, self.norms, strict=True):
            out, _ = lstm(z)  # (B, L, H)
            z = norm(z + self.dropout(out))  # residual, then this block's own norm
        return self.output_layer(z if per_step else z[:, -1])  # (B, [L,] output_size)


class FinancialGRU(nn.Module):
    """GRU + additive attention pooling over time, added to the last state + MLP head.

    Scores ``e_t = w^T tanh(W h_t + b)``; weights ``a = softmax(e)`` over the window; context
    ``c = sum_t a_t h_t``; the head reads ``z = LayerNorm(h_L + c)``, the same residual as FinancialLSTM.
    forward(x) -> (B, output_size); ``return_attention=True`` adds "attention" (B, L).
    ``per_step=True`` -> (B, L, output_size) where step t pools over steps <= t only and adds h_t
    (causal); its "attention" is then (B, L, L), row t = weights over the steps <= t.

    Why the residual: with the pooled context alone (the earlier design) the head never saw the last
    state, only a weighted mean of the window, and the GRU lost to HAR on every seed; an ablation on
    the volatility task (benchmarks/recurrent_ablation.py, docs/errata.md: FinancialGRU) shows that
    the pooling, not the GRU cell, the dead bias or the width, was the cause. The score vector ``w`` has
    no bias: a constant added to every score cancels in the softmax and never gets a gradient.
    """

    @keeps_config
    def __init__(
        self,
        input_size: int,
        hidden_size: int = 32,
        n_layers: int = 1,
        output_size: int = 1,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.input_size = input_size
        self.gru = nn.GRU(
            input_size,
            hidden_size,
            num_layers=n_layers,
            batch_first=True,
            dropout=rnn_dropout(dropout, n_layers),
        )
        self.score = nn.Sequential(
            nn.Linear(hidden_size, hidden_size), nn.Tanh(), nn.Linear(hidden_size, 1, bias=False)
        )
        self.norm = nn.LayerNorm(hidden_size)
        self.head = mlp_head(hidden_size, hidden_size, output_size, dropout)

    def forward(self, x: torch.Tensor, return_attention: bool = False, per_step: bool = False):
        check_window(x, self.input_size, model=type(self).__name__, module=self)
        h, _ = self.gru(x)  # (B, L, H)
        scores = self.score(h).squeeze(-1)  # (B, L)
        if per_step:
            future = causal_mask(x.shape[1], x.device)  # (L, L)
            scores = scores.unsqueeze(1).masked_fill(future, float("-inf"))  # (B, L, L): row t = query t
            query = h  # (B, L, H)
        else:
            scores, query = scores.unsqueeze(1), h[:, -1:]  # (B, 1, L), (B, 1, H)
        weights = torch.softmax(scores, dim=-1)  # (B, Lq, L), rows sum to one over time
        context = weights @ h  # (B, Lq, H)
        prediction = self.head(self.norm(query + context))  # (B, Lq, output_size)
        if not per_step:
            prediction, weights = prediction[:, 0], weights[:, 0]  # (B, output_size), (B, L)
        if return_attention:
            return {"prediction": prediction, "attention": weights}
        return prediction
