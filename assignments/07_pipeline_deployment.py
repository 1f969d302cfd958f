# %% [markdown]
# # Graded exercises, chapter 07: from notebook to production
#
# Five exercises from chapter 07 (13 points) on walk-forward scaling, drift, data-parallel gradients,
# alerts and the re-fitting trigger. The first four use small made-up arrays; the last re-fits a log-HAR
# on the S&P 500 a few dozen times (seconds). Nothing is trained by gradient descent and no server is
# started. Write your
# answer where you see `...`, then run the `grader.check(...)` cell below it: it runs the *public*
# tests. Your notebook is graded with further hidden tests. Keep the names of the answer functions.

# %% [raw]
# # ASSIGNMENT CONFIG
# name: 07_pipeline_deployment
# init_cell: true
# check_all_cell: false
# export_cell: false
# generate: true

# %%
import numpy as np
from scipy import stats

from course_lib.data.windows import make_task
from course_lib.evaluation import loss_series
from course_lib.production.retraining import LogHARFitter, simulate_policy
from course_lib.testing import matches

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 3

# %% [markdown]
# ### Exercise 1 (3 points): spot the bug in a walk-forward scaler
# For the walk-forward block that forecasts `test_year`, the function below standardises the features
# with a mean and standard deviation that it fits on the rows of `values` (shape `(T, C)`, one row per
# day, `years[t]` the year of day `t`). Its backtest looks better than live trading ever will. Write
# `fit_block_scaler(values, years, test_year)` that returns `(mean, std)` (two arrays of shape `(C,)`,
# population std as `np.std` computes it) fitted on the data known *before* the test year only.
#
# ```python
# def fit_block_scaler(values, years, test_year):
#     rows = values[years <= test_year]
#     return rows.mean(axis=0), rows.std(axis=0)
# ```

# %% [raw]
# # BEGIN SOLUTION


# %%
def fit_block_scaler(values, years, test_year):
    # BEGIN SOLUTION
    rows = np.asarray(values, dtype=float)[np.asarray(years) < test_year]
    return rows.mean(axis=0), rows.std(axis=0)
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
_values = np.array([[1.0, 10.0], [3.0, 30.0], [100.0, -5.0]])
_mean, _std = fit_block_scaler(_values, np.array([2001, 2002, 2003]), 2003)
assert np.allclose(_mean, [2.0, 20.0]), "the 2003 row must not enter the scaler of the 2003 block"

# %%
# HIDDEN
_rng = np.random.default_rng(7)
_values = _rng.normal(size=(60, 3))
_years = np.repeat(np.arange(2000, 2006), 10)
_ref = (_values[:40].mean(axis=0), _values[:40].std(axis=0))
assert matches(fit_block_scaler(_values, _years, 2004), _ref, what="(mean, std)"), (
    "the years before 2004 only"
)
_ref = (_values[:10].mean(axis=0), _values[:10].std(axis=0))
assert matches(fit_block_scaler(_values, _years, 2001), _ref, what="(mean, std)"), (
    "only 2000 is known before 2001"
)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 3

# %% [markdown]
# ### Exercise 2 (3 points): the Kolmogorov-Smirnov statistic
# The drift monitor reports the two-sample KS statistic: the largest vertical gap between the empirical
# distribution functions of the training sample `a` and the recent sample `b`,
# $\sup_x |F_a(x) - F_b(x)|$. Write `ks_statistic(a, b)` (a float) without scipy.

# %% [raw]
# # BEGIN SOLUTION


# %%
def ks_statistic(a, b):
    # BEGIN SOLUTION
    a, b = np.sort(np.asarray(a, dtype=float)), np.sort(np.asarray(b, dtype=float))
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / len(a)
    fb = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert abs(ks_statistic([1.0, 2.0, 3.0, 4.0], [3.5, 4.5, 5.5, 6.5]) - 0.75) < 1e-12

# %%
# HIDDEN
_rng = np.random.default_rng(3)
for _n, _m, _shift in [(50, 80, 0.0), (200, 30, 0.7), (15, 15, 2.0)]:
    _a, _b = _rng.normal(size=_n), _rng.normal(_shift, 1.0, size=_m)
    assert matches(ks_statistic(_a, _b), float(stats.ks_2samp(_a, _b).statistic), atol=1e-12), (
        _n,
        _m,
        _shift,
    )
assert matches(ks_statistic([0.0, 0.0, 1.0], [0.0, 1.0, 1.0]), 1 / 3, atol=1e-12), "ties"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q3
# points: 2

# %% [markdown]
# ### Exercise 3 (2 points): how much does each sample weigh under DDP?
# Each rank computes the *mean* loss over its own shard, and DDP averages the ranks' gradients. Write
# `ddp_sample_weights(shard_sizes)`: a list with, for each rank, the weight that one of its samples gets
# in the averaged gradient (with equal shards of a dataset of $N$ samples, every weight is $1/N$).

# %% [raw]
# # BEGIN SOLUTION


# %%
def ddp_sample_weights(shard_sizes):
    # BEGIN SOLUTION
    return [1.0 / (len(shard_sizes) * n) for n in shard_sizes]
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert np.allclose(ddp_sample_weights([64, 64]), [1 / 128, 1 / 128])

# %%
# HIDDEN
assert np.allclose(ddp_sample_weights([3, 1]), [1 / 6, 1 / 2]), "a sample of the small shard counts 3x more"
assert np.allclose(ddp_sample_weights([10, 10, 5, 25]), [1 / 40, 1 / 40, 1 / 20, 1 / 100])
assert abs(sum(n * w for n, w in zip([7, 2, 9], ddp_sample_weights([7, 2, 9]), strict=True)) - 1) < 1e-12

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q4
# points: 2

# %% [markdown]
# ### Exercise 4 (2 points): an alert that does not flicker
# A single bad day should not page anyone. Write `sustained_alert(ratio, threshold, k)`: a boolean
# array, True on day `t` when the error ratio was above `threshold` on each of the `k` days `t-k+1..t`
# (so always False on the first `k-1` days).

# %% [raw]
# # BEGIN SOLUTION


# %%
def sustained_alert(ratio, threshold, k):
    # BEGIN SOLUTION
    above = np.asarray(ratio, dtype=float) > threshold
    out = np.zeros(len(above), dtype=bool)
    for t in range(k - 1, len(above)):
        out[t] = above[t - k + 1 : t + 1].all()
    return out
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert sustained_alert([1.0, 1.5, 1.5, 1.0, 1.5], 1.2, 2).tolist() == [False, False, True, False, False]

# %%
# HIDDEN
_r = np.array([1.3, 1.3, 1.3, 0.9, 1.4, 1.4, 1.4, 1.4])
assert sustained_alert(_r, 1.2, 3).tolist() == [False, False, True, False, False, False, True, True]
assert sustained_alert(_r, 1.2, 1).tolist() == (_r > 1.2).tolist()
assert not sustained_alert(_r, 1.35, 5).any()

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# For the last exercise: the chapter's stream. Next-day log volatility of the S&P 500, test years
# 2009-2018; a log-HAR fitted on the data known by 2 January 2009, and the yearly calendar's forecasts.

# %%
stream_task = make_task("volatility", train_end="2007-12-31", val_end="2008-12-31")
fitter = LogHARFitter(stream_task)
rows, dates, y = stream_task.test.rows, stream_task.test.dates, stream_task.test.y[:, 0]
yearly = simulate_policy("periodic", fitter, rows, dates, y, every=252)
THRESHOLDS = (1.0, 2.0, 3.0, 5.0)  # CUSUM thresholds of the error trigger, most sensitive first

# %% [raw]
# # BEGIN QUESTION
# name: q5
# points: 3

# %% [markdown]
# ### Exercise 5 (3 points): how sensitive should the re-fitting trigger be?
# The error trigger re-fits when the CUSUM of the log absolute error crosses its threshold: a low
# threshold fires at the first hint of trouble, a high one only after a sustained rise. Run the
# experiment. For each threshold `h` in `THRESHOLDS`, run
# `simulate_policy("error", fitter, rows, dates, y, threshold=h)` (every other argument at its default)
# and store
#
# * `refits[h]`: the number of re-fits it made (an `int`),
# * `qlike_gap[h]`: its mean QLIKE minus the yearly calendar's (`loss_series(y, forecasts, "qlike")`
#   averaged over the stream; negative: the trigger beats the calendar).
#
# Then interpret: set `verdict` to the letter of the statement your numbers support.
#
# * `"A"`: the more sensitive the trigger, the better: the lowest threshold has the lowest QLIKE;
# * `"B"`: an intermediate threshold does best: a very sensitive trigger re-fits on noise, a very deaf
#   one re-fits too late;
# * `"C"`: no threshold beats the yearly calendar.

# %% [raw]
# # BEGIN SOLUTION

# %%
_q5_base = loss_series(y, yearly.forecasts, "qlike").mean()  # SOLUTION
_q5_runs = {h: simulate_policy("error", fitter, rows, dates, y, threshold=h) for h in THRESHOLDS}  # SOLUTION
refits = {h: r.refits for h, r in _q5_runs.items()}  # SOLUTION
_q5_mean = {h: loss_series(y, r.forecasts, "qlike").mean() for h, r in _q5_runs.items()}  # SOLUTION
qlike_gap = {h: float(m - _q5_base) for h, m in _q5_mean.items()}  # SOLUTION
_q5_best = min(qlike_gap, key=qlike_gap.get)  # SOLUTION
verdict = "C" if qlike_gap[_q5_best] >= 0 else ("A" if _q5_best == THRESHOLDS[0] else "B")  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert set(refits) == set(THRESHOLDS) and set(qlike_gap) == set(THRESHOLDS), "one entry per threshold"
assert all(isinstance(n, int | np.integer) and n >= 0 for n in refits.values()), "refits are counts"
assert refits[THRESHOLDS[0]] >= refits[THRESHOLDS[-1]], "a lower threshold fires at least as often here"
assert verdict in ("A", "B", "C"), "verdict is one of the letters A, B, C"

# %%
# HIDDEN
_y_q = loss_series(y, yearly.forecasts, "qlike").mean()
_ref_runs = {h: simulate_policy("error", fitter, rows, dates, y, threshold=h) for h in THRESHOLDS}
_ref_gap = {h: float(loss_series(y, r.forecasts, "qlike").mean() - _y_q) for h, r in _ref_runs.items()}
assert matches(refits, {h: r.refits for h, r in _ref_runs.items()}, what="refits"), (
    "count the re-fits of simulate_policy('error', ..., threshold=h), every other argument at its default"
)
assert matches(qlike_gap, _ref_gap, atol=1e-6, what="qlike_gap"), (
    "the trigger's mean QLIKE minus the yearly calendar's, over the whole stream"
)
_ref_best = min(_ref_gap, key=_ref_gap.get)
_ref_verdict = "C" if _ref_gap[_ref_best] >= 0 else ("A" if _ref_best == THRESHOLDS[0] else "B")
assert matches(verdict, _ref_verdict, what="verdict"), (
    "which threshold has the lowest gap, and is any gap below zero?"
)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
