"""Temporal Fusion Transformer (Lim, Arik, Loeff & Pfister, 2021, Int. J. Forecasting 37(4)).

Three kinds of input: observed past inputs x_past (B, L, C_obs) (returns, volatility, volume, and the
past values of known inputs if wanted), known-future inputs x_future (B, H, C_known) for the H forecast
steps (calendar of the target days), and optional static covariates x_static (B, C_static).
Every block below acts on the last dimension, so on (B, d) and (B, T, d) alike; d = d_model.

Gated linear unit, dropout on the input (never on the gate logits: docs/errata.md, GatedLinearUnit)::

    GLU(g) = sigmoid(W_4 g' + b_4) * (W_5 g' + b_5),   g' = Dropout(g)

Gated residual network with an optional context c::

    eta_2 = ELU(W_2 a + W_3 c + b_2),   eta_1 = W_1 eta_2 + b_1,   GRN(a, c) = LayerNorm(skip(a) + GLU(eta_1))

Variable selection network over m variables at each step t (causal: step t uses only x_t)::

    xi_t^(j) = W^(j) x_t^(j) + b^(j)                      one embedding per variable, (m, d)
    v_t      = softmax(GRN_v(flatten(xi_t), c_s))         weights over the m VARIABLES, sum to 1
    xi~_t    = sum_j v_t^(j) GRN^(j)(xi_t^(j))            one GRN per variable

(the source module's VSN multiplies (B, L, 5) by (B, L, 32), takes the softmax over hidden units and
computes the weights from the window mean, so step t sees later steps: docs/errata.md,
VariableSelectionNetwork.)

Static covariate encoders: s = VSN_static(x_static), then four GRNs give the contexts c_s (variable
selection), c_e (static enrichment), c_h and c_c (LSTM initial state). Without static inputs the GRNs
take no context and the LSTM starts from zeros.

Temporal processing over the T = L + H positions (past then future)::

    phi      = [LSTM_enc(xi~_past; (c_h, c_c)),  LSTM_dec(xi~_future; final encoder state)]
    phi~     = LayerNorm(xi~ + GLU(phi))                  gated skip over the LSTMs
    theta    = GRN_e(phi~, c_e)                           static enrichment
    delta    = LayerNorm(theta + GLU(IMHA(theta)))        causal interpretable attention
    psi~     = LayerNorm(phi~ + GLU(GRN_f(delta)))        position-wise GRN, gated skip past the attention

Each residual has its own LayerNorm (the source module shares one between two residuals: docs/errata.md).

Interpretable multi-head attention (m_H heads, d_a = d / m_H): per-head queries and keys, ONE value
projection shared by all heads, so averaging the heads' weights averages their outputs::

    A_h = softmax(Q W_Q^(h) (K W_K^(h))^T / sqrt(d_a) + M),   IMHA = ((1/m_H) sum_h A_h) V W_V W_H

Quantile head at each future position (``course_lib.models.heads``): q_1 = w_1^T psi~ + b_1,
q_k = q_{k-1} + softplus(w_k^T psi~ + b_k), so the quantiles never cross. Train with the pinball loss sum_q max(q (y - y^_q), (q - 1)(y - y^_q)).
"""

import functools
import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .common import causal_mask, check_window, keeps_config
from .heads import QuantileHead


class GatedLinearUnit(nn.Module):
    """GLU(g) = sigmoid(W_4 g' + b_4) * (W_5 g' + b_5) with g' = Dropout(g): (..., input_size) -> (..., output_size)."""

    def __init__(self, input_size: int, output_size: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(input_size, 2 * output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.fc(self.dropout(x)).chunk(2, dim=-1)  # 2 x (..., out)
        return value * torch.sigmoid(gate)


class GateAddNorm(nn.Module):
    """LayerNorm(residual + GLU(x)): the gated skip connection of the TFT, with its own LayerNorm."""

    def __init__(self, input_size: int, output_size: int, dropout: float = 0.0):
        super().__init__()
        self.glu = GatedLinearUnit(input_size, output_size, dropout)
        self.norm = nn.LayerNorm(output_size)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.norm(residual + self.glu(x))


class GatedResidualNetwork(nn.Module):
    """GRN(a, c) = LayerNorm(skip(a) + GLU(W_1 ELU(W_2 a + W_3 c + b_2) + b_1)).

    ``a`` is (..., input_size); the context ``c`` (B, context_size) is broadcast over time when ``a``
    is (B, T, input_size). ``skip`` is a linear map when input_size != output_size, else the identity.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        dropout: float = 0.0,
        context_size: int | None = None,
    ):
        super().__init__()
        self.skip = nn.Linear(input_size, output_size) if input_size != output_size else nn.Identity()
        self.fc_input = nn.Linear(input_size, hidden_size)
        self.fc_context = nn.Linear(context_size, hidden_size, bias=False) if context_size else None
        self.fc_hidden = nn.Linear(hidden_size, hidden_size)
        self.gate_norm = GateAddNorm(hidden_size, output_size, dropout)

    def forward(self, a: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if (c is None) != (self.fc_context is None):
            raise ValueError(
                "this GRN was built " + ("with" if self.fc_context is not None else "without") + " a context"
            )
        eta = self.fc_input(a)  # (..., hidden)
        if c is not None:
            context = self.fc_context(c)  # (B, hidden)
            eta = eta + (context.unsqueeze(1) if a.dim() == 3 else context)
        eta = self.fc_hidden(F.elu(eta))  # (..., hidden)
        return self.gate_norm(eta, self.skip(a))  # (..., out)


class VariableSelectionNetwork(nn.Module):
    """Embeds each of ``n_vars`` scalar inputs, transforms each with its own GRN, mixes them with
    softmax weights over the variables computed at each step from that step alone (plus context).

    x (..., n_vars) -> (selected (..., d_model), weights (..., n_vars)). With one variable the weight is 1.
    """

    def __init__(self, n_vars: int, d_model: int, dropout: float = 0.0, context_size: int | None = None):
        super().__init__()
        self.n_vars = n_vars
        self.embed_weight = nn.Parameter(torch.randn(n_vars, d_model) / math.sqrt(d_model))
        self.embed_bias = nn.Parameter(torch.zeros(n_vars, d_model))
        self.variable_grns = nn.ModuleList(
            [GatedResidualNetwork(d_model, d_model, d_model, dropout) for _ in range(n_vars)]
        )
        self.weight_grn = (
            GatedResidualNetwork(n_vars * d_model, d_model, n_vars, dropout, context_size)
            if n_vars > 1
            else None
        )

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        xi = x.unsqueeze(-1) * self.embed_weight + self.embed_bias  # (..., m, d)
        transformed = torch.stack([grn(xi[..., j, :]) for j, grn in enumerate(self.variable_grns)], dim=-2)
        if self.weight_grn is None:
            weights = torch.ones_like(x)  # (..., 1)
        else:
            weights = self.weight_grn(xi.flatten(-2), c).softmax(dim=-1)  # (..., m), over variables
        selected = (weights.unsqueeze(-1) * transformed).sum(dim=-2)  # (..., d)
        return selected, weights


class InterpretableMultiHeadAttention(nn.Module):
    """Causal self-attention with per-head queries/keys and one shared value projection.

    x (B, T, d) -> (out (B, T, d), weights (B, n_heads, T, T)); the heads' outputs are averaged, which
    equals applying the head-averaged weights to the shared values. The key projection has no bias:
    ``q . b_K`` is the same for every key, cancels in the softmax and would get no gradient.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"n_heads={n_heads} must divide d_model={d_model}")
        self.n_heads = n_heads
        self.d_attn = d_model // n_heads
        self.q_proj = nn.Linear(d_model, n_heads * self.d_attn)  # W_Q^(h) for every head, side by side
        self.k_proj = nn.Linear(d_model, n_heads * self.d_attn, bias=False)  # W_K^(h), no (dead) bias
        self.v_proj = nn.Linear(d_model, self.d_attn)  # W_V, shared
        self.out_proj = nn.Linear(self.d_attn, d_model)  # W_H
        self.attn_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.d_attn).transpose(1, 2)  # (B, h, T, da)
        k = self.k_proj(x).view(B, T, self.n_heads, self.d_attn).transpose(1, 2)  # (B, h, T, da)
        v = self.v_proj(x).unsqueeze(1)  # (B, 1, T, da), the same for every head
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_attn)  # (B, h, T, T)
        weights = scores.masked_fill(causal_mask(T, x.device), float("-inf")).softmax(dim=-1)
        heads = self.attn_dropout(weights) @ v  # (B, h, T, da)
        return self.out_proj(heads.mean(dim=1)), weights  # (B, T, d), (B, h, T, T)


def _accepts_horizon(init):
    """``horizon=`` was the TFT's name for ``output_size`` (course_lib v2): accepted for one release, with a
    FutureWarning, so that old code and saved configs still build the same model."""

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        if "horizon" in kwargs:
            if "output_size" in kwargs:
                raise TypeError("pass output_size only: horizon is its old name")
            warnings.warn(
                "TemporalFusionTransformer(horizon=H) is now TemporalFusionTransformer(output_size=H), the "
                "argument every model uses; horizon= is accepted for one release",
                FutureWarning,
                stacklevel=2,
            )
            kwargs["output_size"] = kwargs.pop("horizon")
        init(self, *args, **kwargs)

    return wrapper


class TemporalFusionTransformer(nn.Module):
    """The TFT of Lim et al. (2021) for continuous inputs, with quantile outputs.

    Args:
        input_size: C_obs, observed features per past step in ``x_past``.
        n_known: C_known, known-future features per forecast step in ``x_future`` (0: none; the decoder
            then reads a learned embedding per forecast step).
        n_static: C_static, static covariates in ``x_static`` (0: none).
        output_size: H, the number of forecast steps (decoder positions): the forecast is (B, H, Q), as
            ``QuantileRegressionEnsemble``'s is (B, output_size, Q). (``horizon=`` is its old name, accepted
            for one release.) A position is a forecast *target*, not necessarily one day ahead: for
            targets at horizons (1, 5, 22) days (y of shape (B, 3)), ``output_size=3`` gives one set of
            quantiles per horizon from one model, trained with ``PinballLoss`` on the (B, 3) targets.
        hidden_size, n_heads, dropout: width d_model (every block), heads (``n_heads`` must divide
            ``hidden_size``) and dropout.
        quantiles: increasing levels in (0, 1), e.g. (0.1, 0.5, 0.9).

    ``forward(x_past, x_future=None, x_static=None, per_step=False, return_attention=False)`` returns
    the quantiles (B, H, Q) of the H forecast steps. ``per_step=True`` applies the head at all T = L + H
    positions, (B, T, Q) (a diagnostic: output t depends on inputs up to t only; only the last H are
    forecasts). ``return_attention=True`` returns a dict: "prediction", "attention" (B, T, T) (heads
    averaged; row t = the weights that position t puts on positions <= t), "variable_weights"
    (B, L, C_obs), and "future_variable_weights" (B, H, C_known) / "static_variable_weights"
    (B, C_static) when those inputs exist. The Trainer calls ``model(*X)``, so pass X as a tuple
    ``(x_past, x_future)`` or ``(x_past, x_future, x_static)``; with static but no known-future inputs,
    an empty x_future of shape (B, H, 0) stands in for None.
    """

    @_accepts_horizon
    @keeps_config
    def __init__(
        self,
        input_size: int,
        n_known: int = 0,
        n_static: int = 0,
        output_size: int = 1,
        hidden_size: int = 32,
        n_heads: int = 4,
        dropout: float = 0.1,
        quantiles: tuple[float, ...] = (0.1, 0.5, 0.9),
    ):
        super().__init__()
        if input_size < 1 or n_known < 0 or n_static < 0 or output_size < 1:
            raise ValueError(
                f"need input_size >= 1, n_known >= 0, n_static >= 0, output_size >= 1; got "
                f"{input_size}, {n_known}, {n_static}, {output_size}"
            )
        d_model = hidden_size
        quantiles = tuple(float(q) for q in quantiles)
        if (
            not quantiles
            or any(not 0 < q < 1 for q in quantiles)
            or list(quantiles) != sorted(set(quantiles))
        ):
            raise ValueError(f"quantiles must be strictly increasing levels in (0, 1), got {quantiles}")
        self.input_size, self.n_known, self.n_static = input_size, n_known, n_static
        self.output_size = output_size  # H forecast steps
        self.quantiles = quantiles
        context = d_model if n_static else None

        if n_static:
            self.static_selection = VariableSelectionNetwork(n_static, d_model, dropout)
            self.static_context_selection = GatedResidualNetwork(d_model, d_model, d_model, dropout)  # c_s
            self.static_context_enrichment = GatedResidualNetwork(d_model, d_model, d_model, dropout)  # c_e
            self.static_context_hidden = GatedResidualNetwork(d_model, d_model, d_model, dropout)  # c_h
            self.static_context_cell = GatedResidualNetwork(d_model, d_model, d_model, dropout)  # c_c
        self.past_selection = VariableSelectionNetwork(input_size, d_model, dropout, context)
        if n_known:
            self.future_selection = VariableSelectionNetwork(n_known, d_model, dropout, context)
        else:
            self.horizon_embedding = nn.Parameter(torch.randn(output_size, d_model) / math.sqrt(d_model))
        self.lstm_encoder = nn.LSTM(d_model, d_model, batch_first=True)
        self.lstm_decoder = nn.LSTM(d_model, d_model, batch_first=True)
        self.lstm_gate = GateAddNorm(d_model, d_model, dropout)
        self.static_enrichment = GatedResidualNetwork(d_model, d_model, d_model, dropout, context)
        self.attention = InterpretableMultiHeadAttention(d_model, n_heads, dropout)
        self.attention_gate = GateAddNorm(d_model, d_model, dropout)
        self.positionwise_grn = GatedResidualNetwork(d_model, d_model, d_model, dropout)
        self.output_gate = GateAddNorm(d_model, d_model, dropout)
        self.head = QuantileHead(d_model, len(quantiles))

    @property
    def horizon(self) -> int:
        """The old name of :attr:`output_size`, kept for one release."""
        warnings.warn(
            "TemporalFusionTransformer.horizon is now .output_size; the old name is kept for one release",
            FutureWarning,
            stacklevel=2,
        )
        return self.output_size

    def _check_inputs(self, x_past, x_future, x_static) -> None:
        model = type(self).__name__
        check_window(x_past, self.input_size, model=model, name="x_past", module=self)
        batch = x_past.shape[0]
        if self.n_known:
            if x_future is None:
                raise ValueError(
                    f"the model was built with n_known={self.n_known}: pass x_future (B, H, C_known)"
                )
            check_window(x_future, self.n_known, model=model, name="x_future", module=self)
            if x_future.shape[:2] != (batch, self.output_size):
                raise ValueError(
                    f"x_future must be ({batch}, {self.output_size}, {self.n_known}), got {tuple(x_future.shape)}"
                )
        elif x_future is not None and x_future.numel() > 0:
            raise ValueError("the model was built with n_known=0 but received x_future with values")
        if self.n_static:
            if x_static is None:
                raise ValueError(
                    f"the model was built with n_static={self.n_static}: pass x_static (B, C_static)"
                )
            if x_static.shape != (batch, self.n_static):
                raise ValueError(f"x_static must be ({batch}, {self.n_static}), got {tuple(x_static.shape)}")
            if not torch.isfinite(x_static).all():
                raise ValueError("x_static contains NaN or inf values")
        elif x_static is not None:
            raise ValueError("the model was built with n_static=0 but received x_static")

    def forward(
        self,
        x_past: torch.Tensor,
        x_future: torch.Tensor | None = None,
        x_static: torch.Tensor | None = None,
        per_step: bool = False,
        return_attention: bool = False,
    ):
        self._check_inputs(x_past, x_future, x_static)
        B, L, _ = x_past.shape
        extras = {}

        # Static covariate encoders: contexts for selection, enrichment and the LSTM's initial state.
        c_s = c_e = state = None
        if self.n_static:
            s, extras["static_variable_weights"] = self.static_selection(x_static)  # (B, d), (B, C_s)
            c_s, c_e = self.static_context_selection(s), self.static_context_enrichment(s)  # (B, d) each
            h0, c0 = self.static_context_hidden(s), self.static_context_cell(s)  # (B, d) each
            state = (h0.unsqueeze(0).contiguous(), c0.unsqueeze(0).contiguous())  # (1, B, d) each

        # Variable selection, one step at a time.
        past, extras["variable_weights"] = self.past_selection(x_past, c_s)  # (B, L, d), (B, L, C_obs)
        if self.n_known:
            future, extras["future_variable_weights"] = self.future_selection(x_future, c_s)  # (B, H, d)
        else:
            future = self.horizon_embedding.expand(B, -1, -1)  # (B, H, d)

        # LSTM encoder over the past, decoder over the forecast steps, gated skip around both.
        encoded, state = self.lstm_encoder(past, state)  # (B, L, d)
        decoded, _ = self.lstm_decoder(future, state)  # (B, H, d)
        selected = torch.cat([past, future], dim=1)  # (B, T, d)
        phi = self.lstm_gate(torch.cat([encoded, decoded], dim=1), selected)  # (B, T, d)

        # Static enrichment, causal interpretable attention, position-wise GRN.
        theta = self.static_enrichment(phi, c_e)  # (B, T, d)
        attended, head_weights = self.attention(theta)  # (B, T, d), (B, h, T, T)
        delta = self.attention_gate(attended, theta)  # (B, T, d)
        psi = self.output_gate(self.positionwise_grn(delta), phi)  # (B, T, d)

        prediction = self.head(psi if per_step else psi[:, L:])  # (B, T, Q) or (B, H, Q)
        if return_attention:
            return {"prediction": prediction, "attention": head_weights.mean(dim=1), **extras}
        return prediction
