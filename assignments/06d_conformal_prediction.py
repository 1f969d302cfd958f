# %% [markdown]
# # Graded exercises, chapter 06d: conformal prediction
#
# Five exercises from chapter 06d (12 points) on the finite-sample quantile, the size of a calibration
# set, the step size ACI's guarantee needs, normalised scores, and one experiment on conditional
# coverage; nothing is trained and NumPy is enough. Write your answer
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
# ### Exercise 3 (3 points): the step size a guarantee needs
# ACI's proved bound says that over $T$ days, started at $\alpha_1 = \alpha$,
# $$ \Big| \frac1T \sum_t \mathrm{err}_t - \alpha \Big| \le \frac{\max(\alpha, 1-\alpha) + \gamma}{\gamma T}. $$
# Write `min_gamma(alpha, T, eps)`: the smallest step size $\gamma > 0$ for which this bound is at most
# `eps`, as a float, or `math.inf` when no step size achieves it.

# %% [raw]
# # BEGIN SOLUTION


# %%
def min_gamma(alpha, T, eps):
    m = max(alpha, 1 - alpha)  # SOLUTION
    return m / (eps * T - 1) if eps * T > 1 else math.inf  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert abs(min_gamma(0.1, 1000, 0.01) - 0.1) < 1e-12, "0.9 / (0.01 * 1000 - 1) = 0.1"


# %%
# HIDDEN
def _bound(alpha, gamma, T):
    return (max(alpha, 1 - alpha) + gamma) / (gamma * T)


for _alpha, _T, _eps in [(0.1, 2515, 0.01), (0.05, 5000, 0.005), (0.7, 800, 0.02), (0.5, 250, 0.05)]:
    _g = min_gamma(_alpha, _T, _eps)
    _expected = max(_alpha, 1 - _alpha) / (_eps * _T - 1)
    assert matches(_g, _expected, atol=0, rtol=1e-9, what="min_gamma"), (
        f"at min_gamma the bound must equal eps ({_alpha}, {_T})"
    )
    assert _bound(_alpha, 0.99 * _g, _T) > _eps, "a smaller gamma must break the bound: not the smallest"
assert matches(min_gamma(0.1, 100, 0.01), math.inf, what="min_gamma"), (
    "eps * T = 1: no step size bounds the miss rate that tightly"
)
assert matches(min_gamma(0.7, 1000, 0.01), 0.7 / 9, atol=0, rtol=1e-12, what="min_gamma"), (
    "the bound uses max(alpha, 1 - alpha)"
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

# %% [raw]
# # BEGIN QUESTION
# name: q5
# points: 2

# %% [markdown]
# ### Exercise 5 (2 points): an experiment on the wildest days
# Marginal coverage can be right on average and wrong where it matters. Simulate with
# `rng = np.random.default_rng(0)`: 2,000 calibration days and 20,000 test days, each with a scale
# $\sigma$ uniform on $[0.5, 2.5]$ and $y = \sigma \varepsilon$, $\varepsilon$ standard normal, and the
# forecast $\mu = 0$. Calibrate split conformal with the absolute score $|y - \mu|$ at $\alpha = 0.1$ (the
# forecaster does not tell the interval about $\sigma$). Set `top_fifth_coverage` to the coverage on the
# test days with $\sigma \ge 2.1$ and `bottom_fifth_coverage` to the coverage on those with
# $\sigma < 0.9$ (floats). Then interpret: set `per_bin_needed` to `True` if the wildest fifth is covered
# more than 0.05 below the nominal 0.90, so that a per-bin (Mondrian) calibration is worth its cost, and
# `False` otherwise. Graded on the numbers, with a tolerance of 0.02.

# %% [raw]
# # BEGIN SOLUTION

# %%
_sim_gen = np.random.default_rng(0)  # SOLUTION
_sim_sig = _sim_gen.uniform(0.5, 2.5, 22000)  # SOLUTION
_sim_y = _sim_sig * _sim_gen.standard_normal(22000)  # SOLUTION
_sim_scores = np.sort(np.abs(_sim_y[:2000]))  # SOLUTION
_sim_q_hat = _sim_scores[math.ceil(2001 * 0.9 - 1e-9) - 1]  # SOLUTION
_sim_covered, _sim_sig_test = np.abs(_sim_y[2000:]) <= _sim_q_hat, _sim_sig[2000:]  # SOLUTION
top_fifth_coverage = float(_sim_covered[_sim_sig_test >= 2.1].mean())  # SOLUTION
bottom_fifth_coverage = float(_sim_covered[_sim_sig_test < 0.9].mean())  # SOLUTION
per_bin_needed = top_fifth_coverage < 0.85  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert 0 < top_fifth_coverage < bottom_fifth_coverage <= 1, (
    "the wild days are covered less than the calm ones"
)
assert isinstance(per_bin_needed, bool | np.bool_), "per_bin_needed is True or False"

# %%
# HIDDEN
_g = np.random.default_rng(123)
_sig = _g.uniform(0.5, 2.5, 400000)
_y = _sig * _g.standard_normal(400000)
_q = np.quantile(np.abs(_y[:200000]), 0.9)
_cov, _st = np.abs(_y[200000:]) <= _q, _sig[200000:]
_top, _bottom = _cov[_st >= 2.1].mean(), _cov[_st < 0.9].mean()
assert matches(top_fifth_coverage, float(_top), atol=0.02, rtol=0, what="top_fifth_coverage"), (
    f"top-fifth coverage should be near {_top:.3f}"
)
assert matches(bottom_fifth_coverage, float(_bottom), atol=0.02, rtol=0, what="bottom_fifth_coverage"), (
    f"bottom-fifth coverage should be near {_bottom:.3f}"
)
assert bool(per_bin_needed) == bool(_top < 0.85), "compare the wildest fifth with 0.90 - 0.05"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
