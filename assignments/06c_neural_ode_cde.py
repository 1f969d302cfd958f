# %% [markdown]
# # Graded exercises, chapter 06c: neural ODEs and neural CDEs
#
# Four exercises from chapter 06c (10 points) on tiny tensors and dates, so the whole notebook runs in
# seconds: nothing is trained. Write your answer where you see `...`, then run the `grader.check(...)`
# cell below it: it runs the *public* tests. Your notebook is graded with further hidden tests.
# Keep the names of the answer functions.

# %% [raw]
# # ASSIGNMENT CONFIG
# name: 06c_neural_ode_cde
# init_cell: true
# check_all_cell: false
# export_cell: false
# generate: true

# %%
import numpy as np
import pandas as pd
import torch

from course_lib.testing import matches

torch.set_num_threads(1)

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 2

# %% [markdown]
# ### Exercise 1 (2 points): spot the bug in the time axis
# The function below is meant to give the time that elapses between consecutive trading days, so that
# a continuous-time model knows a Monday comes after a weekend. It treats every row as one unit of time.
# Write `gaps_in_days(dates)` that returns, for a sorted `pd.DatetimeIndex` of $n$ dates, a float NumPy
# array of the $n - 1$ gaps in **calendar days** (Friday to Monday is 3.0).
#
# ```python
# def gaps_in_days(dates):
#     return np.diff(np.arange(len(dates))).astype(float)
# ```

# %% [raw]
# # BEGIN SOLUTION


# %%
def gaps_in_days(dates):
    return np.diff(dates.to_numpy()).astype("timedelta64[s]").astype(float) / 86400.0  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
_d = pd.DatetimeIndex(["2024-03-07", "2024-03-08", "2024-03-11"])
_g = np.asarray(gaps_in_days(_d), dtype=float)
assert _g.shape == (2,), "n dates have n - 1 gaps"
assert _g.tolist() == [1.0, 3.0], "Thursday to Friday is 1 day, Friday to Monday 3"

# %%
# HIDDEN
_d = pd.DatetimeIndex(["2024-12-20", "2024-12-23", "2024-12-24", "2024-12-26", "2024-12-27", "2025-01-02"])
assert np.asarray(gaps_in_days(_d), dtype=float).tolist() == [3.0, 1.0, 2.0, 1.0, 6.0], (
    "holidays are gaps too"
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
# ### Exercise 2 (3 points): bursty missing data
# In a two-state Markov chain of missing days, an observed day is followed by a missing one with
# probability `p`, and a missing day by another missing one with probability `q`. Write
# `missing_share(p, q)`, the long-run share of missing days, and `mean_gap(q)`, the average number of
# consecutive missing days in a gap.

# %% [raw]
# # BEGIN SOLUTION


# %%
def missing_share(p, q):
    return p / (p + 1 - q)  # SOLUTION


def mean_gap(q):
    return 1 / (1 - q)  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert abs(missing_share(0.1, 0.0) - 0.1 / 1.1) < 1e-12, (
    "with q = 0 the chain is missing p / (1 + p) of the days"
)
assert abs(mean_gap(0.0) - 1.0) < 1e-12, "with q = 0 every gap lasts one day"

# %%
# HIDDEN
for _p, _q in [(0.05, 0.8), (0.2, 0.5), (0.3, 0.9)]:
    _P = np.array([[1 - _p, _p], [1 - _q, _q]])  # rows: from observed, from missing
    _w, _v = np.linalg.eig(_P.T)
    _pi = np.real(_v[:, np.argmin(abs(_w - 1))])
    assert matches(missing_share(_p, _q), float(_pi[1] / _pi.sum()), atol=1e-9), (
        f"missing_share({_p}, {_q}) is not stationary"
    )
    assert matches(mean_gap(_q), sum(k * (1 - _q) * _q ** (k - 1) for k in range(1, 2000)), atol=1e-6), (
        "mean_gap is wrong"
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
# ### Exercise 3 (3 points): a linear ODE in closed form
# For the linear ODE $dh/dt = A h$ with a batch of initial states `h0` (B, H) and a batch of elapsed
# times `dt` (B,) (a different gap per sample), write `flow(A, h0, dt)` returning $h(dt)$ for each
# sample, shape (B, H). Use `torch.linalg.matrix_exp`; no ODE solver.

# %% [raw]
# # BEGIN SOLUTION


# %%
def flow(A, h0, dt):
    return (torch.linalg.matrix_exp(A * dt[:, None, None]) @ h0.unsqueeze(-1)).squeeze(-1)  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
_A = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)  # a rotation
_h = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
_out = flow(_A, _h, torch.tensor([torch.pi / 2], dtype=torch.float64))
assert _out.shape == (1, 2), "one state per sample"
assert torch.allclose(_out, torch.tensor([[0.0, -1.0]], dtype=torch.float64), atol=1e-10), "a quarter turn"

# %%
# HIDDEN
import torchdiffeq

_ = torch.manual_seed(3)
_A = 0.4 * torch.randn(3, 3, dtype=torch.float64)
_h = torch.randn(4, 3, dtype=torch.float64)
_dt = torch.tensor([0.1, 0.7, 1.5, 3.0], dtype=torch.float64)
for _b in range(4):
    _ref = torchdiffeq.odeint(lambda t, h: h @ _A.T, _h[_b : _b + 1], torch.stack([_dt[0] * 0, _dt[_b]]),
                              method="dopri5", rtol=1e-11, atol=1e-12)[-1]  # fmt: skip
    assert torch.allclose(flow(_A, _h, _dt)[_b], _ref[0], atol=1e-8), (
        f"sample {_b} (dt = {_dt[_b].item()}) is wrong"
    )

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q4
# points: 2

# %% [markdown]
# ### Exercise 4 (2 points): the path a neural CDE is driven by
# `NeuralCDEFinance` builds its path from the time channel, the features forward-filled over missing
# slots, and the running count of observations. Write `observation_count(mask)` for a (B, L) float mask
# (1 = observed): the (B, L) running count of observed slots up to and including each slot, and
# `fill_forward(x, mask)` for values `x` (B, L) with NaN where `mask` is 0: each missing slot takes the
# last observed value before it, and slots before the first observation take 0.

# %% [raw]
# # BEGIN SOLUTION


# %%
def observation_count(mask):
    return mask.cumsum(dim=1)  # SOLUTION


def fill_forward(x, mask):
    # BEGIN SOLUTION
    out = torch.zeros_like(x)
    for b in range(x.shape[0]):
        last = 0.0
        for k in range(x.shape[1]):
            if mask[b, k] == 1:
                last = x[b, k]
            out[b, k] = last
    return out
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
_m = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
_x = torch.tensor([[2.0, float("nan"), 5.0, float("nan")]])
assert observation_count(_m).tolist() == [[1.0, 1.0, 2.0, 2.0]], "running count of observed slots"
assert fill_forward(_x, _m).tolist() == [[2.0, 2.0, 5.0, 5.0]], "a missing slot takes the last observed value"

# %%
# HIDDEN
_m = torch.tensor([[0.0, 0.0, 1.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0, 0.0]])
_values = torch.tensor(
    [
        [float("nan"), float("nan"), -1.0, float("nan"), 4.0],
        [3.0, 7.0, float("nan"), float("nan"), float("nan")],
    ]
)
assert observation_count(_m).tolist() == [[0.0, 0.0, 1.0, 1.0, 2.0], [1.0, 2.0, 2.0, 2.0, 2.0]]
assert fill_forward(_values, _m).tolist() == [[0.0, 0.0, -1.0, -1.0, 4.0], [3.0, 7.0, 7.0, 7.0, 7.0]], (
    "0 before the first observation"
)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
