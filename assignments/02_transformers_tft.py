# %% [markdown]
# # Graded exercises, chapter 02: transformers and the TFT
#
# Five exercises from chapter 02 (13 points, the last an experiment), on tiny tensors: nothing is
# trained. Write your answer where you see `...`, then run the `grader.check(...)` cell below it: it
# runs the *public* tests. Your notebook is graded with further hidden tests. Keep the names of the
# answer functions and variables.

# %% [raw]
# # ASSIGNMENT CONFIG
# name: 02_transformers_tft
# init_cell: true
# check_all_cell: false
# export_cell: false
# generate: true

# %%
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.data.windows import make_task
from course_lib.testing import matches

torch.set_num_threads(1)
QUANTILES = (0.1, 0.5, 0.9)

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 3

# %% [markdown]
# ### Exercise 1 (3 points): local causal attention from scratch
# Write `local_causal_attention(q, k, v, window)` for tensors of shape $(B, L, d)$ that returns the
# pair `(output, weights)`, of shapes $(B, L, d)$ and $(B, L, L)$, of scaled dot-product attention in
# which step $t$ sees only the last `window` steps, $t - \text{window} + 1, \dots, t$ (the chapter's
# causal mask is `window = L`): $\mathrm{softmax}\big(QK^\top/\sqrt d + M\big)V$ with $M_{ts} = -\infty$
# for $s > t$ or $s \le t - \text{window}$. Use matrix products, `masked_fill` and `softmax` only.

# %% [raw]
# # BEGIN SOLUTION


# %%
def local_causal_attention(q, k, v, window):
    # BEGIN SOLUTION
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5  # (B, L, L)
    allowed = torch.ones(q.shape[1], k.shape[1], dtype=torch.bool).tril().triu(diagonal=1 - window)
    weights = scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
    return weights @ v, weights
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
_ = torch.manual_seed(0)
_q, _k, _v = torch.randn(3, 7, 5), torch.randn(3, 7, 5), torch.randn(3, 7, 5)
_out, _w = local_causal_attention(_q, _k, _v, 3)
assert _out.shape == (3, 7, 5) and _w.shape == (3, 7, 7), "output (B, L, d) and weights (B, L, L) expected"
assert torch.all(_w.triu(diagonal=1) == 0), "weights on future positions must be exactly zero: apply the mask"
assert torch.all(_w.tril(diagonal=-3) == 0), "with window 3, step t must not see step t - 3 or earlier"
assert torch.allclose(_w.sum(-1), torch.ones(3, 7)), "each row of weights must sum to 1 (softmax over keys)"

# %%
# HIDDEN
_ = torch.manual_seed(1)
_q, _k, _v = torch.randn(2, 11, 4) * 3, torch.randn(2, 11, 4) * 3, torch.randn(2, 11, 4)
for _window in (1, 4, 11):
    _band = torch.ones(11, 11, dtype=torch.bool).tril().triu(diagonal=1 - _window)
    _res = local_causal_attention(_q, _k, _v, _window)
    assert isinstance(_res, tuple) and len(_res) == 2, "return the pair (output, weights)"
    _ref = F.scaled_dot_product_attention(_q, _k, _v, attn_mask=_band)
    assert matches(_res[0], _ref, atol=1e-5, what="the output"), (
        f"differs from PyTorch's attention with the banded mask, window {_window}: did you divide by sqrt(d)?"
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
# ### Exercise 2 (3 points): spot the bug in a variable selection
# `weight_net` maps the $m$ variables of one step to $m$ logits, $(\dots, m) \to (\dots, m)$. The
# source module's selection below has **two** bugs: the weights of step $t$ depend on later steps, and
# they are not a distribution over the variables. Write the corrected `selection_weights(x, weight_net)`
# returning weights of shape $(B, L, m)$.
#
# ```python
# def buggy_selection_weights(x, weight_net):   # x: (B, L, m)
#     logits = weight_net(x.mean(dim=1, keepdim=True).expand_as(x))
#     return logits.softmax(dim=1)
# ```

# %% [raw]
# # BEGIN SOLUTION


# %%
def selection_weights(x, weight_net):
    return weight_net(x).softmax(dim=-1)  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
_ = torch.manual_seed(0)
_net = nn.Sequential(nn.Linear(4, 8), nn.ELU(), nn.Linear(8, 4))
_x = torch.randn(5, 9, 4)
_w = selection_weights(_x, _net)
assert isinstance(_w, torch.Tensor) and _w.shape == (5, 9, 4), "weights must be (B, L, m)"
assert torch.all(_w >= 0) and torch.allclose(_w.sum(-1), torch.ones(5, 9)), (
    "the weights must be a distribution over the VARIABLES (last axis) at each step"
)

# %%
# HIDDEN
_ = torch.manual_seed(2)
_net = nn.Sequential(nn.Linear(3, 6), nn.ELU(), nn.Linear(6, 3))
_x = torch.randn(4, 8, 3)
_later = _x.clone()
_later[:, 5:] += 2.0  # change only the steps after t = 4
_w, _w_later = selection_weights(_x, _net), selection_weights(_later, _net)
with torch.no_grad():
    _ref, _ref_later = _net(_x).softmax(-1), _net(_later).softmax(-1)
assert matches(_w_later[:, :5], _ref_later[:, :5], atol=1e-6, what="the weights"), (
    "the weights of a step depend on later steps"
)
assert matches(_w, _ref, atol=1e-6, what="the weights"), "apply weight_net to each step's own inputs"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q3
# points: 2

# %% [markdown]
# ### Exercise 3 (2 points): a calendar encoding
# Positional encodings tell a model *where* in the window a step is; calendar features tell it *when*.
# Write `cyclic_encoding(day, periods)`: for an integer array `day` $(N,)$ (e.g. the day of the week)
# and a tuple of periods $(P_1, \dots, P_m)$, return a NumPy array $(N, 2m)$ whose columns are
# $\sin(2\pi\,\text{day}/P_j), \cos(2\pi\,\text{day}/P_j)$ for $j = 1, \dots, m$, in that order, so that
# the last day of a cycle sits next to the first.

# %% [raw]
# # BEGIN SOLUTION


# %%
def cyclic_encoding(day, periods):
    # BEGIN SOLUTION
    angle = 2 * np.pi * np.asarray(day, dtype=float)[:, None] / np.asarray(periods, dtype=float)  # (N, m)
    return np.stack([np.sin(angle), np.cos(angle)], axis=-1).reshape(len(angle), -1)
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
_enc = cyclic_encoding(np.arange(14) % 7, (7,))
assert isinstance(_enc, np.ndarray) and _enc.shape == (14, 2), "one sin and one cos column per period"
assert np.allclose(_enc[:7], _enc[7:]), "the same weekday must get the same encoding"
assert np.allclose((_enc**2).sum(axis=1), 1), "each (sin, cos) pair lies on the unit circle"

# %%
# HIDDEN
_day = np.array([0, 1, 4, 6, 11, 30, 251])
_ref = np.column_stack([f(2 * np.pi * _day / _p) for _p in (5, 21, 252) for f in (np.sin, np.cos)])
assert matches(cyclic_encoding(_day, (5, 21, 252)), _ref, atol=1e-9, what="the encoding"), (
    "columns sin, cos for each period in order"
)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# For the last exercise: the simplest quantile forecast of next-day log volatility, the 10%, 50% and
# 90% quantiles of the *training* years, used for every day of the test years.

# %%
vtask = make_task("volatility", ticker="^GSPC", lookback=5, horizons=(1,))
y_test = vtask.test.y[:, 0]
quantile_forecast = np.tile(np.quantile(vtask.train.y[:, 0], QUANTILES), (len(y_test), 1))  # (N, 3)

# %% [raw]
# # BEGIN QUESTION
# name: q4
# points: 2

# %% [markdown]
# ### Exercise 4 (2 points): are the quantiles calibrated?
# Compute `hit_rates`, a NumPy array of shape (3,): the share of test outcomes `y_test` below each
# column of `quantile_forecast` (a calibrated forecast gives about 0.1, 0.5, 0.9), and `worst_gap`,
# the largest absolute difference between `hit_rates` and `QUANTILES`, as a float.

# %% [raw]
# # BEGIN SOLUTION

# %%
hit_rates = (y_test[:, None] < quantile_forecast).mean(axis=0)  # SOLUTION
worst_gap = float(np.max(np.abs(hit_rates - np.array(QUANTILES))))  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert np.shape(hit_rates) == (3,), "one share per quantile level"
assert isinstance(worst_gap, float), "worst_gap is a single number"

# %%
# HIDDEN
_hits = np.array([np.mean(y_test < quantile_forecast[:, j]) for j in range(3)])
assert matches(hit_rates, _hits, what="hit_rates"), "hit_rates[j] = share of outcomes y < forecast quantile j"
assert matches(worst_gap, float(np.max(np.abs(_hits - np.array(QUANTILES)))), what="worst_gap"), (
    "worst_gap = max |hit rate - level|"
)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# For the last exercise, random queries and keys of growing width, each drawn from its own fixed seed.

# %%
WIDTHS = (4, 16, 64, 256)


def draw_qk(d):
    """Queries and keys (64, 20, d) with independent standard normal entries, seeded by the width."""
    g = torch.Generator().manual_seed(d)
    return torch.randn(64, 20, d, generator=g), torch.randn(64, 20, d, generator=g)


# %% [raw]
# # BEGIN QUESTION
# name: q5
# points: 3

# %% [markdown]
# ### Exercise 5 (3 points, experiment): why divide by $\sqrt d$?
# For each width `d` in `WIDTHS`, take `q, k = draw_qk(d)`, compute the attention weights
# $\mathrm{softmax}(QK^\top/\sqrt d)$ over the keys (no mask) and their largest weight per query, then
# average over the batch and the queries: `peak_scaled`. Do the same without the division by $\sqrt d$:
# `peak_unscaled`. Store both as NumPy float64 arrays of shape `(4,)` (one entry per width, in order),
# and set `unscaled_saturates` to `True` if, at the largest width, the unscaled softmax puts more than 90%
# of its weight on one key on average while the scaled one stays below 50%. What would a saturated
# softmax do to the gradients of the queries and keys?

# %% [raw]
# # BEGIN SOLUTION


# %%
def mean_peak(q, k, scale):
    """Mean over batch and queries of the largest softmax(q k^T * scale) weight over the keys."""
    # BEGIN SOLUTION
    return float((q @ k.transpose(-2, -1) * scale).softmax(dim=-1).max(dim=-1).values.mean())
    # END SOLUTION


_draws = {d: draw_qk(d) for d in WIDTHS}  # SOLUTION
peak_scaled = np.array([mean_peak(*_draws[d], d**-0.5) for d in WIDTHS])  # SOLUTION
peak_unscaled = np.array([mean_peak(*_draws[d], 1.0) for d in WIDTHS])  # SOLUTION
unscaled_saturates = bool(peak_unscaled[-1] > 0.9 and peak_scaled[-1] < 0.5)  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert isinstance(peak_scaled, np.ndarray) and peak_scaled.shape == (len(WIDTHS),), "one value per width"
assert isinstance(peak_unscaled, np.ndarray) and peak_unscaled.shape == (len(WIDTHS),), "one value per width"
assert np.all((peak_scaled >= 1 / 20) & (peak_scaled <= 1)), "a largest weight of 20 lies in [1/20, 1]"
assert isinstance(unscaled_saturates, bool), "True or False"
assert isinstance(mean_peak(*draw_qk(4), 1.0), float), "mean_peak returns one float"

# %%
# HIDDEN
_ref = {}
for _label, _scale in (("scaled", None), ("unscaled", 1.0)):
    _vals = []
    for _d in WIDTHS:
        _q, _k = draw_qk(_d)
        _s = _q @ _k.transpose(-2, -1) * (_d**-0.5 if _scale is None else _scale)
        _vals.append(float(torch.softmax(_s, dim=-1).amax(dim=-1).mean()))
    _ref[_label] = np.array(_vals, dtype=np.float64)
assert matches(peak_scaled, _ref["scaled"], rtol=1e-4, what="peak_scaled"), (
    "softmax over the keys of q k^T / sqrt(d), largest weight per query, mean over batch and queries"
)
assert matches(peak_unscaled, _ref["unscaled"], rtol=1e-4, what="peak_unscaled"), "the same without / sqrt(d)"
_q8, _k8 = draw_qk(8)
_peak8 = float(torch.softmax(_q8 @ _k8.transpose(-2, -1) * 0.3, dim=-1).amax(dim=-1).mean())
assert matches(mean_peak(_q8, _k8, 0.3), _peak8, rtol=1e-5, what="mean_peak"), (
    "mean_peak: softmax over the keys of q k^T * scale, largest weight per query, mean over everything"
)
_sat = bool(_ref["unscaled"][-1] > 0.9 and _ref["scaled"][-1] < 0.5)
assert matches(unscaled_saturates, _sat, what="unscaled_saturates"), "read your two arrays at d = 256"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
