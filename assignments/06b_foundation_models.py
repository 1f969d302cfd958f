# %% [markdown]
# # Graded exercises, chapter 06b: time-series foundation models
#
# Four exercises from chapter 06b (10 points) about the pieces of a probabilistic foundation model: its
# Student-t likelihood, non-crossing quantiles, the robust scaler and the lag mask of Lag-Llama. Nothing
# is trained. Write your answer where you see `...`, then run the `grader.check(...)` cell below it: it
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

from course_lib.testing import matches

torch.set_num_threads(1)

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
