"""Designs that finance papers use to measure the effect of an event.

**Event study** (:func:`event_study`): the market model (Fama, Fisher, Jensen & Roll 1969; MacKinlay
1997, Journal of Economic Literature 35:13-39).

On an estimation window before the event, fit r_t = alpha + beta m_t + e_t (asset return r, market
return m). In the event window, the abnormal return AR_t = r_t - alpha - beta m_t is the part the
market does not explain, and CAR = sum AR_t its cumulation. Under the null of no effect, with
independent errors of variance sigma^2, CAR ~ N(0, L sigma^2) for a window of L days. Assumptions: the
event date is known and was not anticipated before the window; nothing else asset-specific happened in
the window; the market model is stable from the estimation window to the event; the event did not
move the market itself. The placebo CARs (every window of L days inside the estimation window) give
an empirical null that does not assume normal errors.

**Difference-in-differences** (:func:`difference_in_differences`): a panel y_it of units i (some
treated from a date on, the others never) and periods t, and the two-way fixed effects regression

    y_it = a_i + l_t + tau D_it + e_it,     D_it = 1{i treated and t >= the event}

whose tau, with one treatment date, is the difference of the treated-minus-control change in means:
tau = (ybar_T,post - ybar_T,pre) - (ybar_C,post - ybar_C,pre). Identification: *parallel trends*
(without the event, treated and controls would have moved in parallel) and no anticipation. The
standard error clusters by unit (valid with many units) or is Driscoll & Kraay's (1998, Review of
Economics and Statistics 80:549-560) HAC over time of the cross-sectional sums of the scores (valid with
few units and many periods, robust to common shocks and serial correlation): with one treated unit,
unit clusters cannot estimate the variance (Conley & Taber 2011).

**Synthetic control** (:func:`synthetic_control`; Abadie, Diamond & Hainmueller 2010, JASA
105:493-505): one treated unit, J untreated donors, pre-event periods 1..T0. The weights

    w* = argmin_w  sum_{t <= T0} (y_1t - sum_j w_j y_jt)^2     s.t.  w_j >= 0, sum_j w_j = 1

(here on the pre-event outcomes only; the paper also matches covariates through a matrix V) build a
synthetic treated unit, and the effect at t > T0 is the gap y_1t - sum_j w*_j y_jt. Inference is by
placebos in space: each donor in turn is treated as if it were the treated unit (its synthetic built
from the other donors), and the treated unit's ratio of post- to pre-event root mean squared gap
(RMSPE) is ranked among all J + 1 ratios: p = rank / (J + 1), so with J donors no p-value can be
below 1 / (J + 1). Identification: the treated unit's untreated path is the weighted donors' path
(a factor model the weights reproduce), the donors are unaffected by the event, and the pre-event fit
is good (a large pre-event RMSPE voids the comparison).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats

__all__ = [
    "DifferenceInDifferences",
    "EventStudy",
    "SyntheticControl",
    "difference_in_differences",
    "event_study",
    "synthetic_control",
    "synthetic_weights",
]


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


def _wide_panel(panel: pd.DataFrame, units: Sequence[str], event_date) -> tuple[pd.DataFrame, int]:
    """Check a wide panel (periods x units) and return it with the position of the first post period."""
    if not isinstance(panel, pd.DataFrame) or panel.shape[1] < 2:
        raise ValueError("panel must be a DataFrame with one column per unit (at least two units)")
    missing = [u for u in units if u not in panel.columns]
    if missing:
        raise ValueError(f"units {missing} are not columns of the panel; columns: {list(panel.columns)}")
    if panel.isna().any().any():
        bad = panel.columns[panel.isna().any()].tolist()
        raise ValueError(f"the panel has missing values in {bad}: use a balanced panel (dropna first)")
    if not panel.index.is_monotonic_increasing:
        raise ValueError("the panel's index (the periods) must be sorted in time")
    start = int(
        panel.index.searchsorted(pd.Timestamp(event_date) if isinstance(event_date, str) else event_date)
    )
    if not 2 <= start <= len(panel) - 1:
        raise ValueError(
            f"the event {event_date} must leave at least two periods before it and one after it in the panel "
            f"({panel.index[0]} to {panel.index[-1]})"
        )
    return panel, start


@dataclass
class DifferenceInDifferences:
    """The two-way fixed effects estimate ``effect`` (tau) with its ``se``, ``t``, ``p``, 95% ``ci``; the
    covariance used (``cov``) and the panel's size."""

    effect: float
    se: float
    t: float
    p: float
    ci: tuple[float, float]
    cov: str
    n_units: int
    n_treated: int
    n_periods: int
    n_pre: int


def difference_in_differences(
    panel: pd.DataFrame,
    treated: Sequence[str],
    event_date,
    cov: str = "cluster",
    maxlags: int | None = None,
) -> DifferenceInDifferences:
    """Two-way fixed effects difference-in-differences on a balanced wide ``panel`` (periods x units).

    ``treated``: the columns treated from ``event_date`` on (the first period on or after it); the other
    columns are controls. ``cov``: ``"cluster"`` (by unit) or ``"driscoll-kraay"`` (HAC over time with
    ``maxlags`` lags, default floor(4 (T / 100)^(2/9)), the Newey-West rule).
    """
    import statsmodels.api as sm  # imported here, as in the estimators: the models need no statsmodels

    if isinstance(treated, str):
        treated = [treated]
    panel, start = _wide_panel(panel, list(treated), event_date)
    if len(treated) == 0 or len(treated) >= panel.shape[1]:
        raise ValueError("need at least one treated unit and at least one control unit")
    if cov not in ("cluster", "driscoll-kraay"):
        raise ValueError(f"cov must be 'cluster' or 'driscoll-kraay', got {cov!r}")
    n_t, n_u = panel.shape
    is_treated = np.isin(panel.columns, list(treated))  # (N,)
    D = np.outer(np.arange(n_t) >= start, is_treated).astype(float)  # (T, N): D_it

    def within(a: np.ndarray) -> np.ndarray:  # (T, N) -> (T * N,): y_it - ybar_i - ybar_t + ybar
        return (a - a.mean(axis=0) - a.mean(axis=1, keepdims=True) + a.mean()).ravel()

    # Frisch-Waugh-Lovell: in a balanced panel, regressing the two-way demeaned y on the demeaned D gives
    # the TWFE tau and the same residuals, so the same clustered / HAC scores; the variance is rescaled
    # by (n - 1) / (n - K) to count the N + T parameters of the full regression, as statsmodels would.
    y_w, d_w = within(panel.to_numpy(dtype=float)), within(D)
    period, unit = np.repeat(np.arange(n_t), n_u), np.tile(np.arange(n_u), n_t)
    if cov == "cluster":
        fit = sm.OLS(y_w, d_w[:, None]).fit(cov_type="cluster", cov_kwds={"groups": unit})
    else:
        lags = int(np.floor(4 * (n_t / 100) ** (2 / 9))) if maxlags is None else int(maxlags)
        fit = sm.OLS(y_w, d_w[:, None]).fit(
            cov_type="hac-groupsum", cov_kwds={"time": period, "maxlags": lags}
        )
    n_obs = n_t * n_u
    scale = np.sqrt((n_obs - 1) / (n_obs - n_u - n_t))
    effect, se = float(fit.params[0]), float(fit.bse[0]) * scale
    z = stats.norm.ppf(0.975)
    return DifferenceInDifferences(
        effect=effect,
        se=se,
        t=effect / se,
        p=float(2 * stats.norm.sf(abs(effect / se))),
        ci=(effect - z * se, effect + z * se),
        cov=cov,
        n_units=n_u,
        n_treated=len(treated),
        n_periods=n_t,
        n_pre=start,
    )


def synthetic_weights(treated_pre, donors_pre) -> np.ndarray:
    """Simplex weights w (J,) minimising ||y - D w||^2 over the pre-event periods (sequential quadratic
    programming from equal weights). ``treated_pre`` (T0,), ``donors_pre`` (T0, J)."""
    y = np.asarray(treated_pre, dtype=float)
    D = np.asarray(donors_pre, dtype=float)
    if D.ndim != 2 or y.ndim != 1 or len(y) != len(D):
        raise ValueError(f"need treated_pre (T0,) and donors_pre (T0, J), got {y.shape} and {D.shape}")
    J = D.shape[1]
    res = optimize.minimize(
        lambda w: np.sum((y - D @ w) ** 2),
        np.full(J, 1.0 / J),
        jac=lambda w: -2.0 * D.T @ (y - D @ w),
        bounds=[(0.0, 1.0)] * J,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones(J)}],
        method="SLSQP",
        options={"ftol": 1e-12, "maxiter": 500},
    )
    w = np.clip(res.x, 0.0, None)
    return w / w.sum()


@dataclass
class SyntheticControl:
    """``weights`` by donor; ``synthetic`` and ``gap`` (treated minus synthetic) over all periods;
    ``effect``, the mean post-event gap; ``pre_rmspe``, ``post_rmspe`` and their ``ratio``; the
    ``placebos`` table (one row per unit, the treated one first), every unit's gap series
    (``placebo_gaps``, periods x units) and the placebo-in-space ``p``."""

    weights: pd.Series
    synthetic: pd.Series
    gap: pd.Series
    effect: float
    pre_rmspe: float
    post_rmspe: float
    ratio: float
    placebos: pd.DataFrame
    placebo_gaps: pd.DataFrame
    p: float


def _fit_synthetic(panel: pd.DataFrame, unit, donors: list, start: int) -> dict:
    w = synthetic_weights(panel[unit].to_numpy()[:start], panel[donors].to_numpy()[:start])
    synthetic = panel[donors].to_numpy() @ w
    gap = panel[unit].to_numpy() - synthetic
    pre, post = np.sqrt(np.mean(gap[:start] ** 2)), np.sqrt(np.mean(gap[start:] ** 2))
    return {
        "w": w,
        "synthetic": synthetic,
        "gap": gap,
        "pre": pre,
        "post": post,
        "effect": gap[start:].mean(),
    }


def synthetic_control(panel: pd.DataFrame, treated: str, event_date) -> SyntheticControl:
    """Synthetic control of column ``treated`` of a balanced wide ``panel`` (periods x units) from all
    the other columns (the donors), with placebos in space; see the module docstring."""
    panel, start = _wide_panel(panel, [treated], event_date)
    donors = [c for c in panel.columns if c != treated]
    if len(donors) < 2:
        raise ValueError("synthetic control needs at least two donors (a placebo needs one donor left over)")
    main = _fit_synthetic(panel, treated, donors, start)
    rows = {treated: main}
    for d in donors:
        rows[d] = _fit_synthetic(panel, d, [c for c in donors if c != d], start)
    placebos = pd.DataFrame(
        {
            u: {
                "pre_rmspe": r["pre"],
                "post_rmspe": r["post"],
                "ratio": r["post"] / r["pre"],
                "effect": r["effect"],
            }
            for u, r in rows.items()
        }
    ).T
    ratio = float(placebos.loc[treated, "ratio"])
    return SyntheticControl(
        weights=pd.Series(main["w"], index=donors, name="weight"),
        synthetic=pd.Series(main["synthetic"], index=panel.index, name="synthetic"),
        gap=pd.Series(main["gap"], index=panel.index, name="gap"),
        effect=float(main["effect"]),
        pre_rmspe=float(main["pre"]),
        post_rmspe=float(main["post"]),
        ratio=ratio,
        placebos=placebos,
        placebo_gaps=pd.DataFrame({u: r["gap"] for u, r in rows.items()}, index=panel.index),
        p=float((placebos["ratio"] >= ratio).mean()),
    )
