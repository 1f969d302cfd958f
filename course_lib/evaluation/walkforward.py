"""Walk-forward training: an expanding window, re-trained every year, forecasting one year at a time.

A model trained once on 1999-2006 and used until 2018 is *frozen*: it never sees the crisis it is
asked to forecast in. Walk-forward training re-fits it every year on all the data known by then.
For each test year Y (a *block*):

====================  ===============================================================
training              every sample whose targets end by 31 December of Y-2 (expanding)
validation            samples whose origins and targets lie in Y-1, the most recent year
                      before the block: early stopping (and the warm-start check) use it
                      (the first block: Y-2 and Y-1, its training ends with Y-3)
forecasts             samples whose origin lies in Y, from a model and a scaler fitted on
                      data up to the end of Y-1 only
====================  ===============================================================

The network starts each block from the previous block's weights (a *warm start*) and trains a
few epochs; if its validation loss does not beat the warm-start weights, those are kept. The
scaler is re-fitted on each block's training rows (:func:`course_lib.data.windows.make_task` does it).
The frozen model is the first block's network and scaler, unchanged. So that "frozen" means one thing
across the course (:mod:`course_lib.evaluation.protocol`: trained to 2006, validated on 2007-2008 for a
2009 start), the first block validates on the :data:`FROZEN_VAL_YEARS` years before it, not one.

All blocks together cover the test split of :attr:`WalkForwardResult.task`, so the forecasts go
straight into :func:`course_lib.evaluation.results_table` and the Diebold-Mariano tests, one
protocol per table: the re-trained network beside the baselines of the evaluation's
``"walk_forward"`` protocol (re-estimated every 252 trading days, about once a block, on an
expanding window that ends at the block's first origin), the frozen network beside its
``"frozen"`` baselines (fitted once on the first block's training years).
"""

import copy
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import set_seed
from ..data.windows import SplitData, StandardScaler, Task, make_task
from ..training import Trainer
from .baselines import PROTOCOLS, return_baselines, volatility_baselines


def raw_windows(task: Task, split: str) -> np.ndarray:
    """Unscaled feature windows (N, L, C) of one split, rebuilt from ``task.frame`` (float64).

    This is what a deployed model receives: features as the pipeline computes them, before scaling.
    """
    s = task.split(split)
    values = task.frame[task.feature_names].to_numpy(np.float64)  # (T, C)
    steps = s.rows[:, None] + np.arange(-task.lookback + 1, 1)[None, :]  # (N, L) rows of each window
    return values[steps]


def scale_windows(windows: np.ndarray, scaler: StandardScaler) -> np.ndarray:
    """Apply a fitted scaler to (N, L, C) windows; float32 for the network."""
    return scaler.transform(windows).astype(np.float32)


FROZEN_VAL_YEARS = 2  # the first block (the frozen model) validates on two years, as every chapter does


def block_task(kind: str, prices: pd.DataFrame, year: int, val_years: int = 1, **task_kwargs) -> Task:
    """The task of one walk-forward block: train to Y-1-val_years, validate on the ``val_years`` years
    before Y, forecast the origins in Y."""
    if val_years < 1:
        raise ValueError(f"val_years must be >= 1, got {val_years}")
    task = make_task(
        kind,
        prices=prices,
        train_end=f"{year - 1 - val_years}-12-31",
        val_end=f"{year - 1}-12-31",
        **task_kwargs,
    )
    keep = np.asarray(task.test.dates.year == year)
    if not keep.any():
        raise ValueError(
            f"no forecast origins in {year}: the prices run from {task.frame.index[0].date()} "
            f"to {task.frame.index[-1].date()}"
        )
    t = task.test
    test = SplitData(X=t.X[keep], y=t.y[keep], dates=t.dates[keep], rows=t.rows[keep])
    return dataclasses.replace(task, test=test)


@dataclass
class WalkForwardResult:
    """Forecasts of every block, aligned with ``task.test`` (the union of the blocks' test years).

    ``predictions``: the network re-trained every block (``"walk_forward"``) and frozen (``"frozen"``).
    ``epochs[b]``: epochs whose weights block b kept (0: the warm start beat every new epoch).
    ``states[b]``: the network's weights used for block b's forecasts (CPU tensors).
    """

    task: Task
    years: list[int]
    block: np.ndarray  # (N,) test year of each forecast
    predictions: dict[str, np.ndarray]
    epochs: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    states: list[dict[str, torch.Tensor]] = field(default_factory=list)
    scalers: list[StandardScaler] = field(default_factory=list)

    def baselines(self, protocol: str) -> dict[str, np.ndarray]:
        """The standard baselines over the test years under ``"walk_forward"`` or ``"frozen"``."""
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        key = ("walkforward.baselines", protocol)
        if key not in self.task.cache:
            fn = return_baselines if self.task.kind == "returns" else volatility_baselines
            self.task.cache[key] = fn(self.task, "test", refit_every=252, protocol=protocol)
        return self.task.cache[key]

    def per_year(
        self, metric: Callable[[np.ndarray, np.ndarray], float], others: dict | None = None, horizon: int = 0
    ) -> pd.DataFrame:
        """``metric(y_true, y_pred)`` per test year for the network and ``others`` (aligned forecasts)."""
        y = self.task.test.y[:, horizon]
        predictions = self.predictions | (others or {})
        rows = {
            year: {
                name: metric(y[self.block == year], p[self.block == year, horizon])
                for name, p in predictions.items()
            }
            for year in self.years
        }
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis("year")


def walk_forward_task(kind: str, prices: pd.DataFrame, years: Sequence[int], **task_kwargs) -> Task:
    """The task whose test split is the union of the blocks' test years (:attr:`WalkForwardResult.task`):
    trained (for the frozen model and the ``"frozen"`` baselines) to the end of Y0 - 1 - FROZEN_VAL_YEARS."""
    years = [int(y) for y in years]
    if not years or years != list(range(years[0], years[0] + len(years))):
        raise ValueError(f"years must be consecutive, e.g. range(2009, 2019), got {years}")
    full = make_task(
        kind,
        prices=prices,
        train_end=f"{years[0] - 1 - FROZEN_VAL_YEARS}-12-31",
        val_end=f"{years[0] - 1}-12-31",
        **task_kwargs,
    )
    keep = np.asarray(full.test.dates.year <= years[-1])
    t = full.test
    return dataclasses.replace(
        full, test=SplitData(X=t.X[keep], y=t.y[keep], dates=t.dates[keep], rows=t.rows[keep])
    )


def walk_forward(
    kind: str,
    prices: pd.DataFrame,
    make_model: Callable[[], nn.Module],
    years: Sequence[int],
    *,
    epochs: int = 2,
    initial_epochs: int | None = None,
    patience: int = 1,
    lr: float = 3e-3,
    batch_size: int = 256,
    seed: int = 0,
    warm_start: bool = True,
    device: torch.device | str | None = "cpu",
    **task_kwargs,
) -> WalkForwardResult:
    """Walk-forward forecasts of a network, re-trained every year and frozen after the first.

    ``make_model()`` builds a fresh network (called once, or once per block without ``warm_start``).
    ``years``: consecutive test years, e.g. ``range(2009, 2019)``. ``task_kwargs`` go to
    :func:`course_lib.data.windows.make_task` (``lookback``, ``horizons``, ``features``). Every block
    trains at most ``epochs`` epochs with early stopping on the year before it; the first block (a
    fit from scratch, and the frozen model) at most ``initial_epochs`` (default: ``epochs``), with early
    stopping on the :data:`FROZEN_VAL_YEARS` years before it.
    """
    years = [int(y) for y in years]
    full = walk_forward_task(kind, prices, years, **task_kwargs)

    model, frozen, frozen_scaler = None, None, None
    result = WalkForwardResult(task=full, years=years, block=np.empty(0, dtype=int), predictions={})
    parts: dict[str, list[np.ndarray]] = {}
    blocks = []
    for b, year in enumerate(years):
        bt = block_task(kind, prices, year, FROZEN_VAL_YEARS if b == 0 else 1, **task_kwargs)
        if model is None or not warm_start:
            set_seed(seed + b)  # the initial weights do not depend on what ran before
            model = make_model()
        max_epochs = initial_epochs if b == 0 and initial_epochs is not None else epochs
        trainer = Trainer(
            model,
            lr=lr,
            batch_size=batch_size,
            max_epochs=max_epochs,
            patience=patience,
            seed=seed,
            device=device,
            progress=False,
        )
        before_loss = (
            trainer._evaluate(*_split_tensors(bt.val, trainer.device))[0] if b > 0 and warm_start else None
        )
        before_state = copy.deepcopy(model.state_dict())
        history = trainer.fit(bt.train.X, bt.train.y, bt.val.X, bt.val.y)
        best = min(history["val_loss"])
        # the new epochs did not help: keep the warm start
        if before_loss is not None and before_loss <= best:
            model.load_state_dict(before_state)
            result.epochs.append(0)
            result.val_loss.append(before_loss)
        else:
            result.epochs.append(trainer.best_epoch)
            result.val_loss.append(best)
        if frozen is None:
            frozen, frozen_scaler = copy.deepcopy(model), bt.scaler
        parts.setdefault("walk_forward", []).append(trainer.predict(bt.test.X))
        frozen_trainer = Trainer(frozen, device=device, progress=False)
        parts.setdefault("frozen", []).append(
            frozen_trainer.predict(scale_windows(raw_windows(bt, "test"), frozen_scaler))
        )
        result.states.append({k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
        result.scalers.append(bt.scaler)
        blocks.append(np.full(len(bt.test), year))
        if not np.array_equal(bt.test.rows, full.test.rows[np.asarray(full.test.dates.year == year)]):
            raise AssertionError(f"internal error: block {year} does not line up with the test split")
    result.block = np.concatenate(blocks)
    result.predictions = {name: np.concatenate(p).astype(np.float32) for name, p in parts.items()}
    return result


def _split_tensors(s: SplitData, device: torch.device) -> tuple[tuple[torch.Tensor], torch.Tensor]:
    return (torch.from_numpy(s.X).to(device),), torch.from_numpy(s.y).to(device)
