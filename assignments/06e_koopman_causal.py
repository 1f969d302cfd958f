# %% [markdown]
# # Graded exercises, chapter 06e: Koopman operators and causal inference
#
# Four exercises from chapter 06e (10 points): a Koopman spectrum by hand, the period of a mode, an
# effect estimate under confounding, and a bug in a Granger test. Nothing is trained. Write your
# answer where you see `...`, then run the `grader.check(...)` cell below it: it runs the *public*
# tests. Your notebook is graded with further hidden tests. Keep the names of the answer functions
# and variables.

# %% [raw]
# # ASSIGNMENT CONFIG
# name: 06e_koopman_causal
# init_cell: true
# check_all_cell: false
# export_cell: false
# generate: true

# %%
import numpy as np
import pandas as pd
import torch
from statsmodels.tsa.api import VAR

from course_lib.causal import simulate_treatment, simulate_var
from course_lib.testing import matches

torch.set_num_threads(1)

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 2

# %% [markdown]
# ### Exercise 1 (2 points): the exact Koopman eigenvalues of Lusch's example
# The system $\dot x_1 = \mu x_1$, $\dot x_2 = \lambda (x_2 - x_1^2)$ is linear in the observables
# $(x_1, x_2, x_1^2)$. Sampled every $\Delta t$, the flow is a linear map on them. Write
# `lusch_eigenvalues(mu, lam, dt)` that returns the three eigenvalues of that map, **sorted in
# increasing order**, as a numpy array.

# %% [raw]
# # BEGIN SOLUTION


# %%
def lusch_eigenvalues(mu, lam, dt):
    return np.sort(np.exp(np.array([mu, lam, 2 * mu]) * dt))  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert np.shape(lusch_eigenvalues(-0.05, -1.0, 0.1)) == (3,), "three eigenvalues"
assert np.all(np.diff(lusch_eigenvalues(-0.05, -1.0, 0.1)) >= 0), "sorted in increasing order"

# %%
# HIDDEN
for _mu, _lam, _dt in [(-0.05, -1.0, 0.1), (-0.3, -0.2, 0.5), (-1.0, -2.5, 0.02)]:
    _a, _b, _c = np.exp(_mu * _dt), np.exp(_lam * _dt), _lam / (_lam - 2 * _mu)
    _x = np.zeros((40, 3))
    _x[0, :2] = [0.7, -0.3]
    for _t in range(1, 40):
        _x1, _x2 = _x[_t - 1, :2]
        _x[_t, :2] = [_a * _x1, _b * (_x2 - _c * _x1**2) + _c * _a**2 * _x1**2]
    _x[:, 2] = _x[:, 0] ** 2
    _K = np.linalg.lstsq(_x[:-1], _x[1:], rcond=None)[0].T
    assert matches(lusch_eigenvalues(_mu, _lam, _dt), np.sort(np.linalg.eigvals(_K).real), atol=1e-6), (
        "not the eigenvalues of the fitted Koopman matrix"
    )

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 2

# %% [markdown]
# ### Exercise 2 (2 points): the period of an oscillating mode
# A complex eigenvalue $\lambda = r e^{i\theta}$ of a daily Koopman operator rotates by $\theta$ radians
# a day. Write `period_days(lam)`: the number of days of one full oscillation of the mode (`np.inf`
# for a real eigenvalue, which does not oscillate).

# %% [raw]
# # BEGIN SOLUTION


# %%
def period_days(lam):
    angle = abs(np.angle(lam))  # SOLUTION
    return np.inf if angle == 0 else 2 * np.pi / angle  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert np.isclose(period_days(0.9 * np.exp(2j * np.pi / 10)), 10.0), "this mode turns once every 10 days"

# %%
# HIDDEN
assert matches(period_days(0.5 * np.exp(-2j * np.pi / 21)), 21.0), "the conjugate has the same period"
assert matches(period_days(0.95), np.inf) and matches(period_days(0.95 + 0j), np.inf), (
    "a real eigenvalue never oscillates"
)
assert matches(period_days(-0.8), 2.0), "a negative eigenvalue flips sign every day: period 2"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q3
# points: 3

# %% [markdown]
# ### Exercise 3 (3 points): regression adjustment
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
    assert matches(adjusted_effect(_d), _effect, atol=0.1), (
        f"effect {_effect}, confounding {_gamma}: got {adjusted_effect(_d)}"
    )
_d = simulate_treatment(n=3000, confounding=2.0, hidden=2.0, seed=4)
assert isinstance(_e := adjusted_effect(_d), float) and _e > 1.3, (
    "with a hidden confounder the adjustment cannot be right: did you use the truth?"
)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q4
# points: 3

# %% [markdown]
# ### Exercise 4 (3 points): spot the bug in a Granger test
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
    _p, _q = granger_p_fixed(_df, "a", "b", 2), granger_p_fixed(_df, "b", "a", 2)
    assert isinstance(_p, float) and isinstance(_q, float), "a p-value is a number"
    assert _p < 0.01, "the true edge a -> b must be found"
    _rejections += _q < 0.05
assert _rejections <= 3, "b does not Granger-cause a, yet your test rejects it again and again: direction?"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
