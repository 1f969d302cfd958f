"""Small pieces every model family shares: the input check and the causal mask."""

import torch


def check_window(x: torch.Tensor, n_features: int, min_length: int = 1, model: str = "model") -> None:
    """Raise a ``ValueError`` that names the problem unless ``x`` is a finite (B, L, n_features) window.

    ``min_length`` is the shortest window the model can use (pooling layers need a few steps).
    """
    if x.dim() != 3:
        raise ValueError(f"{model} expects a window x of shape (B, L, C), got shape {tuple(x.shape)}")
    if x.shape[-1] != n_features:
        raise ValueError(f"{model} was built for {n_features} features, got x of shape {tuple(x.shape)}")
    if x.shape[1] == 0:
        raise ValueError(f"{model} got an empty window: shape {tuple(x.shape)}")
    if x.shape[1] < min_length:
        raise ValueError(f"{model} needs windows of at least {min_length} steps, got L={x.shape[1]}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{model} got an input with NaN or inf values")


def causal_mask(length: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(L, L) boolean mask, True where query step t must NOT see key step s (s > t)."""
    return torch.ones(length, length, dtype=torch.bool, device=device).triu(1)
