# %% [markdown]
# # Graded exercises, chapter 00: data and baselines
#
# Five exercises on the ideas of chapter 00 (13 points), the last an experiment to run and interpret, on
# other data than the chapter's worked exercises. Write your answer where you see `...`, then run
# the `grader.check(...)` cell below it: it runs the *public* tests. Passing them is necessary, not
# sufficient: your notebook is graded with further hidden tests. Do not rename the answer variables.
# Submit this notebook file (`.ipynb`) as it is; everything must run top to bottom in under a minute.

# %% [raw]
# # ASSIGNMENT CONFIG
# name: 00_data_and_baselines
# init_cell: true
# check_all_cell: false
# export_cell: false
# generate: true

# %%
import numpy as np

from course_lib.data.features import log_returns
from course_lib.data.prices import load_prices
from course_lib.evaluation import diebold_mariano
from course_lib.testing import matches

returns = log_returns(load_prices("^GSPC")["Close"])  # percent daily log returns of the S&P 500, 1999-2018
nasdaq = log_returns(load_prices("^IXIC")["Close"])  # the same for the NASDAQ Composite

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 2

# %% [markdown]
# ### Exercise 1 (2 points): annualised volatility of the NASDAQ in 2011
# Store in `vol_2011` the annualised volatility of the NASDAQ (`nasdaq`) in 2011, in percent: the
# standard deviation of that year's daily returns times $\sqrt{252}$.

# %% [raw]
# # BEGIN SOLUTION

# %%
vol_2011 = float(nasdaq.loc["2011"].std() * np.sqrt(252))  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert isinstance(vol_2011, float | np.floating), "vol_2011 should be a single number"
assert 18 < vol_2011 < 32, "a nervous year (the euro crisis), not a crash: between 18% and 32% annualised"

# %%
# HIDDEN
assert matches(vol_2011, float(nasdaq.loc["2011"].std() * 252**0.5), atol=1e-6, what="vol_2011"), (
    "the NASDAQ's daily std of 2011 times sqrt(252)"
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
# ### Exercise 2 (2 points): where is the predictability?
# Compute the lag-1 autocorrelation of the NASDAQ's daily returns (`acf1_ret`) and of its squared
# daily returns (`acf1_sq`) over the whole sample (1999-2018).

# %% [raw]
# # BEGIN SOLUTION

# %%
acf1_ret = nasdaq.autocorr(lag=1)  # SOLUTION
acf1_sq = (nasdaq**2).autocorr(lag=1)  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert isinstance(acf1_ret, float) and isinstance(acf1_sq, float), "two numbers"
assert abs(acf1_ret) < 0.1, "returns are nearly uncorrelated from one day to the next"
assert 0.18 < acf1_sq < 0.25, (
    "squared returns are autocorrelated (between 0.18 and 0.25 here): square, not abs"
)

# %%
# HIDDEN
assert matches(acf1_ret, float(nasdaq.autocorr(1)), atol=1e-9, what="acf1_ret"), (
    "the lag-1 autocorrelation of the NASDAQ returns themselves"
)
assert matches(acf1_sq, float((nasdaq**2).autocorr(1)), atol=1e-9, what="acf1_sq"), (
    "square the returns before taking the autocorrelation"
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
# ### Exercise 3 (3 points): spot the bug
# This function rescales each column of a feature matrix to $[0, 1]$ given the number of training
# rows. It leaks. Write `minmax_fixed(values, n_train)` that rescales with the minimum and maximum
# of the first `n_train` rows only (later rows may then fall outside $[0, 1]$: that is expected).
#
# ```python
# def minmax_buggy(values, n_train):
#     low, high = values.min(axis=0), values.max(axis=0)
#     return (values - low) / (high - low)
# ```

# %% [raw]
# # BEGIN SOLUTION


# %%
def minmax_fixed(values, n_train):
    # BEGIN SOLUTION
    low, high = values[:n_train].min(axis=0), values[:n_train].max(axis=0)
    return (values - low) / (high - low)
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
_x = np.arange(12.0).reshape(6, 2) ** 2
_z = minmax_fixed(_x, 4)
assert isinstance(_z, np.ndarray) and _z.shape == _x.shape, "return an array shaped like the input"
assert np.allclose(_z[:4].min(axis=0), 0) and np.allclose(_z[:4].max(axis=0), 1), "training rows span [0, 1]"
assert (_z[4:] > 1).all(), "these later rows are larger than every training row: they must come out above 1"

# %%
# HIDDEN
_v = np.random.default_rng(1).normal(size=(100, 3))
_shocked = _v.copy()
_shocked[60:] *= 50
_a, _b = minmax_fixed(_v, 60), minmax_fixed(_shocked, 60)
_low, _high = _v[:60].min(axis=0), _v[:60].max(axis=0)
assert matches(_b[:60], (_v[:60] - _low) / (_high - _low), what="the scaled training rows"), (
    "training rows must not depend on later rows: the scaler still leaks"
)
assert matches(_a, (_v - _low) / (_high - _low), what="the scaled values"), (
    "rescale every row with the training rows' min and max"
)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# For the last exercise, two forecasts of tomorrow's squared return over 2009-2018, both using only
# data up to today: an EWMA ($\lambda = 0.94$) and the mean of the last 22 squared returns.

# %%
squared = returns**2
forecasts = {
    "ewma": squared.ewm(alpha=0.06, adjust=False).mean().shift(1),
    "rolling22": squared.rolling(22).mean().shift(1),
}
test_days = returns.loc["2009":].index
target = squared.loc[test_days].to_numpy()
ewma_forecast = forecasts["ewma"].loc[test_days].to_numpy()
rolling_forecast = forecasts["rolling22"].loc[test_days].to_numpy()

# %% [raw]
# # BEGIN QUESTION
# name: q4
# points: 3

# %% [markdown]
# ### Exercise 4 (3 points): is the difference significant?
# Use `diebold_mariano` to compare `ewma_forecast` (first) with `rolling_forecast` (second) on
# `target`, with squared-error loss. Store the result in `dm_ewma_rolling`, and set `ewma_better` to
# `True` if the EWMA has the lower loss with a p-value below 0.05, else `False`.

# %% [raw]
# # BEGIN SOLUTION

# %%
dm_ewma_rolling = diebold_mariano(target, ewma_forecast, rolling_forecast)  # SOLUTION
ewma_better = bool(dm_ewma_rolling.statistic < 0 and dm_ewma_rolling.pvalue < 0.05)  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert hasattr(dm_ewma_rolling, "statistic") and hasattr(dm_ewma_rolling, "pvalue"), "store the DM result"
assert isinstance(ewma_better, bool | np.bool_), "ewma_better is True or False"

# %%
# HIDDEN
_ref = diebold_mariano(target, ewma_forecast, rolling_forecast)
assert matches(dm_ewma_rolling.statistic, float(_ref.statistic), atol=1e-9, what="the statistic"), (
    "EWMA first, rolling mean second"
)
assert matches(ewma_better, bool(_ref.statistic < 0 and _ref.pvalue < 0.05), what="ewma_better"), (
    "a negative statistic AND p < 0.05"
)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q5
# points: 3

# %% [markdown]
# ### Exercise 5 (3 points, experiment): does tuning the EWMA's decay pay?
# RiskMetrics fixes $\lambda = 0.94$. Tune it instead: for each $\lambda$ in `LAMBDAS`, build the EWMA
# forecast of tomorrow's squared return exactly as above (`squared.ewm(alpha=1 - lam, adjust=False)
# .mean().shift(1)`) and score its MSE on the **validation** days 2007-2008 (`val_days`). Store the
# scores as a NumPy float array `val_mse` of shape `(5,)`, the $\lambda$ with the lowest one as the float
# `best_lambda`, and `test_gain`, the test MSE (on `test_days`, against `target`) of RiskMetrics' 0.94
# minus that of `best_lambda`: positive if tuning helped on the test years. Set `tuning_helped` to
# `True` if `test_gain > 0`. Think about why a decay tuned in a crisis may or may not carry over.

# %%
LAMBDAS = (0.80, 0.90, 0.94, 0.97, 0.99)
val_days = returns.loc["2007":"2008"].index

# %% [raw]
# # BEGIN SOLUTION

# %%
_ewma = {lam: squared.ewm(alpha=1 - lam, adjust=False).mean().shift(1) for lam in LAMBDAS}  # SOLUTION
_errors = {lam: squared.loc[val_days] - _ewma[lam].loc[val_days] for lam in LAMBDAS}  # SOLUTION
val_mse = np.array([float((_errors[lam] ** 2).mean()) for lam in LAMBDAS])  # SOLUTION
best_lambda = float(LAMBDAS[int(np.argmin(val_mse))])  # SOLUTION
_test_errors = {lam: target - _ewma[lam].loc[test_days].to_numpy() for lam in LAMBDAS}  # SOLUTION
_test_mse = {lam: float(np.mean(_test_errors[lam] ** 2)) for lam in LAMBDAS}  # SOLUTION
test_gain = float(_test_mse[0.94] - _test_mse[best_lambda])  # SOLUTION
tuning_helped = bool(test_gain > 0)  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert isinstance(val_mse, np.ndarray) and val_mse.shape == (len(LAMBDAS),), "one validation MSE per lambda"
assert best_lambda in LAMBDAS, "best_lambda is one of LAMBDAS"
assert isinstance(test_gain, float) and isinstance(tuning_helped, bool), "a number and True/False"
assert tuning_helped == (test_gain > 0), "tuning_helped follows from test_gain"

# %%
# HIDDEN
_f = {lam: squared.ewm(alpha=1 - lam, adjust=False).mean().shift(1) for lam in LAMBDAS}
_v = np.array([float(((squared.loc[val_days] - _f[lam].loc[val_days]) ** 2).mean()) for lam in LAMBDAS])
assert matches(val_mse, _v, rtol=1e-6, what="val_mse"), "the EWMA's MSE on 2007-2008, one per lambda in order"
_best = float(LAMBDAS[int(np.argmin(_v))])
assert matches(best_lambda, _best, what="best_lambda"), "the lambda with the lowest validation MSE"
_t = {lam: float(np.mean((target - _f[lam].loc[test_days].to_numpy()) ** 2)) for lam in LAMBDAS}
assert matches(test_gain, _t[0.94] - _t[_best], rtol=1e-6, what="test_gain"), (
    "test MSE of lambda = 0.94 minus test MSE of best_lambda"
)
assert matches(tuning_helped, bool(_t[0.94] - _t[_best] > 0), what="tuning_helped"), "test_gain > 0"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
