# %% [markdown]
# # Graded exercises, chapter 06d: conformal prediction
#
# Four exercises from chapter 06d (10 points) on the finite-sample quantile, the size of a calibration
# set, the ACI update and normalised scores; nothing is trained and NumPy is enough. Write your answer
# where you see `...`, then run the `grader.check(...)` cell below it: it runs the *public* tests. Your
# notebook is graded with further hidden tests. Keep the names of the answer functions and variables.

# %% [raw]
# # ASSIGNMENT CONFIG
# name: 06d_conformal_prediction
# init_cell: true
# check_all_cell: false
# export_cell: false
# generate: true

# %%
import math

import numpy as np

from course_lib.testing import matches

# %% [markdown]
# Split conformal with $n$ calibration scores and miscoverage $\alpha$ uses $\hat q = S_{(k)}$, the $k$-th
# smallest score, with $k = \lceil (n+1)(1-\alpha) \rceil$, and the infinite interval when $k > n$. With
# continuous scores and exchangeable data, a new point is covered with probability exactly $k/(n+1)$
# (or 1 when the interval is infinite). In floating point, $(n+1)(1-\alpha)$ can land a hair above an
# integer (try `10 * (1 - 0.7)`): subtract a tiny tolerance such as `1e-9` before taking the ceiling.

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 2

# %% [markdown]
# ### Exercise 1 (2 points): the exact coverage of split conformal
# Write `exact_coverage(n, alpha)`: the probability that split conformal with `n` calibration points
# covers a new exchangeable point (continuous scores, no ties), as a float.

# %% [raw]
# # BEGIN SOLUTION


# %%
def exact_coverage(n, alpha):
    k = math.ceil((n + 1) * (1 - alpha) - 1e-9)  # SOLUTION
    return 1.0 if k > n else k / (n + 1)  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert abs(exact_coverage(19, 0.1) - 0.9) < 1e-12, "n = 19, alpha = 0.1: k = 18 of 20 ranks"

# %%
# HIDDEN
for _n, _alpha, _expected in [
    (20, 0.1, 19 / 21),
    (8, 0.1, 1.0),
    (99, 0.05, 0.95),
    (50, 0.2, 41 / 51),
    (9, 0.7, 0.3),
]:
    assert matches(exact_coverage(_n, _alpha), _expected, atol=1e-12), (
        f"exact_coverage({_n}, {_alpha}) is wrong"
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
# ### Exercise 2 (2 points): how many calibration points?
# Write `min_calibration_size(alpha)`: the smallest number of calibration points $n \ge 1$ for which
# split conformal at miscoverage `alpha` gives a *finite* interval (an int).

# %% [raw]
# # BEGIN SOLUTION


# %%
def min_calibration_size(alpha):
    return next(n for n in range(1, 10**7) if math.ceil((n + 1) * (1 - alpha) - 1e-9) <= n)  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert min_calibration_size(0.1) == 9, "at alpha = 0.1, 8 points give the infinite interval and 9 do not"

# %%
# HIDDEN
for _alpha, _n in [(0.05, 19), (0.2, 4), (0.03, 33), (0.5, 1), (0.01, 99)]:
    assert matches(min_calibration_size(_alpha), _n), f"min_calibration_size({_alpha}) is wrong"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q3
# points: 3

# %% [markdown]
# ### Exercise 3 (3 points): spot the bug in the ACI update
# The source module updates the level of adaptive conformal inference like this:
#
# ```python
# def update(alpha_t, alpha, gamma, covered):
#     err = 0.0 if covered else 1.0
#     alpha_t = alpha_t + gamma * (alpha - err)
#     return min(max(alpha_t, 0.01), 0.5)
# ```
#
# One line of it destroys the long-run coverage guarantee of Gibbs & Candes (2021). Write
# `aci_update(alpha_t, alpha, gamma, covered)` that returns the correct next level (a float).

# %% [raw]
# # BEGIN SOLUTION


# %%
def aci_update(alpha_t, alpha, gamma, covered):
    return alpha_t + gamma * (alpha - (0.0 if covered else 1.0))  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert abs(aci_update(0.1, 0.1, 0.01, True) - 0.101) < 1e-12, "a hit raises the level by gamma * alpha"

# %%
# HIDDEN
assert matches(aci_update(0.1, 0.1, 0.01, False), 0.091, atol=1e-12), (
    "a miss lowers the level by gamma * (1 - alpha)"
)
assert matches(aci_update(0.005, 0.1, 0.01, False), -0.004, atol=1e-12), (
    "the level must be free to go below 0"
)
assert matches(aci_update(0.6, 0.1, 0.05, True), 0.605, atol=1e-12), "the level must be free to exceed 0.5"
_a = 0.1
for _ in range(30):
    _a = aci_update(_a, 0.1, 0.01, False)
assert matches(_a, 0.1 - 30 * 0.009, atol=1e-9), (
    "30 misses in a row lower the level by 30 * gamma * (1 - alpha)"
)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q4
# points: 3

# %% [markdown]
# ### Exercise 4 (3 points): split conformal with normalised scores
# A model forecasts a mean `mu` and a scale `sigma` for each day. Write `normalized_interval(y_cal,
# mu_cal, sigma_cal, mu, sigma, alpha)`: split conformal with the scores $|y - \mu| / \sigma$ on the
# calibration arrays, returning the pair `(lower, upper)` of NumPy arrays for the new forecasts `mu`,
# `sigma` (all arguments 1-D; infinite bounds when the calibration set is too small).

# %% [raw]
# # BEGIN SOLUTION


# %%
def normalized_interval(y_cal, mu_cal, sigma_cal, mu, sigma, alpha):
    scores = np.sort(np.abs(np.asarray(y_cal) - mu_cal) / sigma_cal)  # SOLUTION
    k = math.ceil((len(scores) + 1) * (1 - alpha) - 1e-9)  # SOLUTION
    q = np.inf if k > len(scores) else scores[k - 1]  # SOLUTION
    return np.asarray(mu) - q * np.asarray(sigma), np.asarray(mu) + q * np.asarray(sigma)  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
_lower, _upper = normalized_interval(
    np.array([1.0, -2.0, 3.0, 0.5]), np.zeros(4), np.ones(4), np.array([0.0]), np.array([2.0]), 0.2
)
assert np.allclose(_lower, [-6.0]) and np.allclose(_upper, [6.0]), (
    "k = 4 of 4 scores: q-hat = 3, times sigma = 2"
)

# %%
# HIDDEN
from course_lib.evaluation.conformal import ConformalPredictor

_g = np.random.default_rng(5)
_sig = _g.uniform(0.5, 2.0, 300)
_y, _mu = _sig * _g.standard_t(4, 300), 0.1 * _g.standard_normal(300)
for _alpha in (0.1, 0.05, 0.3):
    _ref = ConformalPredictor(_alpha, "normalized").calibrate(_y[:200], _mu[:200], _sig[:200])
    _ref_lower, _ref_upper = _ref.predict_interval(_mu[200:], _sig[200:])
    _lower, _upper = normalized_interval(_y[:200], _mu[:200], _sig[:200], _mu[200:], _sig[200:], _alpha)
    assert matches(_lower, _ref_lower, what="lower") and matches(_upper, _ref_upper, what="upper"), (
        f"wrong interval at alpha = {_alpha}"
    )
_lower, _upper = normalized_interval(_y[:5], _mu[:5], _sig[:5], _mu[:3], _sig[:3], 0.1)
assert matches(_lower, np.full(3, -np.inf), what="lower") and matches(
    _upper, np.full(3, np.inf), what="upper"
), "5 calibration points at alpha = 0.1: infinite interval"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
