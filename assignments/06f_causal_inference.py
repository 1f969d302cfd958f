# %% [markdown]
# # Graded exercises, chapter 06f: causal inference for financial time series
#
# Four exercises from chapter 06f (10 points): an effect estimate under confounding, a bug in a Granger
# test, an E-value, and inverse probability weighting by hand. Nothing is trained. Write your
# answer where you see `...`, then run the `grader.check(...)` cell below it: it runs the *public*
# tests. Your notebook is graded with further hidden tests. Keep the names of the answer functions
# and variables.

# %% [raw]
# # ASSIGNMENT CONFIG
# name: 06f_causal_inference
# init_cell: true
# check_all_cell: false
# export_cell: false
# generate: true

# %%
import numpy as np
import pandas as pd
import torch
from statsmodels.tsa.api import VAR

from course_lib.causal import overlap_table, propensity_scores, simulate_treatment, simulate_var
from course_lib.testing import matches

torch.set_num_threads(1)

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 3

# %% [markdown]
# ### Exercise 1 (3 points): regression adjustment
# `simulate_treatment` returns histories `data.x` of shape (N, L, 2) (column 0: the covariate $c_t$,
# column 1: the past treatment), the decision `data.treatment` (N,) and the outcome `data.outcome`
# (N,). Write `adjusted_effect(data)`: the coefficient of the treatment in a least-squares regression
# of the outcome on a constant, the treatment and the covariate on the **last two** days of the
# history ($c_L$ and $c_{L-1}$). It should be near the true effect where the naive difference is not.

# %% [raw]
# # BEGIN SOLUTION


# %%
def adjusted_effect(data):
    c = data.x[:, :, 0]  # SOLUTION
    design = np.column_stack([np.ones(len(c)), data.treatment, c[:, -1], c[:, -2]])  # SOLUTION
    return float(np.linalg.lstsq(design, data.outcome, rcond=None)[0][1])  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
_data = simulate_treatment(n=3000, effect=1.0, confounding=2.0, seed=0)
assert isinstance(adjusted_effect(_data), float), "a float"
assert abs(adjusted_effect(_data) - 1.0) < 0.1, (
    "far from the true effect 1.0: which covariates did you adjust for?"
)

# %%
# HIDDEN
for _seed, _effect, _gamma in [(1, -0.5, 3.0), (2, 2.0, 1.0), (3, 0.0, 2.0)]:
    _d = simulate_treatment(n=3000, effect=_effect, confounding=_gamma, seed=_seed)
    assert matches(adjusted_effect(_d), _effect, atol=0.1, rtol=0, what="the effect"), (
        f"effect {_effect}, confounding {_gamma}: got {adjusted_effect(_d)}"
    )
_d = simulate_treatment(n=3000, confounding=2.0, hidden=2.0, seed=4)
assert adjusted_effect(_d) > 1.3, (
    "with a hidden confounder the adjustment cannot be right: did you use the truth?"
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
# ### Exercise 2 (3 points): spot the bug in a Granger test
# The function below should return the p-value of the null "`cause` does not Granger-cause `effect`"
# from a VAR with `lags` lags. It runs, and returns a p-value, but of the wrong test. Write
# `granger_p_fixed(data, cause, effect, lags)` that returns the right one. (statsmodels:
# `test_causality(caused, causing, kind="f")`.)
#
# ```python
# def granger_p(data, cause, effect, lags):
#     fitted = VAR(data).fit(lags)
#     return fitted.test_causality(cause, [effect], kind="f").pvalue
# ```

# %% [raw]
# # BEGIN SOLUTION


# %%
def granger_p_fixed(data, cause, effect, lags):
    fitted = VAR(data).fit(lags)  # SOLUTION
    return float(fitted.test_causality(effect, [cause], kind="f").pvalue)  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
_coefs = np.array([[[0.5, 0.0], [0.4, 0.3]]])  # a -> b at lag 1, nothing from b to a
_df = pd.DataFrame(simulate_var(_coefs, 800, seed=0), columns=["a", "b"])
assert 0 <= granger_p_fixed(_df, "a", "b", 1) <= 1, "a p-value"
assert granger_p_fixed(_df, "a", "b", 1) < 0.01, "a does Granger-cause b here"

# %%
# HIDDEN
_graph = np.array([[[0.5, 0.0], [0.4, 0.3]]])  # the VAR of the public test
_rejections = 0
for _seed in range(10):
    _df = pd.DataFrame(simulate_var(_graph, 800, seed=_seed), columns=["a", "b"])
    assert matches(granger_p_fixed(_df, "a", "b", 2), 0.0, atol=0.01, rtol=0, what="the p-value"), (
        "the true edge a -> b must be found"
    )
    _rejections += granger_p_fixed(_df, "b", "a", 2) < 0.05
assert _rejections <= 3, "b does not Granger-cause a, yet your test rejects it again and again: direction?"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
# %% [raw]
# # BEGIN QUESTION
# name: q3
# points: 2

# %% [markdown]
# ### Exercise 3 (2 points): an E-value
# An effect estimate on a continuous outcome is `d` standard deviations of the outcome. Write
# `e_value_d(d)`: its E-value, with the risk-ratio approximation $RR = e^{0.91 d}$ and
# $E = RR + \sqrt{RR (RR - 1)}$ (for $RR < 1$ use $1/RR$).

# %% [raw]
# # BEGIN SOLUTION


# %%
def e_value_d(d):
    rr = np.exp(0.91 * abs(d))  # SOLUTION
    return float(rr + np.sqrt(rr * (rr - 1)))  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert e_value_d(0.0) == 1.0, "no effect needs no confounder"

# %%
# HIDDEN
for _d in (0.1, 0.5, 1.3):
    _rr = np.exp(0.91 * _d)
    assert matches(e_value_d(_d), float(_rr + np.sqrt(_rr * (_rr - 1))), what="the E-value")
    assert matches(e_value_d(-_d), e_value_d(_d), what="the E-value"), "a negative effect: use 1 / RR"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q4
# points: 2

# %% [markdown]
# ### Exercise 4 (2 points): what weak overlap costs
# Inverse probability weighting gives each treated unit the weight $1/e$ and each control $1/(1-e)$.
# Kish's effective sample size of an arm, $(\sum w)^2 / \sum w^2$, says how many equally weighted units
# its weights are worth. Write `effective_share(a, e)`: for treatments `a` (0 or 1) and propensities `e`,
# both (N,) arrays, the effective size of each arm divided by its number of units, as a float64 numpy
# array `[treated, control]` (1.0 means no loss at all).

# %% [raw]
# # BEGIN SOLUTION


# %%
def effective_share(a, e):
    a, e = np.asarray(a).astype(bool), np.asarray(e, dtype=np.float64)  # SOLUTION
    shares = []  # SOLUTION
    for w in (1 / e[a], 1 / (1 - e[~a])):  # SOLUTION
        shares.append(w.sum() ** 2 / (w**2).sum() / len(w))  # SOLUTION
    return np.array(shares)  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert np.allclose(effective_share(np.array([1, 1, 0, 0]), np.full(4, 0.5)), 1.0), (
    "equal weights lose nothing"
)

# %%
# HIDDEN
for _seed, _gamma in [(0, 1.0), (1, 2.0)]:
    _d = simulate_treatment(n=2000, confounding=_gamma, seed=_seed)
    _e = propensity_scores(_d.x[:, -2:, 0], _d.treatment)
    _mine = effective_share(_d.treatment, _e)
    assert isinstance(_mine, np.ndarray) and _mine.shape == (2,) and _mine.dtype == np.float64, (
        "a float64 array [treated, control]"
    )
    _table = overlap_table(_e, _d.treatment)
    _reference = (_table["effective size"] / _table["units"]).loc[["treated", "control"]].to_numpy(float)
    assert np.allclose(_mine, _reference), "Kish's effective size over the arm's units"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
