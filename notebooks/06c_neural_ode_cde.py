# %% [markdown]
# # Chapter 6c: Neural ODEs and neural CDEs for irregularly sampled market data
#
# Every model so far read a window as a list of equally spaced days. Markets are not like that: a
# Monday comes three calendar days after a Friday, a holiday adds a fourth, and real feeds lose
# records. Continuous-time models take the *time* of each observation seriously: a **neural ODE**
# lets a hidden state flow between observations for as long as really elapsed, and a **neural CDE**
# is a recurrent network driven by a continuous path through the observations. This chapter builds
# both on top of `torchdiffeq` and `torchcde`, checks them against closed forms, and asks the
# practical question: when days go missing, does modelling time help?
#
# **Learning objectives.** After this chapter you can
#
# 1. read a residual network as the Euler discretisation of an ODE and pick a solver and step size
#    knowing their cost (function evaluations) and their error;
# 2. say what the adjoint method buys (memory that does not grow with the number of steps) and what
#    it costs (time), and measure both;
# 3. write a neural CDE with the real `torchcde` API: coefficients, spline, a vector field that returns
#    a matrix, `cdeint`, time and observation-count channels;
# 4. turn a daily series into an irregular one (trading-calendar time, random or bursty gaps) without
#    letting any model see past its forecast origin;
# 5. compare a GRU with time-gap features, an ODE-RNN and a neural CDE as 0%, 30% and 60% of the days
#    are removed, against baselines fed the same thinned data (forward-filled HAR and log-HAR, an EWMA
#    in calendar time), over three mask draws, and say from the numbers whether modelling time helped;
#    then show, on a simulated Ornstein-Uhlenbeck process, data where it does;
# 6. recognise three defects of the source module: the wrong `cdeint` signature, the encoder that
#    reads only the oldest day, and the model without a `forward`;
# 7. simulate a neural SDE by Euler-Maruyama, train it on the CRPS, and score its band.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torchcde
import torchdiffeq
from torch import nn

from course_lib import get_device, set_seed
from course_lib.data.irregular import calendar_days, make_irregular, removal_mask
from course_lib.data.windows import make_task
from course_lib.evaluation import diebold_mariano, log_har_forecasts, seed_summary, volatility_baselines
from course_lib.evaluation.irregular_baselines import (
    IRREGULAR_BASELINES,
    forward_filled_task,
    thinned_volatility_baselines,
)
from course_lib.models.continuous import (
    GRUD,
    AttentionNeuralODE,
    NeuralCDEFinance,
    NeuralODE,
    ODEFunc,
    evolve,
    gap_features,
)
from course_lib.models.recurrent import FinancialGRU
from course_lib.testing import future_gradient
from course_lib.training import Trainer

# %% [markdown]
# ## Parameters
# Every size of the chapter lives here. **Solvers:** all training uses the fixed-step classical
# Runge-Kutta method (`"rk4"`, four function evaluations per step) with **one step per trading-day
# slot** (`STEPS_PER_GAP = 1`; the ODE-RNN's step spans the slot's real gap of 1 to 4 calendar days).
# Fixed steps keep the cost predictable and, for per-step outputs, causal; adaptive `dopri5` appears
# only in the solver comparison. The defaults run the notebook in about a minute on a laptop CPU.

# %%
LOOKBACK = 20  # trading-day slots per window
HIDDEN = 16  # hidden width of every model
METHOD, STEPS_PER_GAP = "rk4", 1  # the solver of every trained model
REMOVAL_RATES = (0.0, 0.3, 0.6)  # share of days whose record is removed
EPOCHS = 6
PATIENCE = 3
BATCH_SIZE = 128
LR = 3e-3
SEEDS = (0, 1, 2)
ADJOINT_STEPS = (8, 32, 128)  # solver steps in the adjoint measurement
OU_KAPPA, OU_WINDOWS, OU_REMOVED = (
    0.3,
    8000,
    0.7,
)  # simulated data: mean reversion per day, windows, days lost
OU_EPOCHS = 8  # the networks on the simulated data are still improving after EPOCHS
SDE_PATHS, SDE_STEPS = 16, 4  # neural SDE: sample paths per window in training, Euler-Maruyama steps per day
SDE_EVAL_PATHS = 200  # paths per test window for the CRPS and the bands
SDE_LR = 6e-3  # the neural SDE's learning rate (it trains on the CRPS, not on the MSE)

device = get_device()
torch.set_num_threads(1)  # small models: one CPU thread is faster than several on a busy machine
set_seed(0)
print(f"device: {device}")

# %% [markdown]
# ## From ResNets to ODEs
#
# A residual block updates a hidden state by a small correction, $h_{k+1} = h_k + f_\theta(h_k)$. Write
# the correction as a step of size $\Delta t$, $h_{k+1} = h_k + \Delta t\, f_\theta(h_k)$, and let the
# step shrink: the blocks become a continuous flow,
# $$ \frac{dh}{dt} = f_\theta(h(t)), \qquad h(t_1) = h(t_0) + \int_{t_0}^{t_1} f_\theta(h(t))\,dt ,$$
# a **neural ODE** (Chen, Rubanova, Bettencourt & Duvenaud, 2018). The ResNet update is exactly one
# Euler step. Better solvers buy accuracy with more evaluations of $f$ per step: RK4 uses four and its
# error falls like $\Delta t^4$ instead of $\Delta t$. On a linear field $f(h) = A h$ the exact answer is
# the matrix exponential, $h(t) = e^{At} h(0)$, so we can measure the error of each solver.

# %% mystnb={"image": {"alt": "Log-log plot of the error of the Euler, midpoint and RK4 solvers on a linear ODE against the step size: three straight lines, steeper for higher-order methods, RK4's error far below Euler's at every step"}}
torch.manual_seed(0)
A = torch.tensor([[-0.3, 1.0], [-1.0, -0.3]], dtype=torch.float64)  # a damped rotation
h0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
T = 4.0
exact = h0 @ torch.linalg.matrix_exp(A * T).T


class Linear(nn.Module):
    def forward(self, t, h):
        return h @ A.T


solver_errors = []
for method in ("euler", "midpoint", "rk4"):
    for step in (0.5, 0.25, 0.1, 0.05):
        h_T = torchdiffeq.odeint(Linear(), h0, torch.tensor([0.0, T], dtype=torch.float64),
                                 method=method, options={"step_size": step})[-1]  # fmt: skip
        solver_errors.append({"method": method, "step": step, "error": (h_T - exact).norm().item()})
solver_errors = pd.DataFrame(solver_errors)

fig, ax = plt.subplots(figsize=(6, 3.5))
for method, group in solver_errors.groupby("method", sort=False):
    ax.loglog(group["step"], group["error"], marker="o", label=method)
ax.set_xlabel("step size (time units)")
ax.set_ylabel("|h(T) - exp(AT) h(0)|")
ax.set_title("solver error on a linear ODE against the matrix exponential")
ax.legend()
plt.tight_layout()
plt.show()
for method, group in solver_errors.groupby("method", sort=False):
    slope = np.polyfit(np.log(group["step"]), np.log(group["error"]), 1)[0]
    print(f"{method:>8}: error ~ step^{slope:.1f}")

# %% [markdown]
# ## The adjoint method: memory, not time
#
# Backpropagating through a solver stores every intermediate state: memory grows with the number of
# steps. The **adjoint method** stores nothing: it solves a second ODE *backwards* in time for the
# adjoint $a(t) = \partial \mathcal{L} / \partial h(t)$,
# $$ \frac{da}{dt} = -a^\top \frac{\partial f_\theta}{\partial h}, \qquad
#    \frac{\partial \mathcal{L}}{\partial \theta} = \int_{t_1}^{t_0} -a^\top \frac{\partial f_\theta}{\partial \theta}\,dt ,$$
# re-computing $h(t)$ along the way. That costs an extra solve, so it is *slower*; its gradients match
# backprop only up to the solver's error (the tests check the fourth-order convergence of RK4). How large
# that error is depends on the model. For the neural ODE below it is tiny even at one step per gap; for
# the CDE of the next section it is not: one RK4 step spans a whole day's change of the data path, and
# the backward solve re-integrates that path with the same coarse steps, so at one step per gap its
# gradient is off by most of its size (about 80%; 1% at 4 steps, 0.04% at 8). `NeuralCDEFinance`
# therefore warns when `adjoint=True` meets fewer than 8 fixed steps per gap. Below we
# count the bytes autograd keeps for the backward pass (unique tensor storages, through
# `torch.autograd.graph.saved_tensors_hooks`) and time one forward + backward, for more and more steps.


# %% mystnb={"image": {"alt": "Two panels against the number of RK4 steps: left, megabytes autograd saves for the backward pass, growing with the steps for direct backpropagation and flat for the adjoint; right, milliseconds per forward and backward pass for each"}}
def saved_bytes_and_seconds(adjoint, n_steps, batch=256, hidden=32):
    """Bytes autograd keeps for backward, and seconds for one forward + backward."""
    torch.manual_seed(0)
    func, h = ODEFunc(hidden), torch.randn(batch, hidden, requires_grad=True)
    storages = {}

    def pack(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = evolve(
            func, h, torch.ones(batch), adjoint=adjoint, method="rk4", options={"step_size": 1 / n_steps}
        )
    out.pow(2).sum().backward()
    return sum(storages.values()), time.perf_counter() - start


for warm_up in (False, True):  # the first call of each pays one-off set-up costs: not timed
    saved_bytes_and_seconds(warm_up, 2)
adjoint_cost = pd.DataFrame(
    [
        {"steps": n, "backprop": name, "saved MB": b / 1e6, "seconds": s}
        for n in ADJOINT_STEPS
        for name, adj in (("direct", False), ("adjoint", True))
        for b, s in [saved_bytes_and_seconds(adj, n)]
    ]
)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for name, group in adjoint_cost.groupby("backprop", sort=False):
    axes[0].plot(group["steps"], group["saved MB"], marker="o", label=name)
    axes[1].plot(group["steps"], 1e3 * group["seconds"], marker="o", label=name)
axes[0].set(xlabel="RK4 steps", ylabel="MB saved for backward", title="memory")
axes[1].set(xlabel="RK4 steps", ylabel="ms per forward + backward", title="time")
for ax in axes:
    ax.legend()
plt.tight_layout()
plt.show()
longest = adjoint_cost[adjoint_cost.steps == max(ADJOINT_STEPS)].set_index("backprop")
print(f"at {max(ADJOINT_STEPS)} steps the adjoint keeps {longest.loc['adjoint', 'saved MB']:.2f} MB instead of "
      f"{longest.loc['direct', 'saved MB']:.1f} MB, and takes {longest.loc['adjoint', 'seconds'] / longest.loc['direct', 'seconds']:.1f}x the time")  # fmt: skip

# %% [markdown]
# ## Controlled differential equations: a continuous RNN driven by a path
#
# A neural ODE's state, once started, ignores new data. A **controlled** differential equation
# (Kidger, Morrill, Foster & Lyons, 2020) lets the data steer it at every instant: interpolate the
# observations into a continuous path $X(s)$ and solve
# $$ z(s) = z(0) + \int_0^s f_\theta(z(u))\, dX(u) = z(0) + \int_0^s f_\theta(z(u))\,\frac{dX}{du}(u)\, du ,$$
# where $f_\theta(z)$ is a *matrix* (hidden $\times$ channels). Discretised at the observations,
# $z_{k+1} \approx z_k + f_\theta(z_k)(X_{k+1} - X_k)$: an RNN whose update is driven by the change of
# the data. `NeuralCDEFinance` builds the path from three kinds of channel:
#
# * the **real time** of each slot (calendar days since the window's first slot): the CDE's answer
#   depends only on the path, not on how fast we traverse it, so the path is parameterised by the slot
#   index $s$ and elapsed time enters as data;
# * the features, forward-filled over missing days (causal: torchcde's own NaN filling interpolates
#   towards the *next* observation);
# * the running **count of observations**, so the model sees where data is missing.
#
# The interpolation is the cubic Hermite spline with backward differences: it passes through the data,
# its derivative is continuous, and the piece between slots $k$ and $k+1$ uses slots $k-1, k, k+1$ only,
# so $z(k)$ never reads a later day.
#
# ## Irregular sampling in finance
#
# `course_lib.data.irregular.make_irregular` keeps each window's $L$ trading-day slots up to its forecast
# origin, gives each slot its calendar time relative to the origin, and removes a share of the days:
# independently (`"random"`) or in bursts that last five days on average (`"bursty"`, a two-state Markov
# chain). A removed day is removed from every window that contains it; targets are untouched.

# %% mystnb={"image": {"alt": "Left: bar chart, on a log count scale, of the calendar days between consecutive S&P 500 trading days, mostly 1 day and 3 days (weekends), with a few other gaps around holidays. Right: the kept days of 120 trading days when 30% are removed, one row of tick marks for random removal and one for bursty removal, whose gaps come in runs"}}
task = make_task("volatility", ticker="^GSPC", lookback=LOOKBACK, horizons=(1,))
gaps = pd.Series(np.diff(calendar_days(task.frame.index))).value_counts().sort_index()
print(task)
print("calendar days between consecutive trading days:", dict(gaps.astype(int)))

fig, axes = plt.subplots(1, 2, figsize=(11, 3.2), gridspec_kw={"width_ratios": [1, 2]})
axes[0].bar(gaps.index.astype(str), gaps.to_numpy())
axes[0].set(xlabel="gap (calendar days)", ylabel="count", title="S&P 500 trading-day gaps", yscale="log")
for row, kind in enumerate(("random", "bursty")):
    kept = removal_mask(120, 0.3, kind=kind, seed=3)
    axes[1].scatter(np.flatnonzero(kept), np.full(kept.sum(), row), marker="|", s=200, color=f"C{row}")
axes[1].set(yticks=[0, 1], yticklabels=["random", "bursty"], xlabel="trading day",
            title="30% of days removed: kept days marked")  # fmt: skip
plt.tight_layout()
plt.show()

# %% [markdown]
# One test window with 60% of its days removed: the observed values of the feature the target is built
# from (the log Parkinson volatility, scaled; the title names the channel from the task), the
# forward-filled channel, and the Hermite spline the CDE is driven by. At every slot the spline equals
# the data exactly (the assert).

# %% mystnb={"image": {"alt": "One test window with 60% of its days removed: the scaled log Parkinson volatility at the observed days as dots, the forward-filled channel as a dotted step line, and the Hermite spline that the CDE is driven by as a smooth curve through every observed dot, against the slot in the window"}}
irregular_60 = make_irregular(task, 0.6, seed=0)
values, times, mask = (torch.from_numpy(a[100:101]).double() for a in irregular_60.test.inputs())
cde = NeuralCDEFinance(4, HIDDEN).double()
path = cde.path(values, times, mask)  # (1, L, 6): time, 4 features, count
X, _ = cde.control(path)
s_fine = torch.linspace(0, LOOKBACK - 1, 400, dtype=torch.float64)
curve = torch.stack([X.evaluate(s) for s in s_fine], dim=1)[0]  # (400, 6)
assert torch.allclose(torch.stack([X.evaluate(s) for s in X.grid_points], dim=1), path, atol=1e-12)
shown = task.feature_names.index("log_vol_parkinson")  # the target's own proxy: feature `shown`
assert task.target_column == "var_parkinson", task.target_column

fig, ax = plt.subplots(figsize=(9, 3.2))
observed = mask[0] == 1
channel = 1 + shown  # path channel 0 is time, then the features in task order, then the count
ax.plot(
    s_fine.numpy(),
    curve[:, channel].numpy(),
    label=f"Hermite spline X(s), channel {task.feature_names[shown]}",
)
ax.step(np.arange(LOOKBACK), path[0, :, channel].numpy(), where="post", ls=":", color="grey",
        label="forward-filled")  # fmt: skip
ax.scatter(np.flatnonzero(observed), values[0, observed, shown].numpy(), color="C1", zorder=3,
           label="observed days")  # fmt: skip
ax.set(xlabel="slot s (trading day in the window)", ylabel=f"scaled {task.feature_names[shown]}",
       title=f"one window, {int((~observed).sum())} of {LOOKBACK} days removed; "
             f"it spans {times[0, -1] - times[0, 0]:.0f} calendar days")  # fmt: skip
print(f"plotted channel: {task.feature_names[shown]}; the target is built from {task.target_column}")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Three defects of the source module
#
# > **Pitfall (erratum: NeuralCDEFinance, the wrong `cdeint` signature)** The source's vector field
# > multiplies by $dX/dt$ itself and returns a (B, hidden) vector. `torchcde.cdeint` calls
# > `func(t, z)`, expects the (B, hidden, channels) **matrix** and does the product. The source also
# > indexed the output with `[-1]`, but `cdeint` returns (B, time, hidden): `[-1]` is the last
# > *sample's* path, not every sample's last state (use `z[:, -1]`). And the closure it passed gets no
# > gradient under the adjoint (torchcde's default): only an `nn.Module` exposes its parameters.

# %%
z0 = torch.zeros(1, HIDDEN, dtype=torch.float64)


def source_vector_field(t, z):  # the source's form: the product, shape (B, hidden)
    return torch.einsum("bhd,bd->bh", cde.func(t, z), X.derivative(t))


try:
    torchcde.cdeint(X=X, func=source_vector_field, z0=z0, t=X.interval, adjoint=False)
except ValueError as err:
    print("cdeint refuses the product:", str(err)[:150], "...")
z = torchcde.cdeint(
    X=X, func=cde.func, z0=z0, t=X.grid_points, adjoint=False, method="rk4", options={"step_size": 1.0}
)
print(
    f"cdeint output: {tuple(z.shape)} = (batch, time, hidden); z[-1] has shape {tuple(z[-1].shape)}, "
    f"z[:, -1] has shape {tuple(z[:, -1].shape)}"
)
closure = torchcde.cdeint(X=X, func=lambda t, z: cde.func(t, z), z0=z0, t=X.interval, method="rk4",
                          options={"step_size": 1.0})  # fmt: skip
print("under the adjoint, does the closure's output depend on any parameter?", closure.requires_grad)

# %% [markdown]
# > **Pitfall (erratum: NeuralODE, the oldest-step-only encoder)** The source encodes `x[:, 0]` only
# > (the *oldest* day of the window) and then integrates an ODE that never looks at the data again. The
# > other days of the window, including yesterday, have exactly zero gradient: the model cannot use them. The
# > course's `NeuralODE` is an ODE-RNN: it evolves the state through each real gap and updates it at
# > every observation. The gradient of the forecast with respect to each day of the window shows it.


# %% mystnb={"image": {"alt": "Gradient of the forecast with respect to each day of a 20-day window, log scale: the source model's line has gradient only at the oldest day, the course's NeuralODE has gradient at every day"}}
class OldestStepODE(nn.Module):
    """The source's NeuralODE, reproduced to show its defect."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.encoder, self.func = nn.Linear(input_size, hidden_size), ODEFunc(hidden_size)
        self.decoder = nn.Linear(hidden_size, 1)

    def forward(self, x):
        h0 = self.encoder(x[:, 0, :])  # the oldest step only
        t = torch.tensor([0.0, 1.0])
        return self.decoder(
            torchdiffeq.odeint(self.func, h0, t, method="rk4", options={"step_size": 0.25})[-1]
        )


x_probe = torch.from_numpy(task.test.X[:64]).requires_grad_(True)
fig, ax = plt.subplots(figsize=(9, 3))
for name, model in [
    ("source (x[:, 0] only)", OldestStepODE(4, HIDDEN)),
    ("course_lib NeuralODE", NeuralODE(4, HIDDEN)),
]:
    (grad,) = torch.autograd.grad(model(x_probe).sum(), x_probe)
    per_day = grad.abs().sum(dim=(0, 2)).numpy()
    ax.semilogy(np.arange(LOOKBACK), per_day + 1e-12, marker="o", label=name)
    print(f"{name}: {int((per_day > 0).sum())} of {LOOKBACK} days get gradient")
ax.set(xlabel="slot in the window (0 = oldest, 19 = forecast origin)", ylabel="|d forecast / d input| + 1e-12",
       title="which days can the model learn from?")  # fmt: skip
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# > **Pitfall (erratum: AttentionNeuralODE, the missing `forward`)** The source defines the attention
# > vector field and a `set_context` method but no `forward`, so calling the model raises
# > `NotImplementedError`; its context also lived in a mutable attribute that a second batch would
# > overwrite. The course's `AttentionNeuralODE` encodes the window with a GRU, carries the context
# > *in the ODE state* (with zero derivative), lets slot $k$ attend only to slots $\le k$, and passes
# > the no-look-ahead check.


# %%
class SourceAttentionODE(nn.Module):  # the source's shape: an ODE function, no forward
    def __init__(self, hidden_size):
        super().__init__()
        self.net = nn.Linear(hidden_size, hidden_size)

    def ode_func(self, t, h):
        return self.net(h)


try:
    SourceAttentionODE(HIDDEN)(torch.randn(2, HIDDEN))
except NotImplementedError as err:
    print("the source's model:", type(err).__name__, str(err))
attention_ode = AttentionNeuralODE(4, HIDDEN, n_heads=2)
x_window = torch.from_numpy(task.test.X[:8])
print("course_lib AttentionNeuralODE:", tuple(attention_ode(x_window).shape),
      "| gradient on the future from step 10:", future_gradient(lambda x: attention_ode(x, per_step=True), x_window, t=10))  # fmt: skip

# %% [markdown]
# ## GRU with time gaps, ODE-RNN and neural CDE as days go missing
#
# The volatility task of the course (tomorrow's log volatility of the S&P 500 from the task's default
# daily variance proxy, printed below; train to 2006, validation 2007-2008, test 2009-2018). For each
# removal rate and each seed we draw a **new mask** (random removal; seed $s$ trains on mask draw $s$, so
# the spread across seeds holds both the training noise and the luck of which days were lost) and train
# three models on it:
#
# * **GRU + gaps**: `FinancialGRU` (chapter 1) on `gap_features`: forward-filled features, the
#   observation mask and the calendar time since the last observation, the standard discrete answer;
# * **NeuralODE**: the ODE-RNN, evolving through each slot's real gap;
# * **NeuralCDE**: `NeuralCDEFinance` with time and observation-count channels.
#
# Two kinds of baseline. The usual four (EWMA, GARCH, HAR, log-HAR) read the **complete** daily series:
# they show what full data is worth. Three more read **the same thinned data as the networks**, mask
# draw by mask draw (`course_lib.evaluation.irregular_baselines`): HAR and log-HAR on the variance proxy
# forward-filled over the removed days (`har (ffill)`, `log_har (ffill)`), and an EWMA in calendar time,
# $s_k = w\,s_{k-1} + (1-w)\,v_k$ with $w = e^{-\lambda\,\Delta t}$ for the real gap $\Delta t$ since
# the last kept day ($\lambda$ matches RiskMetrics' 0.94 per average trading day), `ewma (irregular)`.
# Only the second kind separates "does the model use time well?" from "the model saw less data". The DM
# benchmark is the course's rule (the strongest classical baseline on the validation years, on the full
# series; printed in each table's header). Every table below is one protocol: one removal rate, the same
# test days, three seeds (three mask draws).

# %%
baselines = volatility_baselines(task)
n_features = task.train.X.shape[-1]
print(f"target: 0.5 log of tomorrow's {task.target_column}; inputs: {task.feature_names}")


def gru_inputs(split):
    return gap_features(*(torch.from_numpy(a) for a in split.inputs())).numpy()


def continuous_inputs(split):
    return split.inputs()  # (values with NaN, times, mask): the model is called as model(*inputs)


MODELS = {
    "GRU + gaps": (lambda: FinancialGRU(n_features + 2, HIDDEN), gru_inputs),
    "NeuralODE": (lambda: NeuralODE(n_features, HIDDEN, method=METHOD, steps_per_gap=STEPS_PER_GAP), continuous_inputs),
    "NeuralCDE": (lambda: NeuralCDEFinance(n_features, HIDDEN, method=METHOD, steps_per_gap=STEPS_PER_GAP),
                  continuous_inputs),
}  # fmt: skip

start = time.perf_counter()
irregular, predictions, val_predictions, trained, seconds, still_improving = {}, {}, {}, {}, {}, []
for rate in REMOVAL_RATES:
    for seed in SEEDS:  # seed s: mask draw s and training seed s
        irregular[rate, seed] = data = make_irregular(task, rate, kind="random", seed=seed)
        for split, store in (("test", predictions), ("val", val_predictions)):
            for name, forecast in thinned_volatility_baselines(data, split).items():
                store.setdefault(rate, {}).setdefault(name, []).append(forecast)
    for name, (make, inputs) in MODELS.items():
        for seed in SEEDS:
            data = irregular[rate, seed]
            set_seed(seed)
            trainer = Trainer(make(), lr=LR, batch_size=BATCH_SIZE, max_epochs=EPOCHS, patience=PATIENCE,
                              seed=seed, device=device, progress=False)  # fmt: skip
            history = trainer.fit(inputs(data.train), data.train.y, inputs(data.val), data.val.y)
            predictions.setdefault(rate, {}).setdefault(name, []).append(trainer.predict(inputs(data.test)))
            val_predictions.setdefault(rate, {}).setdefault(name, []).append(
                trainer.predict(inputs(data.val))
            )
            seconds.setdefault(name, []).extend(history["epoch_time"])
            val_loss = history["val_loss"]
            still_improving.append(int(np.argmin(val_loss)) == len(val_loss) - 1)  # best epoch = the last
            trained[rate, name, seed] = trainer.model.cpu()
print(f"trained {len(trained)} models in {time.perf_counter() - start:.1f} s")
print("median seconds per epoch:", {name: round(float(np.median(s)), 2) for name, s in seconds.items()})

results = {
    rate: seed_summary(task, predictions[rate], baselines, val_predictions=val_predictions[rate])
    for rate in REMOVAL_RATES
}

# %% [markdown]
# ### The tables, one per removal rate
# Mean over seeds (`MSE sd`: the spread across seeds); `QLIKE_lc`: QLIKE of the variance after the
# level correction learnt causally from the test errors already known at each origin (the course's
# ranking variant, `course_lib.evaluation.correction`); `ens DM`: the
# Diebold-Mariano statistic of the seed ensemble (the mean forecast over seeds) against the benchmark on
# squared error (negative = lower loss); the counts of seeds significantly better or worse on MSE and on
# QLIKE; `in_MCS`: whether the model is in the 90% model confidence set on QLIKE. The full tables hold
# more columns (`results[rate]`). Blank cells: the benchmark's own DM statistic and p-value (a forecast is
# not tested against itself).

# %%
SHOWN = ["MSE", "MSE sd", "QLIKE_lc", "ens DM", "ens DM_p", "better MSE (p<0.05)", "worse MSE (p<0.05)",
         "better QLIKE (p<0.05)", "worse QLIKE (p<0.05)", "in_MCS"]  # fmt: skip
print(results[0.0].columns.name)
for rate in REMOVAL_RATES:
    print(f"\n{rate:.0%} of days removed")
    print(results[rate][SHOWN].rename_axis(columns=None).round(4).to_string(na_rep=""))

# %% mystnb={"image": {"alt": "Two panels against the percentage of days removed (0, 30, 60): test MSE and test corrected QLIKE of the three networks (solid lines) and of the baselines fed the same thinned data (dashed), with the full-data HAR and log-HAR as grey horizontal lines"}}
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
for ax, metric in zip(axes, ("MSE", "QLIKE_lc"), strict=True):
    for i, name in enumerate([*MODELS, *IRREGULAR_BASELINES]):
        ax.plot([100 * r for r in REMOVAL_RATES], [results[r].loc[name, metric] for r in REMOVAL_RATES],
                marker="o" if name in MODELS else "s", ls="-" if name in MODELS else "--", color=f"C{i}",
                label=name if name in MODELS else f"{name}, same thinned data")  # fmt: skip
    for j, base in enumerate(("har", "log_har")):
        ax.axhline(
            results[0.0].loc[base, metric], color="grey", ls=("--", ":")[j], label=f"{base} (full data)"
        )
    ax.set(xlabel="days removed (%)", ylabel=f"test {metric} (mean over seeds)", title=f"test {metric}")
axes[0].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ### The answer, computed
# For each network: how much its test MSE rises from 0% to the largest removal rate, and which baselines
# *fed the same thinned data* beat it there (in how many of the three mask draws, each network seed
# compared with the baseline on its own mask). The baselines' own rise says how much of the loss is just
# "less data".

# %%
TOP = max(REMOVAL_RATES)


def draw_mse(rate, name):
    """Test MSE of each seed (= mask draw) of a network or same-data baseline."""
    return np.array([np.mean((p - task.test.y) ** 2) for p in predictions[rate][name]])


for rate in REMOVAL_RATES:
    for name in [*MODELS, *IRREGULAR_BASELINES]:
        assert np.isclose(draw_mse(rate, name).mean(), results[rate].loc[name, "MSE"], rtol=1e-4), name
for name in [*MODELS, *IRREGULAR_BASELINES]:
    before, after = draw_mse(0.0, name).mean(), draw_mse(TOP, name).mean()
    line = f"{name}: test MSE {before:.4f} -> {after:.4f} ({after / before - 1:+.1%}) from 0% to {TOP:.0%} removed"
    if name in MODELS:
        losers = [
            f"{base} ({draw_mse(TOP, base).mean():.4f}, lower in "
            f"{int((draw_mse(TOP, base) < draw_mse(TOP, name)).sum())} of {len(SEEDS)} draws)"
            for base in IRREGULAR_BASELINES
            if draw_mse(TOP, base).mean() < after
        ]
        line += "; at that rate it loses to " + (", ".join(losers) if losers else "no same-data baseline")
    print(line)

print()
margins = {}
for rate in REMOVAL_RATES:
    net = min(MODELS, key=lambda n: draw_mse(rate, n).mean())
    base = min(IRREGULAR_BASELINES, key=lambda n: draw_mse(rate, n).mean())
    margins[rate] = draw_mse(rate, base).mean() - draw_mse(rate, net).mean()
    print(f"{rate:.0%} removed: best network {net} {draw_mse(rate, net).mean():.4f}, best baseline on the same "
          f"data {base} {draw_mse(rate, base).mean():.4f}: the {'network' if margins[rate] > 0 else 'baseline'} is "
          f"lower, and the network's MSE is lower in {int((draw_mse(rate, net) < draw_mse(rate, base)).sum())} of "
          f"{len(SEEDS)} mask draws")  # fmt: skip
print(
    f"So, on this data and budget, the best network's margin over the best same-data baseline goes from "
    f"{margins[0.0]:+.4f} at 0% to {margins[TOP]:+.4f} at {TOP:.0%} removed (positive: the network is lower): "
    + ("modelling time does not rescue the networks as days go missing; they lose more than the baselines."
       if margins[TOP] < margins[0.0] else "the networks hold up at least as well as the baselines.")
)  # fmt: skip

# %% [markdown]
# ### The same comparison at a full budget
# The tables above belong to this notebook's budget. The repository keeps the same comparison (the same
# task, models and table) trained at a full budget: more seeds, each trained until its validation loss
# stopped improving (`make reference`; the tables, the command, the machine and the date are in
# `docs/reference/06c.md`). Below, each network's row, one removal rate at a time, at this budget beside
# its row at the full budget. The verdict of a row is the Diebold-Mariano test of its seed ensemble
# against the benchmark on corrected QLIKE at 5%, with its membership of the 90% model confidence set;
# where the two budgets disagree, the budget, not the architecture, decided this notebook's verdict.

# %%
from course_lib.evaluation.reference import budget_comparison, budget_verdicts, load_reference, provenance

full_reference = load_reference("06c")  # docs/reference/06c.json of this repository, from any directory
print(provenance(full_reference))
for rate in REMOVAL_RATES:
    label = f"{rate:.0%} removed"
    if label not in full_reference["tables"]:
        print(f"\n{label}: no full-budget reference (it covers {', '.join(full_reference['tables'])})")
        continue
    comparison = budget_comparison(
        results[rate],
        full_reference,
        table=label,
        models=list(MODELS),
        notebook_budget={"epochs": EPOCHS, "seeds": SEEDS},
    )
    print(f"\n{label}")
    print(comparison.round(4).to_string(na_rep=""))
    print(budget_verdicts(comparison))

# %% [markdown]
# ### Why might time not help here? Two hypotheses, one test
#
# * **Budget.** The networks train for a few epochs on one CPU. If most runs were still improving on the
#   validation split when training stopped, more epochs might change the ranking (the count below).
# * **Daily index volatility is only mildly irregular.** Knowing *when* the last observation was made
#   helps only if the best forecast changes much with the gap. Volatility is persistent: a level seen
#   three days ago is nearly as informative as yesterday's. The cheap test: take log-HAR on the
#   forward-filled proxy (which ignores time) and let it also read the age of the origin's last kept
#   observation, $a$ (calendar days), as $\hat y = \beta_0 + \beta_1 f + \beta_2 a + \beta_3 a f$, fitted on
#   the training split. If this time-aware linear model barely beats the time-unaware one on the test
#   split, time carries little information in this data, whatever the model.

# %%
print(f"runs whose best validation epoch was their last: {sum(still_improving)} of {len(still_improving)}")


def origin_age(split):
    """Calendar days from the last kept slot of each window to its origin (times are relative to it)."""
    return -np.where(split.mask == 1, split.times, -np.inf).max(axis=1)


gains = []
for seed in SEEDS:
    data = irregular[TOP, seed]
    design = {}
    for split in ("train", "test"):
        f = log_har_forecasts(forward_filled_task(data), split)[:, 0]  # log-HAR on the forward-filled proxy
        a = np.minimum(
            origin_age(data.split(split)), -data.split(split).times[:, 0]
        )  # no kept slot: the span
        design[split] = (
            np.column_stack([np.ones_like(f), f]),
            np.column_stack([np.ones_like(f), f, a, a * f]),
        )
    y_train, y_test = task.train.y[:, 0], task.test.y[:, 0]
    warm = task.train.rows >= 21  # log-HAR's 22-day average exists from row 21
    test_mse = []
    for k in range(2):
        beta, *_ = np.linalg.lstsq(design["train"][k][warm], y_train[warm], rcond=None)
        test_mse.append(np.mean((design["test"][k] @ beta - y_test) ** 2))
    gains.append(1 - test_mse[1] / test_mse[0])
ages = origin_age(irregular[TOP, SEEDS[0]].test)
print(f"at {TOP:.0%} removed the age of the origin's last kept day, in calendar days: median {np.median(ages):.0f}, "
      f"90th percentile {np.quantile(ages, 0.9):.0f}; reading that age lowers the test MSE of forward-filled "
      f"log-HAR by {100 * np.mean(gains):.1f}% on average over the {len(SEEDS)} mask draws "
      f"(per draw: {', '.join(f'{100 * g:.1f}%' for g in gains)}): "
      + ("under 1%, which supports the second hypothesis" if abs(np.mean(gains)) < 0.01 else "1% or more: time carries information here"))  # fmt: skip

# %% [markdown]
# The lines above say how much time is worth to the best linear model on this data, and how many runs
# stopped while still improving (the budget hypothesis stays open for those: the chapter does not
# retrain with more epochs). When the age of the data is worth little, a model that ignores time loses
# little, and a flexible model that uses time gains little for the parameters it spends. The next
# section builds data where the opposite holds.

# %% [markdown]
# ## Where time does matter: an Ornstein-Uhlenbeck process seen at random times
#
# Take a quantity that forgets its past within days, the Ornstein-Uhlenbeck process
# $dx = -\kappa x\,dt + \sigma\,dW$, with $\sigma$ chosen so that its stationary variance
# $\sigma^2 / (2\kappa)$ is 1. Its transition is known exactly:
# $$ x(t + \Delta) \mid x(t) \sim \mathcal N\!\left(e^{-\kappa\Delta} x(t),\ 1 - e^{-2\kappa\Delta}\right), $$
# so the best forecast of tomorrow from a last observation made $a$ days before the origin is
# $e^{-\kappa (a + 1)}\,x_{\text{last}}$: it depends on *how old* the observation is. We simulate
# independent windows of the same shape as before (so the test days are independent and the test is
# sharp), lose most days at random, and forecast the day after the origin (always the true value). The time-unaware baseline regresses tomorrow on the last kept
# value (forward filling, what HAR does above); the exact predictor and the networks know the times.

# %%
rng = np.random.default_rng(0)
decay = np.exp(-OU_KAPPA)  # one day of the exact transition
x = np.empty((OU_WINDOWS, LOOKBACK + 1))  # independent paths: L days of window, then the target day
x[:, 0] = rng.standard_normal(OU_WINDOWS)  # start in the stationary law N(0, 1)
for day in range(1, LOOKBACK + 1):
    x[:, day] = decay * x[:, day - 1] + np.sqrt(1 - decay**2) * rng.standard_normal(OU_WINDOWS)
kept = rng.random((OU_WINDOWS, LOOKBACK)) >= OU_REMOVED  # (N, L) each day lost independently
ou_mask = kept.astype(np.float32)
ou_values = np.where(kept, x[:, :LOOKBACK], np.nan)[..., None].astype(np.float32)  # (N, L, 1)
ou_times = np.tile(
    np.arange(1 - LOOKBACK, 1, dtype=np.float32), (OU_WINDOWS, 1)
)  # days relative to the origin
ou_y = x[:, LOOKBACK:].astype(np.float32)  # (N, 1): the day after the origin
cut = [int(0.7 * OU_WINDOWS), int(0.85 * OU_WINDOWS)]
ou = {
    name: (ou_values[sl], ou_times[sl], ou_mask[sl], ou_y[sl])
    for name, sl in zip(("train", "val", "test"), (slice(0, cut[0]), slice(*cut), slice(cut[1], None)), strict=True)
}  # fmt: skip


def last_kept(values, times, mask):
    """The last kept value of each window and its age at the origin (window with none: 0 and the span)."""
    last = np.where(mask.any(axis=1), mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1), 0)
    n = np.arange(len(mask))
    found = mask[n, last] == 1
    return np.where(found, values[n, last, 0], 0.0), np.where(found, -times[n, last], -times[:, 0])


value, age = last_kept(*ou["test"][:3])
train_value, _ = last_kept(*ou["train"][:3])
slope, intercept = np.polyfit(train_value, ou["train"][3][:, 0], 1)
ou_predictions = {
    "exact OU predictor (knows the time)": np.exp(-OU_KAPPA * (age + 1)) * value,
    "regression on the last kept value (time-unaware)": slope * value + intercept,
}
OU_MODELS = {  # name: (model, how it reads a window)
    "GRU + gaps": (lambda: FinancialGRU(3, HIDDEN), lambda v, t, m: gap_features(*map(torch.from_numpy, (v, t, m))).numpy()),
    "GRU-D": (lambda: GRUD(1, HIDDEN), lambda v, t, m: (v, t, m)),
    "NeuralODE": (lambda: NeuralODE(1, HIDDEN, method=METHOD, steps_per_gap=STEPS_PER_GAP), lambda v, t, m: (v, t, m)),
}  # fmt: skip
for name, (make, to_inputs) in OU_MODELS.items():
    set_seed(0)
    model = make()
    trainer = Trainer(model, lr=LR, batch_size=BATCH_SIZE, max_epochs=OU_EPOCHS, patience=PATIENCE, seed=0,
                      device=device, progress=False)  # fmt: skip
    trainer.fit(to_inputs(*ou["train"][:3]), ou["train"][3], to_inputs(*ou["val"][:3]), ou["val"][3])
    ou_predictions[f"{name} (knows the time)"] = trainer.predict(to_inputs(*ou["test"][:3]))[:, 0]
ou_truth = ou["test"][3][:, 0]
ou_mse = {name: float(np.mean((p - ou_truth) ** 2)) for name, p in ou_predictions.items()}
for name, value_mse in ou_mse.items():
    print(f"{name:>50}: test MSE {value_mse:.4f}")
UNAWARE = "regression on the last kept value (time-unaware)"
for name, value_mse in ou_mse.items():
    if name != UNAWARE:
        dm = diebold_mariano(ou_truth, ou_predictions[name], ou_predictions[UNAWARE])
        print(f"{name} has {100 * (1 - value_mse / ou_mse[UNAWARE]):.1f}% lower test MSE than the time-unaware "
              f"regression (DM {dm.statistic:.2f}, p = {dm.pvalue:.4f})")  # fmt: skip
assert ou_mse["NeuralODE (knows the time)"] < ou_mse[UNAWARE], "the prose below says the ODE-RNN wins here"
w = np.exp(-OU_KAPPA * (age + 1))  # the exact weight of each test window
print(f"theory, from the test windows' ages: exact MSE 1 - E[w^2] = {1 - np.mean(w**2):.4f}, best time-unaware "
      f"MSE 1 - E[w]^2 = {1 - np.mean(w) ** 2:.4f} (the gap is the variance of w)")  # fmt: skip
print(f"the exact weight on the last kept value runs from {np.exp(-OU_KAPPA):.2f} (seen at the origin) to "
      f"{np.exp(-OU_KAPPA * (np.quantile(age, 0.9) + 1)):.2f} (90th percentile of its age, {np.quantile(age, 0.9):.0f} days)")  # fmt: skip

# %% [markdown]
# Here the comparison flips (the lines above, with a Diebold-Mariano test each; the networks are one
# seed each): the forecast must shrink an old observation towards the mean by a factor that depends on
# its age. Forward filling applies one average factor to every age; the exact predictor applies the
# right one, and the networks that read the time learn part of it. Set the two data sets side by side: on this process a day
# changes the best forecast by a factor $e^{-\kappa}$ printed above; on index volatility a lost day
# barely changes it (the age test of the previous section). Continuous-time models pay off when the
# gaps are long beside the time the series takes to forget.

# %% [markdown]
# ## Solver statistics: cost against accuracy
#
# The trained models used RK4 with one step per slot. Re-running the same weights with other solvers
# shows what a solver costs (function evaluations per window, seconds on the test set) and how much the
# forecast moves (test MSE). Every model was *trained* with RK4, so it has learnt its discretisation:
# a much cruder solver at test time changes the answers.

# %% mystnb={"image": {"alt": "Three bar charts, one per quantity (function evaluations per window, seconds on the test set, test MSE), for the ODE-RNN and the neural CDE under four solvers: Euler, the trained RK4, RK4 with two steps and dopri5"}}
SOLVERS = {
    "euler x1": ("euler", 1),
    "rk4 x1 (trained)": ("rk4", 1),
    "rk4 x2": ("rk4", 2),
    "dopri5": ("dopri5", 1),
}
data = irregular[max(REMOVAL_RATES), SEEDS[0]]
stats = []
for name in ("NeuralODE", "NeuralCDE"):
    trained_model = trained[max(REMOVAL_RATES), name, SEEDS[0]]
    for label, (method, steps) in SOLVERS.items():
        model = type(trained_model)(**{**trained_model.config, "method": method, "steps_per_gap": steps})
        model.load_state_dict(trained_model.state_dict())
        model.eval()
        with torch.no_grad():
            model.func.nfe = 0
            start = time.perf_counter()
            pred = model(*(torch.from_numpy(a) for a in data.test.inputs())).numpy()
            elapsed = time.perf_counter() - start
        stats.append({"model": name, "solver": label, "evaluations per window": model.func.nfe,
                      "seconds (test set)": elapsed, "test MSE": float(np.mean((pred - data.test.y) ** 2))})  # fmt: skip
stats = pd.DataFrame(stats)
print(stats.round(4).to_string(index=False))

fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
for ax, column in zip(axes, ("evaluations per window", "seconds (test set)", "test MSE"), strict=True):
    wide = stats.pivot(index="solver", columns="model", values=column).loc[list(SOLVERS)]
    wide.plot.bar(ax=ax, rot=20)
    ax.set(title=column, xlabel="", ylabel=column)
    if column == "test MSE":
        ax.set_ylim(0.9 * wide.min().min(), 1.05 * wide.max().max())
plt.tight_layout()
plt.show()

# %% [markdown]
# The counts follow from the solvers: on a window of L slots both models integrate over L - 1 gaps, RK4
# evaluates the field four times per step, and `cdeint` adds one evaluation to check the shapes before
# solving. `dopri5` chooses its own steps for a tolerance (`rtol=1e-3`), six evaluations each plus the
# ones it spends choosing the first step.

# %%
for name in ("NeuralODE", "NeuralCDE"):
    rows = stats[stats.model == name].set_index("solver")
    rk4, dopri = rows.loc["rk4 x1 (trained)"], rows.loc["dopri5"]
    euler = rows.loc["euler x1"]
    print(f"{name}: dopri5 uses {dopri['evaluations per window'] / rk4['evaluations per window']:.1f}x the evaluations "
          f"of the trained RK4 and {dopri['seconds (test set)'] / rk4['seconds (test set)']:.1f}x the time, and moves the "
          f"test MSE by {dopri['test MSE'] - rk4['test MSE']:+.4f}; Euler moves it by {euler['test MSE'] - rk4['test MSE']:+.4f}")  # fmt: skip

# %% [markdown]
# ### Why the number of evaluations grows in training
# With an adaptive solver the cost is not fixed: it follows how hard the learned vector field is to
# integrate, and training tends to make the field stiffer and the step count larger (Chen et al., 2018;
# Grathwohl et al., 2019). Two regularisers keep it down: penalising the field's kinetic energy and its
# Jacobian (Finlay, Jacobsen, Nurbekyan & Oberman, 2020) or its higher time derivatives (Kelly,
# Bettencourt, Johnson & Duvenaud, 2020). This chapter sidesteps the issue with fixed RK4 steps, whose
# count is set by the window alone. The cell below measures what `dopri5` would spend on a fresh ODE-RNN
# and on the trained one, on the same test windows.

# %%
trained_ode = trained[max(REMOVAL_RATES), "NeuralODE", SEEDS[0]]
nfe = {}
for label, weights in (("untrained", None), ("trained", trained_ode.state_dict())):
    set_seed(SEEDS[0])
    model = NeuralODE(**{**trained_ode.config, "method": "dopri5"})
    if weights is not None:
        model.load_state_dict(weights)
    model.eval()
    with torch.no_grad():
        model.func.nfe = 0
        model(*(torch.from_numpy(a) for a in data.test.inputs()))
    nfe[label] = model.func.nfe
print(f"dopri5 evaluations per test set: {nfe['untrained']} on the untrained ODE-RNN, {nfe['trained']} on the trained "
      f"one ({nfe['trained'] / nfe['untrained']:.1f}x)")  # fmt: skip

# %% [markdown]
# ## A neural SDE for volatility
#
# Every model so far, the neural ODE included, maps a window to one number. Volatility is itself
# random: the classical continuous-time models of it (Heston's, the GARCH diffusion) are stochastic
# differential equations. A **neural SDE** keeps the ODE's learnt drift and adds a learnt noise,
# $$ dz = \mu_\theta(z)\,dt + \sigma_\theta(z)\,dW_t , $$
# with $W$ a standard Brownian motion and $\sigma_\theta(z)$ a positive diagonal scale, one noise per
# coordinate of $z$ (Tzen & Raginsky, 2019; Li, Wong, Chen & Duvenaud, 2020). `NeuralSDE`
# (`course_lib.models.sde`) reads the window with a GRU, maps its last state to $z(0)$ at the forecast
# origin, lets the SDE carry $z$ across the one-day horizon along many sample paths, and reads each
# path's endpoint with a head: one forecast of tomorrow's log volatility per path. The paths' forecasts
# are a predictive distribution; their mean is the point forecast that the tables score.
#
# There is no closed form for a learnt SDE, so it is simulated by the **Euler-Maruyama** scheme on a
# grid of step $\Delta t$:
# $$ z_{k+1} = z_k + \mu_\theta(z_k)\,\Delta t + \sigma_\theta(z_k)\,\sqrt{\Delta t}\,\varepsilon_k,
#    \qquad \varepsilon_k \sim \mathcal N(0, I)\ \text{independent}, $$
# the Euler step of the ODE plus a Gaussian increment with the variance of Brownian motion over
# $\Delta t$. Two kinds of convergence: *strong* (the simulated paths approach the true paths, error
# $\propto \Delta t^{1/2}$: strong order 0.5) and *weak* (expectations of the endpoint, hence the
# forecast distribution, error $\propto \Delta t$: weak order 1). A forecast distribution needs only
# the weak kind. With $\sigma_\theta = 0$ the scheme is exactly the Euler method of the ODE:
# `tests/test_sde.py` checks that against a hand recursion and `torchdiffeq`, and checks on an
# Ornstein-Uhlenbeck SDE ($\mu(z) = -\kappa z$, constant $\sigma$) that the simulated endpoints have the
# closed-form mean $e^{-\kappa t} z_0$ and variance $\frac{\sigma^2}{2\kappa}(1 - e^{-2\kappa t})$
# within Monte Carlo error. The cost is fixed: `n_steps` evaluations of the drift and the diffusion per
# path, whatever the weights (no adaptive step, so no growth of the evaluation count in training).
#
# **Training on a proper scoring rule.** The MSE of the path mean rewards no particular spread (the
# noise only blurs the mean), so the model trains on the CRPS of its samples (`loss="crps_samples"`),
# $\mathbb E|X - y| - \tfrac12 \mathbb E|X - X'|$ estimated from the paths: a proper scoring rule, lowest
# in expectation when the paths are drawn from the outcome's true law, so it trains the centre and the
# spread together. The estimate divides the pair term by $M(M-1)$ (the "fair" CRPS, unbiased at any
# number $M$ of paths) rather than by $M^2$, which at $M = 16$ would reward too narrow a band.
#
# **Reproducible noise.** In training the increments are fresh draws for every path and window. In
# evaluation they are one fixed block of draws from the model's `seed`, shared by every window: a window
# gets the same forecast whenever it is asked and whichever windows share its batch (the model contract
# and `tests/test_sde.py` check both). Half the paths use the negated draws of the other half
# (antithetic pairs), which cancels the noise's first-order effect on the path mean (for a linear SDE
# the path mean is then exact, also checked in `tests/test_sde.py`).
#
# The experiment: the chapter's volatility task with complete data (the same splits, windows, target and
# complete-data baselines as the first tables), the chapter's epochs, patience and batch size with the
# SDE's own learning rate `SDE_LR`, three seeds, `SDE_PATHS` paths and `SDE_STEPS` Euler-Maruyama steps
# per day in training; the test
# distributions use `SDE_EVAL_PATHS` paths per window.

# %%
from scipy.stats import norm

from course_lib.evaluation import verdict_summary
from course_lib.evaluation.probabilistic import crps_gaussian, crps_samples
from course_lib.models.sde import NeuralSDE

start = time.perf_counter()
sde = {"test": [], "val": [], "samples": [], "models": [], "improving": []}
x_test = torch.from_numpy(task.test.X)
for seed in SEEDS:
    set_seed(seed)
    trainer = Trainer(NeuralSDE(n_features, HIDDEN, n_paths=SDE_PATHS, n_steps=SDE_STEPS), loss="crps_samples",
                      lr=SDE_LR, batch_size=BATCH_SIZE, max_epochs=EPOCHS, patience=PATIENCE, seed=seed,
                      device=device, progress=False)  # fmt: skip
    history = trainer.fit(task.train.X, task.train.y, task.val.X, task.val.y)
    sde["test"].append(trainer.predict(task.test.X))  # the path mean: (N, 1)
    sde["val"].append(trainer.predict(task.val.X))
    model = trainer.model.cpu().eval()
    with torch.no_grad():
        sde["samples"].append(model.sample(x_test, n_paths=SDE_EVAL_PATHS)[:, 0].numpy())  # (N, paths)
    sde["models"].append(model)
    sde["improving"].append(trainer.best_epoch == len(history["val_loss"]))
print(f"trained {len(SEEDS)} neural SDEs in {time.perf_counter() - start:.1f} s; "
      f"{sum(sde['improving'])} of {len(SEEDS)} had their best validation CRPS at their last epoch")  # fmt: skip

# %% [markdown]
# ### The point forecast, by the chapter's protocol
# The path mean against the complete-data baselines, with the ODE-RNN of the first table (0% of days
# removed: the same test days and targets) as the deterministic relative. Columns as in the tables
# above; blank cells: the benchmark is not tested against itself.

# %%
SDE_ROWS = {"NeuralSDE": sde["test"], "NeuralODE (0% removed)": predictions[0.0]["NeuralODE"]}
sde_point = seed_summary(
    task,
    SDE_ROWS,
    baselines,
    val_predictions={"NeuralSDE": sde["val"], "NeuralODE (0% removed)": val_predictions[0.0]["NeuralODE"]},
)
print(sde_point.columns.name)
print(sde_point[SHOWN].rename_axis(columns=None).round(4).to_string(na_rep=""))

# %%
bench = sde_point.attrs["benchmark"]
row, base = sde_point.loc["NeuralSDE"], sde_point.loc["log_har"]
print(verdict_summary(sde_point, models=list(SDE_ROWS)))
print(
    f"The neural SDE's path mean has test MSE {row['MSE']:.4f} (seed sd {row['MSE sd']:.4f}) against "
    f"{base['MSE']:.4f} for log-HAR and {sde_point.loc[bench, 'MSE']:.4f} for the benchmark {bench}: "
    + ("lower than both" if row["MSE"] < min(base["MSE"], sde_point.loc[bench, "MSE"]) else "not lower than both")
    + f"; its seed ensemble's DM statistic against {bench} is {row['ens DM']:.2f} (p = {row['ens DM_p']:.4f}), and "
    f"{row['better MSE (p<0.05)']} seeds are significantly better on MSE. The ODE-RNN, trained on the MSE itself, has "
    f"{sde_point.loc['NeuralODE (0% removed)', 'MSE']:.4f} "
    + ("(lower" if sde_point.loc["NeuralODE (0% removed)", "MSE"] < row["MSE"] else "(higher")
    + "; the two differ in their inputs, encoder and loss, so this does not isolate what the noise costs or gains)."
    + " The SDE, trained on the CRPS, was never asked "
    "for a mean, yet the CRPS's minimiser (the outcome's law) has the right mean, so a good distribution gives a "
    "good point forecast as a by-product."
)  # fmt: skip

# %% [markdown]
# ### The distribution: CRPS and the 80% band against a Gaussian log-HAR
# log-HAR gives a point; to score it as a distribution we add a Gaussian whose standard deviation is
# that of log-HAR's errors on the validation years (2007-2008; log-HAR itself is fitted on the training
# years), so nothing is learnt on the test years: its 80% band is the forecast $\pm 1.28$ of those
# standard deviations, the same width every day. The neural SDE's band runs from the 10% to the 90%
# quantile of its paths, a width of its own every day. Both are scored by the CRPS (the sample form for
# the SDE, the closed form for the Gaussian; lower is better), the share of outcomes inside the 80% band
# (coverage; 80% is calibrated) and the band's mean width (narrower is better at equal coverage). The
# SDE's row is the mean over seeds (`CRPS sd`: their spread); `lower CRPS (p<0.05)` counts the seeds
# whose daily CRPS is significantly lower than the Gaussian log-HAR's by a Diebold-Mariano test. Blank
# cells: log-HAR is one deterministic forecast, with no seeds.

# %%
y_test = task.test.y[:, 0].astype(np.float64)
val_log_har = volatility_baselines(task, split="val")["log_har"][:, 0]
har_sd = float(np.std(task.val.y[:, 0] - val_log_har, ddof=1))  # learnt on the validation years only
z80 = norm.ppf(0.9)
har_mean = baselines["log_har"][:, 0]
har_crps = crps_gaussian(y_test, har_mean, har_sd)
sde_crps = [crps_samples(y_test, s) for s in sde["samples"]]
bands = [np.quantile(s, [0.1, 0.9], axis=1) for s in sde["samples"]]  # (2, N) per seed
crps_dm = [diebold_mariano(np.zeros_like(c), c, har_crps, loss="ae") for c in sde_crps]
band_table = pd.DataFrame(
    {
        "CRPS": [np.mean([c.mean() for c in sde_crps]), har_crps.mean()],
        "CRPS sd": [np.std([c.mean() for c in sde_crps], ddof=1), np.nan],
        "80% coverage": [np.mean([np.mean((y_test >= lo) & (y_test <= hi)) for lo, hi in bands]),
                         np.mean(np.abs(y_test - har_mean) <= z80 * har_sd)],
        "mean width": [np.mean([np.mean(hi - lo) for lo, hi in bands]), 2 * z80 * har_sd],
        "lower CRPS (p<0.05)": [f"{sum((r.statistic < 0) and (r.pvalue < 0.05) for r in crps_dm)}/{len(SEEDS)}", ""],
    },
    index=["NeuralSDE", "log_har + Gaussian (validation sd)"],
)  # fmt: skip
print(band_table.round(4).to_string(na_rep=""))

# %%
sde_row, har_row = band_table.loc["NeuralSDE"], band_table.loc["log_har + Gaussian (validation sd)"]
widths = np.concatenate([hi - lo for lo, hi in bands])
lower = sde_row["CRPS"] < har_row["CRPS"]
print(
    f"CRPS: {sde_row['CRPS']:.4f} for the neural SDE against {har_row['CRPS']:.4f} for log-HAR with a Gaussian band "
    f"({'lower' if lower else 'higher'} by {abs(1 - sde_row['CRPS'] / har_row['CRPS']):.1%}); per seed the daily CRPS "
    f"is significantly lower in {sde_row['lower CRPS (p<0.05)']} seeds (DM statistics "
    f"{', '.join(f'{r.statistic:.2f}' for r in crps_dm)}). Coverage of the 80% band: {sde_row['80% coverage']:.1%} "
    f"against {har_row['80% coverage']:.1%} (both within {100 * max(abs(sde_row['80% coverage'] - 0.8), abs(har_row['80% coverage'] - 0.8)):.1f} "
    f"percentage points of 80%), with mean widths {sde_row['mean width']:.3f} and {har_row['mean width']:.3f}; the SDE's width moves "
    f"from {np.quantile(widths, 0.05):.3f} to {np.quantile(widths, 0.95):.3f} (5th to 95th percentile over days and seeds)."
)
significant = sum((r.statistic < 0) and (r.pvalue < 0.05) for r in crps_dm)
if lower and significant == len(SEEDS):
    verdict = "So the neural SDE's distribution beats the Gaussian log-HAR on the proper score in every seed"
elif lower:
    verdict = (
        f"So the neural SDE's distribution has the lower mean CRPS, but significantly so in only {significant} "
        f"of {len(SEEDS)} seeds: a gain, not a firm one"
    )
else:
    verdict = "So the Gaussian log-HAR's distribution is at least as good on the proper score"
print(
    verdict + f" at this budget ({EPOCHS} epochs, {SDE_PATHS} paths, {SDE_STEPS} steps a day). Observed, not proved: "
    "the Gaussian band has one width for calm and turbulent days alike, while the SDE's width moves with the state "
    "(the percentiles above), and its centre is "
    + ("also better than log-HAR's" if row["MSE"] < base["MSE"] else "no better than log-HAR's")
    + f" (MSE {row['MSE']:.4f} against {base['MSE']:.4f}); which of the two gives the CRPS gain is not separated here."
    f" The {SDE_STEPS}-step Euler-Maruyama grid and the {SDE_PATHS} training paths bound how "
    "finely it can shape the tails."
)  # fmt: skip

# %% [markdown]
# The bands over one turbulent stretch of the test years (left), and the paths behind one forecast
# (right): the head reads each simulated state along the day, from the origin ($t = 0$) to the forecast
# ($t = 1$ day, the only point that is trained and scored).

# %% mystnb={"image": {"alt": "Left: a date axis over the second half of 2011 with the realised log volatility as a line, the neural SDE's 80% band as a shaded area whose width changes day by day, and log-HAR's Gaussian 80% band as two dashed lines of constant width around its forecast. Right: for one forecast origin, the head's reading of each simulated path against time within the day from 0 to 1, fanning out from one point, with the realised value and log-HAR's 80% interval marked at the end of the day"}}
shown_days = (task.test.dates >= "2011-06-01") & (task.test.dates < "2012-01-01")
dates = task.test.dates[shown_days]
lo, hi = bands[0][:, shown_days]
fig, axes = plt.subplots(1, 2, figsize=(13, 3.8), gridspec_kw={"width_ratios": [2.2, 1]})
ax = axes[0]
ax.fill_between(dates, lo, hi, color="C0", alpha=0.3, label="neural SDE 80% band (seed 0)")
ax.plot(
    dates, har_mean[shown_days] - z80 * har_sd, color="C1", ls="--", lw=1, label="log-HAR Gaussian 80% band"
)
ax.plot(dates, har_mean[shown_days] + z80 * har_sd, color="C1", ls="--", lw=1)
ax.plot(dates, y_test[shown_days], color="k", lw=1, label="realised")
ax.set(
    xlabel="forecast origin",
    ylabel="log volatility, next day",
    title="80% bands against the outcome, June to December 2011",
)
ax.legend(fontsize=8, loc="upper left")
ax.tick_params(axis="x", labelrotation=30)
origin = int(np.flatnonzero(shown_days)[np.argmax(hi - lo)])  # the widest SDE band of the stretch
fan_model = sde["models"][0]
with torch.no_grad():
    states = fan_model.latent_paths(x_test[origin : origin + 1])[:, :, 0]  # (steps + 1, paths, H)
    readings = fan_model.head(states)[..., 0].numpy()  # (steps + 1, paths)
grid = np.linspace(0, 1, SDE_STEPS + 1)  # (steps + 1,) the Euler-Maruyama grid within the day
axes[1].plot(grid, readings, color="C0", alpha=0.5, lw=1)
axes[1].scatter([1.0], [y_test[origin]], color="k", zorder=3, label="realised")
axes[1].errorbar(
    [1.03], [har_mean[origin]], yerr=[[z80 * har_sd]], color="C1", capsize=4, label="log-HAR 80%"
)
axes[1].set(xlabel="time within the forecast day (days)", ylabel="head read along the path",
            title=f"{SDE_PATHS} paths from {task.test.dates[origin]:%Y-%m-%d}")  # fmt: skip
axes[1].legend(fontsize=8)
plt.tight_layout()
plt.show()
print(f"the right panel's origin, {task.test.dates[origin]:%Y-%m-%d}, has the widest seed-0 band of the stretch: "
      f"{(bands[0][1] - bands[0][0])[origin]:.3f} against log-HAR's {2 * z80 * har_sd:.3f}")  # fmt: skip

# %% [markdown]
# ## Where these models sit, and what the chapter leaves out
#
# * **ODE-RNN and latent ODE** (Rubanova, Chen & Duvenaud, 2019). `NeuralODE` here is their ODE-RNN. The
#   latent ODE of the same paper is a variational autoencoder: an ODE-RNN run backwards over the window
#   gives a distribution for an initial latent state $z_0$, one ODE solved from $z_0$ produces the whole
#   trajectory, and training maximises the evidence lower bound. It forecasts (and interpolates) at any
#   time, with uncertainty; it is not built in this chapter.
# * **GRU-D** (Che, Purushotham, Cho, Sontag & Liu, 2018): a GRU whose missing inputs decay from the last
#   observation towards a learned mean and whose state decays towards zero, both at learned rates that
#   grow with the gap. It is `course_lib.models.continuous.GRUD` (it passes the same model contract as
#   the others), and it ran in the Ornstein-Uhlenbeck comparison above. "GRU + gaps" is GRU-D without
#   the two decays.
# * **Neural SDEs** (Tzen & Raginsky, 2019; Li, Wong, Chen & Duvenaud, 2020):
#   $dz = \mu_\theta(z)\,dt + \sigma_\theta(z)\,dW$, a natural family for volatility, whose classical
#   models (Heston, GARCH diffusions) are SDEs. `course_lib.models.sde.NeuralSDE` is built and trained
#   above: a GRU encoder, Euler-Maruyama paths over the forecast day, the sample CRPS as the loss. Left
#   out: the *latent SDE* of Li et al., trained by a variational bound with a posterior SDE and the KL
#   divergence between the two drifts, and the `torchsde` package's stochastic adjoint (memory that does
#   not grow with the steps, as for the ODE) and higher-order solvers (Milstein, stochastic Runge-Kutta,
#   strong order 1 or more). Backpropagating through a few Euler-Maruyama steps, as here, is the simple
#   end of that range.
# * **Log-signature CDEs / neural rough differential equations** (Morrill, Salvi, Kidger & Foster, 2021):
#   for long irregular series, summarise each stretch of the path by its log-signature and take one
#   solver step per stretch, so the cost grows with the number of stretches, not of observations.

# %% [markdown]
# ## Exercises
#
# ### Exercise 1 (1 point): count the function evaluations
# Write `rk4_evaluations(n_slots, steps_per_gap)`: how many times does `NeuralODE(..., method="rk4",
# steps_per_gap=...)` evaluate its vector field on a window of `n_slots` slots? (The ODE runs between
# consecutive slots; torchdiffeq's RK4 evaluates the field four times per step.)


# %%
# SOLUTION
def rk4_evaluations(n_slots, steps_per_gap):
    return 4 * steps_per_gap * (n_slots - 1)


# %%
# SELF-CHECK
for slots, steps in [(2, 1), (5, 1), (7, 3), (12, 2)]:
    model = NeuralODE(2, 4, steps_per_gap=steps)
    model.func.nfe = 0
    model(torch.randn(1, slots, 2))
    assert rk4_evaluations(slots, steps) == model.func.nfe, (
        f"{slots} slots, {steps} steps: the model counted {model.func.nfe}"
    )
print("Exercise 1 passed")

# %% [markdown]
# ### Exercise 2 (2 points): time since the last observation
# Write `time_since_last(times, mask)` for tensors of shape (B, L): at slot $k$, the time elapsed since
# the last *observed* slot strictly before $k$ (if there is none, since the window's first slot). This
# is the gap feature that lets a discrete GRU know about missing days.


# %%
# SOLUTION
def time_since_last(times, mask):
    out = torch.zeros_like(times)
    for b in range(times.shape[0]):
        last = times[b, 0]
        for k in range(times.shape[1]):
            out[b, k] = times[b, k] - last
            if mask[b, k] == 1:
                last = times[b, k]
    return out


# %%
# SELF-CHECK
g = torch.Generator().manual_seed(5)
t_check = torch.cumsum(1 + 3 * torch.rand(4, 12, generator=g), dim=1)
m_check = (torch.rand(4, 12, generator=g) > 0.5).float()
expected = gap_features(torch.zeros(4, 12, 1), t_check, m_check)[..., -1]
assert time_since_last(t_check, m_check).shape == (4, 12), "one gap per slot"
assert torch.allclose(time_since_last(t_check, m_check), expected), (
    "does not match course_lib.models.continuous.gap_features"
)
print("Exercise 2 passed")

# %% [markdown]
# ### Exercise 3 (2 points): spot the bug in the vector field
# This vector field follows the source module. `torchdiffeq.odeint` accepts it (it is a valid ODE for
# the path `X` it holds), but `torchcde.cdeint` refuses it. Write `FixedField(hidden, channels)`, an
# `nn.Module` with a `linear` layer of the same shape, whose `forward(t, z)` returns what `cdeint`
# needs, so that `cdeint` with `FixedField` solves the same equation.
#
# ```python
# class SourceField(nn.Module):
#     def __init__(self, X, hidden, channels):
#         super().__init__()
#         self.X, self.hidden, self.channels = X, hidden, channels
#         self.linear = nn.Linear(hidden, hidden * channels)
#
#     def forward(self, t, z):
#         matrix = torch.tanh(self.linear(z)).view(-1, self.hidden, self.channels)
#         return torch.einsum("bhd,bd->bh", matrix, self.X.derivative(t))
# ```


# %%
# SOLUTION
class FixedField(nn.Module):
    def __init__(self, hidden, channels):
        super().__init__()
        self.hidden, self.channels = hidden, channels
        self.linear = nn.Linear(hidden, hidden * channels)

    def forward(self, t, z):
        return torch.tanh(self.linear(z)).view(-1, self.hidden, self.channels)


# %%
# SELF-CHECK
class _SourceField(nn.Module):
    def __init__(self, X, hidden, channels):
        super().__init__()
        self.X, self.hidden, self.channels = X, hidden, channels
        self.linear = nn.Linear(hidden, hidden * channels)

    def forward(self, t, z):
        return torch.einsum("bhd,bd->bh", torch.tanh(self.linear(z)).view(-1, self.hidden, self.channels),
                            self.X.derivative(t))  # fmt: skip


torch.manual_seed(2)
X_check = torchcde.CubicSpline(
    torchcde.hermite_cubic_coefficients_with_backward_differences(torch.randn(3, 6, 2))
)
source, fixed = _SourceField(X_check, 5, 2), FixedField(5, 2)
fixed.linear.load_state_dict(source.linear.state_dict())
z_init = torch.randn(3, 5)
solver = {"method": "rk4", "options": {"step_size": 0.5}}
reference = torchdiffeq.odeint(source, z_init, X_check.interval, **solver)[-1]
answer = torchcde.cdeint(X=X_check, func=fixed, z0=z_init, t=X_check.interval, adjoint=False, **solver)
assert answer.shape == (3, 2, 5), "cdeint returns (batch, time, hidden)"
assert torch.allclose(answer[:, -1], reference, atol=1e-5), (
    "cdeint with FixedField solves a different equation"
)
print("Exercise 3 passed")

# %% [markdown]
# ### Exercise 4 (1 point): a CDE you can solve by hand
# If the vector field is a constant matrix $M$, the CDE integrates to a closed form. For a batch of
# paths `path` (B, L, D), an initial state `z_start` (B, H) and `M` (H, D), write `constant_field_end(M,
# z_start, path)` returning $z$ at the end of the path (B, H).


# %%
# SOLUTION
def constant_field_end(M, z_start, path):
    return z_start + (path[:, -1] - path[:, 0]) @ M.T


# %%
# SELF-CHECK
class _Constant(nn.Module):
    def __init__(self, M):
        super().__init__()
        self.M = M

    def forward(self, t, z):
        return self.M.expand(z.shape[0], *self.M.shape)


torch.manual_seed(4)
M_check, z_check, path_check = torch.randn(3, 2), torch.randn(4, 3), torch.randn(4, 9, 2)
X_const = torchcde.CubicSpline(torchcde.hermite_cubic_coefficients_with_backward_differences(path_check))
solved = torchcde.cdeint(X=X_const, func=_Constant(M_check), z0=z_check, t=X_const.interval, adjoint=False,
                         method="rk4", options={"step_size": 1.0})[:, -1]  # fmt: skip
assert torch.allclose(constant_field_end(M_check, z_check, path_check), solved, atol=1e-5), (
    "not the CDE's solution"
)
print("Exercise 4 passed")

# %% [markdown]
# ### Exercise 5 (2 points): turn the noise down
# The spread of a neural SDE's forecasts comes from its diffusion $\sigma_\theta$. Write
# `with_scaled_diffusion(model, c)`: a *new* `NeuralSDE` (the input model must not change) whose diffusion
# is $c\,\sigma_\theta(z)$ and whose every other part is the model's. At $c = 1$ it is the same model; at
# $c = 0$ it is a neural ODE solved by Euler's method, and every path gives the same forecast.


# %%
# SOLUTION
import copy


def with_scaled_diffusion(model, c):
    class Scaled(nn.Module):
        def __init__(self, field):
            super().__init__()
            self.field = field

        def forward(self, z):
            return c * self.field(z)

    new = copy.deepcopy(model)
    new.diffusion = Scaled(new.diffusion)
    return new


# %%
# SELF-CHECK
set_seed(6)
sde_check = NeuralSDE(3, 8, n_paths=64, n_steps=4)
with torch.no_grad():
    sde_check.diffusion[0].bias.fill_(0.0)  # a visible noise: sigma = softplus(0) = 0.69 at the start
sde_check.eval()
x_check = torch.randn(5, 10, 3, generator=torch.Generator().manual_seed(6))
with torch.no_grad():
    before = sde_check(x_check)["samples"].clone()
    spread = {c: with_scaled_diffusion(sde_check, c).eval()(x_check)["samples"] for c in (0.0, 0.5, 1.0, 2.0)}
    assert torch.equal(sde_check(x_check)["samples"], before), "the input model changed"
assert isinstance(with_scaled_diffusion(sde_check, 1.0), NeuralSDE), "return a NeuralSDE"
torch.testing.assert_close(spread[1.0], before, msg="c = 1 must give the model's own paths")
assert spread[0.0].std(dim=-1).max() == 0, "at c = 0 every path must give the same forecast"
mean_sd = [spread[c].std(dim=-1).mean().item() for c in (0.0, 0.5, 1.0, 2.0)]
assert mean_sd == sorted(mean_sd), f"the spread must grow with c, got {mean_sd}"
print("Exercise 5 passed")

# %% [markdown]
# ## Summary
#
# * A ResNet step is an Euler step; a neural ODE solves $dh/dt = f_\theta(h)$ with a real solver, whose
#   cost is its number of function evaluations (RK4: four per step, error $\propto \Delta t^4$).
# * The adjoint method trades time for memory: what autograd keeps stays flat as the steps grow, each
#   backward pass solves a second ODE, and its gradients equal backprop up to the solver's error.
# * A neural CDE is a continuous RNN: $dz = f_\theta(z)\,dX$ with $f_\theta(z)$ a matrix, a path built
#   once from the data (`hermite_cubic_coefficients_with_backward_differences`, `CubicSpline`), solved by
#   `cdeint(X, func, z0, t=X.interval)` and read at `z[:, -1]`. Time and the observation count are
#   channels of the path, because the solution depends on the path and not on its speed.
# * Irregular data from real series: calendar time for trading-day gaps, random or bursty removal, and
#   windows that end at the forecast origin. Missing values are filled causally, never by interpolating
#   towards the next observation.
# * The source's three defects (the product returned to `cdeint`, the encoder of `x[:, 0]`, the model
#   without `forward`) are each caught by a test in `tests/test_continuous.py`.
# * Whether modelling time helps is a property of the data: on daily index volatility with lost days,
#   compare the networks with baselines fed the same thinned data (the computed lines of the
#   experiment) and ask what the age of an observation is worth even to a linear model; on a process
#   that forgets within days (the Ornstein-Uhlenbeck example) reading the time beats forward filling.
# * GRU-D learns how fast a missing input and the state should decay with the gap; with the ODE-RNN,
#   the latent ODE and neural RDEs it is one answer to irregular sampling, and an adaptive solver's cost
#   is one more thing to measure as training goes.
# * A neural SDE, $dz = \mu_\theta(z)\,dt + \sigma_\theta(z)\,dW$, simulated by Euler-Maruyama (strong
#   order 0.5, weak order 1; the Euler method at $\sigma = 0$) and trained on the sample CRPS, turns the
#   forecast into a distribution of paths; on the volatility task its CRPS and 80% band are compared with
#   a Gaussian band around log-HAR (the computed lines of that section).
