# %% [markdown]
# # Graded exercises, chapter 05: transfer learning, MAML, Bayesian uncertainty
#
# Five exercises from chapter 05 (12 points), on toy models and made-up forecasts: nothing is
# trained. Write your answer where you see `...`, then run the `grader.check(...)` cell below it: it
# runs the *public* tests. Your notebook is graded with further hidden tests. Keep the names of the
# answer functions and variables.

# %% [raw]
# # ASSIGNMENT CONFIG
# name: 05_advanced
# init_cell: true
# check_all_cell: false
# export_cell: false
# generate: true

# %%
import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from course_lib.data.windows import make_task
from course_lib.testing import matches

torch.set_num_threads(1)

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 3

# %% [markdown]
# ### Exercise 1 (3 points): spot the bug, then adapt only the head
# The source module's MAML inner loop below crashes with "One of the differentiated Tensors appears
# to not have been used in the graph": its forward pass never uses the fast weights.
#
# ```python
# def buggy_inner_loop(model, x, y, lr, steps):
#     fast = {name: p.clone() for name, p in model.named_parameters()}
#     for _ in range(steps):
#         loss = torch.mean((model(x) - y) ** 2)
#         grads = torch.autograd.grad(loss, list(fast.values()), create_graph=True)
#         fast = {name: w - lr * g for (name, w), g in zip(fast.items(), grads)}
#     return fast
# ```
#
# Write `adapt_head(model, x, y, lr, steps, prefix)`, the inner loop of a MAML variant that adapts only
# the head (ANIL): it returns the fast weights of the parameters whose names start with `prefix + "."`
# (a dict keyed by those names) after `steps` steps of gradient descent on the MSE, every forward pass
# evaluated **at the fast weights** with the other parameters as they are
# (`functional_call(model, {**dict(model.named_parameters()), **fast}, (x,))`), and `create_graph=True`.

# %% [raw]
# # BEGIN SOLUTION


# %%
def adapt_head(model, x, y, lr, steps, prefix):
    # BEGIN SOLUTION
    params = dict(model.named_parameters())
    fast = {name: w for name, w in params.items() if name.startswith(prefix + ".")}
    for _ in range(steps):
        loss = torch.mean((functional_call(model, {**params, **fast}, (x,)) - y) ** 2)
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=True)
        fast = {name: w - lr * g for (name, w), g in zip(fast.items(), grads, strict=True)}
    return fast
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
_m = nn.Sequential(nn.Linear(1, 1, bias=False)).double()
_ = nn.init.constant_(_m[0].weight, 0.3)
_x, _y = torch.ones(4, 1, dtype=torch.float64), torch.ones(4, 1, dtype=torch.float64)
_fast = adapt_head(_m, _x, _y, lr=0.1, steps=2, prefix="0")
assert isinstance(_fast, dict) and set(_fast) == {"0.weight"}, "return a dict keyed by parameter name"
# the loss (w - 1)^2 has gradient 2 (w - 1): each step multiplies (w - 1) by (1 - 0.2)
assert abs(float(_fast["0.weight"].reshape(())) - (1 + 0.8**2 * (0.3 - 1))) < 1e-9, (
    "the fast weight after 2 steps"
)

# %%
# HIDDEN
_ = torch.manual_seed(3)
_m = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)).double()
_x, _y = torch.randn(8, 2, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
_fast = adapt_head(_m, _x, _y, lr=0.05, steps=3, prefix="2")
_body = {n: p.detach() for n, p in _m.named_parameters() if not n.startswith("2.")}
_ref = {n: p.detach().clone() for n, p in _m.named_parameters() if n.startswith("2.")}
for _ in range(3):
    _w = {n: p.requires_grad_(True) for n, p in _ref.items()}
    _out = functional_call(_m, {**_body, **_w}, (_x,))
    _g = torch.autograd.grad(torch.mean((_out - _y) ** 2), list(_w.values()))
    _ref = {n: (p - 0.05 * g).detach() for (n, p), g in zip(_w.items(), _g, strict=True)}
assert set(_fast) == {"2.weight", "2.bias"}, "one fast weight per head parameter, none for the body"
assert all(matches(_fast[n], _ref[n], atol=1e-10, what=f"the fast weight {n}") for n in _ref), (
    "steps must use the fast weights"
)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION


# %%
class HeadFirst(nn.Module):
    """A forecaster that registers its head BEFORE its encoder."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(8, 1)
        self.lstm = nn.LSTM(3, 8, batch_first=True)

    def forward(self, x):
        h, _ = self.lstm(x)
        return self.head(h[:, -1])


# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 2

# %% [markdown]
# ### Exercise 2 (2 points): freeze by name, not by position
# The source module's `freeze_layers(1)` froze "the first child" of a model. Set `first_child_name`
# to the name of the submodule it would freeze in `HeadFirst()`. Then write
# `trainable_after_freezing(model, prefix)` that sets `requires_grad = False` on every parameter whose
# name starts with `prefix + "."` and returns the sorted list of the names still trainable.

# %% [raw]
# # BEGIN SOLUTION

# %%
first_child_name = next(HeadFirst().named_children())[0]  # SOLUTION


def trainable_after_freezing(model, prefix):
    # BEGIN SOLUTION
    for name, p in model.named_parameters():
        if name.startswith(prefix + "."):
            p.requires_grad_(False)
    return sorted(name for name, p in model.named_parameters() if p.requires_grad)
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert first_child_name in ("head", "lstm"), "the name of one of HeadFirst's two submodules"
_ = torch.manual_seed(0)
assert trainable_after_freezing(HeadFirst(), "lstm") == ["head.bias", "head.weight"], (
    "only the head stays trainable"
)

# %%
# HIDDEN
assert first_child_name == "head", "children() follows the order of assignment in __init__"
_ = torch.manual_seed(0)
_net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
assert trainable_after_freezing(_net, "2") == ["0.bias", "0.weight"], (
    "freeze exactly the layers named by prefix"
)
_ = torch.manual_seed(0)
assert trainable_after_freezing(HeadFirst(), "head") == sorted(
    n for n, _ in HeadFirst().named_parameters() if n.startswith("lstm.")
)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# `mc_means` and `mc_vars` are `(T, N)` arrays: the predictive means and variances of `T = 40`
# MC-dropout passes for `N = 6` forecasts.

# %%
_rng = np.random.default_rng(5)
mc_means = _rng.normal(0.0, 0.3, size=(40, 6)) + np.arange(6)
mc_vars = _rng.uniform(0.5, 1.5, size=(40, 6))
mc_weights = _rng.dirichlet(np.full(40, 0.5))  # (T,), sums to 1: a weighted ensemble of the T passes

# %% [raw]
# # BEGIN QUESTION
# name: q3
# points: 3

# %% [markdown]
# ### Exercise 3 (3 points): the law of total variance for a weighted ensemble
# Here the `T` Gaussians of each forecast are mixed with the weights `mc_weights` (the chapter mixes
# them equally). Compute `total_var`, shape `(N,)`: the variance of that weighted mixture, and
# `epistemic_share` (a float): the share of the total variance, averaged over the forecasts as
# `mean(epistemic) / mean(total)`, that comes from the (weighted) spread of the means.

# %% [raw]
# # BEGIN SOLUTION

# %%
_spread = mc_weights @ (mc_means - mc_weights @ mc_means) ** 2  # SOLUTION
total_var = mc_weights @ mc_vars + _spread  # SOLUTION
epistemic_share = float(_spread.mean() / total_var.mean())  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert np.shape(total_var) == (6,), "total_var has one entry per forecast"
assert isinstance(epistemic_share, float) and 0 < epistemic_share < 1, "a share between 0 and 1"

# %%
# HIDDEN
_g = np.random.default_rng(11)
_k = _g.choice(
    40, size=(200_000, 6), p=mc_weights
)  # draw from the mixture: a pass by weight, then its Normal
_draws = _g.normal(np.take_along_axis(mc_means, _k, 0), np.sqrt(np.take_along_axis(mc_vars, _k, 0)))
assert matches(total_var, _draws.var(axis=0), rtol=0.03, what="total_var"), (
    "total_var is not the variance of the weighted mixture"
)
_epi = np.cov(mc_means, rowvar=False, aweights=mc_weights, bias=True).diagonal()
assert matches(epistemic_share, float(_epi.mean() / total_var.mean()), atol=1e-9, what="epistemic_share"), (
    "mean (weighted) epistemic / mean total"
)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# For the last exercise: Gaussian predictive distributions of next-day S&P 500 returns over the test
# years, made up for this exercise: mean zero, and the EWMA variance of the returns up to the day before.

# %%
rtask = make_task("returns", ticker="^GSPC", lookback=5, horizons=(1,))
y_test = rtask.test.y[:, 0]
_r = rtask.frame["ret"].to_numpy()  # percent log returns, day by day
_ewma = np.empty_like(_r)
_ewma[0] = np.var(_r[:250])
for _t in range(1, len(_r)):
    _ewma[_t] = 0.94 * _ewma[_t - 1] + 0.06 * _r[_t - 1] ** 2
pred_mean = np.zeros_like(y_test)
pred_var = _ewma[rtask.test.rows + 1]  # the variance for the day after each forecast origin

# %% [raw]
# # BEGIN QUESTION
# name: q4
# points: 2

# %% [markdown]
# ### Exercise 4 (2 points): is the forecast calibrated at 90%?
# Compute `coverage_90` (a float): the fraction of the test returns `y_test` inside the central 90%
# Gaussian interval `pred_mean ± 1.645 * sqrt(pred_var)`.

# %% [raw]
# # BEGIN SOLUTION

# %%
coverage_90 = float(np.mean(np.abs(y_test - pred_mean) <= 1.6449 * np.sqrt(pred_var)))  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert isinstance(coverage_90, float) and 0 <= coverage_90 <= 1, "a coverage is a fraction"

# %%
# HIDDEN
_z = (y_test - pred_mean) / np.sqrt(pred_var)
assert matches(coverage_90, float(np.mean(np.abs(_z) <= 1.6449)), atol=2e-3, what="coverage_90"), (
    "use the central interval mean ± 1.645 sd"
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
# ### Exercise 5 (2 points): experiment, is the coverage the same every year?
# An interval can cover about 80% over ten years by covering too much in calm years and too little in
# turbulent ones. For the same EWMA forecasts, compute `coverage_by_year`: a NumPy `float64` array with the
# coverage of the central **80%** Gaussian interval in each calendar year of `rtask.test.dates`, in
# chronological order; `worst_year` (an `int`), the year whose coverage is farthest from 0.8; and `spread`
# (a `float`), the largest minus the smallest yearly coverage. In a comment, say what the spread means for
# a risk manager who checks only the overall coverage.

# %% [raw]
# # BEGIN SOLUTION

# %%
from scipy import stats  # SOLUTION

_q5_inside = np.abs(y_test - pred_mean) <= stats.norm.ppf(0.9) * np.sqrt(pred_var)  # SOLUTION
_q5_years = np.asarray(rtask.test.dates.year)  # SOLUTION
coverage_by_year = np.array([_q5_inside[_q5_years == yr].mean() for yr in np.unique(_q5_years)])  # SOLUTION
worst_year = int(np.unique(_q5_years)[np.argmax(np.abs(coverage_by_year - 0.8))])  # SOLUTION
spread = float(coverage_by_year.max() - coverage_by_year.min())  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert isinstance(coverage_by_year, np.ndarray) and coverage_by_year.dtype == np.float64, "a float64 array"
assert coverage_by_year.shape == (len(set(rtask.test.dates.year)),), "one coverage per calendar year"
assert ((coverage_by_year >= 0) & (coverage_by_year <= 1)).all(), "coverages are fractions"
assert isinstance(worst_year, int) and worst_year in set(rtask.test.dates.year), "a year of the test dates"
assert isinstance(spread, float) and matches(spread, float(coverage_by_year.max() - coverage_by_year.min()))

# %%
# HIDDEN
from scipy import stats as _stats

_ref_in = np.abs(y_test - pred_mean) <= _stats.norm.ppf(0.9) * np.sqrt(pred_var)
_ref_years = np.asarray(rtask.test.dates.year)
_ref_cov = np.array([_ref_in[_ref_years == _y].mean() for _y in np.unique(_ref_years)])
assert matches(coverage_by_year, _ref_cov, atol=2e-3, what="coverage_by_year"), (
    "the share of each year's returns inside mean ± z(0.9) sd, years in order"
)
assert matches(worst_year, int(np.unique(_ref_years)[np.argmax(np.abs(_ref_cov - 0.8))]), what="worst_year")
assert matches(spread, float(_ref_cov.max() - _ref_cov.min()), atol=2e-3, what="spread")

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
