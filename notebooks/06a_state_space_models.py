# %% [markdown]
# # Chapter 6a: State space models: S4D and Mamba
#
# A recurrent network carries a state from day to day; a convolutional network slides a filter over
# the window. A **linear state space model** is both at once: the same model can be run as a
# recurrence (one cheap update per new day, ideal online) or as one long convolution (all days at
# once, ideal for training). S4D chooses the state matrix so that the state *remembers* hundreds of
# days; Mamba makes the update depend on the input, so the model can decide what to keep and what to
# forget. This chapter builds both, proves each claim with a test you can run, and puts them on the
# volatility task with a 256-day window.
#
# **Learning objectives.** After this chapter you can
#
# 1. discretise a continuous linear system with a zero-order hold and derive $\bar A$ and $\bar B$;
# 2. show that the recurrence and the convolution views compute the same numbers, and compute the
#    convolution with an FFT;
# 3. explain why the S4D eigenvalues $-\tfrac12 + i\pi n$ give a long and flexible memory;
# 4. say what *selectivity* adds (input-dependent step sizes) and see it solve a task that a
#    time-invariant model cannot;
# 5. write a selective scan whose backward pass is linear in the window length, and measure it;
# 6. compare S4D and Mamba with the TCN, a 20-day LSTM and the classical baselines on long-window volatility
#    forecasting, honestly;
# 7. recognise three defects of the source module: the missing ZOH factor, the width-1 $\Delta$ crash
#    and the quadratic backward pass.

# %%
import inspect
import math
import time
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn

from course_lib import get_device, set_seed
from course_lib.data.windows import make_task
from course_lib.evaluation import seed_summary, verdicts, volatility_baselines
from course_lib.models.convolutional import TemporalConvNet, tcn_receptive_field
from course_lib.models.mamba import FinancialMamba
from course_lib.models.ops.convolution import fft_causal_conv
from course_lib.models.ops.fused_build import fused_scan_available
from course_lib.models.ops.selective_scan import selective_scan
from course_lib.models.recurrent import FinancialLSTM
from course_lib.models.s4d import FinancialS4D, S4DKernel
from course_lib.testing import future_gradient, source_module_scan
from course_lib.training import Trainer, fit_seeds

# %% [markdown]
# ## Parameters
# Every size of the chapter lives here. The defaults run the notebook in about a minute of CPU time;
# raise `EPOCHS`, the widths and `SEEDS` for a more careful study.

# %%
LOOKBACK = 256  # days in each input window: about one trading year
SHORT_LOOKBACK = 20  # the window of chapters 01-04, for comparison
HIDDEN = 16  # width of every network
S4D_STATE, S4D_LAYERS = 16, 1  # complex modes per channel, layers
MAMBA_STATE, MAMBA_LAYERS, MAMBA_EXPAND = 4, 1, 1  # d_state, layers, d_inner = expand * HIDDEN
TCN_KERNEL, TCN_LEVELS = 3, 6  # receptive field 1 + 2*2*63 = 253 days, just inside the window
DROPOUT = 0.1
EPOCHS = 3
PATIENCE = 2
BATCH_SIZE = 256
LR = 5e-3
SEEDS = (0, 1, 2)
SELECT_LENGTH, SELECT_SAMPLES, SELECT_EPOCHS = 32, 2000, 8  # the synthetic selectivity task
TIMING_LENGTHS = (64, 128, 256)  # window lengths for the backward-pass timing
FUSION_SIZE = (8, 1024, 64, 16)  # batch, L, d_inner, d_state for the fused-kernel timing (as make bench)

device = get_device()
torch.set_num_threads(1)  # small models are latency-bound: extra threads only add synchronisation
set_seed(0)
print(f"device: {device}")

# %% [markdown]
# ## Intuition: a memory that is a differential equation
#
# Think of an exponentially weighted moving average (EWMA) of volatility: each day the state is
# decayed a little and the new observation is added. That is a one-dimensional linear state space
# model. Its memory is a single decaying exponential, so it forgets everything older than a few
# half-lives. Give the state $N$ dimensions, let some of them oscillate as well as decay, and a linear
# read-out can weight the past in almost any shape: a bump 60 days ago, a weekly pattern, a slow
# trend. S4D is exactly that, learnt per channel and stacked with non-linearities in between.
#
# ## The maths
#
# **Continuous system.** $h'(t) = A h(t) + B u(t)$, $y(t) = C h(t) + D u(t)$ with a diagonal complex
# $A$ ($N$ modes).
#
# **Zero-order hold.** Sample every $\Delta$ and hold the input constant over each step. Solving the
# linear ODE over one step gives $h_l = e^{\Delta A} h_{l-1} + \int_0^\Delta e^{A s}\,ds\; B u_l$, so
# $$ \bar A = e^{\Delta A}, \qquad \bar B = A^{-1}\left(e^{\Delta A} - 1\right) B ,$$
# which is $\approx \Delta B$ for small $\Delta A$ (the Euler step) but not equal to it.
#
# **Two views.** From $h_{-1} = 0$, unrolling gives $h_l = \sum_{j \le l} \bar A^{j} \bar B u_{l-j}$, so
# $$ y_l = \sum_{j=0}^{l} K_j\, u_{l-j} + D u_l, \qquad K_j = C \bar A^{j} \bar B
#    = 2\,\mathrm{Re}\sum_n C_n \bar B_n\, e^{j \Delta A_n} .$$
# The recurrence costs $O(LN)$ sequential steps; the convolution, done with an FFT of length $2L$,
# costs $O(L \log L)$ and runs in parallel. The factor 2 and the real part pair every mode with its
# complex conjugate, so the kernel is real.
#
# **S4D-Lin** (Gu et al., 2022): $A_n = -\tfrac12 + i \pi n$. Every mode decays at the same slow rate
# and oscillates at its own frequency: a Fourier-like basis over the window.
#
# **Mamba** (Gu & Dao, 2023) makes $\Delta_t$, $B_t$ and $C_t$ functions of the input at day $t$:
# $$ h_t = e^{\Delta_t A} h_{t-1} + \Delta_t B_t u_t, \qquad y_t = C_t h_t + D u_t .$$
# A large $\Delta_t$ forgets the state and writes the new input; a tiny $\Delta_t$ keeps the state and
# ignores the day. The model is no longer a convolution (the kernel changes with the data), so it is
# computed by a *scan* over time.

# %% [markdown]
# ## Two views of one model
# Four channels of an `S4DKernel` with step sizes from 0.003 to 0.3. The lines are the kernel from the
# Vandermonde formula; the dots are the impulse response of the recurrence run step by step
# (`S4DKernel.recurrence` on an input that is 1 on day 0 and 0 after). Small $\Delta$: slow decay,
# long memory; large $\Delta$: a short memory.

# %%
kernel = S4DKernel(4, S4D_STATE).double()
with torch.no_grad():
    kernel.log_dt.copy_(torch.log(torch.tensor([0.003, 0.03, 0.1, 0.3], dtype=torch.float64)))
    K = kernel(LOOKBACK)  # (4, L)
    impulse = torch.zeros(1, LOOKBACK, 4, dtype=torch.float64)
    impulse[0, 0] = 1.0
    response = kernel.recurrence(impulse)[0].T  # (4, L)
gap = (K - response).abs().max().item()
fig, ax = plt.subplots(figsize=(9, 3.2))
for c, dt in enumerate([0.003, 0.03, 0.1, 0.3]):
    (line,) = ax.plot(K[c].numpy(), label=f"kernel, dt = {dt}")
    ax.plot(np.arange(0, LOOKBACK, 8), response[c, ::8].numpy(), "o", ms=3, color=line.get_color())
ax.set_xlabel("lag j (days)")
ax.set_ylabel("K_j")
ax.set_title("S4D kernels (lines) = impulse responses of the recurrence (dots)")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
print(f"largest gap between the kernel and the recurrence's impulse response: {gap:.1e}")
assert gap < 1e-10

# %% [markdown]
# The same holds for any input, not only an impulse: the FFT convolution with this kernel and the
# recurrence agree to round-off, and the FFT is much faster for a long window.

# %%
u = torch.randn(64, LOOKBACK, 4, dtype=torch.float64)
with torch.no_grad():
    start = time.perf_counter()
    y_rec = kernel.recurrence(u)
    t_rec = time.perf_counter() - start
    start = time.perf_counter()
    y_fft = fft_causal_conv(u, kernel(LOOKBACK))
    t_fft = time.perf_counter() - start
print(
    f"max |FFT - recurrence| = {(y_fft - y_rec).abs().max().item():.1e}; "
    f"recurrence {1e3 * t_rec:.1f} ms, FFT {1e3 * t_fft:.1f} ms for a {LOOKBACK}-day window"
)

# %% [markdown]
# ## Why these eigenvalues remember
#
# A kernel is a weighted sum of the $N$ mode responses $\bar B_n e^{j \Delta A_n}$ (with complex
# weights $C_n$). Which shapes can it take? Below we ask three choices of $A$ to reproduce a target
# kernel that only an investor with a long memory needs: a bump around 60 days ago. We fit the best
# $C$ by least squares (the modes are fixed; only the read-out is learnt) with the same $N$ and $\Delta$.
# The step is $\Delta = 2/L$: mode $n$ of S4D-Lin turns by $\pi n \Delta$ per day, so the slowest one
# has a period of $2/\Delta = L$ days (a larger $\Delta$ makes the basis periodic inside the window).
#
# * **S4D-Lin** $A_n = -\tfrac12 + i\pi n$: slow decay, a ladder of frequencies (a Fourier basis);
# * **S4D-Real** $A_n = -(n+1)$: decaying exponentials only, Mamba's initialisation;
# * **one rate** $A_n = -\tfrac12$ for every mode: all modes identical, the memory of an EWMA.


# %%
def mode_responses(A, dt, length):
    """(L, 2N) real basis: Re and Im of B-bar_n exp(j dt A_n) for each mode (ZOH, B = 1)."""
    dtA = dt * A
    basis = ((np.exp(dtA) - 1) / A)[None, :] * np.exp(np.arange(length)[:, None] * dtA[None, :])
    return np.concatenate([basis.real, basis.imag], axis=1)


lags = np.arange(LOOKBACK)
target = np.exp(-0.5 * ((lags - 60) / 6.0) ** 2)  # a bump 60 days back
n = np.arange(S4D_STATE)
choices = {
    "S4D-Lin: -1/2 + i pi n": -0.5 + 1j * np.pi * n,
    "S4D-Real: -(n+1)": -(n + 1.0) + 0j,
    "one rate: -1/2": -0.5 + 0j * n,
}
dt_fit = 2 / LOOKBACK  # the slowest oscillation, period 2 / dt days, spans the window
fig, ax = plt.subplots(figsize=(9, 3.2))
ax.plot(lags, target, "k--", label="target")
fit_errors = {}
for name, A in choices.items():
    basis = mode_responses(A, dt_fit, LOOKBACK)
    coef, *_ = np.linalg.lstsq(basis, target, rcond=None)
    fit = basis @ coef
    fit_errors[name] = np.linalg.norm(fit - target) / np.linalg.norm(target)
    ax.plot(lags, fit, label=f"{name} (rel. error {fit_errors[name]:.2f})")
ax.set_xlim(0, 150)
ax.set_xlabel("lag j (days)")
ax.set_ylabel("K_j")
ax.set_title(f"best kernel from {S4D_STATE} modes, dt = {dt_fit}")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
best = min(fit_errors, key=fit_errors.get)
print(
    f"the lowest relative error is {fit_errors[best]:.3f}, by {best}; "
    f"the worst is {max(fit_errors.values()):.3f}"
)

# %% [markdown]
# The oscillating modes span a rich basis over the window, so a learnt $C$ can place weight far back
# and nowhere else. Decaying exponentials alone are smooth and monotone after their peak, so they
# cannot isolate a bump; identical modes are one exponential, an EWMA. This is the intuition behind
# HiPPO (Gu et al., 2020), where $A$ is built so that the state holds the coefficients of a
# polynomial approximation of the whole history; S4D-Lin is its simplest diagonal stand-in.

# %% [markdown]
# ## Selectivity: forget on purpose
#
# A time-invariant model applies the same kernel to every window. Some tasks need a memory that the
# *data* resets. Synthetic example, a stand-in for "the level set at the last regime change": each
# day brings a value $v_t \sim N(0, 1)$ and, on about one day in ten, a marker (a switch). The target
# is the value on the **last** marked day. A fixed kernel cannot tell the last marker from earlier
# ones; Mamba can learn a large $\Delta_t$ on marked days (forget, then write $v_t$) and a tiny one
# elsewhere (hold). Both models have one layer and the same width; the target has variance 1, so an
# MSE of 1 means "learnt nothing".


# %%
def last_marker_task(n_samples, length, seed, p=0.1):
    """Inputs (N, L, 2): value and marker; target (N, 1): the value on the last marked day."""
    g = torch.Generator().manual_seed(seed)
    value = torch.randn(n_samples, length, generator=g)
    marker = (torch.rand(n_samples, length, generator=g) < p).float()
    marker[:, 0] = 1.0  # at least one marker
    last = (marker * torch.arange(length)).argmax(dim=1)
    return torch.stack([value, marker], dim=-1), value[torch.arange(n_samples), last].unsqueeze(-1)


X_sel, y_sel = last_marker_task(SELECT_SAMPLES, SELECT_LENGTH, seed=0)
X_sel_val, y_sel_val = last_marker_task(SELECT_SAMPLES // 4, SELECT_LENGTH, seed=1)
selection_models = {
    "S4D (time-invariant)": lambda: FinancialS4D(2, HIDDEN, n_layers=1, d_state=S4D_STATE),
    "Mamba (selective)": lambda: FinancialMamba(2, HIDDEN, n_layers=1, d_state=MAMBA_STATE),
}
selection_mse, trained = {}, {}
for name, make in selection_models.items():
    set_seed(0)
    trainer = Trainer(
        make(),
        lr=1e-2,
        batch_size=64,
        max_epochs=SELECT_EPOCHS,
        patience=SELECT_EPOCHS,
        device=device,
        progress=False,
    )
    history = trainer.fit(X_sel, y_sel, X_sel_val, y_sel_val)
    selection_mse[name], trained[name] = min(history["val_loss"]), trainer.model
for name, value in selection_mse.items():
    print(f"{name}: validation MSE {value:.3f}")
winner = min(selection_mse, key=selection_mse.get)
print(
    f"lower error: {winner}, {max(selection_mse.values()) / min(selection_mse.values()):.0f}x lower than the other"
)

# %% [markdown]
# What did Mamba learn? Below, for one validation window, its step size $\Delta_t$ (mean over
# channels) and the marked days. The model was never told what a marker means.

# %%
mamba_sel = trained["Mamba (selective)"].eval()
sample = X_sel_val[:1].to(device)
with torch.no_grad():
    h = mamba_sel.norms[0](mamba_sel.embedding(sample))
    dt_sel = mamba_sel.layers[0].step_sizes(h)[0].mean(dim=-1).cpu().numpy()  # (L,)
marks = np.flatnonzero(X_sel_val[0, :, 1].numpy())
fig, ax = plt.subplots(figsize=(9, 3))
ax.plot(dt_sel, marker=".", label="mean step size dt_t")
for m in marks:
    ax.axvline(m, color="C3", alpha=0.4, lw=2, label="marked day" if m == marks[0] else None)
ax.set_yscale("log")
ax.set_xlabel("day in the window")
ax.set_ylabel("dt_t (log scale)")
ax.set_title("Mamba's learnt step size jumps on the marked days")
ax.legend()
plt.tight_layout()
plt.show()
ratio = dt_sel[marks].mean() / np.delete(dt_sel, marks).mean()
print(f"mean dt on marked days / on other days: {ratio:.1f}")

# %% [markdown]
# ## Online forecasting with `step()`
# Trained as a scan over whole windows, Mamba runs online as a recurrence: `FinancialMamba.step`
# takes one new day and the carried state, at a cost that does not grow with the history. The
# per-step outputs of the window and the outputs of `step()` day by day must be the same numbers.
# Both families are causal: no output reads a later day (checked with a random probe, as in every
# chapter; the FFT convolution is causal up to round-off).

# %%
mamba_online = FinancialMamba(4, HIDDEN, n_layers=2, d_state=MAMBA_STATE).double().eval()
x_online = torch.randn(2, 60, 4, dtype=torch.float64)
with torch.no_grad():
    window_out = mamba_online(x_online, per_step=True)
    state, stepped = None, []
    start = time.perf_counter()
    for x_t in x_online.unbind(1):
        out, state = mamba_online.step(x_t, state)
        stepped.append(out)
    per_day = (time.perf_counter() - start) / x_online.shape[1]
online_gap = (torch.stack(stepped, 1) - window_out).abs().max().item()
print(f"max |step() - forward| = {online_gap:.1e}; {1e3 * per_day:.2f} ms per new day")
assert online_gap < 1e-10
s4d_online = FinancialS4D(4, HIDDEN, n_layers=2, d_state=S4D_STATE).double()
leaks = {
    name: future_gradient(lambda x, m=model: m(x, per_step=True), x_online, t=30)
    for name, model in [("Mamba", mamba_online), ("S4D", s4d_online)]
}
print(
    "gradient of day 30's output on later days:",
    {k: f"{v:.1e}" for k, v in leaks.items()},
    "(Mamba: exactly 0; S4D: FFT round-off)",
)

# %% [markdown]
# ## Three defects of the source module
#
# > **Pitfall (erratum: S4DKernel, the missing ZOH factor)** The source computes the kernel as
# > $2\mathrm{Re}\sum_n C_n B_n e^{j\Delta A_n}$, i.e. with $B$ where the discretisation needs
# > $\bar B = (e^{\Delta A} - 1)/A \cdot B$. For small $\Delta$ that factor is about $\Delta$, so the
# > source's kernel is too large by roughly $1/\Delta$, a different amount for every channel: it no
# > longer describes the system it claims to discretise, and changing $\Delta$ rescales the output
# > instead of changing the memory. Below, the ratio of the two kernels' norms for the 64 channels of a
# > freshly initialised kernel, against $1/\Delta$.

# %%
zoh_kernel = S4DKernel(64, S4D_STATE).double()
with torch.no_grad():
    dtA, dB, C_modes = zoh_kernel.discretize()
    vandermonde = torch.exp(dtA.unsqueeze(-1) * torch.arange(LOOKBACK, dtype=torch.float64))
    source_kernel = 2 * torch.einsum("hn,hnl->hl", C_modes, vandermonde).real  # no B-bar factor
    ratio_zoh = (source_kernel.norm(dim=1) / zoh_kernel(LOOKBACK).norm(dim=1)).numpy()
    dt_channels = zoh_kernel.log_dt.exp().numpy()
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.loglog(dt_channels, ratio_zoh, "o", label="source / ZOH kernel norm")
ax.loglog(np.sort(dt_channels), 1 / np.sort(dt_channels), "k--", label="1 / dt")
ax.set_xlabel("channel step size dt")
ax.set_ylabel("error ratio")
ax.set_title("the source kernel is off by about 1/dt")
ax.legend()
plt.tight_layout()
plt.show()
print(f"the source kernel is off by {ratio_zoh.min():.0f}x to {ratio_zoh.max():.0f}x across the 64 channels")

# %% [markdown]
# > **Pitfall (erratum: MambaBlock, the width-1 $\Delta$)** The source's `x_proj` produces
# > $2N + 1$ numbers per day and keeps **one** of them for $\Delta$, squeezes it to shape (B, L) and
# > feeds it to `dt_proj`, a layer built for $N$ inputs. So the block crashes unless the window has
# > exactly $L = N$ days, and then it silently treats the $L$ *days* as $N$ features: the step size of
# > every day is computed from the whole window, tomorrow included. Mamba's `x_proj` makes
# > $\mathrm{dt\_rank} + 2N$ numbers and `dt_proj` maps the dt_rank part to one step size per channel.
# > Below, the source's projections rebuilt with their shapes.

# %%
d_state, d_inner = 16, 32
source_x_proj = nn.Linear(d_inner, 2 * d_state + 1, bias=False)
source_dt_proj = nn.Linear(d_state, d_inner)


def source_step_sizes(x):
    """The source's dt path: a width-1 dt, squeezed over the last axis, fed to a layer of width d_state."""
    dt = source_x_proj(x)[..., :1]  # (B, L, 1)
    return nn.functional.softplus(source_dt_proj(nn.functional.softplus(dt.squeeze(-1))))


try:
    source_step_sizes(torch.randn(2, 20, d_inner))
except RuntimeError as err:
    print(f"L = 20: {type(err).__name__}: {err}")
x_leak = torch.randn(2, d_state, d_inner, requires_grad=True)  # L == d_state: it runs...
dt_source = source_step_sizes(x_leak)
(grad_leak,) = torch.autograd.grad(dt_source.sum(), x_leak)
days_read = int((grad_leak.abs().sum(dim=(0, 2)) > 0).sum())
print(
    f"L = {d_state} runs, but dt has shape {tuple(dt_source.shape)}: no time axis, one step size per channel "
    f"for the whole window, computed from {days_read} of {d_state} days (the last day included), "
    "so the update of day 1 already depends on day 16"
)

# %% [markdown]
# > **Pitfall (erratum: the quadratic backward pass)** The source's scan loops over days and reads
# > `dA[:, t]`, `dB[:, t]`, `x[:, t]` and `C[:, t]`. Each such slice is cheap forward, but its backward
# > writes its gradient into a zero-filled tensor of the *full* (B, L, ...) size, so the backward pass
# > costs $O(L^2)$ memory traffic: doubling the window roughly quadruples the time. `selective_scan`
# > walks `unbind`-ed slices in its reference loop and, in its fast path, scans chunk by chunk with a
# > backward pass written out as a reverse scan: linear in $L$. (`make bench` measures the full-size
# > case, $L = 1024$: the source's loop takes from a few seconds to minutes, depending on how fast the
# > machine fills memory with zeros; the chunked scan a few hundredths of a second.)


# %%
print(inspect.getsource(source_module_scan))  # the source's loop, re-created (course_lib.testing)


# %%
def time_backward(fn, length, batch=4, width=16, n_state=8):
    g = torch.Generator().manual_seed(0)
    args = [
        torch.randn(batch, length, width, generator=g),
        0.1 * torch.rand(batch, length, width, generator=g),
        -torch.rand(width, n_state, generator=g),
        torch.randn(batch, length, n_state, generator=g),
        torch.randn(batch, length, n_state, generator=g),
    ]
    args = [a.requires_grad_() for a in args]
    start = time.perf_counter()
    fn(*args).sum().backward()
    return time.perf_counter() - start


timing = pd.DataFrame(
    {
        "source loop (s)": [time_backward(source_module_scan, n) for n in TIMING_LENGTHS],
        "selective_scan, chunked (s)": [time_backward(selective_scan, n) for n in TIMING_LENGTHS],
    },
    index=pd.Index(TIMING_LENGTHS, name="L"),
)
timing["speed-up"] = timing.iloc[:, 0] / timing.iloc[:, 1]
print(timing.round(4))
growth = timing.iloc[-1, :2] / timing.iloc[-2, :2]
print(
    f"doubling L from {TIMING_LENGTHS[-2]} to {TIMING_LENGTHS[-1]}: the source loop takes {growth.iloc[0]:.1f}x "
    f"longer (quadratic: 4x), the chunked scan {growth.iloc[1]:.1f}x (linear: 2x; small sizes are noisy)"
)

# %% [markdown]
# ### Why the chunked scan is still slow: memory, not arithmetic
#
# The chunked scan is linear in $L$, but every step of it is a PyTorch operation that reads and
# writes whole (B, L, d_inner, d_state) tensors: the decays, the inputs, the states, and in the
# backward pass their gradients, pass after pass over memory for a few multiply-adds per element. Mamba's answer (Gu & Dao 2023, section 3.3, "hardware-aware algorithm") is **kernel
# fusion**: one kernel discretises, scans and reads out while the state stays in fast memory (SRAM
# on a GPU), writes only $y$, and in the backward pass *recomputes* the states instead of storing
# them. `selective_scan(scan="fused")` is the same idea on a CPU, with the cache as the fast
# memory: a hundred lines of C (`course_lib/models/ops/selective_scan.c`, compiled once per machine
# where a C compiler exists, then cached) that keeps one state per chunk of days for the backward pass. It computes the
# same numbers as the reference (`tests/test_ssm.py`). Below, both fast scans, forward and backward,
# at the size of `make bench` (which also times the source loop there). It is a CPU kernel: on a GPU
# the chunked scan runs, and the real Mamba ships a CUDA kernel.


# %%
def best_backward_time(scan, repeats=3):
    batch, length, width, n_state = FUSION_SIZE
    return min(
        time_backward(partial(selective_scan, scan=scan), length, batch, width, n_state)
        for _ in range(repeats)
    )


if fused_scan_available():  # needs a C compiler (gcc or clang) once: the built kernel is cached
    fusion = {scan: best_backward_time(scan) for scan in ("chunked", "fused")}
    print(
        f"B, L, d_inner, d_state = {FUSION_SIZE}: chunked {1e3 * fusion['chunked']:.0f} ms, "
        f"fused {1e3 * fusion['fused']:.0f} ms, forward + backward: "
        f"the fused kernel is {fusion['chunked'] / fusion['fused']:.1f}x faster"
    )
else:
    print("no C compiler found: scan='fused' cannot be built here; scan='chunked' runs everywhere")

# %% [markdown]
# ## S4D and Mamba on the volatility task, with a year of history
#
# The standard volatility task of the course (tomorrow's log volatility of the S&P 500; train to
# 2006, validation 2007-2008, test 2009-2018), but with **256-day windows**: a length where a
# recurrence or a dilated convolution has to work hard and a state space model should not. Beside
# S4D and Mamba: the TCN of chapter 03 on the same windows, the LSTM of chapter 01 on its usual
# 20-day windows (the test days are identical, so the rows compare), and the classical baselines
# (EWMA, GARCH, HAR, log-HAR) from `course_lib.evaluation`. Three seeds each; the Diebold-Mariano
# benchmark is log-HAR. The LSTM itself is left out on 256-day windows to keep the chapter within a
# laptop minute: its recurrence is sequential in the window and its attention quadratic, about ten
# times the cost per epoch of S4D here (try it: add it to `factories`).

# %%
task = make_task("volatility", ticker="^GSPC", lookback=LOOKBACK, horizons=(1,))
short_task = make_task("volatility", ticker="^GSPC", lookback=SHORT_LOOKBACK, horizons=(1,))
assert (task.test.dates == short_task.test.dates).all(), "both windows must forecast the same test days"
baselines = volatility_baselines(task)
n_features = task.train.X.shape[-1]
print(task)
print(f"TCN receptive field: {tcn_receptive_field(TCN_KERNEL, TCN_LEVELS)} days for {LOOKBACK}-day windows")
factories = {
    "S4D": (task, lambda: FinancialS4D(n_features, HIDDEN, S4D_LAYERS, d_state=S4D_STATE, dropout=DROPOUT)),
    "Mamba": (
        task,
        lambda: FinancialMamba(
            n_features, HIDDEN, MAMBA_LAYERS, d_state=MAMBA_STATE, expand=MAMBA_EXPAND, dropout=DROPOUT
        ),
    ),
    "TCN": (task, lambda: TemporalConvNet(n_features, (HIDDEN,) * TCN_LEVELS, TCN_KERNEL, dropout=DROPOUT)),
    f"LSTM, {SHORT_LOOKBACK} days": (
        short_task,
        lambda: FinancialLSTM(n_features, hidden_size=HIDDEN, dropout=DROPOUT),
    ),
}

start = time.perf_counter()
settings = dict(lr=LR, batch_size=BATCH_SIZE, max_epochs=EPOCHS, patience=PATIENCE, device=device)
runs = {
    name: fit_seeds(make, model_task, SEEDS, **settings) for name, (model_task, make) in factories.items()
}
predictions = {name: r.test for name, r in runs.items()}
val_predictions = {name: r.val for name, r in runs.items()}  # for the level correction of QLIKE
assert (task.val.dates == short_task.val.dates).all(), "both windows must have the same validation days"
results = seed_summary(task, predictions, baselines, benchmark="log_har", val_predictions=val_predictions)
print(f"trained {len(factories) * len(SEEDS)} models in {time.perf_counter() - start:.1f} s")

# %% [markdown]
# Rows: each network (mean over seeds; `sd` columns are the spread across seeds) and the baselines.
# MSE is on the log volatility; QLIKE on the variance, raw and level-corrected (`QLIKE_lc`: the shift
# of the log forecast that undoes the Jensen gap, learnt on the validation years for every row).
# `ens DM` tests the seed ensemble (the mean forecast over seeds) against log-HAR on squared error,
# `ens DM_QLIKE` on QLIKE (< 0: better than log-HAR); the `better`/`worse` columns count the seeds
# that are significantly better or worse at 5%; `in_MCS` marks the models that a 90% model
# confidence set cannot tell apart from the best.

# %%
results.round(4)

# %%
networks = list(factories)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
order = results.sort_values("MSE").index
colors = ["C0" if name in networks else "C7" for name in order]
axes[0].barh(order, results.loc[order, "MSE"], xerr=results.loc[order, "MSE sd"].fillna(0), color=colors)
axes[0].invert_yaxis()
axes[0].set_xlabel("test MSE of the log volatility")
axes[0].set_title("networks (blue) and baselines (grey)")
axes[0].set_xlim(results["MSE"].min() * 0.9, results["MSE"].max() * 1.02)
axes[1].bar(networks, [runs[n].seconds_per_epoch for n in networks], color="C0")
axes[1].set_ylabel("seconds per epoch")
axes[1].set_title(f"training cost ({device.type})")
axes[1].tick_params(axis="x", rotation=30)
plt.tight_layout()
plt.show()

# %%
print(verdicts(results, models=networks))
nets, base = results.loc[networks, "MSE"], results.loc[list(baselines), "MSE"]
print(
    f"best network {nets.idxmin()} ({nets.min():.4f}), best baseline {base.idxmin()} ({base.min():.4f}): "
    f"the network is {'below' if nets.min() < base.min() else 'ABOVE'} it on the mean over seeds"
)
print("in the 90% model confidence set:", ", ".join(results.index[results["in_MCS"].astype(bool)]))
print("median seconds per epoch:", {n: round(r.seconds_per_epoch, 2) for n, r in runs.items()})

# %% [markdown]
# ### What the numbers say
#
# The sentences above are computed from this run, so they stay true when the code changes. Read them
# with the sizes in mind: small one-layer models trained for a few epochs (`HIDDEN`, `EPOCHS` and
# `SEEDS` in the parameters cell), on fewer than 2,000 overlapping training windows. On a single index, a year of daily history holds few independent
# volatility regimes to learn from, and log-HAR already summarises the last month in four
# coefficients; a network beats it only with a significant Diebold-Mariano test across seeds. Raise
# `EPOCHS` and the widths to see how much of the gap is training budget. The state space models earn
# their place elsewhere: their cost per epoch grows linearly with the window (see the timing and
# `make bench`), they can run online with a constant cost per day (`step()`), and a selective model
# can learn *when* to forget, which a fixed kernel cannot.

# %% [markdown]
# ## Exercises
#
# ### Exercise 1 (2 points): discretise a one-mode system
# For the scalar system $h' = a h + u$ with $a < 0$ and the input held constant over a step of length
# `dt`, write `zoh(a, dt)` returning the pair `(a_bar, b_bar)` of the exact discrete update
# $h_{l} = \bar a\, h_{l-1} + \bar b\, u_l$.


# %%
# SOLUTION
def zoh(a, dt):
    return math.exp(a * dt), (math.exp(a * dt) - 1) / a


# %%
# SELF-CHECK
def integrate(a, dt, h0, u, substeps=20_000):
    """Integrate h' = a h + u over one step with many tiny Euler steps (no closed form used)."""
    h, eps = h0, dt / substeps
    for _ in range(substeps):
        h += eps * (a * h + u)
    return h


for a, dt, h0, u in [
    (-0.5, 0.1, 1.0, 0.0),
    (-0.5, 0.1, 0.0, 1.0),
    (-3.0, 0.7, 0.4, -2.0),
    (-0.01, 2.0, 1.5, 0.3),
]:
    a_bar, b_bar = zoh(a, dt)
    assert abs(a_bar * h0 + b_bar * u - integrate(a, dt, h0, u)) < 1e-3, (
        f"zoh({a}, {dt}) does not match the ODE"
    )
print("Exercise 1 passed")

# %% [markdown]
# ### Exercise 2 (3 points): spot the bug in the kernel
# The function below is the source module's S4D kernel, rewritten for tensors: `dtA` is $\Delta A$ and
# `A` is $A$ (both (H, N) complex), `C` (H, N) complex, `L` the length. It runs, has the right shape,
# and is wrong. Write `s4d_kernel_fixed(dtA, A, C, L)` that returns the kernel of the zero-order-hold
# discretisation with $B = 1$.
#
# ```python
# def s4d_kernel(dtA, A, C, L):
#     vandermonde = torch.exp(dtA.unsqueeze(-1) * torch.arange(L))
#     return 2 * torch.einsum("hn,hnl->hl", C, vandermonde).real
# ```


# %%
# SOLUTION
def s4d_kernel_fixed(dtA, A, C, L):
    vandermonde = torch.exp(dtA.unsqueeze(-1) * torch.arange(L, dtype=torch.float64))
    return 2 * torch.einsum("hn,hnl->hl", C * (torch.exp(dtA) - 1) / A, vandermonde).real


# %%
# SELF-CHECK
check_kernel = S4DKernel(3, 8).double()
with torch.no_grad():
    dtA_c, _, C_c = check_kernel.discretize()
    A_c = torch.complex(-torch.exp(check_kernel.log_A_real), check_kernel.A_imag)
    pulse = torch.zeros(1, 40, 3, dtype=torch.float64)
    pulse[0, 0] = 1.0
    expected = check_kernel.recurrence(pulse)[0].T  # the impulse response of the recurrence
    got = s4d_kernel_fixed(dtA_c, A_c, C_c, 40)
assert got.shape == (3, 40), f"the kernel must be (H, L) = (3, 40), got {tuple(got.shape)}"
assert torch.allclose(got, expected, atol=1e-10), (
    "your kernel is not the impulse response of the ZOH recurrence"
)
print("Exercise 2 passed")

# %% [markdown]
# ### Exercise 3 (2 points): how long does a mode remember?
# A mode with $A = -\tfrac12 + i\omega$ and step size `dt` shrinks by $|e^{\Delta A}|$ per day. Write
# `half_life(dt)`: the number of days (a float) after which its magnitude has halved.


# %%
# SOLUTION
def half_life(dt):
    return math.log(2) / (0.5 * dt)


# %%
# SELF-CHECK
for dt in (0.001, 0.01, 0.1, 1.0):
    days = half_life(dt)
    magnitude = abs(complex(math.exp(-0.5 * dt * days)) * np.exp(1j * 3.0 * dt * days))
    assert abs(magnitude - 0.5) < 1e-9, (
        f"after half_life({dt}) = {days:.1f} days the magnitude is {magnitude:.3f}"
    )
print("Exercise 3 passed")

# %% [markdown]
# ### Exercise 4 (2 points): Mamba's step-size initialisation
# Mamba wants $\Delta = \mathrm{softplus}(b)$ to start at a chosen value $\Delta_0$ in
# $[10^{-3}, 10^{-1}]$, so it sets the bias $b$ of `dt_proj` to the inverse softplus of $\Delta_0$.
# Write `inverse_softplus(dt)` for a tensor `dt > 0`, accurate for small `dt` too.


# %%
# SOLUTION
def inverse_softplus(dt):
    return dt + torch.log(-torch.expm1(-dt))


# %%
# SELF-CHECK
dt_grid = torch.logspace(-4, 0, 50, dtype=torch.float64)
recovered = nn.functional.softplus(inverse_softplus(dt_grid))
assert torch.allclose(recovered, dt_grid, rtol=1e-9), "softplus(inverse_softplus(dt)) must give dt back"
assert (inverse_softplus(torch.tensor([1e-3], dtype=torch.float64)) < -6).all(), (
    "small dt needs a very negative bias"
)
print("Exercise 4 passed")

# %% [markdown]
# ## Summary
#
# * A linear state space model, discretised with a zero-order hold ($\bar A = e^{\Delta A}$,
#   $\bar B = (e^{\Delta A}-1)/A \cdot B$), is a recurrence and a convolution at the same time; the
#   kernel $K_j = 2\mathrm{Re}\sum_n C_n \bar B_n e^{j\Delta A_n}$ equals the recurrence's impulse
#   response to round-off, and an FFT of length $2L$ computes the convolution.
# * S4D-Lin eigenvalues $-\tfrac12 + i\pi n$ give slowly decaying, oscillating modes: a basis in
#   which a learnt read-out can place memory far back; $\Delta$ sets the time scale per channel.
# * Mamba makes $\Delta_t, B_t, C_t$ depend on the input: it can forget on purpose (compare the two
#   validation errors on the last-marker task, and the learnt step sizes on the marked days). It needs
#   a scan; a chunked scan with a reverse-scan backward is linear in $L$, the source's indexing loop
#   is quadratic.
# * On long-window volatility forecasting, compare with log-HAR and test the difference across seeds
#   before claiming a gain; in small, fast settings the classical model remains the bar to clear.
# * The source module dropped the ZOH factor (kernels off by about $1/\Delta$), fed a width-1 $\Delta$
#   to a layer built for $N$ inputs (a crash, or a look-ahead when $L = N$), and indexed tensors in
#   its scan loop (a quadratic backward).
