# %% [markdown]
# # Graded exercises, chapter 06e: Koopman operators
#
# Four exercises from chapter 06e (10 points): a Koopman spectrum by hand, the period of a mode, HAR
# read as an autoregression, and DMD with control. Nothing is trained. Write your
# answer where you see `...`, then run the `grader.check(...)` cell below it: it runs the *public*
# tests. Your notebook is graded with further hidden tests. Keep the names of the answer functions
# and variables.

# %% [raw]
# # ASSIGNMENT CONFIG
# name: 06e_koopman
# init_cell: true
# check_all_cell: false
# export_cell: false
# generate: true

# %%
import numpy as np

from course_lib.testing import matches

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
# ### Exercise 3 (3 points): reading HAR back from an AR(22)
# HAR forecasts $v_{t+1} = b_0 + b_1 v_t + b_5 \bar v^{(5)}_t + b_{22} \bar v^{(22)}_t$, where
# $\bar v^{(k)}_t$ is the mean of the last $k$ days: an AR(22) whose 22 coefficients (lag 1 first) take
# only three distinct values. Write `ar_to_har(ar)`: given those 22 coefficients, return the floats
# `(b1, b5, b22)` of the HAR that has them.

# %% [raw]
# # BEGIN SOLUTION


# %%
def ar_to_har(ar):
    ar = np.asarray(ar, dtype=float)  # SOLUTION
    b22 = 22 * ar[21]  # SOLUTION
    b5 = 5 * (ar[4] - ar[21])  # SOLUTION
    return float(ar[0] - ar[4]), float(b5), float(b22)  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert len(ar_to_har(np.full(22, 0.01))) == 3, "three numbers: (b1, b5, b22)"

# %%
# HIDDEN
for _b in [(0.4, 0.3, 0.2), (0.0, 1.0, 0.0), (0.1, -0.2, 0.9), (-0.3, 0.05, 0.6)]:
    _ar = np.full(22, _b[2] / 22)
    _ar[:5] += _b[1] / 5
    _ar[0] += _b[0]
    _got = ar_to_har(_ar)
    assert len(_got) == 3 and all(isinstance(_x, float) for _x in _got), "three floats"
    assert np.allclose(_got, _b), "the HAR coefficients whose AR(22) this is"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q4
# points: 3

# %% [markdown]
# ### Exercise 4 (3 points): DMD with control
# A trajectory `x` of shape (T, d) was driven by inputs `u` of shape (T - 1, q):
# $x_{t+1} = A x_t + B u_t$. Write `dmdc(x, u)` that returns the pair `(A, B)`, of shapes (d, d) and
# (d, q), by one least-squares solve.

# %% [raw]
# # BEGIN SOLUTION


# %%
def dmdc(x, u):
    d = x.shape[1]  # SOLUTION
    G = np.linalg.lstsq(np.column_stack([x[:-1], u]), x[1:], rcond=None)[0].T  # SOLUTION
    return G[:, :d], G[:, d:]  # SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
_x = np.zeros((50, 1))
_u = np.ones((49, 1))
for _t in range(49):
    _x[_t + 1] = 0.5 * _x[_t] + 2.0 * _u[_t] + 0.1 * np.sin(_t)
_A, _B = dmdc(_x, np.c_[_u, np.sin(np.arange(49))])
assert np.shape(_A) == (1, 1) and np.shape(_B) == (1, 2), "A is (d, d) and B is (d, q)"

# %%
# HIDDEN
_rng = np.random.default_rng(1)
for _d, _q in [(2, 1), (3, 2)]:
    _A0 = np.diag(_rng.uniform(0.2, 0.9, _d))
    _B0 = _rng.standard_normal((_d, _q))
    _u = _rng.standard_normal((199, _q))
    _x = np.zeros((200, _d))
    for _t in range(199):
        _x[_t + 1] = _A0 @ _x[_t] + _B0 @ _u[_t]
    _A, _B = dmdc(_x, _u)
    assert matches(_A, _A0, atol=1e-6, what="A") and matches(_B, _B0, atol=1e-6, what="B"), (
        "A and B of a known system"
    )

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
