"""One model for many assets: a recipe trained on the training years of every asset at once.

A network fitted to one index sees about 2 000 training days; HAR needs four numbers and is hard to
beat with so little data. The literature finds that pooling assets is what lets networks win out of
sample: price formation has universal features (Sirignano & Cont 2019), and volatility shares a
common component across stocks (Zhang, Zohren & Roberts 2022). The pooled recipe here is the
simplest form: each asset's windows z-scored with its *own* training statistics (so no asset's scale
dominates), the training splits of all assets concatenated, early stopping on their validation splits
concatenated, no asset embedding; one model per seed then forecasts every asset.

Every task must share the capstone's split dates, so no asset's validation or test dates enter the
pooled training set (:func:`pooled_training_set` checks it, and a test probes it).
"""

from types import SimpleNamespace

import numpy as np
import pandas as pd

from ..data.windows import SplitData, Task
from ..training import Trainer, fit_seeds
from .entries import Entry, build_model, leaderboard_entry


def _stack(tasks: dict[str, Task], split: str) -> SimpleNamespace:
    parts = {a: t.split(split) for a, t in tasks.items()}
    return SimpleNamespace(
        X=np.concatenate([s.X for s in parts.values()]),  # (sum N, L, C)
        y=np.concatenate([s.y for s in parts.values()]),  # (sum N, n_h)
        asset=np.concatenate([[a] * len(s.y) for a, s in parts.items()]),
        target_day=pd.DatetimeIndex(
            np.concatenate([t.frame.index[t.split(split).rows + 1] for t in tasks.values()])
        ),
    )


def pooled_training_set(tasks: dict[str, Task]) -> SimpleNamespace:
    """The training windows of every asset, concatenated (``X``, ``y``, ``asset``, ``target_day``);
    refuses tasks whose training targets reach another task's validation or test days."""
    if len(tasks) < 2:
        raise ValueError(f"pooling needs at least two assets, got {list(tasks)}")
    shapes = {t.train.X.shape[1:] for t in tasks.values()}
    if len(shapes) != 1:
        raise ValueError(f"every asset needs the same window and features, got {sorted(map(str, shapes))}")
    train = _stack(tasks, "train")
    first_held = min(t.frame.index[t.val.rows + 1].min() for t in tasks.values())
    if train.target_day.max() >= first_held:
        raise ValueError(
            f"a training target ({train.target_day.max().date()}) reaches the validation years of an asset "
            f"(from {first_held.date()}): give every asset the same split dates"
        )
    return train


def pooled_entries(
    model: str,
    tasks: dict[str, Task],
    seeds=(0,),
    size: str = "small",
    name: str | None = None,
    **trainer_kwargs,
) -> dict[str, Entry]:
    """Train ``model`` (a name of the catalogue) once per seed on the pooled training set of ``tasks``
    (early stopping on their pooled validation splits) and return one leaderboard entry per asset, its
    forecasts of that asset's validation and test splits. ``trainer_kwargs`` go to the Trainer."""
    train, val = pooled_training_set(tasks), _stack(tasks, "val")
    n_features = train.X.shape[-1]
    pooled = SimpleNamespace(
        train=SplitData(X=train.X, y=train.y, dates=None, rows=None),
        val=SplitData(X=val.X, y=val.y, dates=None, rows=None),
        test=SplitData(X=val.X[:1], y=val.y[:1], dates=None, rows=None),  # forecasts are made per asset below
    )
    if getattr(build_model(model, size, 0, n_features), "quantiles", None) is not None:
        raise ValueError(f"{model} forecasts quantiles: pool a point-forecast model of the catalogue")
    models, seconds = [], 0.0
    for seed in seeds:  # the seed draws the weights (build_model) and the batch order (the Trainer)
        runs = fit_seeds(
            lambda seed=seed: build_model(model, size, seed, n_features), pooled, (seed,), **trainer_kwargs
        )
        models += runs.models
        seconds += float(np.sum(runs.epoch_times))
    predictors = [Trainer(m, progress=False, device=trainer_kwargs.get("device")) for m in models]
    return {
        asset: leaderboard_entry(
            name or f"{model} (pooled)",
            [t.predict(task.test.X) for t in predictors],
            [t.predict(task.val.X) for t in predictors],
            task,
            family="pooled",
            seconds=seconds / len(seeds),
            params=sum(p.numel() for p in models[0].parameters() if p.requires_grad),
        )
        for asset, task in tasks.items()
    }
