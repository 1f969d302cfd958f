"""A design that finance papers use to measure the effect of an event: the market-model event study
(Fama, Fisher, Jensen & Roll 1969; MacKinlay 1997, Journal of Economic Literature 35:13-39).

On an estimation window before the event, fit r_t = alpha + beta m_t + e_t (asset return r, market
return m). In the event window, the abnormal return AR_t = r_t - alpha - beta m_t is the part the
market does not explain, and CAR = sum AR_t its cumulation. Under the null of no effect, with
independent errors of variance sigma^2, CAR ~ N(0, L sigma^2) for a window of L days. Assumptions: the
event date is known and was not anticipated before the window; nothing else asset-specific happened in
the window; the market model is stable from the estimation window to the event; the event did not
move the market itself. The placebo CARs (every window of L days inside the estimation window) give
an empirical null that does not assume normal errors.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["EventStudy", "event_study"]


@dataclass
class EventStudy:
    """``abnormal``: AR by event day (0 = the event); ``car``, its ``se`` and ``t``, the normal ``p``,
    the ``placebo_p`` (share of placebo |CAR| >= |CAR|), ``alpha``, ``beta``, ``sigma`` of the market model."""

    abnormal: pd.Series
    car: float
    se: float
    t: float
    p: float
    placebo_p: float
    alpha: float
    beta: float
    sigma: float


def event_study(
    returns: pd.Series,
    market: pd.Series,
    event_date,
    estimation: tuple[int, int] = (-260, -11),
    window: tuple[int, int] = (-1, 1),
) -> EventStudy:
    """Market-model event study of ``returns`` around ``event_date`` (the first trading day on or after
    it); ``estimation`` and ``window`` are day offsets from the event, inclusive."""
    if not estimation[0] < estimation[1] < window[0] <= window[1]:
        raise ValueError(
            f"the estimation window {estimation} must end before the event window {window} starts"
        )
    both = pd.concat({"r": returns, "m": market}, axis=1, join="inner").dropna()
    position = int(both.index.searchsorted(pd.Timestamp(event_date)))
    if position + estimation[0] < 0 or position + window[1] >= len(both):
        raise ValueError(
            f"not enough data around {event_date}: need {-estimation[0]} days before and {window[1]} after"
        )
    est = both.iloc[position + estimation[0] : position + estimation[1] + 1]
    beta, alpha = np.polyfit(est["m"], est["r"], 1)
    resid = est["r"] - alpha - beta * est["m"]
    sigma = float(resid.std(ddof=2))
    ev = both.iloc[position + window[0] : position + window[1] + 1]
    abnormal = pd.Series(
        (ev["r"] - alpha - beta * ev["m"]).to_numpy(),
        index=pd.RangeIndex(window[0], window[1] + 1, name="day"),
    )
    length = len(abnormal)
    car, se = float(abnormal.sum()), sigma * np.sqrt(length)
    placebo = resid.rolling(length).sum().dropna().to_numpy()
    return EventStudy(
        abnormal=abnormal,
        car=car,
        se=se,
        t=car / se,
        p=float(2 * stats.norm.sf(abs(car / se))),
        placebo_p=float((np.abs(placebo) >= abs(car)).mean()),
        alpha=float(alpha),
        beta=float(beta),
        sigma=sigma,
    )
