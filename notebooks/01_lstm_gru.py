# %% [markdown]
# # Chapter 1: LSTM and GRU networks on the S&P 500
#
# **Learning objectives.** After this chapter you can
#
# 1. write the LSTM and GRU gate equations and check a from-scratch cell against PyTorch's `nn.LSTM`;
# 2. use the four recurrent models of `course_lib.models.recurrent` (`FinancialLSTM`, `MultiHorizonLSTM`,
#    `ResidualLSTM`, `FinancialGRU`) on the two standard tasks, daily returns and daily volatility;
# 3. judge them honestly: chronological splits, the classical baselines beside every model under the
#    same frozen protocol, several seeds, Diebold-Mariano tests on squared error and QLIKE, and a model
#    confidence set;
# 4. read the attention weights of a recurrent model over its input window;
# 5. recognise two silent bugs: attention that mixes the samples of a batch, and pooling the last step of
#    a bidirectional LSTM.

# %% [markdown]
# ## Parameters
# Every size of the chapter lives in this one cell. The defaults are small so that the whole notebook runs
# in about a minute on a laptop CPU; raise `HIDDEN`, `EPOCHS` or `SEEDS` to explore.

# %%
LOOKBACK = 20  # days in each input window
HIDDEN = 16  # width of every recurrent layer
HEADS = 2  # attention heads of FinancialLSTM (must divide HIDDEN)
EPOCHS = 12  # at most; early stopping on the validation loss may stop sooner
PATIENCE = 3
LR = 3e-3
BATCH = 256
SEEDS = (0, 1, 2)  # every model is trained once per seed
HORIZONS = (1, 5, 22)  # days ahead, for the multi-horizon model (a day, a week, a month)

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn

from course_lib import get_device, set_seed
from course_lib.data.windows import make_task
from course_lib.evaluation import (
    diebold_mariano,
    mse,
    qlike,
    r2_oos,
    return_baselines,
    seed_summary,
    verdicts,
    volatility_baselines,
)
from course_lib.models.recurrent import (
    FinancialGRU,
    FinancialLSTM,
    LSTMCellScratch,
    MultiHorizonLSTM,
    ResidualLSTM,
)
from course_lib.testing import batch_coupling, future_gradient, input_support
from course_lib.training import Trainer

notebook_start = time.perf_counter()
device = get_device()
# Models this small are latency-bound on a CPU: extra threads only add synchronisation (several times
# slower on a busy 2-core machine), so the CPU work of this notebook uses one thread.
torch.set_num_threads(1)
set_seed(0)
print("device:", device)

# %% [markdown]
# ## 1. Why recurrence for a time series?
#
# A forecast made at day $t$ may use everything observed up to $t$. A feed-forward network on a window of
# $L$ days treats the days as unrelated input slots; a **recurrent** network reads the window in time order
# and carries a state $h_t$ that summarises the past, with the same weights at every step:
#
# $$h_t = F_\theta(h_{t-1}, x_t), \qquad \hat y = g_\theta(h_L).$$
#
# That matches how markets are described: today's volatility depends on yesterday's (volatility
# clustering), and a GARCH model is itself a recurrence $\sigma_t^2 = \omega + \alpha r_{t-1}^2 +
# \beta \sigma_{t-1}^2$. A plain RNN $h_t = \tanh(W x_t + U h_{t-1} + b)$ multiplies its gradient by $U$
# at every step backwards, so gradients over long windows vanish or explode. Gated cells fix this.
#
# ### The LSTM cell (Hochreiter & Schmidhuber, 1997; forget gate: Gers et al., 2000)
#
# $$
# \begin{aligned}
# i_t &= \sigma(W_{i} x_t + U_{i} h_{t-1} + b_i) && \text{input gate: how much to write}\\
# f_t &= \sigma(W_{f} x_t + U_{f} h_{t-1} + b_f) && \text{forget gate: how much memory to keep}\\
# g_t &= \tanh(W_{g} x_t + U_{g} h_{t-1} + b_g) && \text{candidate content}\\
# o_t &= \sigma(W_{o} x_t + U_{o} h_{t-1} + b_o) && \text{output gate: how much to expose}\\
# c_t &= f_t \odot c_{t-1} + i_t \odot g_t && \text{cell state: additive memory}\\
# h_t &= o_t \odot \tanh(c_t)
# \end{aligned}
# $$
#
# The cell state is updated by *addition*: $\partial c_t / \partial c_{t-1} = f_t$, so with $f_t \approx 1$
# the gradient flows back many steps without shrinking.
#
# ### The GRU cell (Cho et al., 2014)
#
# $$
# \begin{aligned}
# r_t &= \sigma(W_r x_t + U_r h_{t-1} + b_r) && \text{reset gate}\\
# z_t &= \sigma(W_z x_t + U_z h_{t-1} + b_z) && \text{update gate}\\
# n_t &= \tanh\big(W_n x_t + b_{in} + r_t \odot (U_n h_{t-1} + b_{hn})\big) && \text{candidate}\\
# h_t &= (1 - z_t) \odot n_t + z_t \odot h_{t-1}
# \end{aligned}
# $$
#
# The GRU merges cell and hidden state and has three weight blocks instead of four: about 25% fewer
# parameters for the same width.
#
# ### The equations, checked against PyTorch
# `LSTMCellScratch` is the system above written out line by line (read its `forward`). We copy the
# weights of an `nn.LSTM` into it and compare the outputs over a whole window, in float64 so that only a
# real difference in the maths could show up.

# %%
set_seed(0)
reference = nn.LSTM(input_size=4, hidden_size=HIDDEN, batch_first=True).double()
scratch = LSTMCellScratch.from_lstm(reference)
x_demo = torch.randn(8, LOOKBACK, 4, dtype=torch.float64)
out_torch, _ = reference(x_demo)
out_scratch, _ = scratch.scan(x_demo)
gap = (out_torch - out_scratch).abs().max().item()
print(f"largest difference, from-scratch LSTM vs nn.LSTM over {LOOKBACK} steps: {gap:.1e}")
assert gap < 1e-6

# %% [markdown]
# PyTorch stacks the four gate matrices as `weight_ih_l0` of shape $(4H, C)$ in the order
# $i, f, g, o$. Swap two blocks (a classic slip: $i, f, o, g$) and the check fails: that is what makes
# it a test.

# %%
with torch.no_grad():
    for w in (scratch.weight_ih, scratch.weight_hh, scratch.bias_ih, scratch.bias_hh):
        i, f, g, o = w.chunk(4, dim=0)
        w.copy_(torch.cat([i, f, o, g]))  # the wrong gate order
    wrong_gap = (reference(x_demo)[0] - scratch.scan(x_demo)[0]).abs().max().item()
print(f"with the gates in the wrong order the difference is {wrong_gap:.2f}")

# %% [markdown]
# ### Exercise 1 (2 points): a GRU step from scratch
# Write `gru_step(x_t, h, cell)` that returns the next hidden state of the `nn.GRUCell` `cell` using only
# its parameters `cell.weight_ih` $(3H, C)$, `cell.weight_hh` $(3H, H)$, `cell.bias_ih`, `cell.bias_hh`
# and the GRU equations above. PyTorch's gate order is $r, z, n$. Note where $b_{hn}$ sits: *inside*
# the reset gate's product.


# %%
# SOLUTION
def gru_step(x_t, h, cell):
    gi = x_t @ cell.weight_ih.T + cell.bias_ih  # (B, 3H)
    gh = h @ cell.weight_hh.T + cell.bias_hh  # (B, 3H)
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


# %%
# SELF-CHECK
_cell = nn.GRUCell(3, 5).double()
_x, _h = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
_mine = gru_step(_x, _h, _cell)
assert _mine is not None and _mine.shape == (4, 5), "gru_step must return a (B, H) tensor"
assert torch.allclose(_mine, _cell(_x, _h), atol=1e-10), (
    "gru_step differs from nn.GRUCell: check the gate order (r, z, n) and that b_hn is multiplied by r"
)
print("Exercise 1 passed")

# %% [markdown]
# ## 2. The data: two standard tasks on the S&P 500
# `make_task` builds windows of `LOOKBACK` days of four features (percent log return, Garman-Klass and
# Parkinson log volatility, volume change), scaled with statistics of the training years only, and
# splits them by date: **train** 1999-2006, **validation** 2007-2008, **test** 2009-2018, with a gap so
# that no target crosses a boundary.
#
# * `returns`: tomorrow's percent log return;
# * `volatility`: tomorrow's log volatility, $\tfrac12 \log \hat\sigma^2_{P}$ (Parkinson's high-low
#   variance; chapter 00 shows why not Garman-Klass on this data).

# %%
rtask = make_task("returns", ticker="^GSPC", lookback=LOOKBACK, horizons=(1,))
vtask = make_task("volatility", ticker="^GSPC", lookback=LOOKBACK, horizons=(1,))
print(rtask)
print(vtask)
print("data source:", rtask.source)

# %%
fig, axes = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
for ax, task, label in [(axes[0], rtask, "return (%)"), (axes[1], vtask, "log volatility")]:
    for split, colour in [("train", "C0"), ("val", "C1"), ("test", "C2")]:
        s = task.split(split)
        ax.plot(s.dates, s.y[:, 0], lw=0.4, color=colour, label=split)
    ax.set_ylabel(f"target: {label}")
axes[0].legend(loc="upper left", ncol=3)
axes[1].set_xlabel("forecast origin")
fig.suptitle("S&P 500 targets by chronological split")
plt.tight_layout()
plt.show()

# %% [markdown]
# Returns look like noise around zero with bursts; log volatility is persistent, which is exactly the
# structure a recurrent state can carry. Expect little on returns and something on volatility.
#
# ### Baselines
# Every model faces the classical forecasts, all computed without look-ahead and under the same protocol
# as the networks: estimated once on the training years, then frozen (they only filter new data). For
# returns the zero forecast, the historical mean and an AR(1); for volatility EWMA (RiskMetrics),
# GARCH(1,1) and HAR (Corsi, 2009).
#
# The library's HAR regresses the variance *level* on its 1-, 5- and 22-day averages; we score log
# volatility, and the log of a variance forecast is a biased forecast of the log (Jensen's inequality).
# `volatility_baselines` therefore shifts each baseline by the constant that centres its errors on the
# training years. It also returns a **log-HAR**: each horizon's target regressed directly on the logs of
# the same 1-, 5- and 22-day averages, by least squares on the training years. The strongest simple
# baseline you can build is the one a deep model must beat.

# %%
rbase = return_baselines(rtask)
vbase = volatility_baselines(vtask)
print({k: round(mse(rtask.test.y, v), 4) for k, v in rbase.items()}, "(returns, test MSE)")
print({k: round(mse(vtask.test.y, v), 4) for k, v in vbase.items()}, "(volatility, test MSE)")

# %% [markdown]
# ## 3. The models
#
# | model | what it does |
# |---|---|
# | `FinancialLSTM` | LSTM, then multi-head self-attention over the window (the last step asks which days matter), residual + LayerNorm, MLP head; `return_attention=True` gives the weights |
# | `MultiHorizonLSTM` | one LSTM encoder, one head per horizon, output stacked as (B, n_horizons); with one horizon it is a plain LSTM with an MLP head |
# | `ResidualLSTM` | input projection, then stacked one-layer LSTMs, each as $x \leftarrow \mathrm{LayerNorm}(x + \mathrm{LSTM}(x))$ with its own norm |
# | `FinancialGRU` | GRU, then additive attention pooling $a_t = \mathrm{softmax}_t(w^\top \tanh(W h_t + b))$, residual + LayerNorm with the last state, $\mathrm{LayerNorm}(h_L + \sum_t a_t h_t)$, MLP head |
#
# All four take (B, L, C) windows and, with `per_step=True`, return one causal forecast per step (B, L, n):
# `FinancialLSTM` then uses a causal mask so that step $t$ attends only to steps $\le t$.
#
# > **Pitfall (erratum: FinancialLSTM).** The source module fed (B, L, H) tensors to
# > `nn.MultiheadAttention` without `batch_first=True`. PyTorch then reads them as (L, B, H): "time" is
# > the batch and every sample attends to *the other samples of its batch*. Nothing crashes, the loss even
# > goes down, but a forecast depends on which other days happen to share its mini-batch, and training
# > with shuffled batches leaks information across dates. Its head count 4 also crashed for widths not
# > divisible by 4; `FinancialLSTM` refuses such a width with a clear error.
#
# Watch it happen: change **only sample 1** of a batch of four test windows and see whether the
# output for **sample 0** moves.


# %%
class BatchMixingAttentionLSTM(nn.Module):
    """The source module's defect, kept deliberately: attention without batch_first on (B, L, H)."""

    def __init__(self, input_size, hidden_size, num_heads=2):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True)
        self.attention = nn.MultiheadAttention(hidden_size, num_heads)  # BUG: batch_first missing
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x):
        h, _ = self.lstm(x)  # (B, L, H)
        context, _ = self.attention(h, h, h)  # read as (L, B, H): attends across the batch
        return self.head(context[:, -1])


x_four = torch.from_numpy(vtask.test.X[:4])
set_seed(0)
buggy = BatchMixingAttentionLSTM(4, HIDDEN).eval()
set_seed(0)
correct = FinancialLSTM(4, HIDDEN, n_heads=HEADS).eval()
with torch.no_grad():
    _, w_bug = buggy.attention(*[buggy.lstm(x_four)[0]] * 3)
print("buggy attention weights have shape", tuple(w_bug.shape), "= (L, B, B): weights over the batch")
x_changed = x_four.clone()
x_changed[1] = x_changed[1] + 3.0  # change sample 1 only
with torch.no_grad():
    print(
        f"buggy model, sample 0's forecast: {buggy(x_four)[0].item():+.5f} -> {buggy(x_changed)[0].item():+.5f}"
    )
    print(
        f"FinancialLSTM, sample 0's forecast: {correct(x_four)[0].item():+.5f} -> "
        f"{correct(x_changed)[0].item():+.5f}"
    )
print(
    f"batch_coupling: buggy {batch_coupling(buggy, x_four):.1e}, FinancialLSTM {batch_coupling(correct, x_four):.1e}"
)

# %% [markdown]
# The check `batch_coupling` runs on every model of the library (see `tests/test_recurrent.py`), and the
# tests include this buggy variant to prove that the check can fail.
#
# **Per-step outputs and bidirectional LSTMs.** A per-step output at step $t$ must not use inputs after
# $t$. `future_gradient` measures $\partial \langle v, \hat y_t \rangle / \partial x_{>t}$ for a random probe
# $v$. A bidirectional LSTM's backward half at step $t$ has read steps $t, \dots, L$, so its per-step
# outputs look ahead by construction and `FinancialLSTM` refuses `per_step=True` with `bidirectional=True`.

# %%
probe_x = torch.from_numpy(vtask.test.X[:8])
print("FinancialLSTM, causal per-step:", future_gradient(lambda x: correct(x, per_step=True), probe_x, t=5))
bilstm = nn.LSTM(4, HIDDEN, batch_first=True, bidirectional=True)
print("raw bidirectional LSTM outputs:", round(future_gradient(lambda x: bilstm(x)[0], probe_x, t=5), 4))
try:
    FinancialLSTM(4, HIDDEN, n_heads=HEADS, bidirectional=True)(probe_x, per_step=True)
except ValueError as err:
    print("refused:", err)

# %% [markdown]
# > **Pitfall (erratum: bidirectional LSTM pooling).** Over a past-only window a bidirectional LSTM leaks
# > nothing into a forecast made at the last step: every input is in the past. But pooling its *last
# > step* `out[:, -1]` wastes half the model: the forward half there has read the whole window, the
# > backward half has read **only the last input** (it starts at the end). Use the backward half's state
# > at step 0, attention over all steps (as `FinancialLSTM` does), or a unidirectional LSTM.
# > Exercise 3 measures this.

# %% [markdown]
# ## 4. Training every model on both tasks, with three seeds
# One helper trains a model with the course `Trainer` (AdamW, early stopping on the validation loss,
# best weights kept in memory) and predicts the test years.

# %%
MODELS = {
    "FinancialLSTM": lambda c, h: FinancialLSTM(c, HIDDEN, output_size=len(h), n_heads=HEADS),
    "LSTM (MultiHorizonLSTM)": lambda c, h: MultiHorizonLSTM(c, HIDDEN, horizons=h),
    "ResidualLSTM": lambda c, h: ResidualLSTM(c, HIDDEN, n_layers=2, output_size=len(h)),
    "FinancialGRU": lambda c, h: FinancialGRU(c, HIDDEN, output_size=len(h)),
}


def train_and_predict(name, task, seed):
    set_seed(seed)
    model = MODELS[name](len(task.feature_names), task.horizons)
    trainer = Trainer(
        model,
        lr=LR,
        batch_size=BATCH,
        max_epochs=EPOCHS,
        patience=PATIENCE,
        seed=seed,
        device=device,
        progress=False,
    )
    trainer.fit(task.train.X, task.train.y, task.val.X, task.val.y)
    # validation forecasts too: the level correction of volatility forecasts is learnt on them
    return model, trainer.best_epoch, trainer.predict(task.test.X), trainer.predict(task.val.X)


predictions = {"returns": {}, "volatility": {}}  # task -> model -> list of (N_test, 1) arrays, one per seed
val_predictions = {"returns": {}, "volatility": {}}  # the same on the validation years
best_epochs = {}  # (task, model) -> the epoch with the best validation loss, per seed
fitted = {}  # (task, model) -> the seed-0 model, for the attention plots
start = time.perf_counter()
for task in (rtask, vtask):
    for name in MODELS:
        for seed in SEEDS:
            model, best_epoch, pred, val_pred = train_and_predict(name, task, seed)
            predictions[task.kind].setdefault(name, []).append(pred)
            val_predictions[task.kind].setdefault(name, []).append(val_pred)
            best_epochs.setdefault((task.kind, name), []).append(best_epoch)
            if seed == SEEDS[0]:
                fitted[task.kind, name] = model
print(f"trained {2 * len(MODELS) * len(SEEDS)} models in {time.perf_counter() - start:.1f} s")
print(
    f"best epoch per seed (out of at most {EPOCHS}; = {EPOCHS} means still improving when training stopped):"
)
pd.DataFrame(best_epochs, index=[f"seed {s}" for s in SEEDS]).T

# %% [markdown]
# ### Scoring
# `seed_summary` reports, per model, the mean test loss over the seeds and its spread; the Diebold-Mariano
# test of the **seed ensemble** (the mean forecast of the three seeds) against the benchmark, with a
# Newey-West lag; how many single seeds were significantly better or worse; and whether the ensemble is in
# the model confidence set. It never averages p-values (an average of p-values is not a p-value).
# Benchmarks: the zero forecast for returns, the log-HAR for volatility. Volatility is scored twice: on
# squared error of the log (what the networks minimise) and on QLIKE of the variance after the level
# correction learnt on the validation years (chapter 00), which is robust to the noise of the proxy.


# %%
def averaged(kind):
    """The seed ensemble of every model: the mean forecast over the seeds."""
    return {name: np.mean(preds, axis=0) for name, preds in predictions[kind].items()}


pd.set_option("display.float_format", "{:.4f}".format)
ret_summary = seed_summary(rtask, predictions["returns"], rbase)
ret_summary

# %%
print(verdicts(ret_summary, models=list(MODELS)))
best_ret = ret_summary.drop(index=list(rbase))["MSE"].idxmin()
ret_wins = [n for n in MODELS if ret_summary.loc[n, "ens DM"] < 0 and ret_summary.loc[n, "ens DM_p"] < 0.05]
print(
    f"Networks whose seed ensemble beats zero at 5%: {ret_wins or 'none'}. Best network by MSE: {best_ret} "
    f"(R2_oos {100 * ret_summary.loc[best_ret, 'R2_oos']:.2f}%); best baseline: "
    f"{ret_summary.loc[list(rbase), 'MSE'].idxmin()}."
)

# %% [markdown]
# **What the return results say** (the sentences above are computed from the table). Read `R2_oos`
# (against the historical mean) and the DM columns (against the zero forecast; a negative statistic means
# the model has the lower loss). Directional accuracy must be read beside `up_rate`, the accuracy of
# always saying "up". Expect the baselines to win on daily S&P 500 returns: that is what near-efficient
# markets predict, not a failure of the code. Extra capacity mostly adds variance across seeds (compare
# the `MSE sd` column).

# %%
vol_summary = seed_summary(
    vtask, predictions["volatility"], vbase, val_predictions=val_predictions["volatility"]
)
vol_summary

# %%
print(verdicts(vol_summary, models=list(MODELS)))
nets = vol_summary.loc[list(MODELS)]
base_rows = vol_summary.loc[list(vbase)]
for loss in ("MSE", "QLIKE_lc"):
    best_net, best_base = nets[loss].idxmin(), base_rows[loss].idxmin()
    gap = 100 * (nets.loc[best_net, loss] / base_rows.loc[best_base, loss] - 1)
    print(
        f"{loss}: the best network ({best_net}, {nets.loc[best_net, loss]:.4f}) is {abs(gap):.1f}% "
        f"{'below' if gap < 0 else 'ABOVE'} the best baseline ({best_base}, {base_rows.loc[best_base, loss]:.4f}) "
        "on the mean over seeds; whether that is more than luck, the DM lines above say."
    )
losers = [n for n in MODELS if vol_summary.loc[n, "worse MSE (p<0.05)"] == f"{len(SEEDS)}/{len(SEEDS)}"]
print(f"Significantly worse than log-HAR on MSE for every seed: {losers or 'none'}.")

# %% [markdown]
# > **Pitfall (a GRU that lost to HAR).** An earlier `FinancialGRU` sent only the attention-pooled mean
# > of the window, $\sum_t a_t h_t$, to its head: the last state $h_L$, the freshest summary, never reached
# > it directly. It lost to HAR on every seed, while LSTMs with the same inputs won. An ablation
# > (`benchmarks/recurrent_ablation.py gru`: the same pooling on an LSTM cell lost too; removing the dead
# > score bias or doubling the width did not help; giving the head $h_L$ did) put the cause in the
# > pooling, not in the GRU cell. The head now reads $\mathrm{LayerNorm}(h_L + \sum_t a_t h_t)$, as
# > `FinancialLSTM` does (docs/errata.md).

# %%
y_vol = vtask.test.y[:, 0]
har_qlike = qlike(np.exp(2 * y_vol), np.exp(2 * vbase["har"][:, 0]))
gru_qlike = [qlike(np.exp(2 * y_vol), np.exp(2 * p[:, 0])) for p in predictions["volatility"]["FinancialGRU"]]
lstm_qlike = [
    qlike(np.exp(2 * y_vol), np.exp(2 * p[:, 0])) for p in predictions["volatility"]["FinancialLSTM"]
]
print(
    f"FinancialGRU: test QLIKE {np.mean(gru_qlike):.3f} on average over {len(SEEDS)} seeds "
    f"({sum(q < har_qlike for q in gru_qlike)} of {len(SEEDS)} seeds below HAR's {har_qlike:.3f}); "
    f"FinancialLSTM {np.mean(lstm_qlike):.3f} ({sum(q < har_qlike for q in lstm_qlike)} of {len(SEEDS)} below HAR)."
)

# %% [markdown]
# **What the volatility results say.** Volatility is forecastable, and the baselines are strong: the
# four-coefficient log-HAR has the lowest MSE among them, and once every model's variance level is learnt
# on the validation years it has the lowest QLIKE of the baselines too. The printed lines say, model by
# model and seed by seed, who beats it. Three habits keep this honest:
#
# * judge a network by its seed ensemble and by the count of significant seeds, never by its best seed;
# * read QLIKE after the level correction: a network trained on squared log error sits below the mean
#   variance just like the log-HAR, and the raw QLIKE column rewards or punishes that level, not skill;
# * read the model confidence set (`in_MCS`): with seven rows, one test per row finds a "winner" by luck.
#
# The best-epoch table above matters too: a model whose best epoch is the last one was still improving
# when training stopped (more epochs would likely help it, and cost time).

# %% [markdown]
# ## 5. One encoder, three horizons
# `MultiHorizonLSTM` forecasts the mean log volatility over the next 1, 5 and 22 days at once. Its output
# is a (B, 3) tensor whose columns follow `task.horizons`, so the plain MSE loss trains all horizons and the
# Trainer's `val_per_output` history is the validation loss of each horizon.
#
# > **Pitfall (erratum: MultiHorizonLSTM).** The source module returned a dict `{"horizon_1": ..., ...}`
# > that no loss of its training loop could consume. Stacking the heads into one (B, n_horizons) tensor
# > keeps every generic tool (loss, metrics, DM tests) working.

# %%
mtask = make_task("volatility", ticker="^GSPC", lookback=LOOKBACK, horizons=HORIZONS)
mbase = volatility_baselines(mtask)
multi_preds, multi_val = [], []
for seed in SEEDS:
    set_seed(seed)
    multi = MultiHorizonLSTM(len(mtask.feature_names), HIDDEN, horizons=HORIZONS)
    trainer = Trainer(
        multi,
        lr=LR,
        batch_size=BATCH,
        max_epochs=EPOCHS,
        patience=PATIENCE,
        seed=seed,
        device=device,
        progress=False,
    )
    history = trainer.fit(mtask.train.X, mtask.train.y, mtask.val.X, mtask.val.y)
    multi_preds.append(trainer.predict(mtask.test.X))
    multi_val.append(trainer.predict(mtask.val.X))
best = history["val_per_output"][trainer.best_epoch - 1]
print(
    f"seed {seed}, validation MSE per horizon at the best epoch ({trainer.best_epoch}):",
    {h: round(v, 4) for h, v in zip(HORIZONS, best, strict=True)},
)

horizon_mse = pd.DataFrame(
    {
        "MultiHorizonLSTM (mean of seeds)": [
            np.mean([mse(mtask.test.y[:, j], p[:, j]) for p in multi_preds]) for j in range(len(HORIZONS))
        ],
        "MultiHorizonLSTM (std)": [
            np.std([mse(mtask.test.y[:, j], p[:, j]) for p in multi_preds]) for j in range(len(HORIZONS))
        ],
        **{
            name: [mse(mtask.test.y[:, j], b[:, j]) for j in range(len(HORIZONS))]
            for name, b in mbase.items()
        },
    },
    index=pd.Index(HORIZONS, name="horizon (days)"),
)
horizon_mse

# %%
fig, ax = plt.subplots(figsize=(8, 3.5))
width = 0.15
names = ["MultiHorizonLSTM (mean of seeds)", "log_har", "har", "ewma", "garch"]
for k, name in enumerate(names):
    err = horizon_mse["MultiHorizonLSTM (std)"] if k == 0 else None
    ax.bar(np.arange(len(HORIZONS)) + (k - 2) * width, horizon_mse[name], width, yerr=err, label=name)
ax.set_xticks(np.arange(len(HORIZONS)), [f"{h} day{'s' if h > 1 else ''}" for h in HORIZONS])
ax.set_xlabel("forecast horizon")
ax.set_ylabel("test MSE of log volatility")
ax.set_title("Error by horizon, S&P 500 test years 2009-2018")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %%
multi_summary = seed_summary(
    mtask, {"MultiHorizonLSTM": multi_preds}, mbase, val_predictions={"MultiHorizonLSTM": multi_val}
)
print(verdicts(multi_summary, models=["MultiHorizonLSTM"]))
multi_summary

# %% [markdown]
# **Reading the horizons.** Errors shrink with the horizon because the mean of 5 or 22 daily Parkinson
# estimates is far less noisy than one day's. The lines above say at which horizons the multi-horizon LSTM
# beats the log-HAR, which sees 22 days of history through its monthly average while the network sees only
# a 20-day window. One encoder serving three horizons costs almost nothing extra to train; whether it buys
# accuracy is what the DM tests and the model confidence set decide.

# %% [markdown]
# ## 6. What do the attention weights look at?
# `FinancialLSTM(..., return_attention=True)` returns `{"prediction", "attention"}` where the attention
# (B, L) says how much the forecast origin (the query) draws on each day of the window: non-negative,
# summing to one over time. `FinancialGRU` returns its pooling weights the same way. Below: the
# volatility models of seed 0 on the test windows of summer 2011 (the US downgrade), and the average
# weight by lag over the whole test set.

# %%
lstm_v, gru_v = fitted["volatility", "FinancialLSTM"].eval(), fitted["volatility", "FinancialGRU"].eval()
x_test = torch.from_numpy(vtask.test.X).to(device)
with torch.no_grad():
    att_lstm = lstm_v(x_test, return_attention=True)["attention"].cpu().numpy()  # (N_test, L)
    att_gru = gru_v(x_test, return_attention=True)["attention"].cpu().numpy()
window_mask = (vtask.test.dates >= "2011-07-01") & (vtask.test.dates < "2011-09-15")
# column j of a window is lag L-1-j; flipped, column k is lag k. Every lag axis of the course runs the
# same way: lag 0 (the forecast origin) on the left, older days to the right.
att_lstm, att_gru = att_lstm[:, ::-1], att_gru[:, ::-1]
lags = np.arange(LOOKBACK)

fig, axes = plt.subplots(1, 2, figsize=(11, 5), gridspec_kw={"width_ratios": [1.3, 1]})
img = axes[0].imshow(att_lstm[window_mask], aspect="auto", cmap="viridis")
ticks = np.arange(0, LOOKBACK, 4)
axes[0].set_xticks(ticks, lags[ticks])
dates = vtask.test.dates[window_mask]
axes[0].set_yticks(np.arange(0, len(dates), 5), [d.strftime("%Y-%m-%d") for d in dates[::5]])
axes[0].set_xlabel("lag (trading days before the forecast origin; 0 = origin)")
axes[0].set_ylabel("forecast origin (test sample)")
axes[0].set_title("FinancialLSTM attention, summer 2011")
fig.colorbar(img, ax=axes[0], label="attention weight")
axes[1].plot(lags, att_lstm.mean(axis=0), "o-", label="FinancialLSTM (self-attention)")
axes[1].plot(lags, att_gru.mean(axis=0), "s-", label="FinancialGRU (additive pooling)")
axes[1].axhline(1 / LOOKBACK, color="grey", ls="--", label="uniform 1/L")
axes[1].set_xlabel("lag (trading days before the forecast origin)")
axes[1].set_ylabel("mean attention weight, test set")
axes[1].legend(fontsize=8)
plt.tight_layout()
plt.show()
print("weights sum to one:", np.allclose(att_lstm.sum(axis=1), 1, atol=1e-5))
crash = vtask.test.rows[vtask.test.dates == "2011-08-08"][0]  # the frame row of the crash day
lag_of_crash = crash - vtask.test.rows  # lag of that day in each test window (0 = origin)
holds = (lag_of_crash >= 0) & (lag_of_crash < LOOKBACK)
on_crash = att_lstm[holds, lag_of_crash[holds]].mean()
print(
    f"FinancialLSTM mean weights by lag range from {att_lstm.mean(0).min():.4f} to {att_lstm.mean(0).max():.4f} "
    f"(uniform {1 / LOOKBACK:.3f}); in the {holds.sum()} windows that hold 8 August 2011 that day gets "
    f"{on_crash:.4f} on average. GRU pooling: {att_gru.mean(0)[:5].mean():.4f} on lags 0-4, "
    f"{att_gru.mean(0)[-5:].mean():.4f} on lags {LOOKBACK - 5}-{LOOKBACK - 1}."
)

# %% [markdown]
# Read the heatmap row by row: each row is one forecast, each column one day of its window. Compare the
# printed range of the mean weights with the uniform $1/L$: weights close to it mean the model draws
# mostly on the residual path (the last LSTM state) and uses attention as a gentle re-weighting. A
# pattern to look for is a diagonal: a day such as the crash of 8 August 2011 getting extra weight in
# every window that contains it (the printed average against $1/L$), moving one lag to the right (one
# day older) each day. The last number compares the GRU's pooling on the newest and the oldest days.
#
# Attention weights say where the model *looked*, not *why*: they weight LSTM states that already mix the
# past, so a weight on lag 10 is a weight on "the state at lag 10", which has read every earlier day of
# the window. Treat them as a diagnostic (does the model use the window? does its focus shift in a
# crisis?) rather than as an explanation.

# %% [markdown]
# ## Exercises
# Exercise 1 was in section 1. The next three use the models and results above.

# %% [markdown]
# ### Exercise 2 (3 points): spot the bug
# `BatchMixingAttentionLSTM` (section 3) is the source module's attention bug. Write a class
# `FixedAttentionLSTM` with the same constructor arguments `(input_size, hidden_size, num_heads=2)` that
# keeps the LSTM -> multi-head attention -> linear head design but makes each sample's forecast
# independent of the rest of its batch. Then create `fixed_model = FixedAttentionLSTM(4, HIDDEN)`.


# %%
# SOLUTION
class FixedAttentionLSTM(BatchMixingAttentionLSTM):
    def __init__(self, input_size, hidden_size, num_heads=2):
        super().__init__(input_size, hidden_size, num_heads)
        self.attention = nn.MultiheadAttention(hidden_size, num_heads, batch_first=True)


fixed_model = FixedAttentionLSTM(4, HIDDEN)

# %%
# SELF-CHECK
_x = torch.from_numpy(vtask.test.X[:6])
assert fixed_model(_x).shape == (6, 1), "the forecast must have shape (B, 1)"
assert any(isinstance(m, nn.MultiheadAttention) for m in fixed_model.modules()), (
    "keep the multi-head attention: fix it, do not remove it"
)
assert batch_coupling(fixed_model, _x) < 1e-6, (
    "sample 0 still moves when sample 1 changes: the attention still reads (B, L, H) as (L, B, H)"
)
assert batch_coupling(FixedAttentionLSTM(4, 8, num_heads=4), _x) < 1e-6, "fails for another width/head count"
print("Exercise 2 passed")

# %% [markdown]
# ### Exercise 3 (2 points): what does the last step of a bidirectional LSTM see?
# For the bidirectional `nn.LSTM` `bilstm` above (hidden size `HIDDEN`, outputs (B, L, 2H): forward half
# first), use `input_support(fn, x)` on `probe_x` to compute two boolean NumPy arrays of length
# `LOOKBACK`: `seen_forward`, the input steps that the **forward** half of the last output step
# `out[:, -1, :HIDDEN]` depends on, and `seen_backward`, the same for the **backward** half
# `out[:, -1, HIDDEN:]`.

# %%
# SOLUTION
seen_forward = input_support(lambda x: bilstm(x)[0][:, -1, :HIDDEN], probe_x).numpy()
seen_backward = input_support(lambda x: bilstm(x)[0][:, -1, HIDDEN:], probe_x).numpy()

# %%
# SELF-CHECK
assert np.asarray(seen_forward).shape == (LOOKBACK,) and np.asarray(seen_backward).shape == (LOOKBACK,), (
    "both answers must be boolean arrays with one entry per input step"
)
assert np.asarray(seen_forward).all(), "the forward half at the last step has read every input step"
assert np.asarray(seen_backward).sum() == 1 and bool(np.asarray(seen_backward)[-1]), (
    "the backward half starts at the end of the window: at the last step it has read one input only"
)
print("Exercise 3 passed: pooling out[:, -1] throws away what the backward half learned about the window")

# %% [markdown]
# ### Exercise 4 (2 points): does the best return model beat the historical mean?
# From `predictions["returns"]`, pick the model whose **seed-averaged** test forecast has the lowest MSE
# and store its name in `best_return_model`. Compute its out-of-sample $R^2$ against the historical-mean
# baseline `rbase["hist_mean"]` with `r2_oos`, as `best_r2`, and set `beats_hist_mean` to `True` only if
# it is positive **and** its Diebold-Mariano test against the historical mean has a p-value below 0.05.

# %%
# SOLUTION
_avg = averaged("returns")
best_return_model = min(_avg, key=lambda n: mse(rtask.test.y, _avg[n]))
best_r2 = r2_oos(rtask.test.y[:, 0], _avg[best_return_model][:, 0], rbase["hist_mean"][:, 0])
_dm = diebold_mariano(rtask.test.y[:, 0], _avg[best_return_model][:, 0], rbase["hist_mean"][:, 0])
beats_hist_mean = bool(best_r2 > 0 and _dm.pvalue < 0.05)

# %%
# SELF-CHECK
# the library's results table scores the same forecasts: their MSE and a DM test
from course_lib.evaluation import results_table

_table = results_table(
    rtask, {**averaged("returns"), "hist_mean": rbase["hist_mean"]}, benchmark="hist_mean", mcs_size=None
)
_models = _table.loc[list(predictions["returns"])]
assert best_return_model in predictions["returns"], f"pick one of {list(predictions['returns'])}"
assert best_return_model == _models["MSE"].idxmin(), (
    "pick the model whose seed-averaged forecast has the lowest MSE"
)
# R2_oos = 1 - SSE(model) / SSE(benchmark), and the ratio of the SSEs is the ratio of the MSEs
_mse_ratio = _models.loc[best_return_model, "MSE"] / _table.loc["hist_mean", "MSE"]
assert abs(best_r2 - (1 - _mse_ratio)) < 1e-6, (
    "compute r2_oos(y, prediction, rbase['hist_mean']) on the test split, next-day column"
)
assert isinstance(beats_hist_mean, bool | np.bool_), "beats_hist_mean should be True or False"
_significant = _models.loc[best_return_model, "DM_p"] < 0.05
assert beats_hist_mean == bool(best_r2 > 0 and _significant), (
    "a win needs a positive R2_oos AND a significant DM test"
)
print(
    f"Exercise 4 passed: {best_return_model}, R2_oos = {best_r2:.4f}, beats the historical mean: {beats_hist_mean}"
)

# %% [markdown]
# ## Summary
#
# * An LSTM keeps an additive cell state guarded by input, forget and output gates; a GRU does the same
#   job with two gates and one state. Our from-scratch cell matches `nn.LSTM` to float64 precision.
# * On **daily returns** expect the zero forecast and the historical mean to be hard to beat on the
#   2009-2018 test years; the printed verdicts say whether any network did.
# * On **volatility** the baselines are strong, the log-HAR (four coefficients fitted by least squares)
#   most of all. Judge a network by its seed ensemble, by how many seeds are significantly better or
#   worse (Newey-West DM), by QLIKE after the validation-learnt level correction as well as by MSE, and by
#   the model confidence set; the verdicts of this chapter are printed from those tables.
# * Attention weights are a diagnostic of where a model looks, not an explanation.
# * Two silent bugs to remember: attention that forgets `batch_first=True` mixes the samples of a batch
#   (check with `batch_coupling`); the last step of a bidirectional LSTM has a backward half that has seen
#   one input, and its per-step outputs look ahead (check with `future_gradient`).

# %%
print(f"notebook ran in {time.perf_counter() - notebook_start:.0f} s")
