"""Irregularly sampled windows from real daily series: real time, missing observations, one check.

Daily market data is already irregular: a trading day follows the previous one after 1 calendar
day, a Monday after 3, the day after a holiday weekend after 4. Lost records (a feed that drops a
day, a stock that does not trade) make it more so. This module turns a regular
:class:`course_lib.data.windows.Task` into an irregular one:

* ``times``: the calendar time of each slot of a window, in days, relative to the forecast origin
  (the origin is 0, earlier slots are negative), so weekends and holidays are real gaps;
* ``mask``: 1 where the day was observed, 0 where its record was removed, either at random or in
  bursts (a two-state Markov chain, see :func:`removal_mask`);
* ``values``: the task's scaled features with NaN at the removed days.

A window covers the ``lookback`` trading days up to and including its origin, so a model sees only
observation times (and values) up to the forecast origin; the targets are untouched (the truth).
The removal is drawn once per day of the series, so a lost day is lost in every window holding it.

Convention shared by every continuous-time model of :mod:`course_lib.models.continuous`:
``values`` (B, L, C) may hold NaN only where ``mask`` (B, L) is 0; ``times`` (B, L) or (L,) must
be strictly increasing along each window. ``course_lib.models.continuous.check_irregular`` enforces it,
and ``course_lib.models.continuous.gap_features`` turns such a window into inputs for a discrete RNN.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._moved import moved_names
from .windows import SPLITS, Task

__all__ = [
    "IrregularSplit",
    "IrregularTask",
    "calendar_days",
    "make_irregular",
    "removal_mask",
]


def calendar_days(dates: pd.DatetimeIndex) -> np.ndarray:
    """Days elapsed since the first date (float64): trading-day gaps measured in real time."""
    dates = pd.DatetimeIndex(dates)
    if len(dates) == 0:
        raise ValueError("calendar_days got no dates")
    if not dates.is_monotonic_increasing or dates.has_duplicates:
        raise ValueError("dates must be strictly increasing (sorted, no duplicates)")
    return ((dates - dates[0]) / pd.Timedelta(days=1)).to_numpy(dtype=np.float64)


def removal_mask(
    n: int, rate: float, kind: str = "random", mean_burst: float = 5.0, seed: int = 0
) -> np.ndarray:
    """Boolean (n,) mask of kept days: True = observed, with a share ``rate`` of days removed.

    * ``"random"``: each day is removed independently with probability ``rate``.
    * ``"bursty"``: a two-state Markov chain (Gilbert-Elliott). From "observed" a gap starts with
      probability ``p``; a gap continues with probability ``q = 1 - 1/mean_burst``, so gaps last
      ``mean_burst`` days on average, and ``p = rate (1 - q) / (1 - rate)`` makes ``rate`` the
      stationary share of removed days.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"rate must lie in [0, 1), got {rate}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.random(n) >= rate
    if kind != "bursty":
        raise ValueError(f"unknown removal kind {kind!r}; choose 'random' or 'bursty'")
    if mean_burst < 1.0:
        raise ValueError(f"mean_burst must be >= 1 day, got {mean_burst}")
    q = 1.0 - 1.0 / mean_burst
    p = rate * (1.0 - q) / (1.0 - rate)
    if p > 1.0:
        raise ValueError(f"rate {rate} is unreachable with mean_burst {mean_burst}: use longer bursts")
    u = rng.random(n)
    missing = np.empty(n, dtype=bool)
    missing[0] = u[0] < rate  # start in the stationary distribution
    for i in range(1, n):
        missing[i] = u[i] < (q if missing[i - 1] else p)
    return ~missing


@dataclass
class IrregularSplit:
    """One split of an irregular task: values with NaN where removed, times, mask, targets."""

    values: np.ndarray  # (N, L, C) float32, scaled, NaN where mask == 0
    times: np.ndarray  # (N, L) float32, calendar days relative to the origin (origin = 0)
    mask: np.ndarray  # (N, L) float32, 1 = observed
    y: np.ndarray  # (N, n_h) float32, the task's targets, unchanged
    dates: pd.DatetimeIndex  # (N,) forecast origins

    def __len__(self) -> int:
        return len(self.y)

    def inputs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(values, times, mask)``: what a continuous-time model is called with."""
        return self.values, self.times, self.mask


@dataclass
class IrregularTask:
    task: Task
    rate: float
    kind: str
    observed: np.ndarray  # (T,) bool over the days of task.frame
    train: IrregularSplit
    val: IrregularSplit
    test: IrregularSplit

    def split(self, name: str) -> IrregularSplit:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; choose from {SPLITS}")
        return getattr(self, name)


def make_irregular(
    task: Task, rate: float, kind: str = "random", mean_burst: float = 5.0, seed: int = 0
) -> IrregularTask:
    """Remove a share ``rate`` of the days of ``task`` and give every window its real times.

    Slot k of the window with origin row t is day t - L + 1 + k; its time is the calendar distance
    to the origin, in days. Nothing after the origin enters a window. The origin day itself can be
    removed: the model then forecasts from its last observation, and knows how long ago that was.
    """
    days = calendar_days(task.frame.index)
    observed = removal_mask(len(days), rate, kind, mean_burst, seed)
    L = task.lookback
    splits = {}
    for name in SPLITS:
        s = task.split(name)
        rows = s.rows[:, None] - L + 1 + np.arange(L)[None, :]  # (N, L) day of each slot
        mask = observed[rows]
        values = np.where(mask[..., None], s.X, np.nan).astype(np.float32)
        times = (days[rows] - days[s.rows][:, None]).astype(np.float32)
        splits[name] = IrregularSplit(values, times, mask.astype(np.float32), s.y, s.dates)
    return IrregularTask(task=task, rate=rate, kind=kind, observed=observed, **splits)


# The input checks and encodings of irregular windows belong to the models that read them (the data
# layer does not import models); the old names work for one release.
__getattr__ = moved_names(
    __name__,
    {
        "check_irregular": "course_lib.models.continuous",
        "forward_fill": "course_lib.models.continuous",
        "gap_features": "course_lib.models.continuous",
    },
)
