# %% [markdown]
# # Graded exercises, chapter 01: LSTM and GRU
#
# Five exercises from chapter 01 (13 points, the last an experiment), on tiny tensors so that the whole
# notebook runs in seconds: nothing is trained. Write your answer where you see `...`, then run the `grader.check(...)`
# cell below it: it runs the *public* tests. Your notebook is graded with further hidden tests.
# Keep the names of the answer variables and functions.

# %% [raw]
# # ASSIGNMENT CONFIG
# name: 01_lstm_gru
# init_cell: true
# check_all_cell: false
# export_cell: false
# generate: true

# %%
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from course_lib import set_seed
from course_lib.data.windows import make_task
from course_lib.evaluation import diebold_mariano, mse, r2_oos
from course_lib.testing import input_support, matches

torch.set_num_threads(1)
LOOKBACK, HIDDEN = 10, 8


class TemperedAttention(nn.MultiheadAttention):
    """Self-attention built without ``batch_first`` (it reads (L, B, H)) whose queries are divided by a
    temperature: sharper or flatter attention weights."""

    def __init__(self, embed_dim, num_heads, temperature=1.0):
        super().__init__(embed_dim, num_heads)
        self.temperature = temperature

    def forward(self, query, key, value, **kwargs):
        return super().forward(query / self.temperature, key, value, **kwargs)


# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 3

# %% [markdown]
# ### Exercise 1 (3 points): an LSTM step from scratch
# Write `lstm_step(x_t, h, c, cell)` that returns the pair `(h_next, c_next)`, each $(B, H)$, of the
# `nn.LSTMCell` `cell`, using only its parameters `cell.weight_ih` $(4H, C)$, `cell.weight_hh`
# $(4H, H)$, `cell.bias_ih` and `cell.bias_hh` (the chapter writes the GRU's step):
#
# $$i = \sigma(\cdot),\ f = \sigma(\cdot),\ g = \tanh(\cdot),\ o = \sigma(\cdot)\ \text{of}\ W_{i\ast}x + b_{i\ast} + W_{h\ast}h + b_{h\ast},$$
# $$c' = f \odot c + i \odot g,\quad h' = o \odot \tanh(c').$$
#
# PyTorch stacks the gates in the order $i, f, g, o$.

# %% [raw]
# # BEGIN SOLUTION


# %%
def lstm_step(x_t, h, c, cell):
    # BEGIN SOLUTION
    gates = x_t @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh  # (B, 4H)
    i, f, g, o = gates.chunk(4, dim=-1)
    c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_next), c_next
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
_ = torch.manual_seed(0)
_cell = nn.LSTMCell(3, 5).double()
_x, _h, _c = (torch.randn(4, n, dtype=torch.float64) for n in (3, 5, 5))
_mine = lstm_step(_x, _h, _c, _cell)
assert isinstance(_mine, tuple) and len(_mine) == 2, "return the pair (h_next, c_next)"
assert all(isinstance(t, torch.Tensor) and t.shape == (4, 5) for t in _mine), "h_next and c_next are (B, H)"
_ref_h, _ref_c = _cell(_x, (_h, _c))
assert torch.allclose(_mine[1], _ref_c, atol=1e-10), (
    "c_next differs from nn.LSTMCell: check the gate order i, f, g, o"
)

# %%
# HIDDEN
_ = torch.manual_seed(1)
_cell = nn.LSTMCell(2, 7).double()
with torch.no_grad():
    _cell.bias_hh[7:14] += 2.0  # a large forget-gate bias
_x, _h, _c = (torch.randn(3, n, dtype=torch.float64) for n in (2, 7, 7))
# only the four parameters (and the sizes): calling the cell itself is not possible here
_params = SimpleNamespace(input_size=2, hidden_size=7, **{n: p.detach() for n, p in _cell.named_parameters()})
_mine = lstm_step(_x, _h, _c, _params)
_ref_h, _ref_c = _cell(_x, (_h, _c))
assert isinstance(_mine, tuple) and len(_mine) == 2, "return the pair (h_next, c_next)"
assert matches(_mine[0], _ref_h.detach(), atol=1e-10, what="h_next"), "h_next = o * tanh(c_next)"
assert matches(_mine[1], _ref_c.detach(), atol=1e-10, what="c_next"), "c_next = f * c + i * g"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# The source module's attention LSTM fed the LSTM output $(B, L, H)$ to an `nn.MultiheadAttention`
# built without `batch_first=True`, which reads its input as $(L, B, H)$: every sample attended over
# the *other samples of the batch* at the same time step.


# %%
def buggy_context(h, attention):
    """The source module's bug: ``attention`` (built without batch_first) reads h (B, L, H) as (L, B, H)."""
    context, _ = attention(h, h, h)
    return context


# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 3

# %% [markdown]
# ### Exercise 2 (3 points): spot the bug
# Write `fixed_context(h, attention)` that takes `h` of shape $(B, L, H)$ and the same kind of
# `attention` module (built **without** `batch_first=True`; do not build a new one) and returns the
# $(B, L, H)$ context in which each sample attends over its own time steps only.

# %% [raw]
# # BEGIN SOLUTION


# %%
def fixed_context(h, attention):
    # BEGIN SOLUTION
    steps_first = h.transpose(0, 1)  # (L, B, H), the layout this module expects
    context, _ = attention(steps_first, steps_first, steps_first)
    return context.transpose(0, 1)  # back to (B, L, H)
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
_ = torch.manual_seed(0)
_att = nn.MultiheadAttention(8, 2).eval()
_h = torch.randn(4, 6, 8)
_h2 = _h.clone()
_h2[1] += 3.0  # change sample 1 only
_a, _b = fixed_context(_h, _att), fixed_context(_h2, _att)
assert isinstance(_a, torch.Tensor) and _a.shape == (4, 6, 8), "return a (B, L, H) context"
assert torch.allclose(_a[0], _b[0], atol=1e-6), (
    "sample 0 moved when sample 1 changed: the batch is still mixed"
)

# %%
# HIDDEN
_ = torch.manual_seed(1)
# a module of the same kind whose forward is its own: a new module loaded from its weights differs
_att = TemperedAttention(6, 3, temperature=0.5).eval()
_h = torch.randn(5, 7, 6)
with torch.no_grad():
    _ref = torch.stack(
        [_att(_h[b : b + 1].transpose(0, 1), *[_h[b : b + 1].transpose(0, 1)] * 2)[0][:, 0] for b in range(5)]
    )
    _mine = fixed_context(_h, _att)
assert matches(_mine, _ref, atol=1e-5, what="the context"), (
    "differs from attending over each sample's own steps"
)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %%
set_seed(0)
bilstm = nn.LSTM(3, HIDDEN, batch_first=True, bidirectional=True)  # outputs (B, L, 2H), forward half first
probe_x = torch.randn(2, LOOKBACK, 3)

# %% [raw]
# # BEGIN QUESTION
# name: q3
# points: 2

# %% [markdown]
# ### Exercise 3 (2 points): what does step 3 of a bidirectional LSTM see?
# `input_support(fn, x)` returns a boolean tensor: which input steps the output `fn(x)` (one vector per
# sample) depends on. Compute two boolean NumPy arrays of length `LOOKBACK`: `seen_forward_3`, the input
# steps that the forward half of output step 3 (the fourth), `bilstm(x)[0][:, 3, :HIDDEN]`, depends on,
# and `seen_backward_3` for its backward half, `bilstm(x)[0][:, 3, HIDDEN:]`, on `probe_x`.

# %% [raw]
# # BEGIN SOLUTION

# %%
seen_forward_3 = input_support(lambda x: bilstm(x)[0][:, 3, :HIDDEN], probe_x).numpy()  # SOLUTION
seen_backward_3 = input_support(lambda x: bilstm(x)[0][:, 3, HIDDEN:], probe_x).numpy()  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert isinstance(seen_forward_3, np.ndarray) and seen_forward_3.shape == (LOOKBACK,), (
    "one entry per input step"
)
assert isinstance(seen_backward_3, np.ndarray) and seen_backward_3.shape == (LOOKBACK,), (
    "one entry per input step"
)

# %%
# HIDDEN
assert seen_forward_3.dtype == bool and seen_forward_3.tolist() == [True] * 4 + [False] * (LOOKBACK - 4), (
    "the forward half at step 3 has read steps 0 to 3"
)
assert seen_backward_3.dtype == bool and seen_backward_3.tolist() == [False] * 3 + [True] * (LOOKBACK - 3), (
    "the backward half runs from the end of the window: at step 3 it has read steps 3 to the end"
)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# For the last exercise: test forecasts of next-day S&P 500 returns by three models, each trained with
# three seeds (arrays of shape (seeds, days)). They are made up for this exercise so that it runs in a
# second; the question is how to read such results.

# %%
rtask = make_task("returns", ticker="^GSPC", lookback=LOOKBACK, horizons=(1,))
y_test = rtask.test.y[:, 0]
hist_mean = np.full_like(y_test, rtask.train.y.mean())  # the historical-mean benchmark
last_return = rtask.test.X[:, -1, 0]  # the scaled last return in each window
_rng = np.random.default_rng(0)
predictions = {
    "lstm": hist_mean + 0.02 * last_return + _rng.normal(0, 0.05, (3, len(y_test))),
    "gru": hist_mean - 0.05 * last_return + _rng.normal(0, 0.08, (3, len(y_test))),
    "attention_lstm": hist_mean + _rng.normal(0, 0.03, (3, len(y_test))),
}

# %% [raw]
# # BEGIN QUESTION
# name: q4
# points: 2

# %% [markdown]
# ### Exercise 4 (2 points): does the best model beat the historical mean?
# Average each model's forecasts over its seeds, store in `best_return_model` the name of the model
# whose averaged forecast has the lowest test MSE, in `best_r2` its out-of-sample $R^2$ against
# `hist_mean` (`r2_oos`), and set `beats_hist_mean` to `True` only if `best_r2` is positive **and** its
# Diebold-Mariano test against `hist_mean` has a p-value below 0.05.

# %% [raw]
# # BEGIN SOLUTION

# %%
_avg = {name: p.mean(axis=0) for name, p in predictions.items()}  # SOLUTION
best_return_model = min(_avg, key=lambda name: mse(y_test, _avg[name]))  # SOLUTION
best_r2 = r2_oos(y_test, _avg[best_return_model], hist_mean)  # SOLUTION
_dm = diebold_mariano(y_test, _avg[best_return_model], hist_mean)  # SOLUTION
beats_hist_mean = bool(best_r2 > 0 and _dm.pvalue < 0.05)  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert best_return_model in predictions, "the name of one of the three models"
assert isinstance(best_r2, float) and isinstance(beats_hist_mean, bool), "a number and True/False"

# %%
# HIDDEN
_means = {n: p.mean(axis=0) for n, p in predictions.items()}
_best = min(_means, key=lambda n: mse(y_test, _means[n]))
assert best_return_model == _best, "average over seeds first, then pick the lowest test MSE"
assert matches(best_r2, float(r2_oos(y_test, _means[_best], hist_mean)), atol=1e-9, what="best_r2"), (
    "r2_oos(y, forecast, historical mean)"
)
_p = diebold_mariano(y_test, _means[_best], hist_mean).pvalue
assert matches(beats_hist_mean, bool(best_r2 > 0 and _p < 0.05), what="beats_hist_mean"), (
    "a win needs a positive R2_oos AND a significant DM test"
)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# For the last exercise, three untrained recurrent layers of the same width and one batch of random
# windows of 30 steps, all drawn from fixed seeds.

# %%
STEPS = 30
torch.manual_seed(0)
x_long = torch.randn(16, STEPS, 2)
cells = {}
for _name, _cls in (("rnn", nn.RNN), ("lstm", nn.LSTM), ("gru", nn.GRU)):
    torch.manual_seed(1)
    cells[_name] = _cls(2, HIDDEN, batch_first=True)

# %% [raw]
# # BEGIN QUESTION
# name: q5
# points: 3

# %% [markdown]
# ### Exercise 5 (3 points, experiment): how far back does the gradient reach?
# For each layer of `cells` (in the order rnn, lstm, gru), compute the gradient of the sum of its last
# output step, `out[:, -1].sum()` with `out, _ = layer(x)`, with respect to the input `x = x_long`, take
# its norm over the input features and average it over the batch: write this as
# `gradient_profile(layer, x)`, which returns one value per step. Divide the value at the **oldest** step
# (step 0) by the value at the **newest** (step `STEPS - 1`). Store the three ratios as a NumPy
# float64 array `grad_ratio` of shape `(3,)`, the name of the layer with the largest ratio as
# `longest_memory`, and set `vanishes_everywhere` to `True` if all three ratios are below 0.01. What do
# the numbers say about gated cells *before* training?

# %% [raw]
# # BEGIN SOLUTION


# %%
def gradient_profile(layer, x):
    """The batch mean of the norm over features of d out[:, -1].sum() / d x, one value per step (L,)."""
    # BEGIN SOLUTION
    x = x.clone().requires_grad_(True)
    out, _ = layer(x)  # (B, L, H)
    out[:, -1].sum().backward()
    return x.grad.norm(dim=-1).mean(0)
    # END SOLUTION


_profiles = [gradient_profile(layer, x_long) for layer in cells.values()]  # SOLUTION
grad_ratio = np.array([float(g[0] / g[-1]) for g in _profiles])  # SOLUTION
longest_memory = list(cells)[int(np.argmax(grad_ratio))]  # SOLUTION
vanishes_everywhere = bool(np.all(grad_ratio < 0.01))  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert isinstance(grad_ratio, np.ndarray) and grad_ratio.shape == (3,), "one ratio per layer, as an array"
assert np.all(grad_ratio > 0) and np.all(np.isfinite(grad_ratio)), "ratios of two norms: positive numbers"
assert longest_memory in cells and isinstance(vanishes_everywhere, bool), "a layer name and True/False"
assert gradient_profile(cells["rnn"], x_long).shape == (STEPS,), "gradient_profile: one value per step"

# %%
# HIDDEN
_ref = []
for _layer in cells.values():
    _xr = x_long.clone().requires_grad_(True)
    _layer(_xr)[0][:, -1].sum().backward()
    _gr = _xr.grad.norm(dim=-1).mean(0)
    _ref.append(float(_gr[0] / _gr[-1]))
_ref = np.array(_ref, dtype=np.float64)
_probe = torch.randn(4, 7, 2, generator=torch.Generator().manual_seed(5))
_xp = _probe.clone().requires_grad_(True)
cells["gru"](_xp)[0][:, -1].sum().backward()
assert matches(
    gradient_profile(cells["gru"], _probe), _xp.grad.norm(dim=-1).mean(0), what="gradient_profile"
), "gradient_profile: the batch mean of the feature norm of d out[:, -1].sum() / d x, one value per step"
assert matches(grad_ratio, _ref, rtol=1e-4, atol=1e-12, what="grad_ratio"), (
    "oldest step over newest step of the batch-mean gradient norm, in the order rnn, lstm, gru"
)
assert matches(longest_memory, list(cells)[int(np.argmax(_ref))], what="longest_memory"), "the largest ratio"
assert matches(vanishes_everywhere, bool(np.all(_ref < 0.01)), what="vanishes_everywhere"), "all below 0.01"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
