# %% [markdown]
# # Chapter 3: Temporal convolutional networks and WaveNet
#
# A recurrent network reads a window one day at a time. A convolutional network reads it all at once,
# through small filters that slide along time. Stacking *dilated* filters lets a few layers see a long
# stretch of history, and the exact length of that stretch, the **receptive field**, is something
# you can compute on paper and then check against the gradients of the trained model.
#
# **Learning objectives.** After this chapter you can
#
# 1. write a causal dilated convolution and say which inputs each output sees;
# 2. derive the receptive field of a TCN and of a WaveNet, and verify it with gradients;
# 3. size a WaveNet from the window length instead of copying the audio paper's 40 layers;
# 4. train TCN and WaveNet on the course's two standard tasks beside a recurrent model and the
#    baselines, compare accuracy *and* training time, and read Diebold-Mariano tests honestly;
# 5. recognise three defects of the source module: `Chomp1d(0)`, the oversized WaveNet and the old
#    `weight_norm` API.

# %%
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn

from course_lib import get_device, set_seed
from course_lib.data.windows import make_task
from course_lib.evaluation import return_baselines, seed_summary, verdicts, volatility_baselines
from course_lib.models.convolutional import (
    CausalConv1d,
    Chomp1d,
    TemporalBlock,
    TemporalConvNet,
    WaveNet,
    tcn_receptive_field,
    wavenet_layers_for,
    wavenet_receptive_field,
)
from course_lib.models.recurrent import FinancialLSTM
from course_lib.testing import future_gradient, input_support
from course_lib.training import fit_seeds

# %% [markdown]
# ## Parameters
# Every size of the chapter lives here. The defaults run the whole notebook in about a minute on a
# laptop CPU; raise `EPOCHS`, the widths and `SEEDS` for a more careful study.

# %%
LOOKBACK = 20  # days in each input window
KERNEL_SIZE = 3  # TCN taps per convolution
TCN_CHANNELS = (12, 12, 12)  # three levels, dilations 1, 2, 4: receptive field 1 + 2*2*7 = 29 >= 20
WAVENET_CHANNELS = 12  # residual and skip width; the depth comes from the receptive-field formula
LSTM_HIDDEN = 16  # the recurrent model we compare with
DROPOUT = 0.1
EPOCHS = 6
PATIENCE = 3
BATCH_SIZE = 256
LR = 3e-3
SEEDS = (0, 1, 2)

device = get_device()
# Models this small are latency-bound on a CPU: extra threads only add synchronisation (several times
# slower on a busy 2-core machine), so the CPU work of this notebook uses one thread.
torch.set_num_threads(1)
set_seed(0)
print(f"device: {device}")

# %% [markdown]
# ## Intuition: a filter that only looks back
#
# A one-dimensional convolution with kernel size $k$ computes, at each day $t$, a learned weighted
# sum of $k$ consecutive days, the same weights everywhere in time: a moving average whose weights
# the network chooses. For forecasting it must be **causal**: the output at day $t$ may read days
# $t, t-1, \dots$ but never $t+1$. The trick is to pad the window with zeros on the *left* only.
#
# A *dilated* convolution skips days: with dilation $d$ it reads $t, t-d, t-2d, \dots$. Doubling the
# dilation at each layer (1, 2, 4, 8, ...) makes the field of view grow exponentially with depth,
# while every day of the field is still read exactly once along some path.
#
# ## The maths
#
# A causal dilated convolution maps channel vectors $x_1, \dots, x_L$ to
# $$ y_t = b + \sum_{j=0}^{k-1} W_j\, x_{t-jd}, \qquad x_s = 0 \text{ for } s < 1 .$$
# Each such layer extends the history the last output depends on by $(k-1)d$ days. So the receptive
# field of a stack is $R = 1 + (k-1)\sum_\ell d_\ell$:
#
# * **TCN** (Bai, Kolter & Koltun, 2018): $n$ residual blocks, block $i$ has *two* convolutions with
#   dilation $2^i$: $\;R_{\text{TCN}} = 1 + 2(k-1)\sum_{i=0}^{n-1} 2^i = 1 + 2(k-1)(2^n-1)$.
# * **WaveNet** (van den Oord et al., 2016): one gated convolution per layer,
#   $z = \tanh(W_f * x) \odot \sigma(W_g * x)$, dilations $1, \dots, 2^{m-1}$ repeated in $b$ blocks:
#   $\;R_{\text{WaveNet}} = 1 + (k-1)\, b\,(2^m-1)$.
#
# The TCN block adds a residual connection, $\mathrm{ReLU}(F(x) + x)$, with weight normalisation and
# dropout in $F$; WaveNet adds a residual *and* a skip path from every layer to the output head.

# %% [markdown]
# ### Drawing it: which inputs does the last output see?
# Below, three layers of a causal convolution with $k=2$ and dilations 1, 2, 4 (four rows of dots: the
# inputs at the bottom, then one row per layer). Blue lines trace every
# path that ends in the last output (top right); the inputs it reaches are exactly the last
# $1 + (2-1)(1+2+4) = 8$ days. The grey dots are days it never sees.


# %%
def draw_dilated_stack(ax, length=16, kernel_size=2, dilations=(1, 2, 4)):
    """Plot the dependency cone of the last output of a stack of causal dilated convolutions."""
    levels = len(dilations)
    grid_t, grid_l = np.meshgrid(np.arange(length), np.arange(levels + 1))
    ax.scatter(grid_t, grid_l, color="lightgrey", zorder=1)
    seen = {(levels, length - 1)}
    for level in range(levels, 0, -1):
        d = dilations[level - 1]
        for t in sorted(t for (lv, t) in seen if lv == level):
            for j in range(kernel_size):
                if t - j * d >= 0:
                    ax.plot([t - j * d, t], [level - 1, level], color="C0", lw=1.2, zorder=2)
                    seen.add((level - 1, t - j * d))
    ts, ls = zip(*[(t, lv) for (lv, t) in seen], strict=True)
    ax.scatter(ts, ls, color="C0", zorder=3)
    ax.set_yticks(range(levels + 1), ["input"] + [f"d={d}" for d in dilations])
    ax.set_xlabel("day in the window")
    return sum(1 for (lv, _) in seen if lv == 0)


fig, ax = plt.subplots(figsize=(9, 3))
n_seen = draw_dilated_stack(ax)
ax.set_title(f"causal dilated convolutions, k=2: the last output sees {n_seen} inputs")
plt.tight_layout()
plt.show()
print("formula:", 1 + (2 - 1) * (1 + 2 + 4), " drawn:", n_seen)

# %% [markdown]
# ### The formula against the gradients
#
# The drawing is a claim; the gradient is the proof. `course_lib.testing.input_support` returns the
# days whose input has a non-zero gradient on the last output. For a causal model with receptive field
# $R$ (and a window longer than $R$) it must be exactly the last $R$ days, which the table checks for
# several kernel sizes and depths, including $k=1$ (no history at all: $R=1$).

# %%
x_probe = torch.randn(8, 80, 4, dtype=torch.float64)
rows = []
for k, levels in [(1, 2), (2, 2), (2, 4), (3, 3), (5, 2)]:
    tcn = TemporalConvNet(4, (8,) * levels, kernel_size=k, dropout=0.0).double().eval()
    support = input_support(tcn, x_probe)
    rows.append(
        {
            "model": "TCN",
            "k": k,
            "levels": levels,
            "formula": tcn_receptive_field(k, levels),
            "gradient support": int(support.sum()),
            "contiguous, ends today": bool(support[-int(support.sum()) :].all()),
        }
    )
for k, layers, blocks in [(2, 3, 1), (2, 3, 2), (3, 4, 1)]:
    wn = WaveNet(4, 8, 8, n_blocks=blocks, n_layers_per_block=layers, kernel_size=k).double().eval()
    support = input_support(wn, x_probe)
    rows.append(
        {
            "model": f"WaveNet x{blocks}",
            "k": k,
            "levels": layers,
            "formula": wavenet_receptive_field(k, layers, blocks),
            "gradient support": int(support.sum()),
            "contiguous, ends today": bool(support[-int(support.sum()) :].all()),
        }
    )
rf_table = pd.DataFrame(rows)
rf_table

# %%
assert (rf_table["formula"] == rf_table["gradient support"]).all(), "formula and gradients disagree"
assert rf_table["contiguous, ends today"].all()

# %% [markdown]
# How strongly does the forecast lean on each lag? At initialisation the gradient magnitude falls off
# smoothly and then drops to *exactly* zero one day past the receptive field (the dashed line).

# %%
x_lag = torch.randn(16, 48, 4, requires_grad=True)
fig, ax = plt.subplots(figsize=(9, 3))
for name, model in [
    ("TCN k=3, 3 levels", TemporalConvNet(4, TCN_CHANNELS, KERNEL_SIZE, dropout=0.0)),
    ("WaveNet k=2, 5 layers", WaveNet.for_lookback(4, LOOKBACK)),
]:
    model.eval()
    (grad,) = torch.autograd.grad(model(x_lag).sum(), x_lag)
    magnitude = grad.abs().sum(dim=(0, 2)).flip(0).numpy()  # index = lag (0 = today)
    (line,) = ax.semilogy(np.arange(48), magnitude + 1e-12, marker=".", label=name)
    ax.axvline(model.receptive_field - 0.5, color=line.get_color(), ls="--")
ax.set_xlabel("lag (days before the forecast origin)")
ax.set_ylabel("|d forecast / d input|")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ### No look-ahead
# A receptive field that ends *today* is half the story; the per-step outputs must also never read
# tomorrow. `future_gradient` measures the gradient of a random projection of the output at day $t$
# with respect to every later input; for a causal model it is exactly zero. A convolution padded
# symmetrically (`padding="same"`, the default reflex) fails the check.

# %%
x_future = torch.randn(4, LOOKBACK, 4)
tcn = TemporalConvNet(4, TCN_CHANNELS, KERNEL_SIZE)
wavenet = WaveNet.for_lookback(4, LOOKBACK)
centred = nn.Conv1d(4, 4, 3, padding="same")
checks = {
    "TCN": future_gradient(lambda x: tcn(x, per_step=True), x_future, t=10),
    "WaveNet": future_gradient(lambda x: wavenet(x, per_step=True), x_future, t=10),
    "CausalConv1d": future_gradient(
        lambda x: CausalConv1d(4, 4, 3)(x.transpose(1, 2)).transpose(1, 2), x_future, t=10
    ),
    "Conv1d(padding='same')": future_gradient(
        lambda x: centred(x.transpose(1, 2)).transpose(1, 2), x_future, t=10
    ),
}
pd.Series(checks, name="gradient on the future")

# %% [markdown]
# ## Three defects of the source module
#
# > **Pitfall (erratum: TemporalBlock / Chomp1d)** The source pads both sides by $(k-1)d$ and then
# > "chomps" the last $(k-1)d$ steps with `x[:, :, :-chomp_size]`. With `kernel_size=1` the padding is
# > 0, and `x[:, :, :-0]` is `x[:, :, :0]`: an **empty** tensor, so the block crashes (or, worse, a
# > later layer silently works on nothing). In course_lib a layer without padding has no chomp at all,
# > and `Chomp1d(0)` refuses to be built.

# %%
x = torch.randn(2, 3, 10)
print("x[:, :, :-0] has shape", tuple(x[:, :, :-0].shape))
try:
    Chomp1d(0)
except ValueError as err:
    print("Chomp1d(0):", err)
print("TemporalBlock with kernel_size=1:", tuple(TemporalBlock(3, 5, kernel_size=1, dilation=1)(x).shape))

# %% [markdown]
# > **Pitfall (erratum: WaveNet)** The source builds WaveNet with 4 blocks of 10 layers, as for audio
# > sampled at 16 kHz. Its receptive field is $1 + 4(2^{10}-1) = 4{,}093$ days, sixteen years of data,
# > for windows of 20-60 days. Every layer with dilation $\ge L$ reads only zero padding beyond its
# > current step, so it is an expensive 1x1 convolution. Size the network from the formula instead:
# > `wavenet_layers_for(lookback)` picks the fewest layers that cover the window.

# %%
oversized = WaveNet(4, WAVENET_CHANNELS, WAVENET_CHANNELS, n_blocks=4, n_layers_per_block=10)
sized = WaveNet.for_lookback(4, LOOKBACK, residual_channels=WAVENET_CHANNELS, skip_channels=WAVENET_CHANNELS)
dilations = [2**i for _ in range(4) for i in range(10)]
x_batch = torch.randn(BATCH_SIZE, LOOKBACK, 4)
for name, model in [("source 4 x 10", oversized), (f"sized, {wavenet_layers_for(LOOKBACK)} layers", sized)]:
    start = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model(x_batch)
    print(
        f"{name:>16}: receptive field {model.receptive_field:5d} days, "
        f"{sum(p.numel() for p in model.parameters()):6d} parameters, forward {1e3 * (time.perf_counter() - start):.1f} ms"
    )
    for w in caught:  # course_lib's own warning about a receptive field far beyond the window
        print(f"{'':>16}  course_lib warns: {w.message}")
print(
    f"layers of the source WaveNet whose dilation is >= {LOOKBACK}: {sum(d >= LOOKBACK for d in dilations)} of {len(dilations)}"
)

# %% [markdown]
# > **Pitfall (weight_norm API)** The TCN normalises its convolution weights, $w = g\,v/\lVert v\rVert$.
# > `torch.nn.utils.weight_norm` is deprecated; use `torch.nn.utils.parametrizations.weight_norm`.
# > With the new API `conv.weight` is *recomputed* from $g$ and $v$ at every access, so an
# > initialisation written into `conv.weight` after wrapping is silently thrown away: initialise first,
# > then wrap (course_lib does this, and its tests check the initial scale).

# %%
from torch.nn.utils.parametrizations import weight_norm

wrapped_first = weight_norm(nn.Conv1d(12, 12, 3))
wrapped_first.weight.data.normal_(0.0, 0.01)  # writes into a temporary: lost
init_first = nn.Conv1d(12, 12, 3)
nn.init.normal_(init_first.weight, 0.0, 0.01)
init_first = weight_norm(init_first)
print(
    f"std of the weights, initialised after wrapping: {wrapped_first.weight.std().item():.3f} (default init kept)"
)
print(
    f"std of the weights, initialised before wrapping: {init_first.weight.std().item():.3f} (the intended 0.01)"
)

# %% [markdown]
# ## TCN and WaveNet on the standard tasks
#
# Two tasks from `make_task`, the same chronological split for every model (train to 2006,
# validation 2007-2008, test 2009-2018): tomorrow's S&P 500 return and tomorrow's log volatility.
# Each network is trained with three seeds; beside it, the baselines that every model of the course
# faces (zero, historical mean and AR(1) for returns; EWMA, GARCH, HAR and log-HAR for volatility), under the
# networks' protocol (estimated once on the training years, then frozen), and a small recurrent model
# (`FinancialLSTM` from Chapter 1). We also record the wall time of one training epoch from the trainer's
# history.

# %%
tasks = {
    kind: make_task(kind, ticker="^GSPC", lookback=LOOKBACK, horizons=(1,))
    for kind in ("returns", "volatility")
}
baselines = {
    "returns": return_baselines(tasks["returns"]),
    "volatility": volatility_baselines(tasks["volatility"]),
}
n_features = tasks["returns"].train.X.shape[-1]
factories = {
    "TCN": lambda: TemporalConvNet(n_features, TCN_CHANNELS, KERNEL_SIZE, dropout=DROPOUT),
    "WaveNet": lambda: WaveNet.for_lookback(
        n_features, LOOKBACK, residual_channels=WAVENET_CHANNELS, skip_channels=WAVENET_CHANNELS
    ),
    "LSTM": lambda: FinancialLSTM(n_features, hidden_size=LSTM_HIDDEN, dropout=DROPOUT),
}
print(tasks["returns"])


def train_all(task):
    """Fit every model with every seed (`fit_seeds`): {model: SeedRuns with test and validation forecasts,
    per seed}. The validation forecasts feed the level correction of volatility forecasts."""
    settings = dict(lr=LR, batch_size=BATCH_SIZE, max_epochs=EPOCHS, patience=PATIENCE, device=device)
    return {name: fit_seeds(make, task, SEEDS, **settings) for name, make in factories.items()}


start = time.perf_counter()
results, times = {}, {}
for kind, task in tasks.items():
    runs = train_all(task)
    results[kind] = seed_summary(
        task,
        {n: r.test for n, r in runs.items()},
        baselines[kind],
        val_predictions={n: r.val for n, r in runs.items()},
    )
    times[kind] = {n: r.seconds_per_epoch for n, r in runs.items()}
print(f"trained {len(factories) * len(SEEDS) * len(tasks)} models in {time.perf_counter() - start:.1f} s")

# %% [markdown]
# ### Returns: tomorrow's S&P 500 log return (percent)
# Rows: the three networks (mean loss over seeds; `MSE sd` is the spread across seeds) and the baselines.
# `ens DM` is the Diebold-Mariano statistic (Newey-West lag) of the **seed ensemble** against the **zero**
# forecast (negative = lower squared error); the next columns count the seeds for which the network alone
# is significantly better or worse, and `in_MCS` marks the model confidence set. No p-value is averaged.

# %%
results["returns"].round(4)

# %% [markdown]
# ### Volatility: tomorrow's log Parkinson volatility
# Here the benchmark of the DM tests is **log-HAR**: Corsi's HAR regression written directly on the log
# volatility (today's, the weekly and the monthly average), fitted on the training years. It is the
# strongest classical model on this target; the classic HAR on variances is in the table too. Two losses:
# squared error of the log, and QLIKE of the variance after the level correction learnt on the validation
# years (`QLIKE_lc`; chapter 00 explains both).

# %%
results["volatility"].round(4)

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
names = list(factories)
for ax, kind in zip(axes, tasks, strict=True):
    ax.bar(names, [times[kind][n] for n in names], color=["C0", "C1", "C2"])
    ax.set(
        xlabel="model",
        ylabel="seconds per epoch (median over epochs)",
        title=f"{kind}: training time per epoch ({device.type})",
    )
plt.tight_layout()
plt.show()

# %%
for kind, table in results.items():
    print(verdicts(table, models=list(factories)))
    nets, base = table.loc[list(factories), "MSE"], table.loc[list(baselines[kind]), "MSE"]
    print(
        f"{kind}: best network {nets.idxmin()} ({nets.min():.4f}), best baseline {base.idxmin()} ({base.min():.4f}): "
        f"the network is {'below' if nets.min() < base.min() else 'ABOVE'} it on the mean over seeds.\n"
    )
lstm_time = {kind: times[kind]["LSTM"] for kind in tasks}
print(
    "seconds per epoch relative to the LSTM:",
    {kind: {n: round(times[kind][n] / lstm_time[kind], 1) for n in factories} for kind in tasks},
)

# %% [markdown]
# ### What the numbers say
#
# The lines above are the verdicts, computed from this run (deterministic for fixed seeds on one
# machine, though they may shift slightly across hardware and library versions). How to read them:
#
# * **Returns.** A network wins only with a significant DM test of its seed ensemble against zero *and*
#   consistent seeds; for a liquid index expect none to, because there is almost nothing to learn about
#   tomorrow's return from the last 20 days. That is the expected result, not a failure of the
#   architectures.
# * **Volatility.** The bar to clear is log-HAR, four regression coefficients on the log scale of the
#   target, under both losses. A lower mean MSE without a significant test, or a win on MSE that vanishes
#   on corrected QLIKE, is a draw; the model confidence set says which models cannot be told apart.
#   Raise `EPOCHS` to see how much of a gap is training budget rather than architecture.
# * **Cost.** The last line compares seconds per epoch on this machine (timings on a shared machine are
#   noisy). A 20-step recurrence is short, and the TCN pays for weight normalisation and six convolutions,
#   WaveNet for five gated layers with two 1x1 convolutions each. Their advantage, parallelism over time,
#   shows on long windows and on GPUs.

# %% [markdown]
# ## Exercises
#
# ### Exercise 1 (1 point): the receptive field of a TCN
# Write `tcn_field(k, n)`, the number of input days that the last output of a TCN with kernel size `k`
# and `n` levels (two convolutions per level, dilation $2^i$ at level $i$) depends on.


# %%
# SOLUTION
def tcn_field(k, n):
    return 1 + 2 * (k - 1) * (2**n - 1)


# %%
# SELF-CHECK
for k, n in [(1, 3), (2, 1), (2, 4), (3, 3), (4, 2)]:
    model = TemporalConvNet(2, (8,) * n, kernel_size=k, dropout=0.0).double().eval()
    measured = int(input_support(model, torch.randn(8, 130, 2, dtype=torch.float64)).sum())
    assert tcn_field(k, n) == measured, (
        f"tcn_field({k}, {n}) = {tcn_field(k, n)}, but the gradients see {measured} days"
    )
print("Exercise 1 passed")

# %% [markdown]
# ### Exercise 2 (2 points): size a WaveNet for a 60-day window
# With `kernel_size=2` and **two** blocks, how many layers per block does a WaveNet need so that its
# receptive field covers a 60-day window, and no more layers than that? Store the answer in
# `layers_60`, and the resulting receptive field in `field_60`.

# %%
# SOLUTION
layers_60 = wavenet_layers_for(60, kernel_size=2, n_blocks=2)
field_60 = wavenet_receptive_field(2, layers_60, n_blocks=2)

# %%
# SELF-CHECK
assert isinstance(layers_60, int), "layers_60 must be an int"
assert wavenet_receptive_field(2, layers_60, 2) >= 60, "this WaveNet does not see the whole window"
assert wavenet_receptive_field(2, layers_60 - 1, 2) < 60, "fewer layers would already cover 60 days"
assert field_60 == 1 + 2 * (2**layers_60 - 1), "field_60 does not follow the WaveNet formula"
print("Exercise 2 passed")

# %% [markdown]
# ### Exercise 3 (2 points): spot the bug in `chomp`
# The function below is the source module's `Chomp1d.forward`: it should drop the last `n` steps of a
# `(B, C, L)` tensor (the right-hand padding of a causal convolution). It breaks for one value of `n`
# that a TCN with `kernel_size=1` produces. Write `chomp_fixed(x, n)` that works for **every** `n >= 0`
# (`n = 0` must return `x` unchanged).
#
# ```python
# def chomp(x, n):
#     return x[:, :, :-n].contiguous()
# ```


# %%
# SOLUTION
def chomp_fixed(x, n):
    return x[:, :, : x.shape[-1] - n].contiguous()


# %%
# SELF-CHECK
x_check = torch.randn(2, 3, 9)
assert chomp_fixed(x_check, 0).shape == x_check.shape, "n = 0 must keep every step (x[:, :, :-0] is empty)"
assert torch.equal(chomp_fixed(x_check, 0), x_check), "n = 0 must return x unchanged"
for n in (1, 2, 5):
    assert torch.equal(chomp_fixed(x_check, n), x_check[:, :, :-n]), (
        f"n = {n} must drop exactly the last {n} steps"
    )
print("Exercise 3 passed")

# %% [markdown]
# ### Exercise 4 (1 point): wasted layers
# For the source's WaveNet (4 blocks of 10 layers, dilations $1, \dots, 512$ in each block) applied to
# a 60-day window, what fraction of the 40 layers have a dilation of at least 60 days (so their second
# tap reads only zero padding)? Store it in `wasted_fraction` (a float between 0 and 1).

# %%
# SOLUTION
wasted_fraction = sum(2**i >= 60 for _ in range(4) for i in range(10)) / 40

# %%
# SELF-CHECK
assert 0 <= wasted_fraction <= 1, "a fraction lies between 0 and 1"
assert abs(wasted_fraction - 0.4) < 1e-9, (
    "count the dilations 64, 128, 256 and 512 in each of the four blocks"
)
print("Exercise 4 passed")

# %% [markdown]
# ## Summary
#
# * A causal dilated convolution reads $t, t-d, \dots, t-(k-1)d$; stacking layers with doubling
#   dilations gives a receptive field $1 + (k-1)\sum_\ell d_\ell$: $1 + 2(k-1)(2^n-1)$ for a TCN and
#   $1 + (k-1)b(2^m-1)$ for a WaveNet. Gradients confirm it to the day.
# * Causality is a property you test (zero gradient on the future), not one you assume; a symmetric
#   `padding="same"` convolution leaks tomorrow into today.
# * Size a WaveNet from the window, not from the audio paper; `kernel_size=1` needs no chomp; use
#   `parametrizations.weight_norm` and initialise before wrapping.
# * On daily returns expect nothing to beat zero; on volatility the bar to clear is log-HAR, and a
#   network clears it only with a significant Newey-West DM test of its seed ensemble, consistent seeds,
#   and a win that survives QLIKE after the level correction (the printed verdicts say whether any did).
