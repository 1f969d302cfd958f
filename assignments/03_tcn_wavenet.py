# %% [markdown]
# # Graded exercises, chapter 03: TCN and WaveNet
#
# Five exercises on the ideas of chapter 03 (12 points), dilated causal convolutions and their
# receptive fields, with other architectures than the chapter's worked exercises; nothing is trained. Write your answer where you see `...`, then run the `grader.check(...)`
# cell below it: it runs the *public* tests. Your notebook is graded with further hidden tests.
# Keep the names of the answer functions and variables.

# %% [raw]
# # ASSIGNMENT CONFIG
# name: 03_tcn_wavenet
# init_cell: true
# check_all_cell: false
# export_cell: false
# generate: true

# %%
import torch

from course_lib.testing import matches

torch.set_num_threads(1)

# %% [markdown]
# A causal convolution with kernel size $k$ and dilation $d$ reads days $t, t-d, \dots, t-(k-1)d$, so it
# widens the receptive field by $(k-1)d$. A **TCN** level $i$ holds two such convolutions with dilation
# $2^i$; a **WaveNet** block holds one convolution per layer with dilations $1, 2, 4, \dots$, and the
# blocks are stacked.

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 2

# %% [markdown]
# ### Exercise 1 (2 points): the receptive field of a TCN with any dilation base
# Write `tcn_field_base(k, n, b)`: the number of input days that the last output of a TCN with kernel
# size `k` and `n` levels depends on, when level $i = 0, \dots, n-1$ holds two convolutions of
# dilation $b^i$ (the chapter's TCN is $b = 2$).

# %% [raw]
# # BEGIN SOLUTION


# %%
def tcn_field_base(k, n, b):
    return 1 + 2 * (k - 1) * sum(b**i for i in range(n))  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert tcn_field_base(2, 1, 3) == 3, "one level of two convolutions with k = 2 and dilation 1 sees 3 days"
assert tcn_field_base(2, 3, 2) == 15, "with b = 2 this is the chapter's TCN: 1 + 2 (k - 1)(2^n - 1)"

# %%
# HIDDEN
for _k, _n, _b in [(1, 3, 3), (2, 4, 3), (3, 3, 4), (4, 2, 5), (5, 6, 1), (3, 1, 7)]:
    _want = 1 + 2 * (_k - 1) * sum(_b**_i for _i in range(_n))
    assert matches(tcn_field_base(_k, _n, _b), _want), f"tcn_field_base({_k}, {_n}, {_b}) is wrong"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 3

# %% [markdown]
# ### Exercise 2 (3 points): size a WaveNet for a 100-day window
# A WaveNet with kernel size 2, `B` blocks and `n` layers per block has the receptive field
# $1 + B\,(2^n - 1)$. With **three** blocks, how many layers per block does it need so that its
# receptive field covers a 100-day window, and no more? Store that number in `layers_100` (an int)
# and the resulting receptive field in `field_100`.

# %% [raw]
# # BEGIN SOLUTION

# %%
layers_100 = next(n for n in range(1, 20) if 1 + 3 * (2**n - 1) >= 100)  # SOLUTION
field_100 = 1 + 3 * (2**layers_100 - 1)  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert isinstance(layers_100, int) and isinstance(field_100, int), "two whole numbers"
assert field_100 >= 100, "this WaveNet does not see the whole window"

# %%
# HIDDEN
assert matches(layers_100, 6, what="layers_100"), (
    "with three blocks, 5 layers per block see 94 days: one more is needed, and enough"
)
assert matches(field_100, 190, what="field_100"), (
    "field_100 does not follow the WaveNet formula 1 + B (2^n - 1)"
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
# ### Exercise 3 (3 points): spot the bug in a lag
# `lag_buggy(x, n)` below should give, at each step $t$ of a $(B, C, L)$ tensor, the value of step
# $t - n$ (zero where $t < n$): a feature made of the past only. It leaks the future into the first
# steps. Write `lag_fixed(x, n)` that is causal for **every** `n >= 0` (`n = 0` returns `x`).
#
# ```python
# def lag_buggy(x, n):
#     return torch.roll(x, shifts=n, dims=-1)
# ```

# %% [raw]
# # BEGIN SOLUTION


# %%
def lag_fixed(x, n):
    return torch.nn.functional.pad(x, (n, 0))[..., : x.shape[-1]]  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
_ = torch.manual_seed(0)
_x = torch.randn(2, 3, 9)
_y = lag_fixed(_x, 2)
assert isinstance(_y, torch.Tensor) and _y.shape == _x.shape, "keep the shape (B, C, L)"
assert torch.equal(_y[..., :2], torch.zeros(2, 3, 2)), "the first 2 steps have no past 2 days back: zeros"

# %%
# HIDDEN
_ = torch.manual_seed(1)
_x = torch.randn(2, 3, 9)
assert torch.equal(lag_fixed(_x, 0), _x), "n = 0 must return x unchanged"
for _n in (1, 5):
    _want = torch.cat([torch.zeros(2, 3, _n), _x[..., : 9 - _n]], dim=-1)
    assert torch.equal(lag_fixed(_x, _n), _want), f"n = {_n}: step t must hold step t - {_n}, zeros before"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q4
# points: 2

# %% [markdown]
# ### Exercise 4 (2 points): wasted layers
# A WaveNet has 3 blocks of 8 layers (dilations $1, 2, \dots, 128$ in each block). On a 20-day window,
# what fraction of its 24 layers have a dilation of at least 20 days, so that their second tap reads
# only zero padding? Store it in `wasted_fraction` (a float).

# %% [raw]
# # BEGIN SOLUTION

# %%
wasted_fraction = sum(2**i >= 20 for _ in range(3) for i in range(8)) / 24  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert isinstance(wasted_fraction, float) and 0 <= wasted_fraction <= 1, "a fraction between 0 and 1"

# %%
# HIDDEN
assert matches(wasted_fraction, 0.375, atol=1e-9, what="wasted_fraction"), (
    "count the dilations of at least 20 in each of the three blocks"
)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q5
# points: 2

# %% [markdown]
# ### Exercise 5 (2 points): experiment, how much of its field does a TCN use?
# The cell below builds an untrained TCN (kernel size 3, four levels) in float64 and eval mode, and a
# batch of 16 random 80-day windows `x_q5` that asks for gradients. For each lag (0 = the window's last
# day), sum the absolute gradient of the summed output over the batch and the features, and divide by the
# largest of these sums. The effective receptive field (Luo et al., 2016) is the number of lags up to the
# last one whose relative gradient is at least `1e-3`. Store it in `erf` (an `int`), the theoretical
# receptive field in `field` (an `int`), and their ratio, effective over theoretical, in `erf_share`
# (a `float`). Then say in a comment what the share means for a forecaster whose window is exactly as
# long as its theoretical field.

# %%
from course_lib.models.convolutional import TemporalConvNet

torch.manual_seed(0)
tcn_q5 = TemporalConvNet(4, (8, 8, 8, 8), kernel_size=3, dropout=0.0).double().eval()
torch.manual_seed(1)
x_q5 = torch.randn(16, 80, 4, dtype=torch.float64, requires_grad=True)

# %% [raw]
# # BEGIN SOLUTION

# %%
(_q5_g,) = torch.autograd.grad(tcn_q5(x_q5).sum(), x_q5)  # SOLUTION
_q5_profile = _q5_g.abs().sum(dim=(0, 2)).flip(0)  # SOLUTION
_q5_profile = _q5_profile / _q5_profile.max()  # SOLUTION
erf = int((_q5_profile >= 1e-3).nonzero().max()) + 1  # SOLUTION
field = 1 + 2 * (3 - 1) * (2**4 - 1)  # SOLUTION
erf_share = erf / field  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert isinstance(erf, int) and isinstance(field, int), "erf and field are ints (numbers of days)"
assert 1 <= erf <= field, "the effective field lies inside the theoretical one"
assert isinstance(erf_share, float) and matches(erf_share, erf / field), "erf_share is erf divided by field"

# %%
# HIDDEN
from course_lib.models.convolutional import TemporalConvNet as _TCN
from course_lib.models.convolutional import tcn_receptive_field as _field

_ = torch.manual_seed(0)
_ref_net = _TCN(4, (8, 8, 8, 8), kernel_size=3, dropout=0.0).double().eval()
_ = torch.manual_seed(1)
_ref_x = torch.randn(16, 80, 4, dtype=torch.float64, requires_grad=True)
(_ref_g,) = torch.autograd.grad(_ref_net(_ref_x).sum(), _ref_x)
_ref_profile = _ref_g.abs().sum(dim=(0, 2)).flip(0)
_ref_profile = _ref_profile / _ref_profile.max()
_ref_erf = int((_ref_profile >= 1e-3).nonzero().max()) + 1
assert matches(field, _field(3, 4), what="field"), "field: the TCN formula, two convolutions per level"
assert matches(erf, _ref_erf, what="erf"), "erf: the last lag whose relative gradient is >= 1e-3, plus one"
assert matches(erf_share, _ref_erf / _field(3, 4), what="erf_share"), "erf_share is erf divided by field"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
