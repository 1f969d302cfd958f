# %% [markdown]
# # Graded exercises, chapter 06a: state space models
#
# Four exercises from chapter 06a (10 points) about discrete state space models, their kernels and
# Mamba's scan; nothing is trained. Write your answer where you see `...`, then run the
# `grader.check(...)` cell below it: it runs the *public* tests. Your notebook is graded with further
# hidden tests. Keep the names of the answer functions and variables.

# %% [raw]
# # ASSIGNMENT CONFIG
# name: 06a_state_space_models
# init_cell: true
# check_all_cell: false
# export_cell: false
# generate: true

# %%
import cmath
import math

import torch

from course_lib.testing import matches

torch.set_num_threads(1)

# %% [markdown]
# A discrete linear state space model updates a state $h_l = \bar a\, h_{l-1} + \bar b\, u_l$ and reads
# $y_l = c\, h_l$. Started from $h_{-1} = 0$ it is a causal convolution $y_l = \sum_{j \le l} K_j u_{l-j}$.
# Mamba's scan is the same recurrence with a different $\bar a_t$ and input $b_t$ on every day:
# $h_t = a_t h_{t-1} + b_t$.

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 2

# %% [markdown]
# ### Exercise 1 (2 points): the kernel of a one-mode model
# Write `scalar_kernel(a_bar, b_bar, c, L)`: the list of the $L$ kernel values $K_0, \dots, K_{L-1}$
# (floats) of the scalar model above.

# %% [raw]
# # BEGIN SOLUTION


# %%
def scalar_kernel(a_bar, b_bar, c, L):
    return [c * a_bar**j * b_bar for j in range(L)]  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert len(scalar_kernel(0.9, 1.0, 1.0, 5)) == 5, "one value per lag"
assert abs(scalar_kernel(0.9, 1.0, 1.0, 5)[0] - 1.0) < 1e-12, "K_0 = c * b_bar"

# %%
# HIDDEN
for _a, _b, _c, _n in [(0.5, 2.0, 3.0, 6), (-0.8, 0.1, -1.5, 9), (0.999, 0.01, 2.0, 40)]:
    _h, _resp = 0.0, []
    for _l in range(_n):  # impulse response of the recurrence
        _h = _a * _h + _b * (1.0 if _l == 0 else 0.0)
        _resp.append(_c * _h)
    assert matches(scalar_kernel(_a, _b, _c, _n), _resp, atol=1e-10, what="the kernel"), (
        "not the impulse response"
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
# ### Exercise 2 (3 points): a scan, written out
# Write `scan(a, b)` for two 1-D tensors of the same length $L$: the tensor of states $h_0, \dots,
# h_{L-1}$ with $h_t = a_t h_{t-1} + b_t$ and $h_{-1} = 0$. It must be exact also when $a_t$ is
# within $10^{-7}$ of 1 and when it is 0.

# %% [raw]
# # BEGIN SOLUTION


# %%
def scan(a, b):
    h, states = torch.zeros((), dtype=b.dtype), []  # SOLUTION
    for a_t, b_t in zip(a.unbind(0), b.unbind(0), strict=True):  # SOLUTION
        h = a_t * h + b_t  # SOLUTION
        states.append(h)  # SOLUTION
    return torch.stack(states)  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
_h = scan(
    torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64), torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
)
assert torch.allclose(_h, torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64)), (
    "a decaying impulse: 1, 0.5, 0.25"
)

# %%
# HIDDEN
_g = torch.Generator().manual_seed(0)
for _a in [
    torch.rand(50, generator=_g, dtype=torch.float64),
    1 - 1e-7 * torch.rand(200, generator=_g, dtype=torch.float64),
    torch.zeros(10, dtype=torch.float64),
]:
    _b = torch.randn(len(_a), generator=_g, dtype=torch.float64)
    _expected = torch.tensor(
        [
            sum(float(_b[s]) * math.prod(float(x) for x in _a[s + 1 : t + 1]) for s in range(t + 1))
            for t in range(len(_a))
        ],
        dtype=torch.float64,
    )
    assert matches(scan(_a, _b), _expected, atol=1e-9, what="the states"), (
        "the states do not follow h_t = a_t h_{t-1} + b_t"
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
# ### Exercise 3 (3 points): how wrong is a kernel without the ZOH factor?
# For one mode $A$ (a complex number with negative real part) and step size `dt`, the zero-order hold
# gives $\bar B = (e^{\Delta A} - 1)/A$ (with $B = 1$), and a kernel that forgets this factor uses 1
# instead. Write `zoh_error_ratio(A, dt)`: by what factor (a positive float) the forgetful kernel's
# values are too large in magnitude for that mode.

# %% [raw]
# # BEGIN SOLUTION


# %%
def zoh_error_ratio(A, dt):
    return abs(A) / abs(cmath.exp(A * dt) - 1)  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert zoh_error_ratio(-0.5, 0.01) > 1, "without the factor the kernel is too large"

# %%
# HIDDEN
for _A, _dt in [(-0.5, 0.01), (-0.5 + 1j * math.pi, 0.001), (-0.5 + 3j * math.pi, 0.1), (-2.0, 1.0)]:
    _expected = 1 / abs((cmath.exp(_A * _dt) - 1) / _A)
    assert matches(zoh_error_ratio(_A, _dt), _expected, atol=0, rtol=1e-9), (
        f"wrong ratio for A={_A}, dt={_dt}"
    )
assert matches(zoh_error_ratio(-0.5, 1e-3), 1e3, atol=5), "for small dt the ratio is about 1 / dt"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q4
# points: 2

# %% [markdown]
# ### Exercise 4 (2 points): the widths of a Mamba block
# A Mamba block of model width `d_model` has an inner width `d_inner = expand * d_model`, a step-size
# rank `dt_rank = ceil(d_model / 16)`, and an `x_proj` that produces the step-size features, $B_t$ and
# $C_t$ (each `d_state` wide) from the inner width. Write `mamba_widths(d_model, d_state, expand)`
# returning the dict `{"d_inner": ..., "dt_rank": ..., "x_proj_out": ...}` (ints).

# %% [raw]
# # BEGIN SOLUTION


# %%
def mamba_widths(d_model, d_state, expand):
    dt_rank = math.ceil(d_model / 16)  # SOLUTION
    return {"d_inner": expand * d_model, "dt_rank": dt_rank, "x_proj_out": dt_rank + 2 * d_state}  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert set(mamba_widths(32, 16, 2)) == {"d_inner", "dt_rank", "x_proj_out"}, "three widths"

# %%
# HIDDEN
assert matches(mamba_widths(32, 16, 2), {"d_inner": 64, "dt_rank": 2, "x_proj_out": 34}), (
    "d_model=32, d_state=16"
)
assert matches(mamba_widths(17, 4, 1), {"d_inner": 17, "dt_rank": 2, "x_proj_out": 10}), "dt_rank rounds up"
assert matches(mamba_widths(8, 8, 3), {"d_inner": 24, "dt_rank": 1, "x_proj_out": 17}), "d_model=8"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
