"""Small pieces every model family shares: the input check, the causal mask, causal multi-head
self-attention, the stored config, the MLP head and the dropout rule of stacked recurrent layers.

The argument vocabulary of every model (see docs/errata.md and the README's contributing section):
``input_size`` (features per step), ``hidden_size`` (width), ``output_size`` (outputs per forecast),
``n_layers``, ``n_heads``, ``dropout``; family-specific names (``kernel_size``, ``horizons``,
``quantiles``...) come after these.
"""

import functools
import inspect
import json
import math

import torch
from torch import nn

__all__ = ["CausalSelfAttention", "causal_mask", "check_window", "keeps_config", "mlp_head", "rnn_dropout"]


def check_window(
    x: torch.Tensor,
    n_features: int,
    min_length: int = 1,
    model: str = "model",
    name: str = "x",
    module: nn.Module | None = None,
) -> None:
    """Raise a ``ValueError`` that names the problem unless ``x`` is a finite (B, L, n_features) window.

    ``min_length`` is the shortest window the model can use (pooling layers need a few steps).
    ``name`` is the argument's name in the messages (the TFT checks ``x_past`` and ``x_future``).
    ``module``: the model itself; the window must then have the dtype and the device of its weights
    (PyTorch's own error, ``mat1 and mat2 must have the same dtype``, names neither the model nor the fix).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{model} expects {name} to be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(
            f"{model} expects a window {name} of shape (B, L, C), got shape {tuple(x.shape)}"
            + (" (add the feature axis: x.unsqueeze(-1))" if x.dim() == 2 and n_features == 1 else "")
        )
    if x.shape[-1] != n_features:
        raise ValueError(
            f"{model} was built for {n_features} features, got {name} of shape {tuple(x.shape)} "
            f"({x.shape[-1]} features)"
        )
    if x.shape[1] == 0:
        raise ValueError(f"{model} got an empty window: {name} has shape {tuple(x.shape)}")
    if x.shape[1] < min_length:
        raise ValueError(
            f"{model} needs windows of at least {min_length} steps, got {name} with L={x.shape[1]}"
        )
    weight = None if module is None else next((p for p in module.parameters() if p.is_floating_point()), None)
    if weight is not None and x.dtype != weight.dtype:
        cast = {torch.float32: ".float()", torch.float64: ".double()", torch.float16: ".half()"}
        fix = f"{name}{cast.get(weight.dtype, f'.to({weight.dtype})')}"
        raise ValueError(
            f"{model} has {weight.dtype} weights, got {name} of dtype {x.dtype}: convert the window with "
            f"{fix} (or the model with model.to({x.dtype}))"
        )
    if weight is not None and x.device != weight.device:
        raise ValueError(
            f"{model} has its weights on {weight.device}, got {name} on {x.device}: move the window with "
            f"{name}.to('{weight.device}')"
        )
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).nonzero()[0].tolist()
        kind = "NaN" if torch.isnan(x).any() else "inf"
        raise ValueError(f"{model} got {name} with {kind} values, the first at index {tuple(bad)}")


def causal_mask(length: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(L, L) boolean mask, True where query step t must NOT see key step s (s > t)."""
    return torch.ones(length, length, dtype=torch.bool, device=device).triu(1)


def keeps_config(init):
    """Decorator for a model's ``__init__``: store its arguments, defaults included, as ``self.config``.

    ``self.config`` is a JSON-serialisable dict (tuples become lists) of exactly the constructor's
    keyword arguments, so ``type(model)(**model.config)`` rebuilds the model and
    :func:`course_lib.models.checkpoint.save_checkpoint` needs nothing restated. A value JSON cannot hold
    (a module, a function) is refused when the model is built, with the argument's name.
    """
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = dict(list(bound.arguments.items())[1:])  # without self
        init(self, *args, **kwargs)
        config = {}
        for key, value in arguments.items():
            try:
                config[key] = json.loads(json.dumps(value))
            except TypeError:
                raise TypeError(
                    f"{type(self).__name__}({key}={value!r}): a model's constructor arguments must be "
                    "JSON values (numbers, strings, lists), so that its config can be saved"
                ) from None
        self.config = config

    return wrapper


def mlp_head(input_size: int, hidden_size: int, output_size: int, dropout: float = 0.0) -> nn.Sequential:
    """The forecast head of every family: ``Linear -> ReLU -> Dropout -> Linear``, (..., in) -> (..., out)."""
    return nn.Sequential(
        nn.Linear(input_size, hidden_size),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden_size, output_size),
    )


def rnn_dropout(dropout: float, n_layers: int) -> float:
    """The ``dropout`` for ``nn.LSTM``/``nn.GRU``: it acts only between stacked layers, so 0 for one layer
    (PyTorch warns otherwise); models apply their own dropout after the last layer."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    return dropout if n_layers > 1 else 0.0


class CausalSelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention with a causal mask; also returns its weights.

    Per head: ``softmax(Q K^T / sqrt(d_k) + M) V`` with ``M[t, s] = -inf`` for ``s > t`` (step t sees only
    steps <= t); x (B, L, D) -> (out (B, L, D), weights (B, n_heads, L, L)). Used by FinancialTransformer
    and FinancialLSTM. The key projection has no bias: ``q . (W_K x_s + b_K) = q . W_K x_s + q . b_K``, and the second
    term is the same for every key s, so it cancels in the softmax and ``b_K`` would never get a
    gradient (docs/errata.md: dead parameters).
    """

    def __init__(self, hidden_size: int, n_heads: int, dropout: float = 0.0, causal: bool = True):
        super().__init__()
        if hidden_size % n_heads != 0:
            raise ValueError(f"n_heads={n_heads} must divide hidden_size={hidden_size}")
        self.n_heads = n_heads
        self.causal = causal
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size, bias=False)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)
        self.attn_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, L, D = x.shape
        q, k, v = self.query(x), self.key(x), self.value(x)  # 3 x (B, L, D)
        q, k, v = (
            z.view(B, L, self.n_heads, D // self.n_heads).transpose(1, 2) for z in (q, k, v)
        )  # (B, h, L, dh)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, h, L, L)
        if self.causal:
            scores = scores.masked_fill(causal_mask(L, x.device), float("-inf"))  # hide keys s > t
        weights = scores.softmax(dim=-1)  # (B, h, L, L), rows sum to 1
        y = self.attn_dropout(weights) @ v  # (B, h, L, dh)
        y = y.transpose(1, 2).reshape(B, L, D)  # heads side by side: (B, L, D)
        return self.proj(y), weights
