# %% [markdown]
# # Graded exercises, chapter 04: hybrid models
#
# Four exercises from chapter 04 (10 points) on the CNN-LSTM and the attention LSTM, with tiny layers
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

torch.set_num_threads(1)
LOOKBACK = 20

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 2

# %% [markdown]
# ### Exercise 1 (2 points): how many steps does the LSTM read?
# The CNN-LSTM applies two `nn.MaxPool1d(2)` to its convolution features before the LSTM; each drops
# the oldest day of an odd length. Write `lstm_steps(L)`: the number of steps the LSTM reads for a
# window of `L >= 4` days.

# %% [raw]
# # BEGIN SOLUTION

# %%
def lstm_steps(L):
    return L // 2 // 2  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert lstm_steps(8) == 2, "8 days -> 4 -> 2 steps"

# %%
# HIDDEN
_pool = nn.MaxPool1d(2)
for _L in (4, 5, 7, 21, 23, 60):
    assert lstm_steps(_L) == _pool(_pool(torch.zeros(1, 1, _L))).shape[-1], f"lstm_steps({_L}) is wrong"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %%
class BahdanauLayers(nn.Module):
    """The three layers of additive attention: W (keys), U and b (query), v (score)."""

    def __init__(self, hidden):
        super().__init__()
        self.Wa = nn.Linear(hidden, hidden, bias=False)
        self.Ua = nn.Linear(hidden, hidden)
        self.va = nn.Linear(hidden, 1, bias=False)


# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 3

# %% [markdown]
# ### Exercise 2 (3 points): spot the bug in the attention score
# The source module scored the hidden states like this, ignoring the query:
#
# ```python
# def source_scores(attention, keys, query):      # keys (B, L, H), query (B, H)
#     return attention.va(torch.tanh(attention.Wa(keys))).squeeze(-1)   # (B, L)
# ```
#
# Write `fixed_scores(attention, keys, query)` that returns the Bahdanau scores
# $e_i = v^\top \tanh(W h_i + U q + b)$, shape $(B, L)$, with the layers of a `BahdanauLayers`:
# `attention.Wa`, `attention.Ua` (holds $U$ and $b$) and `attention.va`.

# %% [raw]
# # BEGIN SOLUTION

# %%
def fixed_scores(attention, keys, query):
    return attention.va(torch.tanh(attention.Wa(keys) + attention.Ua(query).unsqueeze(1))).squeeze(-1)  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
_ = torch.manual_seed(0)
_att = BahdanauLayers(6)
_keys, _qa, _qb = torch.randn(3, 5, 6), torch.randn(3, 6), torch.randn(3, 6)
_sa, _sb = fixed_scores(_att, _keys, _qa), fixed_scores(_att, _keys, _qb)
assert isinstance(_sa, torch.Tensor) and _sa.shape == (3, 5), "scores must be (B, L)"
assert (_sa - _sb).abs().max() > 1e-4, "the scores do not depend on the query: that is the source's bug"

# %%
# HIDDEN
_ = torch.manual_seed(1)
_att = BahdanauLayers(4)
_keys, _q = torch.randn(2, 7, 4), torch.randn(2, 4)
_ref = (torch.tanh(_keys @ _att.Wa.weight.T + (_q @ _att.Ua.weight.T + _att.Ua.bias)[:, None]) @ _att.va.weight.T)
assert torch.allclose(fixed_scores(_att, _keys, _q), _ref[..., 0], atol=1e-6), "differs from v' tanh(W h + U q + b)"

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
assert torch.allclose(causal_conv(_x, _conv), _ref, atol=1e-6), "day t must use days t-2, t-1 and t, in that order"

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
assert abs(recent_share - attention_weights[:, -5:].sum(1).mean()) < 1e-9, (
    "take the last 5 columns (the most recent days), sum them per window, then average"
)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
