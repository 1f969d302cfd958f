"""A training loop done right: the source module's DeepLearningPipeline without its defects.

* AdamW, ReduceLROnPlateau on the validation loss, gradient-norm clipping (``grad_clip``: every update's
  gradient g is rescaled to g * min(1, c / ||g||) before the optimiser step; ``None`` switches it off).
  ``history["grad_norm"]`` keeps the global norm ||g|| of every step *before* clipping, one list per
  epoch, whether or not clipping is on, so one can count how often the clip fired;
* early stopping that keeps the best weights **in memory** (the module wrote ``./best_model.pth``
  into the working directory and, after a NaN loss, silently restored a stale file from another run);
  ``checkpoint_path=`` also writes them as a checkpoint directory (:mod:`course_lib.models.checkpoint`);
* a NaN or infinite loss stops training with an error that names the epoch, after restoring the best
  weights so far (or saying that there are none); an empty split is refused;
* batches are sliced from tensors already on the device: no DataLoader, no per-sample Python work;
* a tqdm progress bar (one line, updated per epoch) that works in notebooks and terminals;
* any loss of :mod:`course_lib.losses` by name (``loss="qlike"``), or any callable ``loss(output, target)``.

Models follow :mod:`course_lib.outputs`: a tensor, or a dict with ``"prediction"`` and extras.
Inputs ``X`` may be one array or a tuple of arrays (static covariates, known-future inputs...):
the model is called as ``model(*X_batch)``.
"""

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .. import get_device, set_seed
from ..losses import loss_by_name
from ..models.checkpoint import save_checkpoint
from ..models.transfer import FinancialTransferLearning, require_trainable
from ..outputs import prediction_of

Inputs = torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray]


def _as_tensors(X: Inputs, device: torch.device) -> tuple[torch.Tensor, ...]:
    parts = X if isinstance(X, list | tuple) else (X,)
    out = tuple(torch.as_tensor(np.asarray(p) if not isinstance(p, torch.Tensor) else p) for p in parts)
    out = tuple((t.float() if t.is_floating_point() else t).to(device) for t in out)
    n = {len(t) for t in out}
    if len(n) != 1:
        raise ValueError(f"all inputs must have the same number of samples, got {[len(t) for t in out]}")
    return out


class Trainer:
    """Fit a model with early stopping; see the module docstring for what it guarantees."""

    def __init__(
        self,
        model: nn.Module,
        loss: str | Callable = "mse",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 256,
        max_epochs: int = 20,
        patience: int = 5,
        grad_clip: float | None = 1.0,
        lr_patience: int = 2,
        device: torch.device | str | None = None,
        seed: int = 0,
        progress: bool = True,
        checkpoint_path: str | Path | None = None,
    ) -> None:
        if isinstance(loss, str):
            loss = loss_by_name(loss)
        if batch_size < 1 or max_epochs < 1 or patience < 1:
            raise ValueError("batch_size, max_epochs and patience must be >= 1")
        if grad_clip is not None and not grad_clip > 0:
            raise ValueError(f"grad_clip must be a norm > 0, or None for no clipping; got {grad_clip}")
        self.device = torch.device(device) if device is not None else get_device()
        self.model = model.to(self.device)
        self.loss_fn = loss
        self.lr, self.weight_decay = lr, weight_decay
        self.batch_size, self.max_epochs, self.patience = batch_size, max_epochs, patience
        self.grad_clip, self.lr_patience = grad_clip, lr_patience
        self.seed, self.progress = seed, progress
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
        self.history: dict[str, list] = {}
        self.best_epoch: int | None = None

    def fit(self, X_train: Inputs, y_train, X_val: Inputs, y_val) -> dict[str, list]:
        """Train; return the history (also kept as ``self.history``). The best weights are restored."""
        set_seed(self.seed)
        Xt, (yt,) = _as_tensors(X_train, self.device), _as_tensors(y_train, self.device)
        Xv, (yv,) = _as_tensors(X_val, self.device), _as_tensors(y_val, self.device)
        for split, X, y in (("training", Xt, yt), ("validation", Xv, yv)):
            if len(X[0]) != len(y):
                raise ValueError(f"the {split} split has {len(X[0])} inputs but {len(y)} targets")
            if len(y) == 0:
                raise ValueError(
                    f"the {split} split is empty (0 samples): check the split dates and that the series "
                    "is longer than the lookback plus the horizon"
                )
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters (all frozen?)")
        opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=self.lr_patience)
        gen = torch.Generator(device="cpu").manual_seed(self.seed)

        self.history = {
            "train_loss": [],
            "val_loss": [],
            "lr": [],
            "epoch_time": [],
            "val_per_output": [],
            "grad_norm": [],  # per epoch, the pre-clip gradient norm of every optimiser step
        }
        best_loss, best_state, stale, self.best_epoch = math.inf, None, 0, None
        bar = tqdm(range(1, self.max_epochs + 1), desc="epochs", disable=not self.progress, leave=False)
        for epoch in bar:
            start = time.perf_counter()
            train_loss, grad_norms = self._train_epoch(Xt, yt, opt, gen)
            val_loss, per_output = self._evaluate(Xv, yv)
            if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
                bar.close()
                if best_state is not None:
                    self.model.load_state_dict(best_state)
                    kept = (
                        f"the model holds the best weights, of epoch {self.best_epoch} (val {best_loss:.6g})"
                    )
                else:
                    kept = "no epoch finished with a finite loss, so the weights are NOT restored (they may be NaN)"
                raise FloatingPointError(
                    f"loss became {'NaN' if math.isnan(train_loss) or math.isnan(val_loss) else 'infinite'} "
                    f"at epoch {epoch} (train {train_loss}, val {val_loss}); {kept}. Lower the learning rate, "
                    "check the inputs for NaN, or clip gradients"
                )
            sched.step(val_loss)
            self.history["train_loss"].append(train_loss)
            self.history["val_loss"].append(val_loss)
            self.history["lr"].append(opt.param_groups[0]["lr"])
            self.history["epoch_time"].append(time.perf_counter() - start)
            self.history["val_per_output"].append(per_output)
            self.history["grad_norm"].append(grad_norms)
            bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
            if val_loss < best_loss:
                best_loss, stale, self.best_epoch = val_loss, 0, epoch
                best_state = copy.deepcopy(self.model.state_dict())
                if self.checkpoint_path is not None:
                    self._write_best(epoch, val_loss)
            else:
                stale += 1
                if stale >= self.patience:
                    break
        bar.close()
        self.model.load_state_dict(best_state)
        return self.history

    def _write_best(self, epoch: int, val_loss: float) -> None:
        """The best state so far, as a checkpoint directory (:mod:`course_lib.models.checkpoint`)."""
        config = getattr(self.model, "config", None)  # {} for a model without one: load it with build=
        config = config if isinstance(config, dict) else {}
        save_checkpoint(self.model, self.checkpoint_path, config, {"epoch": epoch, "val_loss": val_loss})

    def _train_epoch(
        self, X: tuple[torch.Tensor, ...], y: torch.Tensor, opt, gen
    ) -> tuple[float, list[float]]:
        """One pass over the shuffled training set: (mean loss, the pre-clip gradient norm of each step)."""
        self.model.train()
        n = len(y)
        order = torch.randperm(n, generator=gen).to(self.device)
        total = torch.zeros((), device=self.device)
        norms = []  # one 0-d tensor per step; moved to the host once per epoch
        for i in range(0, n, self.batch_size):
            idx = order[i : i + self.batch_size]
            loss = self.loss_fn(self.model(*(x[idx] for x in X)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.grad_clip is not None:  # returns the norm before clipping
                norms.append(nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip))
            else:
                grads = [p.grad for p in self.model.parameters() if p.grad is not None]
                norms.append(nn.utils.get_total_norm(grads))
            opt.step()
            total += loss.detach() * len(idx)
        # one device sync per epoch
        return (total / n).item(), torch.stack(norms).float().cpu().tolist()

    @torch.no_grad()
    def _evaluate(self, X: tuple[torch.Tensor, ...], y: torch.Tensor) -> tuple[float, list[float]]:
        output = self._forward_batched(X)
        loss = self.loss_fn(output, y).item()
        pred = prediction_of(output)
        per_output = ((pred - y) ** 2).mean(dim=0).tolist() if pred.shape == y.shape and y.dim() == 2 else []
        return loss, per_output

    @torch.no_grad()
    def _forward_batched(self, X: tuple[torch.Tensor, ...]):
        self.model.eval()
        outputs = [self.model(*(x[i : i + 4096] for x in X)) for i in range(0, len(X[0]), 4096)]
        if isinstance(outputs[0], torch.Tensor):
            return torch.cat(outputs)
        return {
            k: (torch.cat([o[k] for o in outputs]) if outputs[0][k].dim() > 0 else outputs[0][k])
            for k in outputs[0]
        }

    def predict_output(self, X: Inputs):
        """The model's full output (tensor or dict of tensors) on the CPU, in eval mode."""
        out = self._forward_batched(_as_tensors(X, self.device))
        if isinstance(out, torch.Tensor):
            return out.cpu()
        return {k: v.cpu() for k, v in out.items()}

    def predict(self, X: Inputs) -> np.ndarray:
        """The prediction as a NumPy array (eval mode, no gradients)."""
        return prediction_of(self.predict_output(X)).numpy()


@dataclass
class SeedRuns:
    """One model trained for several seeds by :func:`fit_seeds`; lists in the order of the seeds."""

    test: list[np.ndarray]  # forecasts of task.test.X, one (N, ...) array per seed
    val: list[np.ndarray]  # forecasts of task.val.X (the level correction of QLIKE is learnt on them)
    models: list[nn.Module]  # the fitted models, holding their best weights
    epoch_times: list[float]  # seconds of every epoch of every seed
    best_epochs: list[int] = field(default_factory=list)  # the epoch (1-based) whose weights were kept
    epochs_run: list[int] = field(default_factory=list)  # epochs trained before early stopping or the cap

    @property
    def seconds_per_epoch(self) -> float:
        """The median over all epochs: robust to the first, slower one."""
        return float(np.median(self.epoch_times))


def fit_seeds(make: Callable[[], nn.Module], task, seeds: Sequence[int], **trainer_kwargs) -> SeedRuns:
    """Train a fresh ``make()`` for every seed on ``task.train`` (early stopping on ``task.val``).

    The seed fixes both the initial weights (``set_seed`` before ``make()``) and the batch order (the
    Trainer's ``seed``), so a run repeats exactly. ``trainer_kwargs`` go to the :class:`Trainer`
    (``lr``, ``batch_size``, ``max_epochs``, ``patience``, ``device``, ``loss``...; no progress bar
    unless ``progress=True``). A seed-averaged table (``evaluation.seed_summary``) takes
    ``{name: runs.test}`` and ``val_predictions={name: runs.val}``.
    """
    if len(seeds) == 0:
        raise ValueError("fit_seeds needs at least one seed")
    runs = SeedRuns([], [], [], [])
    for seed in seeds:
        set_seed(seed)
        trainer = Trainer(make(), seed=seed, **({"progress": False} | trainer_kwargs))
        history = trainer.fit(task.train.X, task.train.y, task.val.X, task.val.y)
        runs.test.append(trainer.predict(task.test.X))
        runs.val.append(trainer.predict(task.val.X))
        runs.models.append(trainer.model)
        runs.epoch_times.extend(history["epoch_time"])
        runs.best_epochs.append(trainer.best_epoch)
        runs.epochs_run.append(len(history["epoch_time"]))
    return runs


def fine_tune(model, X_train: Inputs, y_train, X_val: Inputs, y_val, **trainer_kwargs) -> Trainer:
    """Transfer learning's second step: train the unfrozen parameters of a pretrained model on the target.

    ``model``: a :class:`course_lib.models.transfer.FinancialTransferLearning` (its copy of the
    pretrained model, frozen by name) or any ``nn.Module``. Early stopping on the validation loss, as
    with every :class:`Trainer` (``trainer_kwargs`` go to it); the frozen parameters keep their source
    values theta_S. Returns the fitted trainer (``trainer.predict(X_test)``).
    """
    net = model.model if isinstance(model, FinancialTransferLearning) else model
    if not isinstance(net, nn.Module):
        raise TypeError(
            f"fine_tune needs an nn.Module or a FinancialTransferLearning, got {type(model).__name__}"
        )
    require_trainable(net)
    trainer = Trainer(net, **trainer_kwargs)
    trainer.fit(X_train, y_train, X_val, y_val)
    return trainer


def fit_minibatches(
    model: nn.Module,
    n_samples: int,
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    device: torch.device | str,
    after_epoch: Callable[[int, float], bool] | None = None,
) -> list[float]:
    """Plain Adam over shuffled mini-batches, for fits with their own loss and no validation split.

    Each epoch draws a new order of ``range(n_samples)`` (from ``seed``) and takes one step per
    ``batch_size`` indices on ``batch_loss(idx)`` (``idx``: a tensor of indices on ``device``).
    ``after_epoch(epoch, mean_loss)``, if given, is called after each epoch (1-based) with the model in
    eval mode; returning True stops training (an early-stopping rule of the caller's). Returns the
    sample-weighted mean loss of each epoch, and leaves the model in eval mode. For supervised (X, y)
    data with early stopping, use :class:`Trainer`.
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(n_samples, generator=gen).to(device)
        total = 0.0
        for start in range(0, n_samples, batch_size):
            idx = order[start : start + batch_size]
            loss = batch_loss(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        history.append(total / n_samples)
        model.eval()
        if after_epoch is not None and after_epoch(epoch, history[-1]):
            break
    model.eval()
    return history
