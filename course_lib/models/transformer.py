"""A causal transformer encoder for financial time series (Vaswani et al., 2017).

Self-attention, for one head with queries, keys and values ``Q = X W_Q``, ``K = X W_K``, ``V = X W_V``::

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V,   M[t, s] = 0 if s <= t else -inf

The mask ``M`` is what makes the encoder causal: the output at step t mixes only the values of
steps s <= t. Without it, a model trained on per-step targets (predict r_{t+1} at every t) reads the
answer from step t+1 of its own input (the source module's FinancialTransformer has no mask: docs/errata.md).

Attention is blind to order, so the inputs carry a sinusoidal positional encoding::

    PE[p, 2i] = sin(p / 10000^(2i/d)),   PE[p, 2i+1] = cos(p / 10000^(2i/d)),   i = 0 .. ceil(d/2) - 1

With an odd width d there is one more sine column than cosine columns; the source module's
PositionalEncoding assigns ceil(d/2) cosine columns to floor(d/2) slots and crashes (docs/errata.md).

One block (pre-LayerNorm, as in GPT-2 / nanoGPT: the residual path stays an identity)::

    h = h + Dropout(MultiHeadCausalAttention(LayerNorm(h)))
    h = h + Dropout(FFN(LayerNorm(h))),   FFN(z) = W_2 GELU(W_1 z)

FinancialTransformer: x (B, L, C) -> Linear -> + PE -> N blocks -> LayerNorm -> Linear head, on the
last step (B, n_out) or on every step (B, L, n_out) with ``per_step=True``.
"""

import math

import torch
from torch import nn

from .common import CausalSelfAttention, check_window, keeps_config


class PositionalEncoding(nn.Module):
    """Adds the sinusoidal encoding PE[:L] to a (B, L, d_model) input; any d_model >= 1, odd included."""

    def __init__(self, d_model: int, dropout: float = 0.0, max_len: int = 5000):
        super().__init__()
        if d_model < 1 or max_len < 1:
            raise ValueError(f"d_model and max_len must be positive, got {d_model} and {max_len}")
        self.d_model = d_model
        self.dropout = nn.Dropout(dropout)
        position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)  # (max_len, 1)
        inv_freq = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)
        angle = position * inv_freq  # (max_len, ceil(d/2))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(angle)
        pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])  # floor(d/2) cosine slots
        self.register_buffer("pe", pe, persistent=False)  # (max_len, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[2] != self.d_model:
            raise ValueError(f"expected (batch, time, {self.d_model}), got {tuple(x.shape)}")
        if x.shape[1] > self.pe.shape[0]:
            raise ValueError(f"sequence of {x.shape[1]} steps is longer than max_len={self.pe.shape[0]}")
        return self.dropout(x + self.pe[: x.shape[1]])


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: causal self-attention then a feed-forward network, each on a residual."""

    def __init__(self, hidden_size: int, n_heads: int, dim_feedforward: int, dropout: float, causal: bool):
        super().__init__()
        self.ln_attn = nn.LayerNorm(hidden_size)
        self.attn = CausalSelfAttention(hidden_size, n_heads, dropout, causal)
        self.ln_ff = nn.LayerNorm(hidden_size)
        self.ff = nn.Sequential(
            nn.Linear(hidden_size, dim_feedforward), nn.GELU(), nn.Linear(dim_feedforward, hidden_size)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, weights = self.attn(self.ln_attn(h))
        h = h + self.dropout(a)  # (B, L, D)
        h = h + self.dropout(self.ff(self.ln_ff(h)))  # (B, L, D)
        return h, weights


class FinancialTransformer(nn.Module):
    """Causal transformer encoder with a linear head on the last step (or on every step).

    Args:
        input_size: features C per time step.
        hidden_size: model width (d_model in the paper); ``n_heads`` must divide it.
        n_heads, n_layers, dim_feedforward, dropout: the usual transformer sizes.
        output_size: outputs per forecast (e.g. the number of horizons).
        max_len: longest window the positional encoding covers.
        causal: keep True. ``False`` removes the mask; it exists only to measure the leak it causes.

    ``forward(x, per_step=False, return_attention=False)`` with x (B, L, C) returns (B, output_size),
    or (B, L, output_size) when ``per_step``; with ``return_attention`` a dict with "prediction" and
    "attention" of shape (B, n_layers, n_heads, L, L) (row t: the weights query t puts on each key).
    """

    @keeps_config
    def __init__(
        self,
        input_size: int,
        hidden_size: int = 32,
        n_heads: int = 4,
        n_layers: int = 2,
        dim_feedforward: int = 64,
        output_size: int = 1,
        dropout: float = 0.1,
        max_len: int = 512,
        causal: bool = True,
    ):
        super().__init__()
        self.input_size = input_size
        self.input_projection = nn.Linear(input_size, hidden_size)
        self.positional_encoding = PositionalEncoding(hidden_size, dropout, max_len)
        self.blocks = nn.ModuleList(
            [
                TransformerBlock(hidden_size, n_heads, dim_feedforward, dropout, causal)
                for _ in range(n_layers)
            ]
        )
        self.ln_final = nn.LayerNorm(hidden_size)
        self.head = nn.Linear(hidden_size, output_size)

    def forward(self, x: torch.Tensor, per_step: bool = False, return_attention: bool = False):
        check_window(x, self.input_size, model=type(self).__name__, module=self)
        h = self.positional_encoding(self.input_projection(x))  # (B, L, D)
        attention = []
        for block in self.blocks:
            h, weights = block(h)  # (B, L, D), (B, h, L, L)
            attention.append(weights)
        h = self.ln_final(h)
        prediction = self.head(h if per_step else h[:, -1])  # (B, L, n_out) or (B, n_out)
        if return_attention:
            return {"prediction": prediction, "attention": torch.stack(attention, dim=1)}  # (B, N, h, L, L)
        return prediction
