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
# model cannot beat log-HAR on volatility or zero on returns, we say so: that is a result.

# %%
# Parameters: every size of this notebook lives here.
TICKER = "^GSPC"  # S&P 500; offline data covers 1999-2018
LOOKBACK = 20  # days of history in each input window
HORIZONS = (1, 5)  # next day and next week
SEED = 0
LINEAR_EPOCHS = 15

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.tsa.stattools import acf
from torch import nn

from course_lib import get_device, set_seed
from course_lib.data.features import garman_klass, log_returns, parkinson, squared_returns, stale_open_share
from course_lib.data.prices import available_tickers, load_prices
from course_lib.data.windows import make_task
from course_lib.evaluation import (
    diebold_mariano,
    level_shift,
    loss_series,
    mse,
    newey_west_lags,
    r2_oos,
    results_table,
    return_baselines,
    spa_test,
    volatility_baselines,
)
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
ret_table

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
    row = table.loc[(h, name)]
    if row["DM_p"] < 0.05:
        return f"{name} is significantly {'better' if row['DM'] < 0 else 'worse'} than {bench} (DM p = {row['DM_p']:.3f})"
    return f"{name} is not distinguishable from {bench} (DM p = {row['DM_p']:.2f})"


for h in HORIZONS:
    members = ret_table.loc[h].index[ret_table.loc[h, "in_MCS"]].tolist()
    tests = "; ".join(verdict(ret_table, h, n, "zero") for n in ("hist_mean", "ar1"))
    best_r2 = ret_table.loc[h, "R2_oos"].max()
    print(f"h = {h}: {tests}. Best R2_oos {100 * best_r2:.2f}%. MCS: {members}.")

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
# consistently however noisy the proxy (Patton, 2011). Every volatility table tests both: `DM` on squared
# error, `DM_QLIKE` on QLIKE, each model against the log-HAR (the course's volatility benchmark).
#
# **The Jensen gap.** A model fitted to log volatility forecasts $\exp(\mathbb E\log\sigma^2)$, which is
# below $\mathbb E\sigma^2$: its variance is too low, and QLIKE punishes that. The cure is one number per
# horizon learnt on the **validation** years, the factor $c = \overline{\sigma^2/\hat\sigma^2}$ that
# minimises QLIKE there (`level_shift`; a lognormal form is also available). `QLIKE_lc` is the test QLIKE
# after that correction, and the QLIKE tests use the corrected forecasts, so a model is not rewarded or
# punished for its level alone.

# %%
vol_base = volatility_baselines(vol_task)
vol_table = results_table(vol_task, vol_base)
vol_table

# %%
vol_val = volatility_baselines(vol_task, "val")  # the validation forecasts the level correction learns from
shift = level_shift(vol_task.val.y, vol_val["log_har"])
factor = np.exp(2 * shift)
ql = vol_table["QLIKE"].unstack("model")
ql_lc = vol_table["QLIKE_lc"].unstack("model")
for j, h in enumerate(HORIZONS):
    members = vol_table.loc[h].index[vol_table.loc[h, "in_MCS"]].tolist()
    print(
        f"h = {h}: lowest MSE {vol_table.loc[h, 'MSE'].idxmin()}, lowest raw QLIKE {ql.loc[h].idxmin()}, "
        f"lowest corrected QLIKE {ql_lc.loc[h].idxmin()}. log-HAR's variance is too low by a factor "
        f"{factor[j]:.2f}; correcting it takes its QLIKE from {ql.loc[h, 'log_har']:.3f} to {ql_lc.loc[h, 'log_har']:.3f}. "
        f"MCS (corrected QLIKE): {members}."
    )

# %% [markdown]
# Compare the lowest raw QLIKE with the lowest corrected QLIKE in the lines above. Where they differ, the
# raw column was ranking variance *levels*: a model fitted in logs forecasts too low a variance and raw
# QLIKE punishes it for that alone. Once every model's level is learnt on the same validation years, the
# ranking reflects the *shape* of the forecasts.
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
# written). It sees the same inputs as every later model.

# %%
set_seed(SEED)
linear = nn.Sequential(nn.Flatten(), nn.Linear(LOOKBACK * len(vol_task.feature_names), len(HORIZONS)))
trainer = Trainer(linear, lr=3e-3, max_epochs=LINEAR_EPOCHS, device=device, seed=SEED)
history = trainer.fit(vol_task.train.X, vol_task.train.y, vol_task.val.X, vol_task.val.y)
linear_pred = trainer.predict(vol_task.test.X)
linear_val = trainer.predict(vol_task.val.X)
lin_table = results_table(
    vol_task, {"linear window": linear_pred, **vol_base}, val_predictions={"linear window": linear_val}
)
lin_table

# %% [markdown]
# **What the numbers say** (printed from the tables, so they follow the data):

# %%
for h in HORIZONS:
    t = lin_table.loc[h]
    row = t.loc["linear window"]
    others = t.drop(index="linear window")
    print(
        f"h = {h}: the linear window has MSE {row['MSE']:.4f} (log-HAR {t.loc['log_har', 'MSE']:.4f}, DM p = "
        f"{row['DM_p']:.3f}) and corrected QLIKE {row['QLIKE_lc']:.4f} (best baseline: "
        f"{others['QLIKE_lc'].idxmin()} {others['QLIKE_lc'].min():.4f}, DM_QLIKE p vs log-HAR = {row['p_QLIKE']:.3f}); "
        f"MCS: {t.index[t['in_MCS']].tolist()}."
    )
test_val = {"linear window": (linear_pred, linear_val)} | {
    b: (vol_base[b], vol_val[b]) for b in ("ewma", "garch", "har")
}
corrected_losses = pd.DataFrame(
    {
        n: loss_series(y1, p[:, 0] + level_shift(vol_task.val.y, v)[0], "qlike")
        for n, (p, v) in test_val.items()
    }
)
spa = spa_test(loss_series(y1, vol_base["log_har"][:, 0] + shift[0], "qlike"), corrected_losses)
print(
    f"SPA test, does any of the other four beat log-HAR on next-day corrected QLIKE? p = {spa['consistent']:.3f}."
)
wins = [f"{m} at h = {h}" for (h, m), row in ret_table.iterrows() if row["DM"] < 0 and row["DM_p"] < 0.05]
print(
    f"Returns: significantly better than zero (DM, 5%): {', '.join(wins) or 'nothing'}; the largest R2_oos is "
    f"{100 * ret_table['R2_oos'].max():.2f}% of the variance, and the MCS keeps "
    f"{[ret_table.loc[h].index[ret_table.loc[h, 'in_MCS']].tolist() for h in HORIZONS]} at h = {HORIZONS}."
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
# ### Exercise 1 (2 points): annualised volatility of 2008
# Using `returns` (percent log returns of the S&P 500), compute the annualised volatility of 2008 in
# percent: the standard deviation of that year's daily returns times $\sqrt{252}$. Store it in
# `vol_2008`.

# %%
# SOLUTION
vol_2008 = returns.loc["2008"].std() * np.sqrt(252)

# %%
# SELF-CHECK
assert isinstance(vol_2008, float | np.floating), "vol_2008 should be a single number"
assert 35 < vol_2008 < 50, f"2008 was a crisis year: expect roughly 40% annualised, got {vol_2008:.1f}"
# the S&P 500's realised volatility of 2008 is a published figure: 41.0% (Yahoo and the packaged data agree)
assert abs(vol_2008 - 41.0) < 0.3, f"got {vol_2008:.2f}: use the daily std of 2008 only, times sqrt(252)"
print(f"Exercise 1 passed: 2008's annualised volatility was {vol_2008:.1f}%")

# %% [markdown]
# ### Exercise 2 (2 points): where is the predictability?
# Compute the lag-1 autocorrelation of daily returns (`acf1_ret`) and of squared daily returns
# (`acf1_sq`) over the whole sample, e.g. with `returns.autocorr(lag=1)`.

# %%
# SOLUTION
acf1_ret = returns.autocorr(lag=1)
acf1_sq = (returns**2).autocorr(lag=1)

# %%
# SELF-CHECK
assert abs(acf1_ret) < 0.15, "returns are nearly uncorrelated day to day"
assert acf1_sq > 0.15, "squared returns are clearly autocorrelated: volatility clusters"
# statsmodels' acf (section 2) estimates the same quantity a slightly different way: they agree to ~1e-3
_acf_ret, _acf_sq = acf(returns, nlags=1)[1], acf(returns.pow(2), nlags=1)[1]
assert abs(acf1_ret - _acf_ret) < 0.005, "take the lag-1 autocorrelation of the returns themselves"
assert abs(acf1_sq - _acf_sq) < 0.005, (
    "square the returns (not their absolute value) before the autocorrelation"
)
print(
    f"Exercise 2 passed: lag-1 autocorrelation {acf1_ret:+.3f} for returns, {acf1_sq:+.3f} for squared returns"
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
# ## Summary
#
# * `load_prices` gives the same real data online and offline and records its source.
# * Daily returns have fat tails and almost no linear predictability; their squares are strongly
#   autocorrelated, so volatility is where forecasting pays.
# * The tasks split by time, leave a gap before each boundary and fit the scaler on training rows
#   only. Shuffled splits and all-data statistics inflate scores without improving any model.
# * Check the data: in the packaged S&P 500 the open is a stale copy of the last close before 2006, so the
#   volatility target uses Parkinson's high-low estimator, which means the same thing in every year.
# * The baselines are strong: zero for returns, HAR and log-HAR for volatility. Every table uses one
#   protocol (frozen at the end of training by default), tests squared error and QLIKE with a Newey-West
#   Diebold-Mariano test, corrects the Jensen gap of log forecasts on the validation years, and marks the
#   model confidence set. Every later chapter reports its models beside these baselines and says plainly
#   when a baseline wins.
