# %% [markdown]
# # Graded exercises, chapter 00: data and baselines
#
# Four exercises taken from chapter 00 (10 points). Write your answer where you see `...`, then run
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

from course_lib.data import load_prices
from course_lib.evaluation import diebold_mariano
from course_lib.features import log_returns

returns = log_returns(load_prices("^GSPC")["Close"])  # percent daily log returns of the S&P 500, 1999-2018

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 2

# %% [markdown]
# ### Exercise 1 (2 points): annualised volatility of 2008
# Store in `vol_2008` the annualised volatility of 2008 in percent: the standard deviation of that
# year's daily returns (`returns`) times $\sqrt{252}$.

# %% [raw]
# # BEGIN SOLUTION

# %%
vol_2008 = float(returns.loc["2008"].std() * np.sqrt(252))  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert isinstance(vol_2008, float | np.floating), "vol_2008 should be a single number"
assert 35 < vol_2008 < 50, "2008 was a crisis year: expect roughly 40% annualised"

# %%
# HIDDEN
assert abs(vol_2008 - returns.loc["2008"].std() * 252**0.5) < 1e-6, "use the daily std of 2008 times sqrt(252)"

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
# Compute the lag-1 autocorrelation of daily returns (`acf1_ret`) and of squared daily returns
# (`acf1_sq`) over the whole sample.

# %% [raw]
# # BEGIN SOLUTION

# %%
acf1_ret = returns.autocorr(lag=1)  # SOLUTION
acf1_sq = (returns**2).autocorr(lag=1)  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert isinstance(acf1_ret, float) and isinstance(acf1_sq, float), "two numbers"
assert abs(acf1_ret) < 0.15 and acf1_sq > 0.15, "returns are nearly uncorrelated; their squares are not"

# %%
# HIDDEN
assert abs(acf1_ret - returns.autocorr(1)) < 1e-9, "the lag-1 autocorrelation of the returns themselves"
assert abs(acf1_sq - (returns**2).autocorr(1)) < 1e-9, "square the returns before taking the autocorrelation"

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
# This function standardises a feature matrix given the number of training rows. It leaks.
# Write `standardise_fixed(values, n_train)` that returns the standardised matrix using the mean
# and standard deviation of the first `n_train` rows only.
#
# ```python
# def standardise_buggy(values, n_train):
#     mean, std = values.mean(axis=0), values.std(axis=0)
#     return (values - mean) / std
# ```

# %% [raw]
# # BEGIN SOLUTION

# %%
def standardise_fixed(values, n_train):
    # BEGIN SOLUTION
    train = values[:n_train]
    return (values - train.mean(axis=0)) / train.std(axis=0)
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
_x = np.arange(12.0).reshape(6, 2) ** 2
_z = standardise_fixed(_x, 4)
assert isinstance(_z, np.ndarray) and _z.shape == _x.shape, "return an array shaped like the input"
assert np.allclose(_z[:4].mean(axis=0), 0), "training rows should have mean 0 after scaling"

# %%
# HIDDEN
_v = np.random.default_rng(1).normal(size=(100, 3))
_shocked = _v.copy()
_shocked[60:] *= 50
_a, _b = standardise_fixed(_v, 60), standardise_fixed(_shocked, 60)
assert np.allclose(_a[:60], _b[:60]), "training rows must not depend on later rows: the scaler still leaks"
assert np.allclose(_a[:60].std(axis=0), 1), "training rows should have unit standard deviation"

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
assert abs(dm_ewma_rolling.statistic - _ref.statistic) < 1e-9, "EWMA first, rolling mean second"
assert ewma_better == bool(_ref.statistic < 0 and _ref.pvalue < 0.05), "a negative statistic AND p < 0.05"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
