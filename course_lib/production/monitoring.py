"""Monitoring a deployed forecaster: input drift per feature, and its error against the baseline.

**Drift.** The population stability index of a feature compares the share of recent values in each
of ``k`` bins with the share of training values there (bins at training quantiles, so each holds
``1/k`` of the training data):

    PSI = sum_i (a_i - e_i) log(a_i / e_i),      e_i = training share, a_i = recent share

PSI is 0 when nothing moved; by convention < 0.1 is stable, 0.1-0.25 a moderate shift and > 0.25
a major one (the default alert). Sampling noise alone gives about ``(k - 1) / n`` for ``n`` recent
values (0.14 for a quarter of days and 10 bins): short windows need fewer bins or a higher threshold. The two-sample Kolmogorov-Smirnov statistic (the largest gap
between the two empirical distribution functions, :func:`scipy.stats.ks_2samp`) is given beside it.

**Error.** A network is worth serving only while it beats the baseline it replaced. The rolling
ratio ``MSE(model) / MSE(baseline)`` over the last ``window`` forecasts (computed once their
targets are known) raises an alert above ``threshold`` (default 1.2: 20% worse than the baseline).

**Covariate drift and concept drift** (Gama et al. 2014, "A survey on concept drift adaptation", ACM
Computing Surveys 46(4)). A forecaster learns p(y | x) on data drawn from p(x). *Covariate drift* is a
change of p(x) alone: PSI sees it at once, since it needs no label, and a model that learnt p(y | x)
well may stay right. *Concept drift* is a change of p(y | x): the inputs may look familiar while the
model is wrong, and only the errors show it. The errors need the labels, and an h-day target made at
origin t is known only on day t + h: the **label delay**. An error monitor that reads a label before
that day would be clairvoyant, and one that honours the delay fires at least h days after the change.

:class:`ErrorMonitor` is Page's (1954) one-sided CUSUM ("Continuous inspection schemes",
Biometrika 41) on the losses standardised by their reference level (mean ``m`` and standard deviation
``s`` of the losses on data the model did not train on, e.g. its validation year):

    z_t = (L_t - m) / s,      S_t = max(0, S_{t-1} + z_t - k),      alarm when S_t > h

``k`` (the slack, 0.5: half a standard deviation) is half the shift it is tuned to detect, and ``h``
(5) sets the false-alarm rate: about one false alarm per 900 independent losses when ``z`` is standard
normal. The default loss is the log absolute error ``L_t = log|y_t - p_t|`` of the log volatility: a
model twice as wrong shifts it by log 2 at any volatility level, and its right tail is light (the
log of a half-normal), so Page's Gaussian rule keeps its false-alarm rate. The absolute error itself
has a long right tail that makes the same rule fire several times more often on a model that is
right. Daily errors are autocorrelated, so a real stream still alarms more often than the rule says.
:func:`delayed_error_monitor` feeds it each loss on the day its label arrives, never before.
"""

import numpy as np
import pandas as pd
from scipy import stats

ERROR_FLOOR = 1e-12  # log|e| of an exact forecast would be -inf

PSI_ALERT = 0.25
SHARE_FLOOR = 1e-4  # an empty bin would give log(0)


def _check_frame(frame: pd.DataFrame, features: list[str], name: str) -> np.ndarray:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{name} must be a DataFrame with one column per feature, not {type(frame).__name__}")
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks the features {missing}; it has {list(frame.columns)}")
    values = frame[features].to_numpy(np.float64)
    if len(values) == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(values).all():
        col = features[int(np.argwhere(~np.isfinite(values))[0, 1])]
        raise ValueError(f"{name} has NaN or infinite values (first in feature {col!r})")
    return values


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``actual`` against ``expected`` (1-D samples), quantile bins."""
    expected, actual = np.asarray(expected, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if expected.ndim != 1 or actual.ndim != 1 or len(expected) < bins or len(actual) == 0:
        raise ValueError(
            f"psi needs 1-D samples, at least {bins} expected values; got {expected.shape}, {actual.shape}"
        )
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)[1:-1]))
    e = np.bincount(np.searchsorted(edges, expected, side="right"), minlength=len(edges) + 1) / len(expected)
    a = np.bincount(np.searchsorted(edges, actual, side="right"), minlength=len(edges) + 1) / len(actual)
    e, a = np.maximum(e, SHARE_FLOOR), np.maximum(a, SHARE_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


class DriftMonitor:
    """Per-feature drift of recent inputs against the training distribution (PSI and KS)."""

    def __init__(
        self, reference: pd.DataFrame, features: list[str], bins: int = 10, threshold: float = PSI_ALERT
    ):
        self.features, self.bins, self.threshold = list(features), bins, threshold
        self.reference = _check_frame(reference, self.features, "reference")

    def drift(self, current: pd.DataFrame) -> pd.DataFrame:
        """One row per feature: PSI, KS statistic and p-value, and whether PSI crosses the threshold."""
        values = _check_frame(current, self.features, "current")
        rows = []
        for j, name in enumerate(self.features):
            ks = stats.ks_2samp(self.reference[:, j], values[:, j])
            rows.append(
                {
                    "feature": name,
                    "PSI": psi(self.reference[:, j], values[:, j], self.bins),
                    "KS": ks.statistic,
                    "KS_p": ks.pvalue,
                }
            )
        table = pd.DataFrame(rows).set_index("feature")
        table["alert"] = table["PSI"] > self.threshold
        return table

    def rolling(self, data: pd.DataFrame, window: int = 63, step: int = 5) -> pd.DataFrame:
        """PSI of each feature over the trailing ``window`` days, every ``step`` days (index: last day)."""
        values = _check_frame(data, self.features, "data")
        if not 2 <= window <= len(values):
            raise ValueError(f"window must be in [2, {len(values)}] (the rows of data), got {window}")
        ends = np.arange(window - 1, len(values), step)
        out = [
            [
                psi(self.reference[:, j], values[e - window + 1 : e + 1, j], self.bins)
                for j in range(len(self.features))
            ]
            for e in ends
        ]
        return pd.DataFrame(out, index=data.index[ends], columns=self.features)


def rolling_error(
    y: np.ndarray,
    model: np.ndarray,
    baseline: np.ndarray,
    dates: pd.DatetimeIndex,
    window: int = 63,
    threshold: float = 1.2,
) -> pd.DataFrame:
    """Rolling MSE of the model and of the baseline over ``window`` forecasts, their ratio and an alert.

    Inputs are 1-D, aligned on ``dates`` (the forecast origins). The first ``window - 1`` rows have
    no full window and are dropped.
    """
    y, model, baseline = (np.asarray(a, dtype=np.float64) for a in (y, model, baseline))
    if not (y.ndim == model.ndim == baseline.ndim == 1) or not (
        len(y) == len(model) == len(baseline) == len(dates)
    ):
        raise ValueError(
            f"y, model, baseline and dates must be 1-D of one length, got {y.shape}, {model.shape}, "
            f"{baseline.shape}, {len(dates)}"
        )
    if not 2 <= window <= len(y):
        raise ValueError(f"window must be in [2, {len(y)}], got {window}")
    frame = pd.DataFrame({"model": (y - model) ** 2, "baseline": (y - baseline) ** 2}, index=dates)
    mse = frame.rolling(window).mean().iloc[window - 1 :]
    mse["ratio"] = mse["model"] / mse["baseline"]
    mse["alert"] = mse["ratio"] > threshold
    return mse


def monitor_losses(y, pred) -> np.ndarray:
    """The error monitor's loss of each forecast: ``log|y - p|`` (floored at log 1e-12), shape of ``y``."""
    y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    if y.shape != pred.shape:
        raise ValueError(f"y and pred must have one shape, got {y.shape} and {pred.shape}")
    if not (np.isfinite(y).all() and np.isfinite(pred).all()):
        raise ValueError("y and pred must be finite (found NaN or inf)")
    return np.log(np.maximum(np.abs(y - pred), ERROR_FLOOR))


class ErrorMonitor:
    """Page's one-sided CUSUM on standardised losses: an alarm when the error rises above its reference.

    ``reference``: losses of the model on data it did not train on (its validation year), which fix
    the in-control mean ``m`` and standard deviation ``s``. Each :meth:`update` adds one loss:
    ``S_t = max(0, S_{t-1} + (L_t - m) / s - slack)``; the alarm is ``S_t > threshold``.
    """

    def __init__(self, reference, slack: float = 0.5, threshold: float = 5.0):
        reference = np.asarray(reference, dtype=np.float64)
        if reference.ndim != 1 or len(reference) < 2 or not np.isfinite(reference).all():
            raise ValueError(
                f"reference must be a 1-D array of at least 2 finite losses, got shape {reference.shape}"
            )
        if not slack >= 0 or not threshold > 0:
            raise ValueError(f"slack must be >= 0 and threshold > 0, got {slack} and {threshold}")
        self.mean, self.std = float(reference.mean()), float(reference.std(ddof=1))
        if not self.std > 0:
            raise ValueError("the reference losses are all equal: no scale to standardise by")
        self.slack, self.threshold, self.statistic = slack, threshold, 0.0

    def update(self, loss: float) -> bool:
        """Add one loss; return whether the CUSUM is above the threshold."""
        if not np.isfinite(loss):
            raise ValueError(f"loss must be finite, got {loss}")
        self.statistic = max(0.0, self.statistic + (loss - self.mean) / self.std - self.slack)
        return self.statistic > self.threshold

    def reset(self) -> None:
        """Start again from zero (after a re-fit, or after the alarm was handled)."""
        self.statistic = 0.0


def delayed_error_monitor(
    y,
    pred,
    dates: pd.DatetimeIndex,
    delay: int,
    reference,
    slack: float = 0.5,
    threshold: float = 5.0,
) -> pd.DataFrame:
    """The error monitor run day by day on a stream whose labels arrive ``delay`` days after the origin.

    ``y``, ``pred``: (N,) targets and forecasts of consecutive trading days ``dates`` (the origins);
    ``delay``: the label delay in trading days (the horizon h: the target of origin i is known on day
    i + h). On day i the monitor adds the loss of origin i - delay, the one label that arrived that day,
    and nothing later. The loss is the log absolute error (:func:`monitor_losses`); ``reference``: the
    same losses on data the model did not train on, which fix the in-control level (see
    :class:`ErrorMonitor`).

    Returns one row per day: ``labels`` (how many labels have arrived), ``origin`` (the origin whose
    label arrived that day, NaT before the first), ``cusum`` and ``alarm``. The CUSUM restarts from
    zero after each alarm, so every alarm marks a new excursion.
    """
    y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    if y.ndim != 1 or y.shape != pred.shape or len(y) != len(dates):
        raise ValueError(
            f"y, pred and dates must be 1-D of one length, got {y.shape}, {pred.shape}, {len(dates)}"
        )
    if not isinstance(delay, int | np.integer) or delay < 1:
        raise ValueError(f"delay must be a positive number of days (the horizon), got {delay!r}")
    monitor = ErrorMonitor(reference, slack, threshold)
    known = max(len(y) - delay, 0)  # the labels of the last `delay` origins arrive after the stream ends
    losses = (
        monitor_losses(y[:known], pred[:known]) if known else np.empty(0)
    )  # origin i: known on day i + delay
    cusum, alarm = np.zeros(len(y)), np.zeros(len(y), dtype=bool)
    for i in range(delay, len(y)):
        alarm[i] = monitor.update(losses[i - delay])
        cusum[i] = monitor.statistic
        if alarm[i]:
            monitor.reset()
    origins = pd.DatetimeIndex([pd.NaT] * min(delay, len(y))).append(dates[: max(len(y) - delay, 0)])
    return pd.DataFrame(
        {
            "labels": np.clip(np.arange(len(y)) - delay + 1, 0, None),
            "origin": origins,
            "cusum": cusum,
            "alarm": alarm,
        },
        index=dates,
    )
