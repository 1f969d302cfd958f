# %% [markdown]
# # Graded exercises, chapter 03: TCN and WaveNet
#
# Four exercises from chapter 03 (10 points) about dilated causal convolutions and their receptive
# fields; nothing is trained. Write your answer where you see `...`, then run the `grader.check(...)`
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
# ### Exercise 1 (2 points): the receptive field of a TCN
# Write `tcn_field(k, n)`: the number of input days that the last output of a TCN with kernel size
# `k` and `n` levels (two convolutions per level, dilation $2^i$ at level $i = 0, \dots, n-1$)
# depends on.

# %% [raw]
# # BEGIN SOLUTION

# %%
def tcn_field(k, n):
    return 1 + 2 * (k - 1) * (2**n - 1)  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert tcn_field(2, 1) == 3, "one level of two convolutions with k = 2 and dilation 1 sees 3 days"

# %%
# HIDDEN
for _k, _n in [(1, 3), (2, 4), (3, 3), (4, 2), (5, 6)]:
    assert tcn_field(_k, _n) == 1 + 2 * (_k - 1) * (2**_n - 1), f"tcn_field({_k}, {_n}) is wrong"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 3

# %% [markdown]
# ### Exercise 2 (3 points): size a WaveNet for a 60-day window
# A WaveNet with kernel size 2, `B` blocks and `n` layers per block has the receptive field
# $1 + B\,(2^n - 1)$. With **two** blocks, how many layers per block does it need so that its receptive
# field covers a 60-day window, and no more? Store that number in `layers_60` (an int) and the
# resulting receptive field in `field_60`.

# %% [raw]
# # BEGIN SOLUTION

# %%
layers_60 = next(n for n in range(1, 20) if 1 + 2 * (2**n - 1) >= 60)  # SOLUTION
field_60 = 1 + 2 * (2**layers_60 - 1)  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert isinstance(layers_60, int) and isinstance(field_60, int), "two whole numbers"
assert field_60 >= 60, "this WaveNet does not see the whole window"

# %%
# HIDDEN
assert 1 + 2 * (2 ** (layers_60 - 1) - 1) < 60, "fewer layers would already cover 60 days"
assert field_60 == 1 + 2 * (2**layers_60 - 1), "field_60 does not follow the WaveNet formula"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q3
# points: 3

# %% [markdown]
# ### Exercise 3 (3 points): spot the bug in `chomp`
# The source module's `Chomp1d.forward` below should drop the last `n` steps of a $(B, C, L)$ tensor
# (the right-hand padding of a causal convolution). It breaks for the value of `n` that a TCN with
# `kernel_size=1` produces. Write `chomp_fixed(x, n)` that works for **every** `n >= 0` (`n = 0`
# returns `x` unchanged).
#
# ```python
# def chomp(x, n):
#     return x[:, :, :-n].contiguous()
# ```

# %% [raw]
# # BEGIN SOLUTION

# %%
def chomp_fixed(x, n):
    return x[:, :, : x.shape[-1] - n].contiguous()  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
_ = torch.manual_seed(0)
_x = torch.randn(2, 3, 9)
assert torch.equal(chomp_fixed(_x, 2), _x[:, :, :7]), "n = 2 must drop exactly the last 2 steps"

# %%
# HIDDEN
_ = torch.manual_seed(1)
_x = torch.randn(2, 3, 9)
assert torch.equal(chomp_fixed(_x, 0), _x), "n = 0 must return x unchanged (x[:, :, :-0] is empty)"
for _n in (1, 5):
    assert torch.equal(chomp_fixed(_x, _n), _x[:, :, : 9 - _n]), f"n = {_n} must drop exactly the last {_n} steps"

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
# The source's WaveNet has 4 blocks of 10 layers (dilations $1, 2, \dots, 512$ in each block). On a
# 60-day window, what fraction of its 40 layers have a dilation of at least 60 days, so that their
# second tap reads only zero padding? Store it in `wasted_fraction` (a float).

# %% [raw]
# # BEGIN SOLUTION

# %%
wasted_fraction = sum(2**i >= 60 for _ in range(4) for i in range(10)) / 40  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert isinstance(wasted_fraction, float) and 0 <= wasted_fraction <= 1, "a fraction between 0 and 1"

# %%
# HIDDEN
assert abs(wasted_fraction - 0.4) < 1e-9, "count the dilations 64, 128, 256 and 512 in each of the four blocks"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
