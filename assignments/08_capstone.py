# %% [markdown]
# # Graded exercises, chapter 08: your model on the capstone leaderboard
#
# Four exercises (10 points) on the capstone task of chapter 08. You build a small model of your own
# (a linear regression on the last day's features, so nothing slow is trained), enter a model on the
# leaderboard with **one call**, and read the table honestly. You are graded on honest evaluation
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
from course_lib.evaluation import level_shift, loss_series
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

# %% [markdown]
# `task.train`, `task.val` and `task.test` each hold `X` (N, 60, 3): 60 days of
# [return, log volatility, log volume change], z-scored with training statistics, and `y` (N, 1):
# tomorrow's log volatility. Training targets end in 2006, validation covers 2007-2008, the test
# years 2009-2018. `colleague` holds a colleague's forecasts (`{"val": (N, 1), "test": (N, 1)}`, an
# exponential smoothing of today's log volatility) for exercises 2 and 3.

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
