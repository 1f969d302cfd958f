"""When to re-fit a deployed forecaster: a fixed calendar, or the evidence of its own errors.

A model re-fitted every year pays for a re-fit whether or not the market moved, and can wait eleven
months after a break. A *triggered* policy re-fits when a monitor says the model has gone wrong
(Gama et al. 2014, "A survey on concept drift adaptation": detect, then adapt). Two monitors, both
fed only the labels that have arrived (the label of origin t, an h-day target, is known on day t + h):

* ``"error"``: Page's CUSUM on the standardised log absolute error (:class:`.monitoring.ErrorMonitor`),
  its reference the last ``calibration`` residuals of the fit on its own rows (four coefficients on
  thousands of days: in-sample and out-of-sample errors hardly differ);
* ``"coverage"``: a split-conformal interval (:class:`course_lib.evaluation.conformal.ConformalPredictor`,
  chapter 06d) calibrated on the fit's last ``calibration`` residuals; it re-fits when the coverage of
  the last ``window`` arrived labels falls below ``1 - alpha - z sqrt(alpha (1 - alpha) / window)``,
  the binomial lower band at ``z`` = 2.33 (a one-sided 1% test if the misses were independent).

Policies are compared on matched terms: the same model class and the same data, the initial fit on the
same rows, and the number of re-fits reported beside the loss (a ``"periodic"`` policy with as many
re-fits as a triggered one is the fair calendar baseline: it separates *when* from *how often*).
A re-fit at day b uses only samples whose targets are known by b (``origin + h <= b``), and a trigger
waits ``min_gap`` days after a re-fit (the monitor needs labels of the new model before it can judge it).
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..data.windows import Task
from ..evaluation.baselines import HAR_WARMUP, log_har_design
from ..evaluation.conformal import ConformalPredictor, coverage
from .monitoring import ErrorMonitor, monitor_losses

POLICIES = ("never", "periodic", "error", "coverage")
COVERAGE_Z = 2.33  # one-sided 1% normal quantile: the binomial band of the coverage trigger


@dataclass
class PolicyResult:
    """Forecasts (N,) of the stream under one policy and the origins at which it re-fitted."""

    policy: str
    forecasts: np.ndarray
    refit_dates: list[pd.Timestamp] = field(default_factory=list)

    @property
    def refits(self) -> int:
        """Re-fits after the initial fit."""
        return len(self.refit_dates)


class LogHARFitter:
    """The direct log-HAR of :func:`course_lib.evaluation.baselines.log_har_forecasts`, re-fittable at any day.

    ``fit(day)`` estimates ``y_{t} = b0 + b1 lv1_t + b2 lv5_t + b3 lv22_t`` by least squares on the
    samples of ``task`` whose targets are known by frame row ``day`` (``row + max(h) <= day``) and
    returns the forecast function of origin rows and the in-sample residuals (the last ``tail``).
    Horizon ``horizon`` (an index into ``task.horizons``).
    """

    def __init__(self, task: Task, horizon: int = 0):
        if task.kind != "volatility":
            raise ValueError(f"log-HAR needs a volatility task, got {task.kind!r}")
        self.design, self.rows, ys = log_har_design(task)  # (T, 4), (N,), (N, n_h)
        self.y = ys[:, horizon]
        self.delay = max(task.horizons)
        self.usable = self.rows >= HAR_WARMUP - 1

    def fit(self, day: int) -> tuple[Callable[[np.ndarray], np.ndarray], np.ndarray]:
        known = self.usable & (self.rows + self.delay <= day)
        if known.sum() < 100:
            raise ValueError(f"fewer than 100 labelled samples before frame row {day}: nothing to fit on")
        X, y = self.design[self.rows[known]], self.y[known]  # (n, 4), (n,)
        beta, *_ = np.linalg.lstsq(X, y, rcond=None)
        return (lambda rows: self.design[rows] @ beta), y - X @ beta


def simulate_policy(
    policy: str,
    fitter: LogHARFitter,
    rows: np.ndarray,
    dates: pd.DatetimeIndex,
    y: np.ndarray,
    *,
    every: int = 252,
    min_gap: int = 63,
    slack: float = 0.5,
    threshold: float = 5.0,
    alpha: float = 0.1,
    window: int = 63,
    calibration: int = 252,
) -> PolicyResult:
    """Run one re-fitting policy day by day over a stream of consecutive origins.

    ``rows`` (N,): the origins' frame rows; ``dates``: their dates; ``y`` (N,): their targets, read only
    once they have arrived (``delay = fitter.delay`` days after the origin). ``policy``:

    * ``"never"``: the initial fit (on data known by the first origin) forever;
    * ``"periodic"``: re-fit every ``every`` origins (252: yearly);
    * ``"error"``: re-fit when the CUSUM of the standardised log absolute error of the arrived labels
      crosses ``threshold`` (:class:`.monitoring.ErrorMonitor`, reference: the fit's last
      ``calibration`` in-sample residuals);
    * ``"coverage"``: re-fit when the conformal ``1 - alpha`` interval's coverage over the last
      ``window`` arrived labels of the current fit drops below the binomial band (module docstring).

    Triggered policies wait ``min_gap`` origins after each re-fit before they may fire again.
    """
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    rows, y = np.asarray(rows), np.asarray(y, dtype=np.float64)
    if rows.ndim != 1 or len(rows) != len(y) or len(rows) != len(dates):
        raise ValueError(
            f"rows, dates and y must be 1-D of one length: {rows.shape}, {len(dates)}, {y.shape}"
        )
    if len(rows) > 1 and not (np.diff(rows) == 1).all():
        raise ValueError("rows must be consecutive frame rows (one origin per trading day)")
    if every < 1 or min_gap < 1 or window < 2:
        raise ValueError(f"every, min_gap must be >= 1 and window >= 2, got {every}, {min_gap}, {window}")
    delay, band = fitter.delay, 1.0 - alpha - COVERAGE_Z * np.sqrt(alpha * (1 - alpha) / window)
    out = np.empty(len(rows))
    result = PolicyResult(policy, out)
    start = 0  # index of the first origin forecast by the current fit

    def refit(i: int):
        forecast, residuals = fitter.fit(int(rows[i]))
        tail = residuals[-calibration:]  # (calibration,)
        monitor = ErrorMonitor(monitor_losses(tail, np.zeros_like(tail)), slack, threshold)
        conformal = ConformalPredictor(alpha).calibrate(tail, np.zeros_like(tail))
        return forecast, monitor, conformal

    forecast, monitor, conformal = refit(0)
    for i in range(len(rows)):
        due, j = False, i - delay  # j: the origin whose label arrives today
        if policy == "periodic":
            due = i > 0 and i % every == 0
        elif policy == "error" and j >= start:  # every label of the current fit enters the CUSUM
            due = monitor.update(monitor_losses(y[j : j + 1], out[j : j + 1])[0]) and i - start >= min_gap
        elif policy == "coverage" and j - window + 1 >= start and i - start >= min_gap:
            lower, upper = conformal.predict_interval(out[j - window + 1 : j + 1])
            due = coverage(y[j - window + 1 : j + 1], lower, upper) < band
        if due:
            forecast, monitor, conformal = refit(i)
            result.refit_dates.append(dates[i])
            start = i
        out[i] = forecast(rows[i : i + 1])[0]
    return result


def equal_budget_every(n_origins: int, refits: int) -> int:
    """The ``every`` of a periodic policy with ``refits`` evenly spaced re-fits over ``n_origins``."""
    if refits < 0 or n_origins < 1:
        raise ValueError(f"need refits >= 0 and n_origins >= 1, got {refits}, {n_origins}")
    return max(1, int(np.ceil(n_origins / (refits + 1))))
