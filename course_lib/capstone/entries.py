"""Leaderboard entries (chapter 08): a learner's own forecasts, course models trained here, and the
two families that keep the training protocol of their chapter.

An :class:`Entry` holds forecasts of v_{t+1} per seed on validation and test, each (N, 1).

* :func:`leaderboard_entry` checks and wraps a learner's forecasts;
* :func:`train_entry` trains any model of :data:`MODELS` (by name, with a size config), a function
  ``seed -> model`` or one model, for several seeds through :func:`course_lib.training.fit_seeds` (the
  :class:`~course_lib.training.Trainer`: MSE on v, or :func:`course_lib.losses.qlike_loss`; a quantile model, the TFT,
  trains on its pinball loss and is scored on its median);
* :func:`foundation_entries` (chapter 06b's patch model, pretrained on a corpus without the S&P 500,
  cut at the end of the training years, zero-shot and fine-tuned) and :func:`koopman_entry` (chapter
  06e's deep Koopman model on its own losses).
"""

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .. import get_device, set_seed
from ..data.windows import Task
from ..losses import PinballLoss
from ..models import (
    TimeSeriesFoundationModel,
    registry,
)
from ..models.koopman import DeepKoopmanFinance
from ..models.registry import LEADERBOARD, ModelSpec
from ..training import fit_koopman, fit_seeds
from .task import FEATURES, LOOKBACK, TRAIN_END


@dataclass
class Entry:
    """One leaderboard row before scoring: forecasts per seed on validation and test (each (N, 1))."""

    name: str
    test: list[np.ndarray]
    val: list[np.ndarray]
    family: str = "learner"
    seconds: float = float("nan")  # training time per seed
    params: int | None = None
    protocol: str = "frozen"
    extra: dict = field(default_factory=dict)


def _check_forecasts(task: Task, name: str, split: str, preds) -> list[np.ndarray]:
    if isinstance(preds, np.ndarray | torch.Tensor):
        preds = [preds]
    if len(preds) == 0:
        raise ValueError(f"{name}: no {split} forecasts (give one array per seed)")
    n = len(task.split(split))
    out = []
    for s, p in enumerate(preds):
        p = np.asarray(p.detach().cpu() if isinstance(p, torch.Tensor) else p, dtype=np.float64)
        given = p.shape
        if p.ndim == 1:
            p = p[:, None]
        if p.shape != (n, 1):
            raise ValueError(
                f"{name}: seed {s} {split} forecasts have shape {given}; the {split} split has {n} targets, "
                f"so give ({n}, 1) or ({n},) log-volatility forecasts, one per target in task.{split}.dates order"
            )
        if not np.isfinite(p).all():
            raise ValueError(f"{name}: seed {s} {split} forecasts contain NaN or inf")
        out.append(p)
    return out


def leaderboard_entry(
    name: str,
    test_predictions,
    val_predictions,
    task: Task,
    family: str = "learner",
    seconds: float = float("nan"),
    params: int | None = None,
) -> Entry:
    """A learner's own forecasts as a leaderboard entry (checked against the task's splits).

    ``test_predictions`` / ``val_predictions``: one array per seed (or one array), log-volatility
    forecasts of ``task.test.y`` / ``task.val.y``. The validation forecasts are required: the level
    correction and the combination weights are learnt on them, never on the test years.
    """
    test = _check_forecasts(task, name, "test", test_predictions)
    val = _check_forecasts(task, name, "val", val_predictions)
    if len(test) != len(val):
        raise ValueError(f"{name}: {len(test)} test seeds but {len(val)} validation seeds")
    return Entry(name, test, val, family=family, seconds=seconds, params=params)


# Course models for the leaderboard: the entries of the one catalogue (course_lib.models.registry) that
# name a leaderboard row, in its order; each carries its family and its "small" and "full" sizes.
MODELS: dict[str, ModelSpec] = LEADERBOARD

# Models of MODELS that forecast quantiles (their config names the levels): they train on their
# pinball loss, and the leaderboard scores their median (see train_entry).
QUANTILE_MODELS = [name for name, spec in MODELS.items() if "quantiles" in spec.sizes["full"]]


def build_model(name: str, size: str = "small", seed: int = 0, input_size: int = len(FEATURES)) -> nn.Module:
    """A fresh course model of the leaderboard (see :data:`MODELS`), its weights drawn from ``seed``."""
    if name not in MODELS:
        raise KeyError(f"unknown leaderboard model {name!r}; choose from {list(MODELS)}")
    return registry.build(name, size, seed, input_size)


def _quantile_levels(net: nn.Module) -> tuple[float, ...] | None:
    """The quantile levels of a model that forecasts quantiles (the TFT), else None."""
    levels = getattr(net, "quantiles", None)
    return tuple(levels) if levels is not None else None


def _point(net: nn.Module, forecast: np.ndarray) -> np.ndarray:
    """A (N, 1) log-volatility forecast: the median of a quantile model's (N, 1, Q) output."""
    levels = _quantile_levels(net)
    if levels is None:
        return forecast
    if 0.5 not in levels:
        raise ValueError(
            f"a quantile model on the leaderboard needs the median among its levels, got {levels}"
        )
    return forecast[..., levels.index(0.5)]


def train_entry(
    model: str | nn.Module | Callable[[int], nn.Module],
    task: Task,
    seeds=(0,),
    size: str = "small",
    name: str | None = None,
    family: str | None = None,
    **trainer_kwargs,
) -> Entry:
    """Train a model for each seed with :func:`~course_lib.training.fit_seeds` (the Trainer: MSE on v,
    early stopping on validation).

    ``model``: a name of :data:`MODELS` (built at ``size``), a function ``seed -> fresh model``, or one
    untrained model (copied for each seed; only the batch order then differs between seeds).
    ``trainer_kwargs`` go to the Trainer (``max_epochs``, ``lr``, ``batch_size``, ``loss``: ``"mse"`` on
    v, the default, or a name of :data:`course_lib.losses.LOSSES` such as ``"qlike"``). A model that forecasts quantiles (the TFT)
    trains on its pinball loss, and its median is the forecast; ``loss`` does not apply to it.
    ``seconds`` of the entry: the training epochs per seed, on average.
    """
    if isinstance(model, str):
        label, fam = model, str(MODELS[model].family) if model in MODELS else None
        factory = lambda seed: build_model(label, size, seed, task.train.X.shape[-1])  # noqa: E731
    elif isinstance(model, nn.Module):
        label, fam, template = type(model).__name__, None, copy.deepcopy(model)
        factory = lambda seed: copy.deepcopy(template)  # noqa: E731
    elif callable(model):
        label, fam, factory = getattr(model, "__name__", "model"), None, model
    else:
        raise TypeError(
            f"model must be a name, an nn.Module or a function seed -> model, not {type(model).__name__}"
        )
    test, val, seconds, params = [], [], [], None
    for seed in seeds:
        # built first: a quantile model's levels choose its loss. The Trainer re-seeds at fit, so
        # fit_seeds' seeding before make() leaves the weights the factory drew, and the run, unchanged.
        net = factory(seed)
        params = sum(p.numel() for p in net.parameters() if p.requires_grad)
        levels, kwargs = _quantile_levels(net), trainer_kwargs
        if levels is not None:
            if "loss" in trainer_kwargs:
                raise ValueError(
                    f"{label} forecasts the quantiles {levels}: it trains on its pinball loss and the "
                    f"leaderboard scores its median, so leave out loss= (got {trainer_kwargs['loss']!r})"
                )
            kwargs = trainer_kwargs | {
                "loss": PinballLoss(levels)
            }  # this seed's: the caller's stay untouched
        runs = fit_seeds(lambda net=net: net, task, (seed,), **kwargs)
        seconds.append(sum(runs.epoch_times))
        test.append(_point(net, runs.test[0]))
        val.append(_point(net, runs.val[0]))
    return leaderboard_entry(
        name or label,
        test,
        val,
        task,
        family=family or fam or "learner",
        seconds=float(np.mean(seconds)),
        params=params,
    )


# ---------------------------------------------------------------------------------------------
# Families with their own training protocol: a pretrained foundation model, deep Koopman
# ---------------------------------------------------------------------------------------------


def _logvol_series(task: Task) -> np.ndarray:
    """The daily log Parkinson volatility of ``task.frame``; its value after each origin is the target."""
    series = task.frame["log_vol_parkinson"].to_numpy(np.float32)
    for name in ("train", "val", "test"):
        split = task.split(name)
        if not np.allclose(series[split.rows + 1], split.y[:, 0], atol=1e-5):
            raise ValueError(
                f"the {name} targets are not the next day's log_vol_parkinson: not the capstone task"
            )
    return series


def foundation_entries(
    task: Task,
    seeds=(0,),
    pretrain_steps: int = 500,
    finetune_steps: int = 100,
    pretrain_length: int = 128,
    n_synthetic: int = 3,
    size: dict | None = None,
) -> list[Entry]:
    """Chapter 06b's foundation model on the capstone: ``Foundation zero-shot`` and ``Foundation fine-tuned``.

    Per seed, a :class:`TimeSeriesFoundationModel` (channel-independent patches, causal RevIN,
    Student-t head; ``size`` overrides the chapter's sizes) is pretrained for ``pretrain_steps`` on a
    corpus that never contains the S&P 500 (the other packaged series and the arch VIX and WTI series,
    each cut at the end of the training years, plus ``n_synthetic`` simulated paths of each kind). The
    zero-shot forecast of v_{t+1} is the median of its next-patch forecast from the same 60 days of v
    that the other models read (the last 56, 7 patches of 8). A copy fine-tuned for ``finetune_steps``
    on the S&P 500's training years (nothing later) gives the second row. Validation forecasts come
    from the same models, for the level correction.
    """
    from ..data.corpus import Corpus, Series, contexts, merge, pretrain, real_series, synthetic_series

    series = _logvol_series(task)
    corpus = merge(real_series(end=TRAIN_END, exclude=(task.ticker,)), synthetic_series(n_synthetic, seed=0))
    own = Corpus([Series(task.ticker, series[: task.fit_end_row + 1], "capstone training years")])
    config = dict(patch_size=8, hidden_size=32, n_heads=2, n_layers=2) | (size or {})
    device = get_device()
    rows = {
        "zero-shot": {"test": [], "val": [], "seconds": []},
        "fine-tuned": {"test": [], "val": [], "seconds": []},
    }

    def forecast(model, split):
        x = torch.from_numpy(contexts(series, task.split(split).rows, LOOKBACK)).to(device)
        with torch.no_grad():
            return model(x)["prediction"][:, 0, :].cpu().numpy()  # (N, 1): the first day of the next patch

    params = None
    for seed in seeds:
        set_seed(seed)
        model = TimeSeriesFoundationModel(1, max_patches=pretrain_length // config["patch_size"], **config)
        params = sum(p.numel() for p in model.parameters())
        start = time.perf_counter()
        pretrain(model, corpus, pretrain_steps, pretrain_length, seed=seed, device=device)
        rows["zero-shot"]["seconds"].append(time.perf_counter() - start)
        tuned = copy.deepcopy(model)
        start = time.perf_counter()
        pretrain(tuned, own, finetune_steps, pretrain_length, lr=1e-3, seed=seed, device=device)
        rows["fine-tuned"]["seconds"].append(rows["zero-shot"]["seconds"][-1] + time.perf_counter() - start)
        for kind, net in (("zero-shot", model), ("fine-tuned", tuned)):
            rows[kind]["test"].append(forecast(net, "test"))
            rows[kind]["val"].append(forecast(net, "val"))
    return [
        leaderboard_entry(
            f"Foundation {kind}",
            r["test"],
            r["val"],
            task,
            family="foundation",
            seconds=float(np.mean(r["seconds"])),
            params=params,
        )
        for kind, r in rows.items()
    ]


def koopman_entry(
    task: Task,
    seeds=(0,),
    n_delays: int = 22,
    latent_size: int = 4,
    hidden_size: int = 16,
    horizon: int = 5,
    epochs: int = 30,
    lr: float = 3e-3,
    stability: float = 1.0,
) -> Entry:
    """Chapter 06e's :class:`DeepKoopmanFinance` on the capstone, trained on its own losses.

    Per seed, the model reads a delay embedding of the last ``n_delays`` days of v (scaled with the
    task's training statistics), and :func:`fit_koopman` trains reconstruction, linear latent
    dynamics and prediction over ``horizon`` days (with the penalty on unstable eigenvalues) on the
    sequences of the training years only. Its one-step forecast psi(K z_t), unscaled, is the entry.
    """
    from numpy.lib.stride_tricks import sliding_window_view

    col = task.feature_names.index("log_vol_parkinson")
    mean, scale = float(task.scaler.mean_[col]), float(task.scaler.scale_[col])
    scaled = (_logvol_series(task) - mean) / scale
    train = scaled[: task.train.rows[-1] + 1]  # what the training inputs cover, nothing later
    sequences = torch.from_numpy(
        np.ascontiguousarray(sliding_window_view(train, n_delays + horizon)[:, :, None], dtype=np.float32)
    )  # (N, T, 1)
    device = get_device()
    test, val, seconds, params = [], [], [], None

    def forecast(model, split):
        x = torch.from_numpy(task.split(split).X[..., col : col + 1]).to(device)  # (N, 60, 1), scaled v
        with torch.no_grad():
            return model(x).cpu().numpy() * scale + mean  # (N, 1)

    for seed in seeds:
        set_seed(seed)
        model = DeepKoopmanFinance(1, hidden_size=hidden_size, latent_size=latent_size, n_delays=n_delays)
        model.to(device)
        params = sum(p.numel() for p in model.parameters())
        start = time.perf_counter()
        fit_koopman(
            model, sequences.to(device), horizon, epochs=epochs, lr=lr, stability=stability, seed=seed
        )
        seconds.append(time.perf_counter() - start)
        test.append(forecast(model, "test"))
        val.append(forecast(model, "val"))
    return leaderboard_entry(
        "DeepKoopman", test, val, task, family="Koopman", seconds=float(np.mean(seconds)), params=params
    )
