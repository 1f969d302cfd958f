# %% [markdown]
# # Graded exercises, chapter 06a: state space models
#
# Four exercises from chapter 06a (10 points) about discrete state space models, their kernels and
# Mamba's scan, one of them a small experiment; nothing is trained. Write your answer where you see
# `...`, then run the `grader.check(...)` cell below it: it runs the *public* tests. Your notebook is
# graded with further hidden tests. Keep the names of the answer functions and variables.

# %% [raw]
# # ASSIGNMENT CONFIG
# name: 06a_state_space_models
# init_cell: true
# check_all_cell: false
# export_cell: false
# generate: true

# %%
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
# ### Exercise 3 (3 points): an experiment: what does a parallel scan cost?
# One step $h \mapsto a_t h + b_t$ is the pair $(a_t, b_t)$, and doing one step and then another is the
# pair $(a_1, b_1) \circ (a_2, b_2) = (a_1 a_2,\; a_2 b_1 + b_2)$. This operator is associative, so the
# states can be computed in rounds: the **Hillis-Steele** scan, in round $r = 0, 1, 2, \dots$ while
# $2^r < L$, replaces the pair at every position $t \ge 2^r$ by (pair at $t - 2^r$) $\circ$ (pair at
# $t$), all positions at once, using the pairs of the previous round. After the last round the $b$
# part at $t$ is $h_t$ (from $h_{-1} = 0$).
#
# 1. Write `prefix_scan(a, b)` for two 1-D tensors of the same length $L$ and dtype: return
#    `(h, combines)`, the tensor of states $h_0, \dots, h_{L-1}$ (same shape and dtype as `b`) computed
#    by the Hillis-Steele rounds, and the number of pairs combined in all rounds together (an int).
# 2. Experiment: the sequential scan combines $L - 1$ pairs. For each $L$ in 16, 64, 256 and 1024, run
#    your scan (any $a$ and $b$ of that length) and store in the dict `WORK_RATIOS` the ratio
#    `combines / (L - 1)` (a float) under the key `L` (an int).
# 3. Interpretation: the parallel scan needs only about $\log_2 L$ rounds, but how does its extra work
#    grow? Set `EXTRA_WORK_GROWS_LIKE` to one of the strings `"constant"`, `"log L"` or `"L"`.

# %% [raw]
# # BEGIN SOLUTION


# %%
def prefix_scan(a, b):
    # BEGIN SOLUTION
    offset, combines = 1, 0
    while offset < len(a):
        new_a = a[:-offset] * a[offset:]
        new_b = a[offset:] * b[:-offset] + b[offset:]
        a, b = torch.cat([a[:offset], new_a]), torch.cat([b[:offset], new_b])
        combines += len(a) - offset
        offset *= 2
    return b, combines
    # END SOLUTION


WORK_RATIOS = {n: prefix_scan(*[torch.ones(n)] * 2)[1] / (n - 1) for n in (16, 64, 256, 1024)}  # SOLUTION
EXTRA_WORK_GROWS_LIKE = "log L"  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
_h, _n = prefix_scan(
    torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64), torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
)
assert isinstance(_n, int), "combines must be an int"
assert torch.is_tensor(_h) and _h.shape == (3,), "h must be a tensor with one state per day"
assert torch.allclose(_h, torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64)), (
    "a decaying impulse: 1, 0.5, 0.25"
)

# %%
assert set(WORK_RATIOS) == {16, 64, 256, 1024}, "one ratio for each L"

# %%
# HIDDEN
_g = torch.Generator().manual_seed(0)
for _L in (1, 2, 5, 37, 64):
    for _dtype in (torch.float64, torch.float32):
        _a = torch.rand(_L, generator=_g, dtype=torch.float64).to(_dtype)
        _b = torch.randn(_L, generator=_g, dtype=torch.float64).to(_dtype)
        _h, _n = prefix_scan(_a.clone(), _b.clone())
        assert torch.is_tensor(_h) and _h.shape == (_L,) and _h.dtype == _dtype, (
            "h: shape (L,), the dtype of b"
        )
        _ref, _state = [], torch.zeros((), dtype=_dtype)
        for _t in range(_L):
            _state = _a[_t] * _state + _b[_t]
            _ref.append(_state)
        _tol = 1e-12 if _dtype == torch.float64 else 1e-5
        assert torch.allclose(_h, torch.stack(_ref), atol=_tol), (
            "the states do not follow h_t = a_t h_{t-1} + b_t"
        )
        _expected = sum(_L - 2**_r for _r in range(max(_L - 1, 0).bit_length()))
        assert isinstance(_n, int) and _n == _expected, f"L = {_L}: {_expected} pairs are combined, got {_n}"
assert isinstance(WORK_RATIOS, dict) and set(WORK_RATIOS) == {16, 64, 256, 1024}, "keys 16, 64, 256, 1024"
assert all(isinstance(v, float) for v in WORK_RATIOS.values()), "the ratios are floats"
for _L in (16, 64, 256, 1024):
    _expected = sum(_L - 2**_r for _r in range((_L - 1).bit_length())) / (_L - 1)
    assert abs(WORK_RATIOS[_L] - _expected) < 1e-3, f"the work ratio at L = {_L}"
assert EXTRA_WORK_GROWS_LIKE == "log L", "about log2(L) combines per day: the ratio grows like log L"

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
