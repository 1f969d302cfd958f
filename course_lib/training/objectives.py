"""Fits of models trained on their own objective rather than on (X, y) pairs with the Trainer.

:func:`fit_koopman`: Adam over shuffled mini-batches of sequences on the deep Koopman losses of
Lusch, Kutz & Brunton (2018), ``course_lib.models.koopman.koopman_loss``::

    L = mean |psi(z_t) - x_t|^2 + mean_h |K^h z_t - z_{t+h}|^2 + mean_h |psi(K^h z_t) - x_{t+h}|^2 + s R(K)

(reconstruction, linearity, prediction over h = 1..H, and the weighted eigenvalue penalty R).
"""

from collections.abc import Callable

import torch

from ..models.koopman import DeepKoopmanFinance, koopman_loss
from .trainer import fit_minibatches

__all__ = ["fit_koopman"]


def fit_koopman(
    model: DeepKoopmanFinance,
    sequences: torch.Tensor,
    horizon: int,
    epochs: int = 100,
    lr: float = 1e-2,
    batch_size: int = 256,
    stability: float = 0.0,
    seed: int = 0,
    after_epoch: Callable[[int, float], bool] | None = None,
) -> list[float]:
    """Adam on :func:`koopman_loss` over (N, T, C) training sequences; returns the mean total loss per epoch.

    ``after_epoch(epoch, loss)``: called after each epoch, model in eval mode; True stops training (e.g.
    early stopping on a validation loss, ``scripts/reference_runs.py``)."""
    if sequences.dim() != 3 or len(sequences) == 0:
        raise ValueError(
            f"sequences must be a non-empty (N, T, C) tensor, got shape {tuple(sequences.shape)}"
        )

    def batch_loss(idx):
        loss = koopman_loss(model, sequences[idx], horizon, stability)["total"]
        if not torch.isfinite(loss):
            raise FloatingPointError("koopman_loss is not finite: lower lr or scale the inputs")
        return loss

    return fit_minibatches(
        model, len(sequences), batch_loss, epochs, lr, batch_size, seed, sequences.device, after_epoch
    )
