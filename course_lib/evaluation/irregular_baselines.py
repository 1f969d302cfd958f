"""Volatility baselines fed the same thinned data as the irregular-time networks (chapter 06c).

A network trained on :func:`course_lib.data.irregular.make_irregular` sees only the days kept by the
removal mask. Comparing it with baselines that read the complete series mixes two effects: "the model
ignores time" and "the model saw less data". The baselines here see exactly the kept days:

* ``har (ffill)`` and ``log_har (ffill)``: HAR and log-HAR of :func:`.baselines.volatility_baselines`
  on the target's variance proxy, forward-filled over removed days (the last observed value stands in
  for a lost one; a removed day never reads a later one);
* ``ewma (irregular)``: an exponentially weighted mean of the variance proxy in calendar time,
  :func:`irregular_ewma`, whose weight on the old level is ``exp(-rate * dt)`` for the real gap ``dt``
  since the previous kept day.

The targets are untouched (as for the networks), and every baseline gets the constant shift that
centres its errors on the training split (the networks learn the same through their bias).
"""

import dataclasses

import numpy as np

from ..data.features import horizon_log_vol
from ..data.irregular import IrregularTask, calendar_days
from ..data.windows import Task
from .baselines import HAR_WARMUP, volatility_baselines

__all__ = [
    "IRREGULAR_BASELINES",
    "RISKMETRICS_RATE",
    "forward_filled_task",
    "irregular_ewma",
    "thinned_volatility_baselines",
]

IRREGULAR_BASELINES = ("har (ffill)", "log_har (ffill)", "ewma (irregular)")
# RiskMetrics' 0.94 per trading day, spread over the calendar days a trading day spans on average
# (365.25 / 252): exp(-RISKMETRICS_RATE * 365.25 / 252) = 0.94.
RISKMETRICS_RATE = -np.log(0.94) * 252 / 365.25


def irregular_ewma(values: np.ndarray, times: np.ndarray, observed: np.ndarray, rate: float) -> np.ndarray:
    """Exponentially weighted mean in continuous time, carried over unobserved days.

    At an observed day k, with ``dt`` the time since the previous observed day,

        s_k = w s_prev + (1 - w) v_k,     w = exp(-rate * dt),

    and on an unobserved day the level is carried: s_k = s_prev. The first observation starts the
    level; days before it are NaN. With unit gaps and every day observed this is the usual EWMA with
    smoothing ``exp(-rate)`` (pandas ``ewm(alpha=1 - exp(-rate), adjust=False)``); a gap of ``dt``
    days discounts the old level as ``dt`` unit steps would. ``s_k`` uses values up to day k only.

    values, times, observed: (T,); ``times`` strictly increasing; values may be NaN where not observed.
    """
    values = np.asarray(values, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    observed = np.asarray(observed, dtype=bool)
    if not values.shape == times.shape == observed.shape or values.ndim != 1:
        raise ValueError(
            f"irregular_ewma: values, times and observed must be 1-d of one length, got shapes "
            f"{values.shape}, {times.shape}, {observed.shape}"
        )
    if rate <= 0:
        raise ValueError(f"irregular_ewma: rate must be > 0 (per unit of time), got {rate}")
    if np.any(np.diff(times) <= 0):
        raise ValueError("irregular_ewma: times must be strictly increasing")
    if np.any(~np.isfinite(values[observed])):
        raise ValueError("irregular_ewma: an observed value is NaN or infinite; mark it unobserved")
    out = np.full(len(values), np.nan)
    level, last_time = np.nan, None
    for k in range(len(values)):
        if observed[k]:
            if last_time is None:
                level = values[k]
            else:
                w = np.exp(-rate * (times[k] - last_time))
                level = w * level + (1 - w) * values[k]
            last_time = times[k]
        out[k] = level
    return out


def _shifted(task, full_series: np.ndarray, split: str) -> np.ndarray:
    """0.5 log of a per-day variance level read at each origin, centred on the training split."""
    log_vol = horizon_log_vol(full_series, 1)[:, None]  # (T, 1): the course's one aggregation, h = 1
    train = task.train.rows[np.isfinite(log_vol[task.train.rows, 0]) & (task.train.rows >= HAR_WARMUP)]
    shift = (task.train.y[np.isin(task.train.rows, train)] - log_vol[train]).mean(axis=0)  # (n_h,)
    return (log_vol[task.split(split).rows] + shift[None, :]).astype(np.float32)


def forward_filled_task(irregular: IrregularTask) -> Task:
    """A copy of ``irregular.task`` whose variance proxy is forward-filled over the removed days.

    Targets, splits and every other column are unchanged. Before the first kept day of the series there
    is nothing to fill forward with; those days (at the very start of the training years, before any
    origin a HAR can use) take the first kept value.
    """
    task = irregular.task
    proxy = task.frame[task.target_column]
    filled = proxy.where(irregular.observed).ffill().bfill()  # bfill: only days before the first kept one
    return dataclasses.replace(task, frame=task.frame.assign(**{task.target_column: filled}), cache={})


def thinned_volatility_baselines(
    irregular: IrregularTask, split: str = "test", rate: float = RISKMETRICS_RATE
) -> dict[str, np.ndarray]:
    """HAR and log-HAR on the forward-filled proxy and the calendar-time EWMA, over the kept days only.

    Returns ``{name: (N, n_h) float32}`` aligned with ``irregular.task.<split>.y``, names
    :data:`IRREGULAR_BASELINES`; ``split`` is ``"val"`` or ``"test"`` (the HAR has no forecast for the
    first training origins). ``rate``: the EWMA's decay per calendar day. The HARs read
    :func:`forward_filled_task`.
    """
    task = irregular.task
    if task.kind != "volatility":
        raise ValueError(f"thinned_volatility_baselines needs a volatility task, got {task.kind!r}")
    if len(task.horizons) != 1 or task.horizons[0] != 1:
        raise ValueError(
            f"the irregular EWMA forecasts one day ahead: use horizons=(1,), got {task.horizons}"
        )
    if split not in ("val", "test"):
        raise ValueError(f"thinned_volatility_baselines forecasts the 'val' or 'test' split, got {split!r}")
    har = volatility_baselines(forward_filled_task(irregular), split)
    proxy = task.frame[task.target_column].to_numpy()
    ewma = irregular_ewma(proxy, calendar_days(task.frame.index), irregular.observed, rate)
    return {
        "har (ffill)": har["har"],
        "log_har (ffill)": har["log_har"],
        "ewma (irregular)": _shifted(task, ewma, split),
    }
