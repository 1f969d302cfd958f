# %% [markdown]
# # Chapter 8: Capstone, one leaderboard for every model family
#
# Seven chapters built recurrent, attention, convolutional, hybrid, Bayesian and continuous-time
# networks, each on its own small task. The capstone puts them on **one fixed task**, with one
# protocol, one set of baselines and one set of tests, so that a number here means the same thing
# for every model, and can be compared with what the libraries practitioners use measured on the
# very same task. Then it asks what a better forecast is worth: in a volatility-targeted portfolio
# and in a Value-at-Risk backtest.
#
# **Learning objectives.** After this chapter you can
#
# 1. build the capstone task with its leakage guarantees (split by target date, training statistics
#    only) and say why QLIKE, not MSE, ranks volatility forecasts;
# 2. put any model, the course's or your own, on the leaderboard with one call, trained for several
#    seeds, beside EWMA, GARCH, HAR, log-HAR and the random walk;
# 3. read the table as a quant would: the level correction and where it is learnt, Diebold-Mariano
#    tests against the benchmark the course's rule picks (the strongest classical baseline on
#    validation) with a Newey-West variance, seeds that beat it, and the model confidence set (not one
#    test per row); pick the best model on validation, not on the test years;
# 4. combine forecasts with weights learnt on validation only;
# 5. turn a volatility forecast into a volatility-targeted portfolio and price it after trading costs
#    (Sharpe ratio, certainty equivalent, the fee an investor would pay to switch forecasts), and into
#    a 1% VaR (Gaussian, Student-t, filtered historical simulation) backtested with Kupiec's and
#    Christoffersen's tests; and say why the forecast best on QLIKE need not be the best VaR.
#
# **This notebook runs a CPU-budget subset by default** (two families through the Trainer, plus the
# foundation model and deep Koopman on their own protocols; two seeds, small sizes, a few epochs),
# from the same code as the full table: `make leaderboard` trains every family for five seeds and
# writes `docs/leaderboard.md`. Numbers below are those of the subset.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display
from torch import nn

from course_lib import capstone as cap
from course_lib import get_device, set_seed
from course_lib.capstone.holdout import holdout_sentences, load_holdout
from course_lib.evaluation import (
    correction_reversals,
    correction_variants,
    level_shift,
    loss_series,
    standard_baselines,
    volatility_baselines,
)
from course_lib.models.common import check_window, keeps_config

# %% [markdown]
# ## Parameters
# Every size of the chapter lives here. The defaults fit the notebook's CPU budget (about a minute);
# `make leaderboard` uses `size="full"`, five seeds, 20 epochs, both losses and every family of
# `cap.MODELS`.

# %%
MODELS = (("GRU", "mse"), ("TCN", "mse"), ("TCN", "qlike"))  # (family, training loss); all: cap.MODELS
SEEDS = (0, 1)
SIZE = "small"  # "small" or "full" (cap.MODELS)
EPOCHS = 8
BATCH_SIZE = 256
PRETRAIN_STEPS = 500  # the foundation model's pretraining (chapter 06b's default)
FINETUNE_STEPS = 100  # and its fine-tuning on the S&P 500's training years
KOOPMAN_EPOCHS = 30  # deep Koopman (chapter 06e's default)
COMBINE = 3  # forecasts combined (chosen and weighted on validation)
TARGET_VOL = 10.0  # volatility target, percent a year
COSTS_BP = (0, 5, 10)  # proportional trading costs, basis points per unit of weight traded
RISK_AVERSION = 10.0  # the mean-variance investor's gamma
BOOT_REPS = 500  # block-bootstrap resamples for the intervals of the Sharpe ratio and the fee
VAR_LEVEL = 0.01

device = get_device()
torch.set_num_threads(1)  # small models on a busy CPU: one thread is faster
set_seed(0)
pd.set_option("display.width", 160)
pd.set_option("display.max_columns", 20)
print(f"device: {device}")

# %% [markdown]
# ## The task, and why QLIKE
#
# The target is tomorrow's log Parkinson volatility,
# $v_t = \log\sqrt{\ln(H_t/L_t)^2 / (4\ln 2)}$ (in log percent), from the S&P 500 data of the `arch`
# package. The inputs are the last 60 days of $[r_t, v_t, \Delta\log \text{volume}_t]$, z-scored with
# the statistics of the training rows. The splits go by the date of the **target**: train up to
# 2006, validation 2007-2008 (the crisis), test 2009-01-02 to 2018-12-31.
#
# A forecast $\hat v$ is scored on variances, $h = e^{2\hat v}$ against the proxy $s^2 = e^{2 v}$:
#
# $$\text{QLIKE}(s^2, h) = \frac{s^2}{h} - \log\frac{s^2}{h} - 1 \;\ge 0,$$
#
# zero for a perfect forecast. Patton (2011) characterised the class of losses that rank forecasts
# the same way whichever noisy, conditionally unbiased proxy of the variance you use; MSE on variances
# and QLIKE are its best-known members (QLIKE is the one that depends on $s^2/h$ alone), and MSE on log
# volatility is not in it. QLIKE
# also punishes an under-forecast (a calm forecast before a storm) far more than an over-forecast,
# which is what a risk manager wants. A network trained with MSE on $v$ forecasts
# $E[\log s]$, and $e^{2 E \log s} < E s^2$ (Jensen): its variance is too low. The **level
# correction** multiplies the variance by $c = \text{mean}(s^2/h)$, the QLIKE-optimal constant. Where
# $c$ is learnt decides rankings, so the course learns it three ways and shows them side by side:
# not at all, on the validation years (here the 2008 crisis), and **causally**: at each test day from
# the errors already known that day (an expanding window, no look-ahead). Tables rank on the causal
# one, and report both the raw and the corrected QLIKE.

# %%
task = cap.capstone_task()
test_days = cap.target_dates(task, "test")
print(task)
print(f"test targets: {len(task.test)} from {test_days[0].date()} to {test_days[-1].date()}")
assert len(task.test) == cap.N_TEST

# %% [markdown]
# The baselines' forecasts are made without look-ahead and fitted on the training years only. The
# libraries practitioners use measured EWMA, GARCH and the random walk on this task too (their
# forecasts carry no level adjustment); ours, without the course's training-set debias, are:

# %%
y_test = task.test.y[:, 0]
raw = volatility_baselines(task, "test", debias=False)
ours = {
    "EWMA": loss_series(y_test, raw["ewma"][:, 0], "qlike").mean(),
    "GARCH(1,1)": loss_series(y_test, raw["garch"][:, 0], "qlike").mean(),
    "HAR": loss_series(y_test, raw["har"][:, 0], "qlike").mean(),
    "random walk": loss_series(y_test, cap.random_walk(task, "test")[:, 0], "qlike").mean(),
}
check = pd.DataFrame({"course_lib": ours, "other libraries": {k: cap.OUTSIDE[k] for k in ours}})
print(check.round(3))
for k in ("EWMA", "GARCH(1,1)", "random walk"):
    print(f"{k}: {ours[k]:.3f} here, {cap.OUTSIDE[k]} outside")
print(
    f"HAR: {ours['HAR']:.3f} here against {cap.OUTSIDE['HAR']} outside: the course's HAR regresses the "
    "Parkinson variance itself (arch's HARX), so its variance forecast is not pulled down by Jensen's gap."
)

# %% [markdown]
# ## The leaderboard
#
# `cap.train_entry` trains a model of `cap.MODELS` for each seed with the course's `Trainer` (early
# stopping on validation) and keeps its validation and test forecasts. The training loss is part of
# the model: MSE on $v$ (the chapters' default), or QLIKE itself (`loss="qlike"`,
# `cap.qlike_loss`: $\text{mean}(e^{u} - u - 1)$ with $u = 2(y - \hat v)$), whose minimiser is
# $\log E[s^2]$, so the Jensen gap never opens. `cap.leaderboard` scores every entry beside the baselines and a combination. Each row is a model; the numbers are
# means over seeds and their spread, the tests are those of the **seed ensemble** (the mean forecast
# over seeds).

# %%
entries = [
    cap.train_entry(
        name,
        task,
        seeds=SEEDS,
        size=SIZE,
        max_epochs=EPOCHS,
        batch_size=BATCH_SIZE,
        device=device,
        loss=loss,
        name=name if loss == "mse" else f"{name}-{loss}",
    )
    for name, loss in MODELS
]

# %% [markdown]
# Two families do not fit the Trainer's "window in, target out" loop, and keep the protocol of their
# chapter. `cap.foundation_entries` pretrains chapter 06b's patch model on a corpus that **never
# holds the S&P 500** and stops at the end of 2006, forecasts from the same 60 days of $v$
# (**zero-shot**), then fine-tunes a copy on the S&P 500's training years (**fine-tuned**).
# `cap.koopman_entry` trains chapter 06e's deep Koopman model on its own losses (reconstruction,
# linear latent dynamics, multi-step prediction) over a 22-day delay embedding of $v$. The TFT, which
# forecasts quantiles, is in `make leaderboard` (its pinball loss, its median scored).

# %%
entries += cap.foundation_entries(task, SEEDS, pretrain_steps=PRETRAIN_STEPS, finetune_steps=FINETUNE_STEPS)
entries.append(cap.koopman_entry(task, SEEDS, epochs=KOOPMAN_EPOCHS))
print(", ".join(f"{e.name} ({e.family}, {e.params} parameters, {e.seconds:.1f} s a seed)" for e in entries))

# %%
table = cap.leaderboard(task, entries, combine=COMBINE)
bench = table.attrs["benchmark"]
print(table.columns.name)
print(f"benchmark: {bench}, the classical baseline with the lowest validation QLIKE at its best level")
show = ["family", "params", "seconds", "QLIKE", "QLIKE sd", "QLIKE_lc", "QLIKE_lc sd", "MSE", "ens DM_QLIKE"]
view = table[[*show, "ens p_QLIKE", "better QLIKE (p<0.05)", "in_MCS"]].round(3)
view["params"] = view["params"].astype("Int64")  # a parameter count is a whole number
# Cells left empty by design, and why: the table has no other empty cell (checked).
EMPTY_BECAUSE = {
    "params": "nothing is trained",
    "seconds": "nothing is trained",
    "ens DM_QLIKE": f"{bench} is the benchmark these tests compare with",
    "ens p_QLIKE": f"{bench} is the benchmark these tests compare with",
}
empty = {col: list(view.index[view[col].isna()]) for col in view.columns if view[col].isna().any()}
assert set(empty) <= set(EMPTY_BECAUSE), (
    f"empty cells without a reason: {sorted(set(empty) - set(EMPTY_BECAUSE))}"
)
display(view.style.format(precision=3, na_rep=""))
print(
    "Empty cells: "
    + "; ".join(f"{col} for {', '.join(rows)} ({EMPTY_BECAUSE[col]})" for col, rows in empty.items())
    + "."
)

# %% mystnb={"image": {"alt": "The leaderboard as two dot plots, one row per model, sorted: the mean test QLIKE over seeds with a bar of one standard deviation, members of the model confidence set filled, and a dashed line at the benchmark; raw QLIKE on the left, level-corrected on the right; lower is better"}}
fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
cap.plot_leaderboard(table, axes[0], "QLIKE")
cap.plot_leaderboard(table, axes[1], "QLIKE_lc")
axes[1].set_title("after the causal level correction")
fig.tight_layout()
plt.show()

# %% [markdown]
# ### What wins, and by how much
# Printed from the table (the subset of this notebook; `docs/leaderboard.md` has the full run).

# %%
nets = table[~table["family"].isin(["baseline", "combination"])]
b = table.loc[bench]
print(f"model confidence set (90%, corrected QLIKE): {', '.join(table.index[table['in_MCS'].astype(bool)])}")
chosen, val_scores = cap.validation_choice(task, entries)
c = table.loc[chosen]
print(
    f"chosen on validation (lowest validation QLIKE at its best level): {chosen}; test corrected QLIKE "
    f"{c['QLIKE_lc']:.3f} against {bench} {b['QLIKE_lc']:.3f}, seed-ensemble DM {c['ens DM_QLIKE']:+.2f} "
    f"(p = {c['ens p_QLIKE']:.3f}); the MCS {'keeps' if c['in_MCS'] else 'drops'} it."
)
for col, label in (("QLIKE", "raw"), ("QLIKE_lc", "corrected")):
    best = nets[col].idxmin()
    gap = 100 * (nets.loc[best, col] / b[col] - 1)
    print(
        f"in hindsight, lowest {label} QLIKE of a network: {best} {nets.loc[best, col]:.3f} (sd "
        f"{nets.loc[best, col + ' sd']:.3f}) against {bench} {b[col]:.3f}: {gap:+.1f}%; best row overall: "
        f"{table[col].idxmin()}."
    )
for name in nets.index:
    r = nets.loc[name]
    print(
        f"{name}: seed ensemble vs {bench} DM = {r['ens DM_QLIKE']:.2f} (p = {r['ens p_QLIKE']:.3f}); "
        f"seeds significantly better than {bench}: {r['better QLIKE (p<0.05)']}; the MCS "
        f"{'keeps' if r['in_MCS'] else 'drops'} it."
    )
for name, loss in MODELS:
    if loss != "mse" and name in nets.index:
        a, b = nets.loc[name], nets.loc[f"{name}-{loss}"]
        print(
            f"{name} trained on {loss.upper()} instead of MSE: raw QLIKE {b['QLIKE']:.3f} vs {a['QLIKE']:.3f}, "
            f"corrected {b['QLIKE_lc']:.3f} vs {a['QLIKE_lc']:.3f}."
        )
print(
    f"The hindsight rows are picked on the test years themselves, so they flatter the winner; the pick a "
    f"forecaster could have made is {chosen}, chosen on validation"
    + (
        ", and it is also the hindsight winner."
        if chosen == nets["QLIKE_lc"].idxmin()
        else ", and it is not the hindsight winner."
    )
)

# %% [markdown]
# ### One family, several verdicts
# The same architecture gets a verdict in its own chapter (each chapter's comparison at its committed
# full budget: chapters 01 to 04, 06a, 06c and 06e), in this notebook's subset and on the full board, each under its own settings. The table puts them side by side with the settings that differ
# (window, features, model size, epochs, seeds, training loss, correction, benchmark), and the sentences under it
# say where a verdict flips and why. The full board is read from the run `make leaderboard` committed.

# %%
board = cap.committed_board()
shared = [name for name in nets.index if name in board.index]
rows = cap.board_rows(
    table, "this notebook", {n: n for n in shared}, window=cap.LOOKBACK, features=len(cap.FEATURES),
    size=SIZE, epochs=f"<= {EPOCHS}", seeds=len(SEEDS), loss="", correction="causal",
)  # fmt: skip
rows += cap.board_rows(
    board, "full board", {n: n for n in shared}, window=cap.LOOKBACK, features=len(cap.FEATURES),
    size="full", epochs="<= 20", seeds=5, loss="", correction="causal",
)  # fmt: skip
# each chapter's own comparison at its committed full budget (docs/reference/), beside the board
in_chapters = {
    "01": {"LSTM": "FinancialLSTM", "GRU": "FinancialGRU"},
    "02": {"Transformer": "Transformer"},
    "03": {"TCN": "TCN", "WaveNet": "WaveNet", "LSTM": "LSTM"},
    "04": {"CNN-LSTM": "CNN-LSTM", "AttentionLSTM": "AttentionLSTM", "LSTM": "LSTM"},
    "06a": {"S4D": "S4D", "Mamba": "Mamba", "TCN": "TCN", "LSTM": "LSTM, 20 days"},
    "06c": {"NeuralODE": "NeuralODE"},
    "06e": {"DeepKoopman": "DeepKoopman"},
}
boarded = set(shared)  # families whose full-board row is in already
for chapter, families in in_chapters.items():
    table_name = "0% removed" if chapter == "06c" else None  # 06c: the complete daily series
    rows += cap.chapter_rows(chapter, families, table=table_name, horizon=1 if chapter == "06e" else None)
    fresh = {f: f for f in families if f not in boarded}
    boarded |= set(fresh)
    rows += cap.board_rows(
        board, "full board", fresh, window=cap.LOOKBACK, features=len(cap.FEATURES), size="full",
        epochs="<= 20", seeds=5, loss="", correction="causal",
    )  # fmt: skip
for r in rows:  # the loss is part of the row's name: NAME (MSE), NAME-qlike, or a family's own objective
    own = r["family"].startswith("Foundation") or r["family"] == "DeepKoopman"
    r["loss"] = "own" if own else "qlike" if r["family"].endswith("-qlike") else "mse"
reconciled = cap.reconciliation(rows).sort_index(level="family", sort_remaining=False)
display(reconciled.round(3))
print(cap.flips(reconciled))

# %% [markdown]
# > **Pitfall (one test per row)** A table of twenty models with a DM test each will show a "winner"
# > at 5% by chance about once. The model confidence set (Hansen, Lunde and Nason, 2011, via
# > `arch.bootstrap.MCS`) answers the question the table is read for, *which models cannot be told
# > apart from the best?*, with the search over rows accounted for. Below: how many rows a DM test
# > calls different from the benchmark, against the size of the set.

# %%
different = int((table["ens p_QLIKE"] < 0.05).sum())
print(
    f"{different} of {len(table) - 1} rows differ from {bench} at 5% one test at a time; the 90% MCS keeps "
    f"{int(table['in_MCS'].sum())} of {len(table)} rows."
)

# %% [markdown]
# > **Pitfall (a correction learnt on the test years)** The level correction is one number per model.
# > Learnt on the test years it is look-ahead, and it flatters every model. Learnt on 2007-2008 it is
# > honest, and it can *hurt*: a shift fitted on the crisis lifts the variance of the calm years after.
# > Learnt causally, from the errors known at each test day, it is honest and follows the level of the
# > years it forecasts. The three variants, each model's factor and the verdicts that change:

# %%
name = nets["QLIKE_lc"].idxmin()
entry = next(e for e in entries if e.name == name)
p_test, p_val = np.mean(entry.test, axis=0), np.mean(entry.val, axis=0)
honest = p_test + level_shift(task.val.y, p_val)
leaky = p_test + level_shift(task.test.y, p_test)  # WRONG: the test targets choose the shift
q_honest = loss_series(y_test, honest[:, 0], "qlike").mean()
q_leaky = loss_series(y_test, leaky[:, 0], "qlike").mean()
print(f"{name} seed ensemble: corrected on validation {q_honest:.3f}, 'corrected' on test {q_leaky:.3f}")
assert q_leaky <= q_honest + 1e-12  # the test-set shift is the QLIKE-optimal one in hindsight
variants = correction_variants(task, {e.name: e.test for e in entries}, {e.name: e.val for e in entries})
display(variants.round(3))
print(correction_reversals(variants))

# %% [markdown]
# ### The sealed hold-out: do the verdicts travel?
# Every chapter and this board read the same S&P 500 test decade, so the board's ranking is partly a
# ranking of what was tried on it. `make holdout` takes each recipe of the board (architecture, size,
# budget, MSE loss, the causal correction, the benchmark rule) unchanged and re-fits it, once, on four
# assets it was never tuned on: the NASDAQ Composite (test 2009-2018) and AAPL, MSFT and IBM (test 2009
# to the end of their packaged history in 2013), three seeds each. Each asset gets its own benchmark by
# the rule. Two *pooled* rows train one model per seed on the training years of all five assets at once
# (each asset z-scored on its own training rows), the recipe that the cross-asset literature credits
# with beating HAR out of sample (Zhang, Zohren and Roberts, 2022). The S&P 500 column is the board
# re-scored on the same three seeds with the pooled rows added. The committed run is read here, not
# recomputed: `docs/holdout.md` has its command, machine and run time.

# %%
holdout_table, holdout_rho, holdout_bench = load_holdout()
display(holdout_table.round(3))
print(holdout_sentences(holdout_table, holdout_rho, holdout_bench))

# %%
recipes = [r for r in holdout_table.index if r in cap.MODELS or r.endswith("(pooled)")]
sp_verdict = holdout_table[("^GSPC", "verdict")]
winners = [r for r in recipes if sp_verdict[r] == "better"]
still = {
    a: [r for r in winners if holdout_table.loc[r, (a, "verdict")] == "better"] for a in holdout_rho.index
}
print(
    f"{len(winners)} of {len(recipes)} recipes beat the S&P 500 benchmark. On the hold-out assets "
    + "; ".join(f"{a}: {len(w)} still do ({', '.join(w) or 'none'})" for a, w in still.items())
    + f". Mean rank correlation with the S&P 500 board {holdout_rho['rho'].mean():+.2f}: "
    + (
        "the ordering of the recipes travels, their significant wins mostly do not."
        if holdout_rho["rho"].mean() > 0.5 and np.mean([len(w) for w in still.values()]) < len(winners) / 2
        else "the ordering and the wins travel together."
        if holdout_rho["rho"].mean() > 0.5
        else "neither the ordering nor the wins travel."
    )
)
for pooled_row in [r for r in recipes if r.endswith("(pooled)")]:
    alone = pooled_row.removesuffix(" (pooled)")
    q = holdout_table.xs("QLIKE_lc", axis=1, level=1).loc[[pooled_row, alone]]
    lower = [a for a in q.columns if q.loc[pooled_row, a] < q.loc[alone, a]]
    print(
        f"{pooled_row}: lower corrected QLIKE than the per-asset {alone} on {len(lower)} of {q.shape[1]} assets "
        f"({', '.join(lower) or 'none'}); "
        + (
            "pooling helps this recipe at this budget."
            if len(lower) > q.shape[1] / 2
            else "pooling does not help this recipe at this budget (the same epochs over five times the data, "
            "one model for assets whose volatility levels differ)."
        )
    )

# %% [markdown]
# The hold-out is a test of the protocol, not only of the models: a verdict that holds on the S&P 500
# and on none of four related assets is a statement about one test decade. The ranking is the more
# robust reading; a claim that a family *beats HAR* needs the hold-out behind it.

# %% [markdown]
# ### A forecast combination
# The `COMBINE` models (not baselines) with the lowest corrected QLIKE on **validation** are combined, with weights on
# the simplex that minimise the validation QLIKE of the corrected combination
# (`cap.combination_weights`). Neither the choice nor the weights see 2009-2018.

# %%
weights = table.attrs["weights"]
if weights is None:
    print("the validation optimum puts all weight on one model: no combination row")
else:
    print("weights learnt on 2007-2008:", ", ".join(f"{k} {w:.2f}" for k, w in weights.items()))
    c = table.loc["combination"]
    print(
        f"combination: corrected QLIKE {table.loc['combination', 'QLIKE_lc']:.3f} vs {bench} {b['QLIKE_lc']:.3f}; "
        f"in the MCS: {bool(table.loc['combination', 'in_MCS'])}"
    )

# %% [markdown]
# ## The economic reading
#
# **Volatility targeting** holds $w_t = \sigma^* / \hat\sigma_{t+1}$ of the index (with a leverage cap), so
# that the portfolio's volatility stays near the target $\sigma^*$ (10% a year here). Parkinson
# volatility misses the overnight move, so $\hat\sigma$ is first rescaled to the return's scale by one
# factor $k$ learnt on validation. Trading costs are proportional to the weight traded: on day $t+1$
# the portfolio earns $w_t R_{t+1} - c\,|w_t - w_{t-1}|$, with the costs $c$ of `COSTS_BP`. Three
# readings of that return (there is no risk-free rate in the data, so returns count as excess returns):
#
# * the annualised **Sharpe ratio** $\sqrt{252}\,\bar r_p / s(r_p)$;
# * the **certainty equivalent** of a mean-variance investor with risk aversion $\gamma$,
#   $\text{CE} = 252\,[\bar r_p - \tfrac{\gamma}{2}\,\text{var}(r_p)]$: the sure return they would
#   accept instead of the portfolio;
# * the **performance fee** $\Delta$ of Fleming, Kirby and Ostdiek (2001): what that investor would pay
#   each year to hold the model's portfolio instead of the benchmark forecast's, the $\Delta$ with
#   $\sum_t u(r_{\text{model},t} - \Delta) = \sum_t u(r_{\text{bench},t})$ for their quadratic utility
#   $u(r) = r - \tfrac{\gamma}{2} r^2$ (a quadratic equation in $\Delta$, solved in closed form).
#
# Ten years of daily returns pin a Sharpe ratio down only loosely, so every Sharpe ratio and fee comes
# with a 95% moving-block bootstrap interval (blocks of a trading month, both portfolios resampled on
# the same days).

# %%
econ = cap.economic_table(
    task,
    table,
    entries,
    target=TARGET_VOL,
    costs_bp=COSTS_BP,
    gamma=RISK_AVERSION,
    alpha=VAR_LEVEL,
    reps=BOOT_REPS,
)
bench = econ.attrs["benchmark"]
c0, c1 = f"{COSTS_BP[0]:g}bp", f"{COSTS_BP[-1]:g}bp"
value = econ[
    ["vt realised vol", "vt turnover"] + [f"{s} {c:g}bp" for s in ("Sharpe", "CE", "fee") for c in COSTS_BP]
]
print(value.astype(float).round(2))
print(
    econ[[f"{s} {c} {e}" for s in ("Sharpe", "fee") for c in (c0, c1) for e in ("lo", "hi")]]
    .astype(float)
    .round(2)
)

# %%
others = econ.drop(index=bench)
top_fee = others[f"fee {c0}"].astype(float).idxmax()
paid = [n for n in others.index if econ.loc[n, f"fee {c0} lo"] > 0]
print(
    f"Before costs the Sharpe ratios run from {econ[f'Sharpe {c0}'].min():.2f} to {econ[f'Sharpe {c0}'].max():.2f}, "
    f"each with an interval about {(econ[f'Sharpe {c0} hi'] - econ[f'Sharpe {c0} lo']).mean():.1f} wide. The largest fee "
    f"against {bench} is {top_fee}'s, {econ.loc[top_fee, f'fee {c0}']:.0f} bp a year (interval "
    f"{econ.loc[top_fee, f'fee {c0} lo']:.0f} to {econ.loc[top_fee, f'fee {c0} hi']:.0f}); "
    + (
        f"{', '.join(paid)} earn a fee whose interval lies above zero."
        if paid
        else "no forecast's interval lies above zero: ten years cannot tell these portfolios apart for a "
        "mean-variance investor, however clear the QLIKE ranking."
    )
)
nets_econ = econ.loc[[n for n in econ.index if n in nets.index]]
ratio = nets_econ["vt turnover"].mean() / econ.loc[bench, "vt turnover"]
print(
    f"The networks trade {ratio:.1f} times as much as {bench} (mean daily turnover "
    f"{nets_econ['vt turnover'].mean():.3f} against {econ.loc[bench, 'vt turnover']:.3f}); at {c1} per unit "
    f"traded their fees move from {nets_econ[f'fee {c0}'].min():.0f}..{nets_econ[f'fee {c0}'].max():.0f} to "
    f"{nets_econ[f'fee {c1}'].min():.0f}..{nets_econ[f'fee {c1}'].max():.0f} bp a year, and "
    f"{int((nets_econ[f'fee {c1}'] > 0).sum())} of {len(nets_econ)} remain positive: a forecast that moves "
    "more from day to day pays for it in trading."
)

# %% [markdown]
# ### Where the return scale is learnt
# Every reading above puts the Parkinson forecast on the return's scale with one factor $k$ learnt on
# validation, the crisis years, so each portfolio aims at 10% with a scale fitted to 2007-2008. As with
# the level correction, $k$ can be learnt not at all ($k = 1$) or causally (at each test day from the
# returns already known). Realised volatility of the 10% target and the Gaussian VaR's breach rate under
# each:

# %%
base_test, base_val = standard_baselines(task, "test", "frozen"), standard_baselines(task, "val", "frozen")
scales = cap.scale_variants(
    task,
    {e.name: (np.mean(e.test, axis=0), np.mean(e.val, axis=0)) for e in entries}
    | {n: (base_test[n], base_val[n]) for n in ("har", "garch")},
    target=TARGET_VOL,
    alpha=VAR_LEVEL,
)
display(scales.round(3))
vt = scales["vt realised vol"]
closest = (vt - TARGET_VOL).abs().mean().idxmin()
print(
    f"Mean realised volatility for a {TARGET_VOL:.0f}% target: "
    + ", ".join(f"{s} {vt[s].mean():.1f}%" for s in vt.columns)
    + f"; the {closest} scale comes closest. Gaussian VaR breach rate (nominal {VAR_LEVEL:.0%}): "
    + ", ".join(f"{s} {scales['VaR rate'][s].mean():.2%}" for s in vt.columns)
    + ". A scale learnt on the crisis makes every portfolio undershoot its target and every VaR look "
    "conservative; learnt causally it follows the calm years, and the VaR's breaches show the tails the "
    "Gaussian quantile misses."
)

# %% [markdown]
# ### Three Values at Risk, and what QLIKE does not see
#
# A 1% VaR is $\text{VaR}_{t+1} = -q_{0.01}\,k\,\hat\sigma_{t+1}$, with $q_{0.01}$ the 1% quantile of
# the standardised shock $z = r / (k\hat\sigma)$, from one of three models fitted on the validation
# years' shocks: **Gaussian** ($q = \Phi^{-1}(0.01) = -2.33$); **Student-t** with unit variance,
# $q = t_\nu^{-1}(0.01)\sqrt{(\nu-2)/\nu}$, $\nu$ by maximum likelihood; **filtered historical
# simulation** (FHS: the empirical 1% quantile of the shocks, so the forecast filters the returns and
# history supplies the tail; the validation years are short, so that quantile rests on a handful of
# shocks, printed below).
# A good VaR is breached on 1% of days (Kupiec's proportion-of-failures test) and the breaches do not
# come in runs (Christoffersen's independence test; both together: conditional coverage). `z rms` is
# the root mean square of the test shocks: 1 on validation by construction of $k$, and below 1 when the
# forecast ran above the realised volatility of the test years. The VaR sees each forecast times its
# one factor $k$, not the level correction the board ranks on.

# %%
var_cols = [f"{p} {k}" for p in ("VaR", "VaR-t", "VaR-FHS") for k in ("rate", "p_kupiec", "p_cc")]
var_view = (
    econ[["z rms", *var_cols, "VaR-t nu"]].astype(float).join(table["QLIKE_lc"]).sort_values("QLIKE_lc")
)
print(var_view.round(3))
print(
    f"{len(task.val)} validation shocks: the FHS {VAR_LEVEL:.0%} quantile rests on the "
    f"{int(VAR_LEVEL * len(task.val))} lowest of them."
)

# %%
top = list(var_view.index[:3])
passes = var_view["VaR p_kupiec"] >= 0.05
rho = var_view["QLIKE_lc"].corr(var_view["VaR rate"], method="spearman")
print(
    f"Best on corrected QLIKE: {', '.join(top)}. Their Gaussian VaR is breached on "
    + ", ".join(f"{100 * var_view.loc[n, 'VaR rate']:.2f}%" for n in top)
    + " of test days (Kupiec p "
    + ", ".join(f"{var_view.loc[n, 'VaR p_kupiec']:.3f}" for n in top)
    + f"): {int(passes[top].sum())} of {len(top)} pass at 5%."
)
print(
    f"The Gaussian VaR passes Kupiec for {', '.join(var_view.index[passes]) or 'no row'} (z rms "
    f"{var_view.loc[passes, 'z rms'].mean():.2f} on average) and fails for "
    f"{', '.join(var_view.index[~passes]) or 'no row'} (z rms {var_view.loc[~passes, 'z rms'].mean():.2f}); "
    f"rank correlation between corrected QLIKE and the breach rate: {rho:+.2f}."
)
mse_nets = [m for m, loss in MODELS if loss == "mse" and m in var_view.index]
for n in mse_nets:
    r = var_view.loc[n]
    print(
        f"{n} (trained on MSE): z rms {r['z rms']:.2f}, so its forecast ran {100 * abs(1 / r['z rms'] - 1):.0f}% "
        f"{'above' if r['z rms'] < 1 else 'below'} the realised volatility of the test years; Gaussian VaR "
        f"breached on {100 * r['VaR rate']:.2f}% of days (Kupiec p {r['VaR p_kupiec']:.3f})."
    )
rho_z = var_view["z rms"].corr(var_view["VaR rate"], method="spearman")
if rho <= -0.3:
    qlike_says = f"the lower the QLIKE, the more breaches (rank correlation {rho:+.2f})"
elif rho < 0.3:
    qlike_says = f"QLIKE says little about the breach rate (rank correlation {rho:+.2f})"
else:
    qlike_says = f"a lower QLIKE goes with fewer breaches (rank correlation {rho:+.2f})"
print(
    f"Across the rows, {qlike_says}; the breach rate follows z rms "
    f"{'far more closely' if abs(rho_z) > abs(rho) + 0.2 else 'about as closely'} (rank correlation {rho_z:+.2f})."
)
if rho_z > 0.5 and abs(rho_z) > abs(rho) + 0.2:
    print(
        "QLIKE scores a forecast of the conditional variance, E[r^2]; a VaR needs the 1% quantile of r, which for "
        "fat-tailed shocks lies beyond 2.33 standard deviations. A variance forecast that is right on average "
        "(z rms near 1) therefore breaches a Gaussian VaR too often, while one that overstates the volatility "
        "(z rms well below 1) passes by its bias, not by its skill: a QLIKE-optimal forecast is not a "
        "tail-quantile forecast, and a good QLIKE does not buy a good VaR."
    )
clustered = var_view.index[econ.loc[var_view.index, "VaR p_ind"].astype(float) < 0.05]
print(
    f"Christoffersen's independence test rejects at 5% for {len(clustered)} of {len(var_view)} Gaussian VaRs: "
    "breaches come in runs (a forecast that reacts a day late is breached on several days of one storm)."
)
for p, label in (("VaR-t", "Student-t"), ("VaR-FHS", "FHS")):
    ok = var_view[f"{p} p_kupiec"] >= 0.05
    repaired = [n for n in var_view.index if not passes[n] and ok[n]]
    broken = [n for n in var_view.index if passes[n] and not ok[n]]
    print(
        f"{label} VaR: {int(ok.sum())} of {len(var_view)} rows pass Kupiec (Gaussian: {int(passes.sum())}) and "
        f"{int((var_view[f'{p} p_cc'] >= 0.05).sum())} pass conditional coverage; it repairs "
        f"{', '.join(repaired) or 'no row'} and breaks {', '.join(broken) or 'no row'}"
        + (
            f" (z rms {var_view.loc[broken, 'z rms'].mean():.2f}: a fatter tail on a forecast that already ran "
            "above the realised volatility makes the VaR too wide, breached on "
            + ", ".join(f"{100 * var_view.loc[n, f'{p} rate']:.2f}%" for n in broken)
            + " of days)."
            if broken and var_view.loc[broken, "z rms"].max() < var_view["z rms"].median()
            else "."
        )
    )

# %% mystnb={"image": {"alt": "Two panels: left, one labelled point per model and VaR model, the rate of 1% VaR breaches against the corrected QLIKE, with a dashed line at the nominal 1%; right, the performance fee against the benchmark at each trading cost"}}
fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
for p, marker in (("VaR", "o"), ("VaR-t", "s"), ("VaR-FHS", "^")):
    axes[0].scatter(var_view["QLIKE_lc"], 100 * var_view[f"{p} rate"], marker=marker, label=p)
for n in var_view.index:
    axes[0].annotate(n, (var_view.loc[n, "QLIKE_lc"], 100 * var_view.loc[n, "VaR rate"]), fontsize=8)
axes[0].axhline(100 * VAR_LEVEL, color="k", ls="--", lw=0.8, label="nominal 1%")
axes[0].set_xlabel("corrected QLIKE, 2009-2018 (lower is better)")
axes[0].set_ylabel("1% VaR breaches, % of test days")
axes[0].set_title("QLIKE against the VaR backtest")
axes[0].legend(fontsize=8)
for n in econ.index:
    axes[1].plot(COSTS_BP, [econ.loc[n, f"fee {c:g}bp"] for c in COSTS_BP], marker="o", label=n)
axes[1].axhline(0, color="k", lw=0.8)
axes[1].set_xlabel("trading cost, bp per unit of weight traded")
axes[1].set_ylabel(f"fee against {bench}, bp a year")
axes[1].set_title(f"What a mean-variance investor (gamma {RISK_AVERSION:g}) would pay")
axes[1].legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Open questions
# 1. Does walk-forward training (chapter 07) close the gap that the crisis-year level correction
#    opens? `make leaderboard` prints both protocols side by side.
# 2. With the QLIKE loss the level correction has little left to correct: is a correction learnt on
#    a calmer validation period better for the MSE models, and what does it cost in training data?
# 3. The combination picks its members on validation: how stable are its weights across seeds?
# 4. The VaR's shock distribution rests on the 500 shocks of 2007-2008: does a quantile forecast
#    trained for the tail itself (the TFT's pinball loss, chapter 02) pass Kupiec and Christoffersen
#    where the variance forecasts fail?
# 5. The fees above are paid on every unit traded: how much of a network's advantage survives a
#    smoothed position (trade only when the target weight moves by more than a band)?

# %% [markdown]
# ## Exercises

# %% [markdown]
# ### Exercise 1 (1 point): QLIKE from log volatilities
# Write `qlike_from_logvol(v_true, v_pred)`: the mean QLIKE of log-volatility forecasts (variances
# are $e^{2v}$).


# %%
# SOLUTION
def qlike_from_logvol(v_true, v_pred):
    ratio = np.exp(2 * (np.asarray(v_true) - np.asarray(v_pred)))
    return float(np.mean(ratio - np.log(ratio) - 1))


# %%
# SELF-CHECK
rng = np.random.default_rng(0)
_v = rng.normal(0, 0.5, 500)
assert abs(qlike_from_logvol(_v, _v)) < 1e-12, "a perfect forecast has QLIKE 0"
_p = _v + rng.normal(0, 0.3, 500)
assert abs(qlike_from_logvol(_v, _p) - loss_series(_v, _p, "qlike").mean()) < 1e-9, "not the course's QLIKE"
assert qlike_from_logvol(_v, _v - 0.5) > qlike_from_logvol(_v, _v + 0.5), "under-forecasts must cost more"
print("Exercise 1 passed")

# %% [markdown]
# ### Exercise 2 (2 points): spot the bug in a level correction
# The function below is meant to correct a model's test forecasts. Find the leak and write
# `honest_correction(p_test, p_val, y_val, y_test)` that returns the corrected test forecasts using
# nothing of the test years but the forecasts themselves (it receives `y_test` only to tempt you).
#
# ```python
# def correction(p_test, p_val, y_val, y_test):
#     shift = 0.5 * np.log(np.mean(np.exp(2 * (y_test - p_test))))
#     return p_test + shift
# ```


# %%
# SOLUTION
def honest_correction(p_test, p_val, y_val, y_test):
    return p_test + 0.5 * np.log(np.mean(np.exp(2 * (y_val - p_val))))


# %%
# SELF-CHECK
_pt, _pv = np.mean(entries[0].test, axis=0)[:, 0], np.mean(entries[0].val, axis=0)[:, 0]
_a = honest_correction(_pt, _pv, task.val.y[:, 0], y_test)
_b = honest_correction(_pt, _pv, task.val.y[:, 0], y_test + rng.normal(0, 1, len(y_test)))
assert np.allclose(_a, _b), "the corrected forecasts change with the test targets: look-ahead"
assert np.allclose(_a - _pt, (_a - _pt)[0]), "a level correction is one constant shift"
_c = honest_correction(_pt, _pv, task.val.y[:, 0] + 0.2, y_test)
assert np.allclose(_c - _a, 0.2), "the shift must follow the validation errors"
print("Exercise 2 passed")

# %% [markdown]
# ### Exercise 3 (2 points): Kupiec by hand
# A 1% VaR was breached `x` times in `n` days. Write `kupiec_lr(x, n, alpha)`, the likelihood-ratio
# statistic of Kupiec's test, $-2\log\frac{(1-\alpha)^{n-x}\alpha^x}{(1-\hat\pi)^{n-x}\hat\pi^x}$ with
# $\hat\pi = x/n$ (take $0 \log 0 = 0$).


# %%
# SOLUTION
def kupiec_lr(x, n, alpha):
    pi = x / n

    def ll(p):
        return (n - x) * np.log(1 - p) + (x * np.log(p) if x > 0 else 0.0)

    return float(-2 * (ll(alpha) - ll(pi)))


# %%
# SELF-CHECK
for _x, _n in [(25, 2516), (40, 2516), (0, 500), (9, 1000)]:
    _hits = np.zeros(_n, dtype=bool)
    _hits[:_x] = True
    assert abs(kupiec_lr(_x, _n, 0.01) - cap.kupiec_test(_hits, 0.01)[0]) < 1e-8, f"x={_x}, n={_n}"
assert kupiec_lr(25, 2500, 0.01) < 1e-9, "exactly 1% breaches: nothing to reject"
print("Exercise 3 passed")

# %% [markdown]
# ### Exercise 4 (2 points): your own model on the leaderboard
# Write a model class `LastDays` (decorated with `keeps_config`, taking `input_size`, `hidden_size`
# and `output_size`) that reads only the last 5 days of the window through one linear layer after a
# ReLU layer of `hidden_size` units, and enter it with **one call** to `cap.evaluate_submission`
# (name it `"last_days"`, one seed, `max_epochs=EPOCHS`). Store the table in `my_table`.


# %%
# SOLUTION
class LastDays(nn.Module):
    @keeps_config
    def __init__(self, input_size: int, hidden_size: int = 16, output_size: int = 1):
        super().__init__()
        self.input_size = input_size
        self.net = nn.Sequential(
            nn.Linear(5 * input_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, output_size)
        )

    def forward(self, x):
        check_window(x, self.input_size, min_length=5, model="LastDays")
        return self.net(x[:, -5:].flatten(1))  # (B, 5 C) -> (B, output_size)


my_table = cap.evaluate_submission(
    lambda seed: LastDays(input_size=3), task, name="last_days", seeds=(0,), max_epochs=EPOCHS, device=device
)

# %%
# SELF-CHECK
assert "last_days" in my_table.index, "the table has no row 'last_days'"
assert {"har", "garch", "ewma", "random_walk"} <= set(my_table.index), (
    "the baselines must be beside your model"
)
_row = my_table.loc["last_days"]
assert 0 < _row["QLIKE"] < 2 and np.isfinite(_row["QLIKE_lc"]), (
    "QLIKE looks wrong: did you forecast the test split?"
)
_probe = torch.randn(4, 60, 3)
_model = LastDays(input_size=3).eval()
_later = _probe.clone()
_later[:, :-5] = 0
assert torch.allclose(_model(_probe), _model(_later)), "LastDays must read only the last 5 days"
print(
    f"Exercise 4 passed: last_days corrected QLIKE {_row['QLIKE_lc']:.3f} vs the benchmark "
    f"{my_table.attrs['benchmark']} {my_table.loc[my_table.attrs['benchmark'], 'QLIKE_lc']:.3f}"
)

# %% [markdown]
# ## Summary
#
# * One function, `cap.capstone_task()`, defines the task for every model: split by target date,
#   scaler on training rows only; its baselines reproduce the outside EWMA, GARCH and random-walk
#   numbers.
# * One call puts a model on the leaderboard: `cap.evaluate_submission(model_or_forecasts)`; the
#   table gives raw and corrected QLIKE with the seed spread, DM against the benchmark the course's
#   rule picks on validation with a Newey-West variance, the seeds that beat it,
#   and the model confidence set.
# * The training loss matters as much as the architecture: the printed comparison above shows the
#   same TCN trained on QLIKE against MSE, on the loss the leaderboard ranks by.
# * The level correction is never learnt on the test years' future: not at all, on validation, or
#   causally from the errors known each day; learnt on the crisis years it hurts the calm decade's
#   forecasts, which is why the tables rank on the causal one and show the other two beside it.
# * A forecast is worth what it does: the volatility-targeted portfolio after trading costs (Sharpe,
#   certainty equivalent, the performance fee against the benchmark, each with a block-bootstrap
#   interval) and the VaR backtests rank models by what a risk desk would feel. A QLIKE-optimal
#   forecast is a variance forecast, not a tail quantile: the best rows on QLIKE can fail a Gaussian
#   VaR that conservative forecasts pass, and a fat-tailed VaR (Student-t, FHS) changes which.
# * A best row picked on the test years flatters the winner: the board's best is the one chosen on
#   validation. The full run, with every family and five seeds, is in `docs/leaderboard.md`, and its
#   stored forecasts re-derive every figure of it in seconds.
#
# **Your capstone project.** The rules (data, a 2-core CPU budget, which split may be used for what),
# the required ablation and the rubric of the written report are in `docs/capstone_brief.md`.
