# %% [markdown]
# # Graded exercises, chapter 06b: time-series foundation models
#
# Six exercises from chapter 06b (13 points): four about the pieces of a probabilistic foundation model
# (its Student-t likelihood, non-crossing quantiles, the robust scaler and the lag mask of Lag-Llama),
# then a small experiment that scores two probabilistic forecasts (Exercise 5) and its interpretation
# (Exercise 6). Nothing is trained. Write your answer where you see `...`, then run the `grader.check(...)` cell below it: it
# runs the *public* tests. Your notebook is graded with further hidden tests. Keep the names of the
# answer functions and variables.

# %% [raw]
# # ASSIGNMENT CONFIG
# name: 06b_foundation_models
# init_cell: true
# check_all_cell: false
# export_cell: false
# generate: true

# %%
import math

import numpy as np
import torch
from scipy import stats

from course_lib.testing import matches

torch.set_num_threads(1)

# Exercise 5's data: a log-volatility series y_t = m + phi (y_{t-1} - m) + s_t eps_t whose shocks grow
# from s_t = 0.2 to 0.45 on day TRAIN_END (a calm period, then a turbulent one). The one-day forecast
# mean is known: FORECAST_MEAN[t] = m + phi (y_t - m) forecasts y_{t+1}; ERRORS[t] = y_t - FORECAST_MEAN[t-1].
_rng = np.random.default_rng(6)
N_DAYS, TRAIN_END, M, PHI = 1600, 1000, 0.3, 0.9
_shock = np.where(np.arange(N_DAYS) < TRAIN_END, 0.2, 0.45)
y = np.empty(N_DAYS)
y[0] = M
for _t in range(1, N_DAYS):
    y[_t] = M + PHI * (y[_t - 1] - M) + _shock[_t] * _rng.standard_normal()
FORECAST_MEAN = M + PHI * (y - M)  # (N_DAYS,): entry t forecasts y[t + 1]
ERRORS = np.full(N_DAYS, np.nan)
ERRORS[1:] = (
    y[1:] - FORECAST_MEAN[:-1]
)  # entry t: the error of the forecast of y[t], known at the end of day t

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 3

# %% [markdown]
# ### Exercise 1 (3 points): the Student-t negative log-likelihood
# Write `t_nll(y, loc, scale, df)` for tensors of one shape: the **mean** over entries of
# $-\log p(y)$ under a Student-t with location `loc`, scale `scale` and `df` degrees of freedom,
# $$p(y) = \frac{\Gamma(\frac{\nu+1}{2})}{\Gamma(\frac{\nu}{2})\sqrt{\nu\pi}\,s}\Big(1 + \frac{z^2}{\nu}\Big)^{-\frac{\nu+1}{2}},
# \qquad z = \frac{y - \mu}{s}.$$
# Use `torch.lgamma`; do not call `torch.distributions`.

# %% [raw]
# # BEGIN SOLUTION


# %%
def t_nll(y, loc, scale, df):
    z = (y - loc) / scale  # SOLUTION
    log_p = (  # SOLUTION
        torch.lgamma((df + 1) / 2)  # SOLUTION
        - torch.lgamma(df / 2)  # SOLUTION
        - 0.5 * torch.log(df * math.pi)  # SOLUTION
        - torch.log(scale)  # SOLUTION
        - (df + 1) / 2 * torch.log1p(z**2 / df)  # SOLUTION
    )  # SOLUTION
    return -log_p.mean()  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
_one = torch.tensor([0.0], dtype=torch.float64)
assert abs(float(t_nll(_one, _one, _one + 1, _one + 3)) - 1.0009) < 1e-3, (
    "at y = loc, scale 1, df 3: -log p = 1.0009"
)

# %%
# HIDDEN
_g = torch.Generator().manual_seed(3)
_y, _m = (
    torch.randn(40, generator=_g, dtype=torch.float64),
    torch.randn(40, generator=_g, dtype=torch.float64),
)
_s = 0.2 + 2 * torch.rand(40, generator=_g, dtype=torch.float64)
_d = 2.5 + 20 * torch.rand(40, generator=_g, dtype=torch.float64)
_ref = -torch.distributions.StudentT(_d, _m, _s).log_prob(_y).mean()
assert matches(t_nll(_y, _m, _s, _d), _ref, atol=1e-10, what="the loss"), (
    "does not match the Student-t log density"
)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 2

# %% [markdown]
# ### Exercise 2 (2 points): quantiles that never cross
# A quantile head outputs Q raw numbers per forecast. Write `monotone_quantiles(raw)` for a tensor
# `(..., Q)`: the first quantile is `raw[..., 0]`, and each next one adds `softplus` of the next raw
# value, so the quantiles are non-decreasing whatever the network outputs.

# %% [raw]
# # BEGIN SOLUTION


# %%
def monotone_quantiles(raw):
    steps = torch.cat([raw[..., :1], torch.nn.functional.softplus(raw[..., 1:])], dim=-1)  # SOLUTION
    return steps.cumsum(-1)  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
_q = monotone_quantiles(torch.tensor([[0.0, -3.0, 2.0, -1.0]]))
assert _q.shape == (1, 4) and (_q.diff(dim=-1) > 0).all(), "the quantiles must increase"

# %%
# HIDDEN
_raw = 5 * torch.randn(6, 3, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
_q = monotone_quantiles(_raw)
assert _q.shape == _raw.shape and torch.equal(_q[..., 0], _raw[..., 0]), "the first quantile is raw[..., 0]"
assert torch.allclose(_q.diff(dim=-1), torch.nn.functional.softplus(_raw[..., 1:]), atol=1e-9), (
    "each step is softplus(raw)"
)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q3
# points: 3

# %% [markdown]
# ### Exercise 3 (3 points): the robust scaler of a context
# Lag-Llama scales a context by its median and interquartile range, which a single volatility spike
# barely moves. Write `robust_scale(x)` for a 1-D NumPy array: return `(scaled, median, iqr)` with
# `scaled = (x - median) / iqr`, the IQR being the 75% minus the 25% quantile (`np.quantile`'s default
# interpolation).

# %% [raw]
# # BEGIN SOLUTION


# %%
def robust_scale(x):
    q25, median, q75 = np.quantile(x, [0.25, 0.5, 0.75])  # SOLUTION
    return (x - median) / (q75 - q25), median, q75 - q25  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
_scaled, _med, _iqr = robust_scale(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
assert abs(_med - 3.0) < 1e-12 and abs(_iqr - 2.0) < 1e-12, "median 3 and IQR 2 for 1..5"

# %%
# HIDDEN
_x = np.random.default_rng(1).standard_normal(50)
_spiky = _x.copy()
_spiky[10] = 1e6
_q25, _q50, _q75 = np.quantile(_x, [0.25, 0.5, 0.75])
_scaled, _med, _iqr = _res = robust_scale(_x)
assert matches(_res, ((_x - _q50) / (_q75 - _q25), _q50, _q75 - _q25), what="(scaled, median, iqr)"), (
    "scaled = (x - median) / iqr, with np.quantile's default interpolation"
)
_s2, _m2, _i2 = robust_scale(_spiky)
assert abs(_m2 - _med) < 0.2 and abs(_i2 / _iqr - 1) < 0.2, "one spike must barely move a robust scaler"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q4
# points: 2

# %% [markdown]
# ### Exercise 4 (2 points): how many lag features are real?
# At day $t = 0, \dots, L-1$ of a window, the feature with lag $l \ge 1$ reads $x_{t+1-l}$ and is valid
# only when $t + 1 - l \ge 0$ (the mask); otherwise it is a zero the model must ignore. Write
# `n_valid(L, lags)`: the number of valid (day, lag) pairs in a window of `L` days.

# %% [raw]
# # BEGIN SOLUTION


# %%
def n_valid(L, lags):
    return sum(max(L - lag + 1, 0) for lag in lags)  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert n_valid(5, [1]) == 5, "lag 1 (today's value) is valid on every day"

# %%
# HIDDEN
from course_lib.models.foundation import lag_features

for _L, _lags in [(5, [1, 2, 3]), (10, [1, 5, 22]), (30, [1, 2, 3, 5, 10, 22]), (3, [4, 8])]:
    _, _mask = lag_features(torch.zeros(1, _L, 1), _lags)
    assert matches(n_valid(_L, _lags), int(_mask.sum())), f"n_valid({_L}, {_lags}) is wrong"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q5
# points: 2

# %% [markdown]
# ### Exercise 5 (2 points): an experiment, two bands and a proper score
# Two Gaussian forecasters of tomorrow's log volatility share the mean `FORECAST_MEAN[t]` (for `y[t+1]`)
# and differ in their standard deviation:
#
# * **A** uses one sigma for every day: the standard deviation (`ddof=1`) of the training errors
#   `ERRORS[1 : TRAIN_END + 1]`;
# * **B** uses, for the forecast made on day t, the standard deviation (`ddof=1`) of the 60 most recent
#   errors known that day, `ERRORS[t - 59 : t + 1]`.
#
# Score both on the test days: the forecasts made on days `t = TRAIN_END, ..., N_DAYS - 2` of the
# outcomes `y[t + 1]`. Set `scores`, a float64 NumPy array of shape (2, 2): row 0 for A, row 1 for B;
# column 0 the fraction of outcomes inside the central 80% interval `mean +- 1.2816 sigma` (use
# `stats.norm.ppf(0.9)`), column 1 the mean CRPS of the Gaussian forecast,
# $\sigma\,[z(2\Phi(z) - 1) + 2\varphi(z) - 1/\sqrt{\pi}]$ with $z = (y - \mu)/\sigma$.

# %% [raw]
# # BEGIN SOLUTION

# %%
_days = np.arange(TRAIN_END, N_DAYS - 1)  # SOLUTION
_outcome, _mean = y[_days + 1], FORECAST_MEAN[_days]  # SOLUTION
_sigma_a = np.full(len(_days), np.std(ERRORS[1 : TRAIN_END + 1], ddof=1))  # SOLUTION
_sigma_b = np.array([np.std(ERRORS[t - 59 : t + 1], ddof=1) for t in _days])  # SOLUTION


def _score(sigma):
    z = (_outcome - _mean) / sigma  # SOLUTION
    crps = sigma * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi))  # SOLUTION
    return [np.mean(np.abs(z) <= stats.norm.ppf(0.9)), crps.mean()]  # SOLUTION


scores = np.array([_score(_sigma_a), _score(_sigma_b)], dtype=np.float64)  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert isinstance(scores, np.ndarray) and scores.shape == (2, 2), "scores must be a (2, 2) NumPy array"

# %%
# HIDDEN
assert isinstance(scores, np.ndarray), f"scores must be a NumPy array, got {type(scores).__name__}"
assert scores.shape == (2, 2), f"scores must have shape (2, 2), got {scores.shape}"
assert scores.dtype == np.float64, f"scores must be float64, got {scores.dtype}"
_d = np.arange(TRAIN_END, N_DAYS - 1)
_u = y[_d + 1] - FORECAST_MEAN[_d]
_sa = np.std(ERRORS[1 : TRAIN_END + 1], ddof=1)
_sb = np.array([np.std(ERRORS[_t - 59 : _t + 1], ddof=1) for _t in _d])
_ref = []
for _s in (_sa, _sb):
    _z = _u / _s
    _c = _s * (_z * (2 * stats.norm.cdf(_z) - 1) + 2 * stats.norm.pdf(_z) - 1 / np.sqrt(np.pi))
    _ref.append([np.mean(np.abs(_z) <= stats.norm.ppf(0.9)), _c.mean()])
assert np.allclose(scores, _ref, atol=2e-3), "coverage or mean CRPS differs from the reference (row A, row B)"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q6
# points: 1

# %% [markdown]
# ### Exercise 6 (1 point): what the experiment says
# From your scores in Exercise 5: set `overconfident` to `"A"` or `"B"`, the forecaster whose 80% band
# holds far fewer than 80% of the outcomes, and `lower_crps` to `"A"` or `"B"`, the one the proper score
# prefers. (Ask yourself why a sigma fitted on the calm years fails after the regime change, and why a
# proper score, unlike coverage alone, also rewards a band that is no wider than it needs to be.)

# %% [raw]
# # BEGIN SOLUTION

# %%
overconfident = "A"  # SOLUTION
lower_crps = "B"  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert overconfident in ("A", "B") and lower_crps in ("A", "B"), 'answer "A" or "B"'

# %%
# HIDDEN
assert isinstance(overconfident, str) and isinstance(lower_crps, str), 'answers are the strings "A" or "B"'
assert overconfident == "A" and lower_crps == "B", "read the coverages and the CRPS again"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
