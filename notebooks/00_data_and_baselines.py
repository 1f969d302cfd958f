# %% [markdown]
# # Chapter 00: Data, tasks and the baselines every model must beat
#
# **Learning objectives.** After this chapter you can
#
# 1. load real daily market data online or offline with one call, and say where it came from;
# 2. name the stylised facts of daily returns (fat tails, volatility clustering, no linear
#    predictability) and see them in the data;
# 3. build the two forecasting tasks of the course (next-day and 5-day **returns** and **log
#    volatility**) with chronological splits and a scaler fitted on training data only;
# 4. score the baselines (zero, historical mean, AR(1); EWMA, GARCH, HAR, log-HAR) under one protocol,
#    compare forecasts with Diebold-Mariano tests that survive autocorrelation (Newey-West) and a noisy
#    volatility proxy (QLIKE), and read a model confidence set instead of one test per row;
# 5. check the data before trusting it: a stale open price that changes what a volatility proxy means;
# 6. recognise the two leaks that inflate scores most often: a scaler (or any statistic) fitted on
#    all the data, and a shuffled split of overlapping windows.
#
# Every later chapter reuses these tasks and puts its deep models *beside these baselines*. If a deep
# model cannot beat the volatility benchmark (the strongest classical baseline on validation) and the
# linear window model of section 7, or zero on returns, we say so: that is a result.

# %%
# Parameters: every size of this notebook lives here.
TICKER = "^GSPC"  # S&P 500; offline data covers 1999-2018
LOOKBACK = 20  # days of history in each input window
HORIZONS = (1, 5)  # next day and next week
SEED = 0
LINEAR_EPOCHS = 15
LINEAR_SEEDS = (0, 1, 2)  # the linear window model of section 7 is trained once per seed

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display
from scipy import stats
from statsmodels.tsa.stattools import acf
from torch import nn

from course_lib import get_device, set_seed
from course_lib.data.features import garman_klass, log_returns, parkinson, squared_returns, stale_open_share
from course_lib.data.prices import available_tickers, load_prices
from course_lib.data.windows import make_task
from course_lib.evaluation import (
    apply_correction,
    benchmark_rule,
    correction_reversals,
    correction_variants,
    diebold_mariano,
    loss_series,
    mse,
    newey_west_lags,
    r2_oos,
    results_table,
    return_baselines,
    spa_test,
    verdict_word,
    volatility_baselines,
)
from course_lib.evaluation.blanks import blank_cells
from course_lib.training import Trainer

set_seed(SEED)
device = get_device()
pd.set_option("display.precision", 4)
print("device:", device, "| offline tickers:", available_tickers())

# %% [markdown]
# ## 1. Real data, online or offline
#
# `load_prices` takes Yahoo symbols. Online it downloads through `yfinance` and caches the CSV in your
# user cache directory; offline, or when Yahoo returns nothing (yfinance returns an *empty* frame
# rather than raising when there is no network), it falls back to data shipped with the course.
# `df.attrs["source"]` always tells you which one you got.

# %%
prices = load_prices(TICKER)
print(prices.attrs["source"])
prices.tail()

# %% mystnb={"image": {"alt": "Two stacked time series sharing a date axis: the index's daily close, and its daily log returns in percent, whose swings cluster in calm and turbulent periods"}}
returns = log_returns(prices["Close"])  # percent log returns, 100 * log(P_t / P_{t-1})
fig, axes = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
axes[0].plot(prices["Close"])
axes[0].set(ylabel="close", title=f"{TICKER} daily close")
axes[1].plot(returns, lw=0.5)
axes[1].set(ylabel="log return (%)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 2. Stylised facts
#
# With $r_t = 100\log(P_t/P_{t-1})$:
#
# * **Fat tails**: the kurtosis of $r_t$ is far above the Normal's 3; five-sigma days happen.
# * **Volatility clustering**: large moves follow large moves. $r_t$ is almost uncorrelated with
#   $r_{t-k}$, but $r_t^2$ is strongly correlated with $r_{t-k}^2$ for many lags.
#
# The second fact is why volatility is forecastable and returns, to a first approximation, are not.

# %% mystnb={"image": {"alt": "Left: a histogram of standardised daily returns on a log density scale against the normal curve, with far more mass in the tails. Right: autocorrelations at lags 1 to 30 for returns and for squared returns, with the 95% band under no correlation"}}
r = returns.to_numpy()
print(
    f"mean {r.mean():.3f}%  std {r.std():.3f}%  skew {stats.skew(r):.2f}  kurtosis {stats.kurtosis(r, fisher=False):.1f}"
)
lags = 30
acf_r = acf(r, nlags=lags, fft=True)[1:]
acf_r2 = acf(r**2, nlags=lags, fft=True)[1:]
band = 1.96 / np.sqrt(len(r))

fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
z = (r - r.mean()) / r.std()
axes[0].hist(z, bins=120, density=True, alpha=0.6, label="standardised returns")
grid = np.linspace(-6, 6, 400)
axes[0].plot(grid, stats.norm.pdf(grid), label="Normal")
axes[0].set(
    xlabel="standardised daily return (std units)",
    ylabel="density (log scale)",
    yscale="log",
    ylim=(1e-5, 1),
    title="Fat tails",
)
axes[0].legend()
axes[1].bar(np.arange(1, lags + 1) - 0.2, acf_r, width=0.4, label="returns")
axes[1].bar(np.arange(1, lags + 1) + 0.2, acf_r2, width=0.4, label="squared returns")
axes[1].axhspan(-band, band, color="grey", alpha=0.2, label="95% band under no correlation")
axes[1].set(xlabel="lag k (days back)", ylabel="autocorrelation with lag k", title="Autocorrelation")
axes[1].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Volatility proxies
#
# Daily volatility is never observed; we estimate it from one day of prices. The squared return uses
# only the close; range-based estimators use the high and low as well and are much less noisy:
#
# $$\hat\sigma^2_{\text{Parkinson}} = \frac{(\log H/L)^2}{4\log 2}, \qquad
#   \hat\sigma^2_{\text{GK}} = \tfrac12 (\log H/L)^2 - (2\log 2 - 1)(\log C/O)^2 .$$
#
# Garman-Klass (GK) also uses the open. That is only better if the open is a real price.

# %% mystnb={"image": {"alt": "Three daily volatility proxies from June 2008 to June 2009 (the squared return, Parkinson and Garman-Klass), in percent"}}
proxies = pd.DataFrame(
    {
        "squared return": squared_returns(returns),
        "Parkinson": parkinson(prices),
        "Garman-Klass": garman_klass(prices),
    }
).dropna()
window = proxies.loc["2008-06":"2009-06"]
ax = np.sqrt(window).plot(figsize=(10, 3.5), lw=0.8, alpha=0.8)
ax.set(ylabel="daily volatility (%)", title="Three daily volatility proxies through the 2008 crisis")
plt.show()
print("day-to-day noise (std of log changes):")
print(np.log(proxies.clip(lower=1e-4)).diff().std().round(2))

# %% [markdown]
# ### A data-quality check: is the open a real price?
#
# A feed that has no opening print often fills the open with the previous close. Then $\log C/O$ is the
# close-to-close return, and GK's second term changes meaning: it subtracts a multiple of the squared
# return instead of the squared intraday move. `stale_open_share` counts, per year, the days whose open
# equals the previous close.

# %% mystnb={"image": {"alt": "Bars by calendar year of the percentage of days whose open equals the previous close"}}
stale = stale_open_share(prices)
early, late = stale.loc[1999:2005].mean(), stale.loc[2008:].mean()
fig, ax = plt.subplots(figsize=(10, 2.8))
ax.bar(stale.index, 100 * stale.to_numpy())
ax.set_xticks(stale.index[::2])  # one bar per calendar year: whole years on the axis, every other one
ax.set(xlabel="year", ylabel="days with open = previous close (%)", title=f"{TICKER}: stale opens by year")
plt.show()
gk_parts = pd.DataFrame({"GK / Parkinson": (garman_klass(prices) / parkinson(prices)).clip(0, 3)})
ratio = gk_parts.groupby(gk_parts.index.year).median()["GK / Parkinson"]
print(
    f"The open equals the previous close on {100 * early:.0f}% of days in 1999-2005 and on {100 * late:.1f}% "
    f"from 2008: the median GK/Parkinson ratio moves from {ratio.loc[1999:2005].mean():.2f} to "
    f"{ratio.loc[2008:].mean():.2f} although both estimate the same daily variance."
)
assert early > 0.9 and late < 0.1, "the prose below describes stale opens before 2006 and real ones from 2008"

# %% [markdown]
# A model trained on 1999-2006 and tested on 2009-2018 would learn one meaning of the GK target and be
# scored on another. Parkinson uses the high and the low only, which this feed records on every day,
# so **the volatility target of this course is Parkinson's** (`make_task(..., proxy="parkinson")`, the
# default; `proxy="gk"` is there to repeat the comparison). The input feature `log_vol_gk` keeps the
# same blemish; a network can at least weigh it against `log_vol_parkinson`.

# %% [markdown]
# ## 4. The two standard tasks
#
# A sample is made at a *forecast origin* $t$, the last day the model sees:
#
# $$X_t = (x_{t-L+1}, \dots, x_t), \qquad
#   y^{\text{ret}}_{t,h} = \sum_{k=1}^{h} r_{t+k}, \qquad
#   y^{\text{vol}}_{t,h} = \tfrac12 \log\Big(\tfrac1h \sum_{k=1}^{h} \hat\sigma^2_{\text{Parkinson},t+k}\Big).$$
#
# The split is chronological: training origins up to 2006, validation 2007-2008, test 2009-2018.
# A sample belongs to a split only if all its target days do, so the last few days before each
# boundary are dropped (a **gap**): no target straddles two splits. The feature scaler is fitted on
# the rows that training inputs cover and on nothing later.

# %% mystnb={"image": {"alt": "The next-day log volatility target over time, coloured by split: training, then validation, then test, with gaps between them"}}
ret_task = make_task("returns", ticker=TICKER, lookback=LOOKBACK, horizons=HORIZONS)
vol_task = make_task("volatility", ticker=TICKER, lookback=LOOKBACK, horizons=HORIZONS)
print(ret_task)
print(vol_task)
print("input window:", ret_task.train.X.shape[1:], "features:", ret_task.feature_names)

fig, ax = plt.subplots(figsize=(10, 2.8))
for name, colour in zip(["train", "val", "test"], ["C0", "C1", "C2"], strict=True):
    s = vol_task.split(name)
    ax.plot(s.dates, s.y[:, 0], lw=0.4, color=colour, label=f"{name} ({len(s)} samples)")
ax.set(
    ylabel="next-day log volatility (log %)", title="Volatility target by split (chronological, with gaps)"
)
ax.legend(loc="upper left")
plt.show()

# %% [markdown]
# ## 5. Baselines for returns
#
# * **zero**: tomorrow's log return is zero (a random walk in prices);
# * **historical mean**: the average return of all days up to $t$;
# * **AR(1)**: $r_{t+1} = \mu + \phi r_t + \varepsilon$, estimated with `arch`.
#
# **One protocol per table.** The networks of this course are trained once on 1999-2006 and then frozen.
# The baselines get the same treatment: by default (`protocol="frozen"`) each is estimated once on the
# training years and only *filters* new data afterwards (the historical mean is the training mean).
# Re-estimating the baselines every year while the networks stay frozen would compare "better model"
# with "more recent model". `protocol="walk_forward"` refits every year instead, for both (chapter 07).
# Every table says its protocol in its header.
#
# Metrics: MSE, MAE, out-of-sample $R^2$ against the historical mean
# ($R^2_{oos} = 1 - \sum (y-\hat y)^2 / \sum (y - \bar y_{hist})^2$), and directional accuracy (DA)
# beside the share of up days (always saying "up" already scores that much).

# %%
ret_base = return_baselines(ret_task)
ret_table = results_table(ret_task, ret_base)
shown, note = blank_cells(ret_table)
display(shown)
print(note)

# %% [markdown]
# ### The Diebold-Mariano test
#
# Two forecasts with losses $L(e_{1,t})$ and $L(e_{2,t})$ give a loss differential
# $d_t = L(e_{1,t}) - L(e_{2,t})$. Under equal accuracy $\mathbb E[d_t] = 0$, and
#
# $$DM = \frac{\bar d}{\sqrt{\widehat{\mathrm{LRV}}(d)/T}}, \qquad
#   \widehat{\mathrm{LRV}} = \hat\gamma_0 + 2\sum_{k=1}^{K}\Big(1 - \frac{k}{K+1}\Big)\hat\gamma_k$$
#
# is approximately Normal. The long-run variance is a Newey-West (Bartlett) estimate with
# $K = \max(h-1, \lfloor 4(T/100)^{2/9}\rfloor)$ lags: $h-1$ because $h$-step errors overlap, and the
# data-dependent part because even next-day loss differentials are autocorrelated (volatility clusters,
# so do forecast errors). `course_lib` adds the Harvey-Leybourne-Newbold small-sample factor. A negative
# statistic means the first forecast has the lower loss.
#
# In the table above, DM is each model against `zero`. For return forecasts that *nest* zero (the mean
# and the AR(1) become zero when their coefficients are zero), DM is biased towards the small model,
# because the large one pays for estimating coefficients that are truly zero; the Clark-West test (`CW`,
# one-sided) corrects that. `in_MCS` marks the model confidence set: the models that cannot be told apart
# from the best at 10%, with the search over all rows taken into account.


# %%
def verdict(table, h, name, bench):
    """Clark-West decides for a forecast that nests the benchmark; DM is printed beside it."""
    row = table.loc[(h, name)]
    dm = f"DM p = {row['DM_p']:.3f}, {'lower' if row['DM'] < 0 else 'higher'} MSE"
    if row["CW_p"] < 0.05:
        return f"{name} beats {bench} by Clark-West (p = {row['CW_p']:.3f}; {dm})"
    return f"{name} does not beat {bench} by Clark-West (p = {row['CW_p']:.2f}; {dm})"


for h in HORIZONS:
    members = ret_table.loc[h].index[ret_table.loc[h, "in_MCS"]].tolist()
    tests = "; ".join(verdict(ret_table, h, n, "zero") for n in ("hist_mean", "ar1"))
    best_r2 = ret_table.loc[h, "R2_oos"].max()
    disagree = [
        n
        for n in ("hist_mean", "ar1")
        if (ret_table.loc[(h, n), "CW_p"] < 0.05) != (ret_table.loc[(h, n), "DM_p"] < 0.05)
    ]
    print(
        f"h = {h}: the model confidence set (MSE) holds {members}. {tests}. Best R2_oos {100 * best_r2:.2f}%. "
        + (
            f"DM and Clark-West disagree on {disagree}: DM penalises the noise of estimated coefficients "
            "that are zero under the null, so for these nested forecasts Clark-West decides."
            if disagree
            else "DM and Clark-West agree here."
        )
    )

# %% [markdown]
# ## 6. Baselines for volatility
#
# * **EWMA** (RiskMetrics, $\lambda = 0.94$): $\sigma^2_{t+1} = \lambda\sigma^2_t + (1-\lambda) r_t^2$;
# * **GARCH(1,1)**: $\sigma^2_{t+1} = \omega + \alpha \varepsilon_t^2 + \beta\sigma^2_t$;
# * **HAR** (Corsi, 2009): a regression of tomorrow's variance proxy on its average over the last
#   1, 5 and 22 days;
# * **log-HAR**: the same idea in logs, each horizon's target regressed directly on the log of those
#   three averages by least squares.
#
# EWMA, GARCH and HAR come from the `arch` package; all four are estimated once on the training years
# (the frozen protocol). The log-variance forecasts of the first three get the constant shift that
# centres their errors on the *training* years (the log of a noisy proxy sits below the log of its mean).
#
# **Two losses.** The squared error of a log volatility is what the networks minimise, but against a
# noisy proxy it can rank a biased forecast first. QLIKE on variances,
# $\frac{\sigma^2}{\hat\sigma^2} - \log\frac{\sigma^2}{\hat\sigma^2} - 1$, ranks variance forecasts
# consistently however noisy the proxy: it belongs to Patton's (2011) class of robust losses, with MSE on
# variances (squared error of a log volatility does not). Every volatility table tests both: `DM` on squared
# error, `DM_QLIKE` on QLIKE, each model against one **benchmark** chosen by a rule fixed before the test
# years are seen: the classical baseline with the lowest *validation* QLIKE at its best level
# (`benchmark_rule`; the table's header names it).
#
# **The Jensen gap.** A model fitted to log volatility forecasts $\exp(\mathbb E\log\sigma^2)$, which is
# below $\mathbb E\sigma^2$: its variance is too low, and QLIKE punishes that. The cure is one factor per
# horizon, $c = \overline{\sigma^2/\hat\sigma^2}$, the multiplier that minimises QLIKE (`level_shift`).
# *Where* $c$ is learnt matters. Learnt on the validation years (2007-2008, a crisis) it carries the
# crisis level into the calm test years. The course's tables learn it **causally**: at each test origin,
# from the test-period errors already known at that origin (an expanding window, nothing later, nothing
# from validation). `QLIKE_lc` is the test QLIKE after that correction; the QLIKE tests and the model
# confidence set use it, so a model is neither rewarded nor punished for its level alone.
# `correction_variants` prints the three choices side by side with each model's factor: learnt on
# validation, learnt causally (at the last origin), and the one the test years wanted (hindsight).

# %%
vol_base = volatility_baselines(vol_task)
vol_val = volatility_baselines(vol_task, "val")  # validation forecasts: the rule and one correction use them
BENCH = benchmark_rule(vol_task)
print(f"benchmark by the rule: {BENCH} (lowest validation QLIKE at its best level among {list(vol_base)})")
vol_table = results_table(vol_task, vol_base)
shown, note = blank_cells(vol_table)
display(shown)
print(note)

# %%
ql = vol_table["QLIKE"].unstack("model")
ql_lc = vol_table["QLIKE_lc"].unstack("model")
for h in HORIZONS:
    t = vol_table.loc[h]
    members = t.index[t["in_MCS"]].tolist()
    print(
        f"h = {h}: the model confidence set on corrected QLIKE holds {members}. Lowest MSE "
        f"{t['MSE'].idxmin()}, lowest raw QLIKE {ql.loc[h].idxmin()}, lowest corrected QLIKE "
        f"{ql_lc.loc[h].idxmin()}; correcting log-HAR takes its QLIKE from {ql.loc[h, 'log_har']:.3f} to "
        f"{ql_lc.loc[h, 'log_har']:.3f}."
    )

# %% [markdown]
# The three corrections side by side, with each model's factor $c$:

# %%
base_variants = correction_variants(vol_task, vol_base, vol_val)
display_cols = [
    "factor val",
    "factor causal",
    "factor oracle",
    "QLIKE none",
    "QLIKE validation",
    "QLIKE causal",
]
print(base_variants[display_cols].round(3))
print(correction_reversals(base_variants))

# %% [markdown]
# Where the lowest raw QLIKE and the lowest corrected QLIKE name different models, the raw column was
# ranking variance *levels*: a model fitted in logs forecasts too low a variance and raw QLIKE punishes it
# for that alone. Once every model's level is learnt the same way, the ranking reflects the *shape* of the
# forecasts. The factor columns show why the course does not learn it on validation: a factor learnt in
# the 2008 crisis is not the one the calm test years wanted.
#
# **How much does the Newey-West lag matter?** Below, one pair of forecasts tested with the old rule
# $K = h - 1$ (no correction at all at $h = 1$) and with the default lag, beside the lag-1
# autocorrelation of their loss differential.

# %%
y1 = vol_task.test.y[:, 0]
d = loss_series(y1, vol_base["har"][:, 0]) - loss_series(y1, vol_base["log_har"][:, 0])
no_lag = diebold_mariano(y1, vol_base["har"][:, 0], vol_base["log_har"][:, 0], lags=0)
nw = diebold_mariano(y1, vol_base["har"][:, 0], vol_base["log_har"][:, 0])
print(
    f"HAR vs log-HAR, next day, squared error: lag-1 autocorrelation of d = {np.corrcoef(d[1:], d[:-1])[0, 1]:.2f}; "
    f"DM = {no_lag.statistic:.2f} with 0 lags, {nw.statistic:.2f} with {nw.lags} lags "
    f"(newey_west_lags({len(d)}) = {newey_west_lags(len(d))})."
)
assert abs(nw.statistic) < abs(no_lag.statistic), "the claim below: the Newey-West lag shrinks the statistic"

# %% [markdown]
# > **Pitfall (a DM test that forgets autocorrelation).** With $K = h - 1$ lags, a next-day DM test uses
# > $\hat\gamma_0$ alone. Positively autocorrelated differentials make that understate the variance of
# > their mean, so the statistic above shrinks once the Newey-West lag is used: the zero-lag rule turns
# > noise into "significant" wins. `diebold_mariano` uses the Newey-West lag unless told otherwise.

# %% mystnb={"image": {"alt": "Next-day log volatility in the first half of 2009: the target as grey dots and the EWMA, GARCH, HAR and log-HAR forecasts as lines"}}
span = slice(0, 130)  # the first half of 2009: the baselines differ most after the crisis
styles = {"ewma": ("C0", "-"), "garch": ("C1", "--"), "har": ("C2", "-."), "log_har": ("C3", ":")}
fig, ax = plt.subplots(figsize=(10, 3.8))
ax.plot(
    vol_task.test.dates[span], vol_task.test.y[span, 0], "o", ms=2.5, color="grey", label="target (Parkinson)"
)
for name, forecast in vol_base.items():
    colour, style = styles[name]
    ax.plot(vol_task.test.dates[span], forecast[span, 0], style, color=colour, lw=1.8, label=name)
ax.set(
    xlabel="forecast origin",
    ylabel="log daily volatility (log %)",
    title="Next-day volatility forecasts, 2009 H1",
)
ax.legend(ncol=5, loc="upper right")
plt.show()

# %% [markdown]
# ## 7. A first learned model with the course Trainer
#
# Before the deep models of the next chapters, a linear model over the whole window, trained with
# `course_lib.training.Trainer` (AdamW, early stopping with the best weights kept in memory, no file
# written), once per seed in `LINEAR_SEEDS`; its row is the seed ensemble (the mean forecast). It sees the
# same inputs as every later model, the same 20-day window of the same features: every later chapter
# carries it in its volatility table, so that depth is always compared with a linear model that has the
# same information.

# %%
linear_runs, linear_val_runs, linear_epochs = [], [], []
for seed in LINEAR_SEEDS:
    set_seed(seed)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(LOOKBACK * len(vol_task.feature_names), len(HORIZONS)))
    trainer = Trainer(linear, lr=3e-3, max_epochs=LINEAR_EPOCHS, device=device, seed=seed)
    trainer.fit(vol_task.train.X, vol_task.train.y, vol_task.val.X, vol_task.val.y)
    linear_runs.append(trainer.predict(vol_task.test.X))
    linear_val_runs.append(trainer.predict(vol_task.val.X))
    linear_epochs.append(trainer.best_epoch)
linear_pred, linear_val = np.mean(linear_runs, axis=0), np.mean(linear_val_runs, axis=0)
seed_mse = [mse(vol_task.test.y[:, 0], p[:, 0]) for p in linear_runs]
print(
    f"best epoch per seed {linear_epochs} (budget {LINEAR_EPOCHS}); next-day test MSE per seed "
    f"{np.round(seed_mse, 4).tolist()} (spread {np.std(seed_mse, ddof=1):.4f})"
)
lin_table = results_table(
    vol_task, {"linear window": linear_pred, **vol_base}, val_predictions={"linear window": linear_val}
)
shown, note = blank_cells(lin_table)
display(shown)
print(note)

# %% [markdown]
# **What the numbers say** (printed from the tables, so they follow the data):


# %%
def outcome(stat, p):
    return f"{verdict_word(stat, p)} (p = {p:.3f})"


linear_said = []
for h in HORIZONS:
    t = lin_table.loc[h]
    row = t.loc["linear window"]
    members = t.index[t["in_MCS"]].tolist()
    said = (
        f"h = {h}: the model confidence set on corrected QLIKE holds {members}. Against {BENCH}, the linear "
        f"window's verdict is {outcome(row['DM'], row['DM_p'])} on MSE ({row['MSE']:.4f} vs {t.loc[BENCH, 'MSE']:.4f}) "
        f"and {outcome(row['DM_QLIKE'], row['p_QLIKE'])} on corrected QLIKE ({row['QLIKE_lc']:.4f} vs "
        f"{t.loc[BENCH, 'QLIKE_lc']:.4f}); the lowest corrected QLIKE of the table is {t['QLIKE_lc'].idxmin()}'s."
    )
    linear_said.append(said)
    print(said)
# the benchmark rule, asked again with the linear model as a candidate (validation only, as the rule says)
rule_with_linear = benchmark_rule(vol_task, candidates={"linear window": linear_val})
print(
    f"Had the linear window been a candidate of the benchmark rule, the benchmark would be {rule_with_linear}"
    f"{' (it would replace ' + BENCH + ')' if rule_with_linear != BENCH else ' (unchanged)'}."
)
# SPA: does any of the others beat the benchmark on next-day corrected (causal) QLIKE?
y1 = vol_task.test.y[:, 0]
causal = apply_correction(
    "causal", {"linear window": linear_pred, **vol_base}, y=vol_task.test.y, horizons=HORIZONS
)
corrected_losses = pd.DataFrame(
    {n: loss_series(y1, p[:, 0], "qlike") for n, p in causal.items() if n != BENCH}
)
spa = spa_test(loss_series(y1, causal[BENCH][:, 0], "qlike"), corrected_losses)
print(
    f"SPA test, does any of the other {corrected_losses.shape[1]} beat {BENCH} on next-day corrected QLIKE? "
    f"p = {spa['consistent']:.3f}."
)
wins = [f"{m} at h = {h}" for (h, m), row in ret_table.iterrows() if row["CW"] > 0 and row["CW_p"] < 0.05]
print(
    f"Returns: the MCS (MSE) keeps {[ret_table.loc[h].index[ret_table.loc[h, 'in_MCS']].tolist() for h in HORIZONS]} "
    f"at h = {HORIZONS}; better than zero by Clark-West (5%, the test for nested forecasts): "
    f"{', '.join(wins) or 'nothing'}; the largest R2_oos is {100 * ret_table['R2_oos'].max():.2f}% of the variance."
)

# %% [markdown]
# One test per row answers "is this model better than the benchmark?", a question asked once per row;
# with many rows, one of them will look significant by luck. The model confidence set and the SPA test
# (Hansen, 2005: does *any* of many models beat one benchmark?) account for the search. Keep these
# tables in mind: they are what every network of the course has to beat.

# %% [markdown]
# ## 8. Leakage: how to get a great score that means nothing
#
# ### 8a. A statistic fitted on all the data
# Any number computed from the whole sample (a scaler's mean and std, a target mean, a PCA) carries
# information from the test years into training. Here is the simplest case: forecasting volatility
# with a constant. The honest constant is the training mean; the leaky one is the mean of all years.

# %%
y_test = vol_task.test.y[:, 0]
train_mean = vol_task.train.y[:, 0].mean()
all_mean = np.concatenate([vol_task.train.y[:, 0], vol_task.val.y[:, 0], y_test]).mean()
honest, leaky = np.full_like(y_test, train_mean), np.full_like(y_test, all_mean)
print(f"test MSE with the training mean: {mse(y_test, honest):.4f}")
print(f"test MSE with the all-data mean: {mse(y_test, leaky):.4f}  <- looks better, but used the test years")
dm = diebold_mariano(y_test, leaky, honest)
print(f"DM leaky vs honest: {dm.statistic:.2f} (p = {dm.pvalue:.3g})")

# %% [markdown]
# ### 8b. A shuffled split of overlapping windows
# Neighbouring windows share all but one day of input, and $h$-day targets share $h-1$ of their days.
# Shuffle the samples before splitting and every test sample has near-twins in the training set.
# A one-nearest-neighbour forecaster, which can only copy the target of the most similar training
# window, shows the effect at once. It describes each window by the path of its 22-day rolling
# volatility, a smooth series, so the most similar window is usually the one a day earlier or later.


# %%
def nearest_neighbour(X_train, X_query):
    """Index of the most similar training window for each query window (squared distance, in chunks)."""
    A = X_train.reshape(len(X_train), -1)
    out = np.empty(len(X_query), dtype=int)
    for i in range(0, len(X_query), 512):
        Q = X_query[i : i + 512].reshape(-1, A.shape[1])
        d = (Q**2).sum(1)[:, None] - 2 * Q @ A.T + (A**2).sum(1)[None, :]
        out[i : i + 512] = d.argmin(axis=1)
    return out


leak_task = make_task("volatility", ticker=TICKER, lookback=22, horizons=(1, 5, 22), features=["ret_std22"])
X_all = np.concatenate([leak_task.train.X, leak_task.val.X, leak_task.test.X])[:, ::3, :]
y_all = np.concatenate([leak_task.train.y, leak_task.val.y, leak_task.test.y])
day = np.arange(len(X_all))  # position in time of each sample
n_train, n_test = len(leak_task.train.y), len(leak_task.test.y)
perm = np.random.default_rng(SEED).permutation(len(X_all))
splits = {
    "chronological": (day[:n_train], day[-n_test:]),
    "shuffled": (perm[:n_train], perm[n_train:]),
}
scores = {}
for label, (tr, te) in splits.items():
    nearest = tr[nearest_neighbour(X_all[tr], X_all[te])]
    pred, y_te = y_all[nearest], y_all[te]
    mean_forecast = np.broadcast_to(y_all[tr].mean(axis=0), y_te.shape)
    scores[label] = {
        f"R2 (h={h})": r2_oos(y_te[:, j], pred[:, j], mean_forecast[:, j])
        for j, h in enumerate(leak_task.horizons)
    }
    scores[label]["twin within 5 days"] = np.mean(np.abs(day[nearest] - day[te]) <= 5)
pd.DataFrame(scores).T

# %% [markdown]
# The same forecaster looks far better on the shuffled split at $h = 5$ and $h = 22$, where targets
# overlap: most of its "nearest neighbours" are the test sample's own neighbours in time, whose
# targets share most of their days. Nothing about the model changed: only the evaluation became
# dishonest. Deep networks memorise such twins just as well, only less visibly.
#
# > **Pitfall (erratum: DeepLearningPipeline).** The source module's training pipeline saved
# > `./best_model.pth` into whatever directory you ran it from, and after a NaN loss it silently
# > reloaded that file, which could come from a *different* run. `Trainer` keeps the best weights in
# > memory and stops on a NaN loss with an error that names the epoch.
#
# > **Pitfall (erratum: ModelDeployment).** Pickling a whole module and loading it with
# > `torch.load(..., weights_only=False)` executes whatever code the file contains.
# > `course_lib.models.checkpoint` saves the `state_dict` as safetensors (tensors only, no code)
# > plus a JSON config with the weights' hash; a tampered or pickled file is refused.
#
# > **Pitfall (erratum: ConformalPredictor, QuantileRegressionEnsemble).** Subtracting an `(N, 1)`
# > array from an `(N,)` array does not fail in NumPy or PyTorch: it broadcasts to `(N, N)` and the
# > "error" is meaningless. Every metric in `course_lib.evaluation` refuses mismatched shapes.

# %%
y = vol_task.test.y[:, 0]
p = vol_base["har"][:, 0]
print("silent broadcast:", ((y - p[:, None]) ** 2).shape, "elements instead of", y.shape)
try:
    mse(y, p[:, None])
except ValueError as err:
    print("course_lib:", err)

# %% [markdown]
# ## Exercises
#
# Each exercise has a self-check cell: run it after your answer. The checks pass only for a correct
# answer.

# %% [markdown]
# ### Exercise 1 (2 points): annualised volatility
# Write `annualised_volatility(returns, year)` that returns the annualised volatility of one calendar
# year in percent: the standard deviation of that year's daily returns (a pandas Series of percent
# returns with a date index) times $\sqrt{252}$. Then store 2008's in `vol_2008` and the ratio of
# 2008's to 2017's (the calmest year of the sample) in `crisis_ratio`.


# %%
# SOLUTION
def annualised_volatility(returns, year):
    return float(returns.loc[str(year)].std() * np.sqrt(252))


vol_2008 = annualised_volatility(returns, 2008)
crisis_ratio = vol_2008 / annualised_volatility(returns, 2017)

# %%
# SELF-CHECK
# a synthetic series whose daily standard deviation is 1% in 2001 and 3% in 2002: annualised, 1% a day is
# sqrt(252) = 15.9% a year
_days = pd.bdate_range("2001-01-01", "2002-12-31")
_sd = np.where(_days.year == 2001, 1.0, 3.0)
_synthetic = pd.Series(np.random.default_rng(0).normal(size=len(_days)) * _sd, index=_days)
_a01, _a02 = annualised_volatility(_synthetic, 2001), annualised_volatility(_synthetic, 2002)
assert abs(_a01 - np.sqrt(252)) < 1.5, f"1% a day should give about 15.9% a year, got {_a01:.2f}"
assert abs(_a02 / _a01 - 3) < 0.4, "use only the days of the year asked for"
assert isinstance(vol_2008, float | np.floating) and 25 < vol_2008 < 60, (
    f"2008 was a crisis year: expect a large annualised volatility, got {vol_2008}"
)
assert crisis_ratio > 2, f"2008 should be several times as volatile as 2017, got a ratio {crisis_ratio}"
print(f"Exercise 1 passed: 2008's annualised volatility was {vol_2008:.1f}%, {crisis_ratio:.1f} times 2017's")

# %% [markdown]
# ### Exercise 2 (2 points): fat tails or clustering?
# Squared returns are autocorrelated. Is that because of the *order* of the days (volatility clusters) or
# could fat tails alone produce it? Shuffling the days keeps every return, hence the fat tails, and
# destroys the order. Compute the lag-1 autocorrelation of squared daily returns in the real order
# (`acf1_sq`) and after shuffling the returns with `np.random.default_rng(0).permutation`
# (`acf1_sq_shuffled`), and set `order_matters` to `True` if the shuffle removes the autocorrelation.

# %%
# SOLUTION
acf1_sq = (returns**2).autocorr(lag=1)
_shuffled = pd.Series(np.random.default_rng(0).permutation(returns.to_numpy()))
acf1_sq_shuffled = (_shuffled**2).autocorr(lag=1)
order_matters = bool(abs(acf1_sq_shuffled) < 0.1 * abs(acf1_sq))

# %%
# SELF-CHECK
_band = 1.96 / np.sqrt(len(returns))  # the 95% band of an autocorrelation under independence
assert -1 <= acf1_sq <= 1 and -1 <= acf1_sq_shuffled <= 1, "autocorrelations lie in [-1, 1]"
assert acf1_sq > 4 * _band, "in the real order squared returns are clearly autocorrelated"
assert abs(acf1_sq_shuffled) < 2 * _band, (
    "after a shuffle the autocorrelation should sit inside the noise band: shuffle the returns, then square"
)
assert isinstance(order_matters, bool | np.bool_), "order_matters should be True or False"
assert order_matters == bool(abs(acf1_sq_shuffled) < abs(acf1_sq) / 2), (
    "order_matters must follow from your two numbers: did the shuffle remove most of the autocorrelation?"
)
print(
    f"Exercise 2 passed: {acf1_sq:+.3f} in order, {acf1_sq_shuffled:+.3f} shuffled (noise band +-{_band:.3f})"
)

# %% [markdown]
# ### Exercise 3 (3 points): spot the bug
# The function below standardises a feature matrix for a model, given the number of training rows.
# It leaks. Write a fixed version `standardise_fixed(values, n_train)` that returns the standardised
# matrix using statistics of the first `n_train` rows only.
#
# ```python
# def standardise_buggy(values, n_train):
#     mean, std = values.mean(axis=0), values.std(axis=0)
#     return (values - mean) / std
# ```


# %%
# SOLUTION
def standardise_fixed(values, n_train):
    mean, std = values[:n_train].mean(axis=0), values[:n_train].std(axis=0)
    return (values - mean) / std


# %%
# SELF-CHECK
_values = np.random.default_rng(1).normal(size=(100, 3))
_shocked = _values.copy()
_shocked[60:] *= 50  # change only the "test" rows
_a, _b = standardise_fixed(_values, 60), standardise_fixed(_shocked, 60)
assert _a.shape == _values.shape, "keep the shape of the input"
assert np.allclose(_a[:60], _b[:60]), "training rows must not depend on later rows: the scaler still leaks"
assert np.allclose(_a[:60].mean(axis=0), 0, atol=1e-9), "training rows should have mean 0 after scaling"
print("Exercise 3 passed: the training rows no longer depend on the test rows")

# %% [markdown]
# ### Exercise 4 (3 points): is the difference significant?
# Use `diebold_mariano` to compare the GARCH and EWMA next-day volatility forecasts (`vol_base`) on
# the test targets `vol_task.test.y[:, 0]`, with GARCH as the first forecast. Store the result in
# `dm_garch_ewma` and set `garch_better` to `True` if GARCH has the lower squared-error loss with
# a p-value below 0.05, else `False`.

# %%
# SOLUTION
dm_garch_ewma = diebold_mariano(vol_task.test.y[:, 0], vol_base["garch"][:, 0], vol_base["ewma"][:, 0])
garch_better = dm_garch_ewma.statistic < 0 and dm_garch_ewma.pvalue < 0.05

# %%
# SELF-CHECK
assert np.isfinite(dm_garch_ewma.statistic) and 0 <= dm_garch_ewma.pvalue <= 1, (
    "store diebold_mariano's result"
)
# the DM statistic has the sign of the mean loss difference (first forecast's minus second's)
_y = vol_task.test.y[:, 0]
_garch_lower = mse(_y, vol_base["garch"][:, 0]) < mse(_y, vol_base["ewma"][:, 0])
assert (dm_garch_ewma.statistic < 0) == _garch_lower, (
    "compare garch (first) with ewma (second), next-day column"
)
assert isinstance(garch_better, bool | np.bool_), "garch_better should be True or False"
if garch_better:
    assert _garch_lower and dm_garch_ewma.pvalue < 0.05, "a win needs the lower loss AND p < 0.05"
else:
    assert not _garch_lower or dm_garch_ewma.pvalue >= 0.05, (
        "GARCH has the lower loss and p < 0.05: it is better"
    )
print(
    f"Exercise 4 passed: DM = {dm_garch_ewma.statistic:+.2f} (p = {dm_garch_ewma.pvalue:.3f}), GARCH better: {garch_better}"
)

# %% [markdown]
# ### Exercise 5 (3 points, experiment): where does log-HAR beat HAR?
# Split the test origins into a calm and a turbulent half by what is **known at the origin**: the
# next-day log-HAR forecast `vol_base["log_har"][:, 0]` below its test median is calm, the rest turbulent.
# (Splitting by the outcome day's volatility would peek at the answer.) In each half compute the
# next-day MSE gap `MSE(har) - MSE(log_har)` on `vol_task.test.y[:, 0]`: `gap_calm`, `gap_turbulent`.
# Then report which half carries most of log-HAR's advantage: `edge_in_turbulent = True` if the
# turbulent half's gap is the larger one. One sentence to think about: why would one half dominate?

# %%
# SOLUTION
_turbulent = vol_base["log_har"][:, 0] >= np.median(vol_base["log_har"][:, 0])
_y = vol_task.test.y[:, 0]
gap_calm, gap_turbulent = (
    mse(_y[m], vol_base["har"][m, 0]) - mse(_y[m], vol_base["log_har"][m, 0])
    for m in (~_turbulent, _turbulent)
)
edge_in_turbulent = bool(gap_turbulent > gap_calm)

# %%
# SELF-CHECK
_total = mse(vol_task.test.y[:, 0], vol_base["har"][:, 0]) - mse(
    vol_task.test.y[:, 0], vol_base["log_har"][:, 0]
)
assert np.isfinite(gap_calm) and np.isfinite(gap_turbulent), "both gaps must be numbers"
# two halves of (almost) equal size: the whole-sample gap is the average of the two halves' gaps
assert abs((gap_calm + gap_turbulent) / 2 - _total) < 0.01 * max(abs(_total), 0.01), (
    "the two halves' gaps should average to the whole test set's gap: split at the median, MSE(har) - MSE(log_har)"
)
assert isinstance(edge_in_turbulent, bool | np.bool_), "edge_in_turbulent should be True or False"
assert edge_in_turbulent == (gap_turbulent > gap_calm), "edge_in_turbulent must follow from your two numbers"
print(
    f"Exercise 5 passed: MSE gap HAR - log-HAR {gap_calm:+.4f} on calm origins, {gap_turbulent:+.4f} on "
    f"turbulent ones: log-HAR's edge sits mostly in the {'turbulent' if edge_in_turbulent else 'calm'} half"
)

# %% [markdown]
# ## Summary
#
# * `load_prices` gives the same real data online and offline and records its source.
# * Daily returns have fat tails and almost no linear predictability; their squares are strongly
#   autocorrelated, so volatility is where forecasting pays.
# * The tasks split by time, leave a gap before each boundary and fit the scaler on training rows
#   only. Shuffled splits and all-data statistics inflate scores without improving any model.
# * Check the data: in the packaged S&P 500 the open is a stale copy of the last close before 2006, so the
#   volatility target uses Parkinson's high-low estimator, which means the same thing in every year.
# * Every table uses one protocol (frozen at the end of training by default), tests squared error and
#   QLIKE with a Newey-West Diebold-Mariano test against the benchmark of the rule, corrects the Jensen
#   gap of log forecasts causally (from errors already known), and marks the model confidence set. Return
#   forecasts that nest zero are judged by Clark-West. Every later chapter reports its models beside these
#   baselines and the linear window model, and says plainly when one of them wins. What they showed here:

# %%
print(
    f"Volatility benchmark by the rule: {BENCH}; with the linear window as a candidate: {rule_with_linear}."
)
for said in linear_said:
    print(said)
print(
    f"The Clark-West winners against zero for returns: {', '.join(wins) or 'none'}; the SPA test's p-value "
    f"for 'some model beats {BENCH} on next-day corrected QLIKE' is {spa['consistent']:.3f}."
)
