# %% [markdown]
# # Graded exercises, chapter 04: hybrid models
#
# Five exercises from chapter 04 (12 points) on the CNN-LSTM and the attention LSTM, with tiny layers
# and made-up attention weights: nothing is trained. Write your answer where you see `...`, then run
# the `grader.check(...)` cell below it: it runs the *public* tests. Your notebook is graded with
# further hidden tests. Keep the names of the answer functions and variables.

# %% [raw]
# # ASSIGNMENT CONFIG
# name: 04_hybrids
# init_cell: true
# check_all_cell: false
# export_cell: false
# generate: true

# %%
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.testing import matches

torch.set_num_threads(1)
LOOKBACK = 20

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 2

# %% [markdown]
# ### Exercise 1 (2 points): how many steps does the LSTM read?
# A CNN-LSTM variant applies `pools` layers `nn.MaxPool1d(p)` to its convolution features before the
# LSTM (the chapter's model has two pools of 2); each drops the oldest days that do not fill a whole
# window of `p`. Write `pooled_steps(L, p, pools)`: the number of steps the LSTM reads for a window of
# `L` days (assume `L >= p ** pools`).

# %% [raw]
# # BEGIN SOLUTION


# %%
def pooled_steps(L, p, pools):
    # BEGIN SOLUTION
    for _ in range(pools):
        L //= p
    return L
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert pooled_steps(8, 2, 2) == 2, "8 days -> 4 -> 2 steps"
assert pooled_steps(27, 3, 3) == 1, "27 days -> 9 -> 3 -> 1 step"

# %%
# HIDDEN
for _L, _p, _k in [(5, 2, 2), (23, 2, 2), (60, 3, 2), (100, 3, 3), (31, 5, 1), (64, 4, 3)]:
    _z = torch.zeros(1, 1, _L)
    for _i in range(_k):
        _z = nn.MaxPool1d(_p)(_z)
    assert matches(pooled_steps(_L, _p, _k), _z.shape[-1]), f"pooled_steps({_L}, {_p}, {_k}) is wrong"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 3

# %% [markdown]
# ### Exercise 2 (3 points): spot the bug in the attention weights
# This function turns attention scores $(B, L)$ into the context vector $\sum_i a_i h_i$, shape
# $(B, H)$, from the hidden states `values` $(B, L, H)$. It normalises over the wrong axis, so each
# sample's weights depend on the other samples of the batch. Write `attention_context(scores, values)`
# whose weights $a = \mathrm{softmax}(e)$ are taken over each sample's own time steps.
#
# ```python
# def buggy_context(scores, values):
#     weights = torch.softmax(scores, dim=0)
#     return (weights.unsqueeze(-1) * values).sum(dim=1)
# ```

# %% [raw]
# # BEGIN SOLUTION


# %%
def attention_context(scores, values):
    # BEGIN SOLUTION
    weights = torch.softmax(scores, dim=1)  # (B, L): each row sums to 1
    return (weights.unsqueeze(-1) * values).sum(dim=1)  # (B, H)
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
_ = torch.manual_seed(0)
_e, _h = torch.randn(3, 5), torch.randn(3, 5, 6)
_e2 = _e.clone()
_e2[1] += torch.randn(5)  # change sample 1 only
_ca, _cb = attention_context(_e, _h), attention_context(_e2, _h)
assert isinstance(_ca, torch.Tensor) and _ca.shape == (3, 6), "the context must be (B, H)"
assert torch.allclose(_ca[0], _cb[0]), "sample 0 moved when sample 1's scores changed: wrong softmax axis"

# %%
# HIDDEN
_ = torch.manual_seed(1)
_e, _h = torch.randn(4, 7) * 3, torch.randn(4, 7, 2)
_w = torch.exp(_e - _e.max(dim=1, keepdim=True).values)
_ref = torch.einsum("bl,blh->bh", _w / _w.sum(dim=1, keepdim=True), _h)
assert matches(attention_context(_e, _h), _ref, atol=1e-6, what="the context"), (
    "differs from sum_i softmax(e)_i h_i per sample"
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
# ### Exercise 3 (3 points): spot the bug in the convolution
# The source's CNN-LSTM used `nn.Conv1d(C, F, k, padding=k // 2)`, which centres the filter on day $t$
# and so reads the future. Write `causal_conv(x, conv)` that applies the `nn.Conv1d` `conv` (kernel
# size 3, built with `padding=0`) to `x` of shape $(B, C, L)$ and returns $(B, F, L)$ in which day $t$
# depends on days $t-2, t-1, t$ only. Pad on the correct side yourself (`torch.nn.functional.pad`).

# %% [raw]
# # BEGIN SOLUTION


# %%
def causal_conv(x, conv):
    return conv(F.pad(x, (conv.kernel_size[0] - 1, 0)))  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
_ = torch.manual_seed(0)
_conv = nn.Conv1d(4, 8, 3)
_x = torch.randn(2, 4, 12)
_y = causal_conv(_x, _conv)
assert isinstance(_y, torch.Tensor) and _y.shape == (2, 8, 12), "expected (B, F, L) = (2, 8, 12)"
_later = _x.clone()
_later[:, :, 6:] += 1.0  # change days 6 and later only
assert torch.allclose(causal_conv(_later, _conv)[:, :, :6], _y[:, :, :6]), "day t still reads later days"

# %%
# HIDDEN
_ = torch.manual_seed(1)
_conv = nn.Conv1d(3, 5, 3)
_x = torch.randn(2, 3, 10)
_ref = F.conv1d(F.pad(_x, (2, 0)), _conv.weight, _conv.bias)
assert matches(causal_conv(_x, _conv), _ref.detach(), atol=1e-6, what="the output"), (
    "day t must use days t-2, t-1 and t, in that order"
)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# For the last exercise: the attention weights that a volatility model put on the `LOOKBACK` days of
# 200 test windows, one row per window summing to one, oldest day first (made up for this exercise).

# %%
_rng = np.random.default_rng(0)
_logits = _rng.normal(0, 1, (200, LOOKBACK)) + np.linspace(0, 1.5, LOOKBACK)
attention_weights = np.exp(_logits) / np.exp(_logits).sum(axis=1, keepdims=True)  # (N, L)

# %% [raw]
# # BEGIN QUESTION
# name: q4
# points: 2

# %% [markdown]
# ### Exercise 4 (2 points): how recent is the attention?
# Compute `recent_share` (a float): the total weight on the **5 most recent days** of a window,
# averaged over the windows of `attention_weights`. Uniform weights would give `5 / LOOKBACK`.

# %% [raw]
# # BEGIN SOLUTION

# %%
recent_share = float(attention_weights[:, -5:].sum(axis=1).mean())  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert isinstance(recent_share, float) and 0 <= recent_share <= 1, "a share of weights that sum to one"

# %%
# HIDDEN
assert matches(
    recent_share, float(attention_weights[:, -5:].sum(1).mean()), atol=1e-9, what="recent_share"
), "take the last 5 columns (the most recent days), sum them per window, then average"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q5
# points: 2

# %% [markdown]
# ### Exercise 5 (2 points): experiment, does the attention use its query?
# Bahdanau attention *can* make its weights depend on the query; whether a given layer does is a
# measurement. The cell below builds an untrained `BahdanauAttention(8)` and the states `keys_q5` of 64
# windows; each window's query is its last state. Compute the weights with the window's own query, and
# with the query of the *next* window (`torch.roll(keys_q5[:, -1], 1, dims=0)`), keeping the keys. Store
# `query_effect`, the mean over windows of the total variation distance $\tfrac12\sum_i|\alpha_i-\alpha'_i|$
# between the two (a `float`); `from_uniform`, the mean total variation distance between the own-query
# weights and uniform weights $1/L$ (a `float`); and `query_matters`, whether `query_effect` is at least
# half of `from_uniform` (a `bool`). In a comment, say what a small ratio would mean for reading the weights.

# %%
from course_lib.models.hybrid import BahdanauAttention

torch.manual_seed(0)
attention_q5 = BahdanauAttention(8)
torch.manual_seed(1)
keys_q5 = torch.randn(64, LOOKBACK, 8)

# %% [raw]
# # BEGIN SOLUTION

# %%
_q5_own = attention_q5(keys_q5, keys_q5[:, -1])[1].detach()  # SOLUTION
_q5_other = attention_q5(keys_q5, torch.roll(keys_q5[:, -1], 1, dims=0))[1].detach()  # SOLUTION
query_effect = float(0.5 * (_q5_own - _q5_other).abs().sum(1).mean())  # SOLUTION
from_uniform = float(0.5 * (_q5_own - 1 / LOOKBACK).abs().sum(1).mean())  # SOLUTION
query_matters = query_effect >= 0.5 * from_uniform  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert isinstance(query_effect, float) and isinstance(from_uniform, float), "two floats"
assert 0 <= query_effect <= 1 and 0 <= from_uniform <= 1, "a total variation distance lies in [0, 1]"
assert isinstance(query_matters, bool) and query_matters == (query_effect >= 0.5 * from_uniform)

# %%
# HIDDEN
from course_lib.models.hybrid import BahdanauAttention as _Attention

_ = torch.manual_seed(0)
_ref_att = _Attention(8)
_ = torch.manual_seed(1)
_ref_keys = torch.randn(64, LOOKBACK, 8)
with torch.no_grad():
    _ref_own = _ref_att(_ref_keys, _ref_keys[:, -1])[1]
    _ref_other = _ref_att(_ref_keys, torch.roll(_ref_keys[:, -1], 1, dims=0))[1]
_ref_effect = float(0.5 * (_ref_own - _ref_other).abs().sum(1).mean())
_ref_uniform = float(0.5 * (_ref_own - 1 / LOOKBACK).abs().sum(1).mean())
assert matches(query_effect, _ref_effect, atol=1e-6, what="query_effect"), (
    "the mean over windows of half the summed absolute difference, own query against the next window's"
)
assert matches(from_uniform, _ref_uniform, atol=1e-6, what="from_uniform"), "own-query weights against 1/L"
assert matches(query_matters, _ref_effect >= 0.5 * _ref_uniform, what="query_matters")

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
