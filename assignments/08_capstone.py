# %% [markdown]
# # Graded exercises, chapter 08: your model on the capstone leaderboard
#
# Five exercises (13 points) on the capstone task of chapter 08. You build a small model of your own
# (a linear regression on the last day's features, so nothing slow is trained), enter a model on the
# leaderboard with **one call**, read the table honestly, and run one experiment on what trading
# costs do to a forecast's economic value. You are graded on honest evaluation
# (which split each step uses, where the level correction is learnt, what the tests say), not on
# beating a number. Write your answer where you see `...`, then run the `grader.check(...)` cell
# below it: it runs the *public* tests. Your notebook is graded with further hidden tests. Keep the
# names of the answer functions and variables.

# %% [raw]
# # ASSIGNMENT CONFIG
# name: 08_capstone
# init_cell: true
# check_all_cell: false
# export_cell: false
# generate: true

# %%
import numpy as np
import pandas as pd
import torch

from course_lib import capstone as cap
from course_lib.evaluation import level_shift, loss_series, standard_baselines
from course_lib.testing import matches

torch.set_num_threads(1)
task = cap.capstone_task()


def _smoothed(split, lam=0.9):  # a colleague's model: exponential smoothing of today's log volatility
    v = task.frame["log_vol_parkinson"].to_numpy()
    s = np.empty_like(v)
    s[0] = v[0]
    for t in range(1, len(v)):
        s[t] = lam * s[t - 1] + (1 - lam) * v[t]
    return s[task.split(split).rows, None]


colleague = {"val": _smoothed("val"), "test": _smoothed("test")}
har = {s: standard_baselines(task, s, "frozen")["har"] for s in ("val", "test")}  # HAR's forecasts (N, 1)
LAMS = (0.5, 0.8, 0.9, 0.95, 0.97)  # smoothing parameters of exercise 5
RISK_AVERSION = 10.0

# %% [markdown]
# `task.train`, `task.val` and `task.test` each hold `X` (N, 60, 3): 60 days of
# [return, log volatility, log volume change], z-scored with training statistics, and `y` (N, 1):
# tomorrow's log volatility. Training targets end in 2006, validation covers 2007-2008, the test
# years 2009-2018. `colleague` holds a colleague's forecasts (`{"val": (N, 1), "test": (N, 1)}`, an
# exponential smoothing of today's log volatility) for exercises 2 and 3; `_smoothed(split, lam)` makes
# that forecast for any smoothing parameter `lam`, and `har` holds HAR's forecasts in the same form.

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 3

# %% [markdown]
# ### Exercise 1 (3 points): a model fitted on the training split only
# Write `linear_forecasts(task)`: a least-squares regression of `y` on an intercept and the **last
# day** of each window (`X[:, -1, :]`, three features), fitted on the **training split only**. Return
# the dict `{"val": ..., "test": ...}` of its forecasts (each an array (N, 1)) for the validation and
# test windows.

# %% [raw]
# # BEGIN SOLUTION


# %%
def linear_forecasts(task):
    def design(split):  # SOLUTION
        X = task.split(split).X[:, -1, :].astype(np.float64)  # SOLUTION
        return np.column_stack([np.ones(len(X)), X])  # SOLUTION

    beta, *_ = np.linalg.lstsq(design("train"), task.train.y.astype(np.float64), rcond=None)  # SOLUTION
    return {split: design(split) @ beta for split in ("val", "test")}  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
_f = linear_forecasts(task)
assert set(_f) == {"val", "test"}, "return a dict with the keys 'val' and 'test'"
assert np.shape(_f["test"]) == (2516, 1) and np.shape(_f["val"]) == (len(task.val), 1), (
    "one forecast per target"
)

# %%
# HIDDEN
_f = linear_forecasts(task)
_Z = np.column_stack([np.ones(len(task.train)), task.train.X[:, -1, :].astype(np.float64)])
_b, *_ = np.linalg.lstsq(_Z, task.train.y.astype(np.float64), rcond=None)
_Zt = np.column_stack([np.ones(len(task.test)), task.test.X[:, -1, :].astype(np.float64)])
_Zv = np.column_stack([np.ones(len(task.val)), task.val.X[:, -1, :].astype(np.float64)])
assert isinstance(_f, dict) and all(
    np.shape(_f[s]) in ((len(task.split(s)),), (len(task.split(s)), 1)) for s in ("val", "test")
), "one forecast per day of each split"
assert np.allclose(np.asarray(_f["test"]).reshape(-1, 1), _Zt @ _b, atol=1e-4), (
    "the test forecasts are not those of a regression fitted on the training split only"
)
assert np.allclose(np.asarray(_f["val"]).reshape(-1, 1), _Zv @ _b, atol=1e-4), (
    "the validation forecasts are wrong"
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
# ### Exercise 2 (2 points): one call to the leaderboard
# Enter the colleague's forecasts on the leaderboard with **one call** to `cap.evaluate_submission`,
# under the name `"colleague"`. Store the table it returns in `board`.

# %% [raw]
# # BEGIN SOLUTION

# %%
board = cap.evaluate_submission(colleague, task, name="colleague")  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert "colleague" in board.index and "har" in board.index, "the table needs the row beside the baselines"

# %%
# HIDDEN
_q = loss_series(task.test.y[:, 0], colleague["test"][:, 0], "qlike").mean()
assert matches(float(board.loc["colleague", "QLIKE"]), float(_q), atol=1e-6), (
    "the row 'colleague' does not hold the test forecasts"
)
assert {"ewma", "garch", "log_har", "random_walk"} <= set(board.index), "use cap.evaluate_submission"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q3
# points: 2

# %% [markdown]
# ### Exercise 3 (2 points): where the level correction is learnt
# The leaderboard's `QLIKE_lc` shifts log-volatility forecasts by one constant,
# $\tfrac12 \log \text{mean}(s^2/h^2)$, learnt on one split. Store that shift for the colleague's
# forecasts in `colleague_shift` (a float, computed with `level_shift` on the right split), and the
# corrected test QLIKE you get from it in `colleague_qlike_lc` (compute it with `loss_series`).

# %% [raw]
# # BEGIN SOLUTION

# %%
colleague_shift = float(level_shift(task.val.y, colleague["val"])[0])  # SOLUTION
_corrected = colleague["test"][:, 0] + colleague_shift  # SOLUTION
colleague_qlike_lc = float(loss_series(task.test.y[:, 0], _corrected, "qlike").mean())  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert isinstance(colleague_shift, float) and isinstance(colleague_qlike_lc, float), "two floats"

# %%
# HIDDEN
_s = float(level_shift(task.val.y, colleague["val"])[0])
assert matches(colleague_shift, _s, atol=1e-6, what="colleague_shift"), (
    "the shift is learnt on the validation split (never on the test years)"
)
_lc = loss_series(task.test.y[:, 0], colleague["test"][:, 0] + _s, "qlike").mean()
assert matches(colleague_qlike_lc, float(_lc), atol=1e-6, what="colleague_qlike_lc"), (
    "recompute QLIKE on the corrected test forecasts"
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
# ### Exercise 4 (3 points): read the tests, not the ranks
# Write `read_board(table, name)` for a leaderboard table: it returns `(beats_har, in_mcs, members)`.
# `beats_har`: whether row `name` has a significantly lower corrected QLIKE than HAR
# (Diebold-Mariano at 5%, columns `ens DM_QLIKE` and `ens p_QLIKE`; a negative statistic means a lower
# loss); `in_mcs`: whether it is in the model confidence set (`in_MCS`); `members`: the sorted list of
# every row in that set. Read the table, do not retype numbers.

# %% [raw]
# # BEGIN SOLUTION


# %%
def read_board(table, name):
    row = table.loc[name]  # SOLUTION
    beats_har = bool(row["ens DM_QLIKE"] < 0 and row["ens p_QLIKE"] < 0.05)  # SOLUTION
    members = sorted(table.index[table["in_MCS"].astype(bool)])  # SOLUTION
    return beats_har, bool(row["in_MCS"]), members  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
_t = pd.DataFrame(
    {"ens DM_QLIKE": [-3.0, np.nan], "ens p_QLIKE": [0.001, np.nan], "in_MCS": [True, False]},
    index=["m", "har"],
)
assert read_board(_t, "m") == (True, True, ["m"]), "m beats HAR (DM < 0, p < 0.05) and is the only MCS member"

# %%
# HIDDEN
_t = pd.DataFrame(
    {
        "ens DM_QLIKE": [3.0, -1.0, -2.5, np.nan],
        "ens p_QLIKE": [0.001, 0.3, 0.01, np.nan],
        "in_MCS": [False, True, True, True],
    },
    index=["worse", "tie", "better", "har"],
)
assert read_board(_t, "worse")[0] is False, "a small p with a POSITIVE statistic means worse than HAR"
assert read_board(_t, "tie")[:2] == (False, True), "p = 0.3 is no evidence; the MCS keeps it"
assert read_board(_t, "better") == (True, True, ["better", "har", "tie"]), "members sorted, HAR included"
_real = cap.evaluate_submission(colleague, task, name="colleague")
_r = _real.loc["colleague"]
assert read_board(_real, "colleague") == (
    bool(_r["ens DM_QLIKE"] < 0 and _r["ens p_QLIKE"] < 0.05),
    bool(_r["in_MCS"]),
    sorted(_real.index[_real["in_MCS"].astype(bool)]),
), "read_board disagrees with the leaderboard table"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q5
# points: 3

# %% [markdown]
# ### Exercise 5 (3 points): an experiment, and what it says
# A smoother forecast moves its volatility-targeted position less, so it trades less. Measure what
# that is worth. For each smoothing parameter in `LAMS`, take the colleague's forecast
# `_smoothed(split, lam)` (validation and test), build its volatility-targeted portfolio with
# `cap.portfolio_returns` (the defaults: 10% target), and compute against HAR's portfolio (the same
# call on `har`) the performance fee `cap.performance_fee` of a mean-variance investor with
# `RISK_AVERSION`, on returns net of costs (`cap.net_of_costs`) of 0 and 10 basis points.
#
# 1. The experiment: `fee_table`, a DataFrame with one row per `lam` (index: `LAMS`, in order) and the
#    columns `"turnover"` (the mean daily turnover of the portfolio), `"fee 0bp"` and `"fee 10bp"`
#    (bp a year).
# 2. Its reading, as numbers: `cost_slope` (a float), the least-squares slope of
#    `fee 10bp - fee 0bp` on the excess turnover `turnover - HAR's mean daily turnover` (a line with an
#    intercept through the five rows: `np.polyfit(x, y, 1)[0]`), and `costs_decide` (a bool): whether
#    the `lam` with the highest fee at 10 bp differs from the one with the highest fee before costs.
#
# Before you run it, predict `cost_slope` from the definition of the cost (a cost c on each unit of
# weight traded, 252 days a year); then say in a comment under your answer whether the numbers agree
# and what `costs_decide` means for the choice of a forecast. These are test-year numbers of an
# ablation, read to understand the costs: a forecaster who had to *choose* `lam` would choose it on
# validation.

# %% [raw]
# # BEGIN SOLUTION

# %%
_bench = cap.portfolio_returns(task, har["test"], har["val"])  # SOLUTION
_pfs = [cap.portfolio_returns(task, _smoothed("test", x), _smoothed("val", x)) for x in LAMS]  # SOLUTION
_net = [[(cap.net_of_costs(*p, c), cap.net_of_costs(*_bench, c)) for c in (0, 10)] for p in _pfs]  # SOLUTION
_fees = [[cap.performance_fee(a, b, RISK_AVERSION) for a, b in pairs] for pairs in _net]  # SOLUTION
_rows = [[float(p[1].mean()), *f] for p, f in zip(_pfs, _fees, strict=True)]  # SOLUTION
fee_table = pd.DataFrame(_rows, index=LAMS, columns=["turnover", "fee 0bp", "fee 10bp"])  # SOLUTION
_x = fee_table["turnover"] - _bench[1].mean()  # SOLUTION
cost_slope = float(np.polyfit(_x, fee_table["fee 10bp"] - fee_table["fee 0bp"], 1)[0])  # SOLUTION
costs_decide = bool(fee_table["fee 10bp"].idxmax() != fee_table["fee 0bp"].idxmax())  # SOLUTION
# the slope is close to -252 x 10 bp x 10^4 = -2520 bp a year per unit of daily turnover: the  # SOLUTION
# costs are paid on the extra trading almost one for one; with costs, the smoothest forecast  # SOLUTION
# wins, without them it does not: the cost, not the forecast, decides.  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert isinstance(fee_table, pd.DataFrame), "fee_table is a pandas DataFrame"
assert list(fee_table.columns) == ["turnover", "fee 0bp", "fee 10bp"], "three columns, in this order"
assert isinstance(cost_slope, float) and isinstance(costs_decide, bool), "a float and a bool"

# %%
# HIDDEN
_b = cap.portfolio_returns(task, har["test"], har["val"])
_ref = {}
for _lam in LAMS:
    _m = cap.portfolio_returns(task, _smoothed("test", _lam), _smoothed("val", _lam))
    _ref[_lam] = [float(_m[1].mean())] + [
        cap.performance_fee(cap.net_of_costs(*_m, c), cap.net_of_costs(*_b, c), RISK_AVERSION)
        for c in (0, 10)
    ]
_R = np.array([_ref[_lam] for _lam in LAMS])  # (5, 3)
assert isinstance(fee_table, pd.DataFrame) and fee_table.shape == (len(LAMS), 3), "one row per lam, 3 columns"
assert list(fee_table.columns) == ["turnover", "fee 0bp", "fee 10bp"], "the columns are named as asked"
assert np.allclose(np.asarray(fee_table.index, dtype=np.float64), LAMS), "the index is LAMS, in order"
assert matches(fee_table.to_numpy(dtype=np.float64), _R, rtol=1e-4, atol=1e-3, what="fee_table"), (
    "the turnover or the fees differ: one portfolio per lam, fees against HAR's portfolio net of the same cost"
)
_slope = float(np.polyfit(_R[:, 0] - _b[1].mean(), _R[:, 2] - _R[:, 1], 1)[0])
assert matches(cost_slope, _slope, rtol=1e-3, what="cost_slope"), (
    "cost_slope: the slope of (fee 10bp - fee 0bp) on the excess turnover (turnover - HAR's turnover)"
)
assert matches(costs_decide, bool(np.argmax(_R[:, 2]) != np.argmax(_R[:, 1])), what="costs_decide"), (
    "costs_decide: does the best lam at 10 bp differ from the best lam before costs?"
)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
