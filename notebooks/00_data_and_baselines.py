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
# 4. score the baselines (zero, historical mean, AR(1); EWMA, GARCH, HAR) and compare forecasts with
#    the Diebold-Mariano test;
# 5. recognise the two leaks that inflate scores most often: a scaler (or any statistic) fitted on
#    all the data, and a shuffled split of overlapping windows.
#
# Every later chapter reuses these tasks and puts its deep models *beside these baselines*. If a deep
# model cannot beat HAR on volatility or zero on returns, we say so: that is a result.

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
from course_lib.data import available_tickers, load_prices
from course_lib.evaluation import (
    diebold_mariano,
    mse,
    r2_oos,
    results_table,
    return_baselines,
    volatility_baselines,
)
from course_lib.features import garman_klass, log_returns, parkinson, squared_returns
from course_lib.training import Trainer
from course_lib.windows import make_task

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

# %%
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

# %%
r = returns.to_numpy()
print(f"mean {r.mean():.3f}%  std {r.std():.3f}%  skew {stats.skew(r):.2f}  kurtosis {stats.kurtosis(r, fisher=False):.1f}")
lags = 30
acf_r = acf(r, nlags=lags, fft=True)[1:]
acf_r2 = acf(r**2, nlags=lags, fft=True)[1:]
band = 1.96 / np.sqrt(len(r))

fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
z = (r - r.mean()) / r.std()
axes[0].hist(z, bins=120, density=True, alpha=0.6, label="standardised returns")
grid = np.linspace(-6, 6, 400)
axes[0].plot(grid, stats.norm.pdf(grid), label="Normal")
axes[0].set(yscale="log", ylim=(1e-5, 1), title="Fat tails (log density)")
axes[0].legend()
axes[1].bar(np.arange(1, lags + 1) - 0.2, acf_r, width=0.4, label="returns")
axes[1].bar(np.arange(1, lags + 1) + 0.2, acf_r2, width=0.4, label="squared returns")
axes[1].axhspan(-band, band, color="grey", alpha=0.2, label="95% band under no correlation")
axes[1].set(xlabel="lag (days)", title="Autocorrelation")
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
# The volatility target of this course is built on Garman-Klass (GK).

# %%
proxies = pd.DataFrame(
    {"squared return": squared_returns(returns), "Parkinson": parkinson(prices), "Garman-Klass": garman_klass(prices)}
).dropna()
window = proxies.loc["2008-06":"2009-06"]
ax = np.sqrt(window).plot(figsize=(10, 3.5), lw=0.8, alpha=0.8)
ax.set(ylabel="daily volatility (%)", title="Three daily volatility proxies through the 2008 crisis")
plt.show()
print("day-to-day noise (std of log changes):")
print(np.log(proxies.clip(lower=1e-4)).diff().std().round(2))

# %% [markdown]
# ## 4. The two standard tasks
#
# A sample is made at a *forecast origin* $t$, the last day the model sees:
#
# $$X_t = (x_{t-L+1}, \dots, x_t), \qquad
#   y^{\text{ret}}_{t,h} = \sum_{k=1}^{h} r_{t+k}, \qquad
#   y^{\text{vol}}_{t,h} = \tfrac12 \log\Big(\tfrac1h \sum_{k=1}^{h} \hat\sigma^2_{\text{GK},t+k}\Big).$$
#
# The split is chronological: training origins up to 2006, validation 2007-2008, test 2009-2018.
# A sample belongs to a split only if all its target days do, so the last few days before each
# boundary are dropped (a **gap**): no target straddles two splits. The feature scaler is fitted on
# the rows that training inputs cover and on nothing later.

# %%
ret_task = make_task("returns", ticker=TICKER, lookback=LOOKBACK, horizons=HORIZONS)
vol_task = make_task("volatility", ticker=TICKER, lookback=LOOKBACK, horizons=HORIZONS)
print(ret_task)
print(vol_task)
print("input window:", ret_task.train.X.shape[1:], "features:", ret_task.feature_names)

fig, ax = plt.subplots(figsize=(10, 2.8))
for name, colour in zip(["train", "val", "test"], ["C0", "C1", "C2"], strict=True):
    s = vol_task.split(name)
    ax.plot(s.dates, s.y[:, 0], lw=0.4, color=colour, label=f"{name} ({len(s)} samples)")
ax.set(ylabel="next-day log vol", title="Volatility target by split (chronological, with gaps)")
ax.legend(loc="upper left")
plt.show()

# %% [markdown]
# ## 5. Baselines for returns
#
# * **zero**: tomorrow's log return is zero (a random walk in prices);
# * **historical mean**: the average return of all days up to $t$;
# * **AR(1)**: $r_{t+1} = \mu + \phi r_t + \varepsilon$, estimated with `arch` on an expanding window
#   and re-estimated every year.
#
# Metrics: MSE, MAE, out-of-sample $R^2$ against the historical mean
# ($R^2_{oos} = 1 - \sum (y-\hat y)^2 / \sum (y - \bar y_{hist})^2$), and directional accuracy (DA)
# beside the share of up days (always saying "up" already scores that much).

# %%
ret_base = return_baselines(ret_task)
results_table(ret_task, ret_base)

# %% [markdown]
# ### The Diebold-Mariano test
#
# Two forecasts with losses $L(e_{1,t})$ and $L(e_{2,t})$ give a loss differential
# $d_t = L(e_{1,t}) - L(e_{2,t})$. Under equal accuracy $\mathbb E[d_t] = 0$, and
#
# $$DM = \frac{\bar d}{\sqrt{\widehat{\mathrm{LRV}}(d)/T}}$$
#
# is approximately Normal, where the long-run variance uses a HAC (Newey-West) estimator because
# $h$-step errors overlap and are autocorrelated. `course_lib` adds the Harvey-Leybourne-Newbold
# small-sample correction. A negative statistic means the first forecast has the lower loss.
#
# In the table above, DM is each model against `zero`. On daily S&P 500 returns, none of the simple
# forecasts is distinguishable from zero: their $R^2_{oos}$ are within a fraction of a percent of 0.

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
# EWMA, GARCH and HAR come from the `arch` package; all four are re-estimated every year on data up to
# the forecast origin. The log-variance forecasts of the first three get the constant shift that centres
# their errors on the *training* years (the log of a noisy proxy sits below the log of its mean); no test data is used.
# QLIKE, $\frac{\sigma^2}{\hat\sigma^2} - \log\frac{\sigma^2}{\hat\sigma^2} - 1$, is the loss that ranks
# variance forecasts consistently with a noisy proxy. DM is each model against HAR.

# %%
vol_base = volatility_baselines(vol_task)
results_table(vol_task, vol_base)

# %%
span = slice(0, 500)
fig, ax = plt.subplots(figsize=(10, 3.5))
ax.plot(vol_task.test.dates[span], vol_task.test.y[span, 0], lw=0.5, color="grey", label="target (GK)")
for name, forecast in vol_base.items():
    ax.plot(vol_task.test.dates[span], forecast[span, 0], lw=1.2, label=name)
ax.set(ylabel="log daily vol (%)", title="Next-day volatility forecasts, 2009-2010")
ax.legend()
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
results_table(vol_task, {"linear window": linear_pred, **vol_base})

# %% [markdown]
# **What the numbers say.** The HAR regressions are the models to beat on volatility, the log-HAR
# (four coefficients) most of all. The linear window model beats HAR and lands level with the log-HAR,
# because both are linear functions of recent log volatility. On returns nothing beats zero in a
# statistically meaningful way. Keep these two tables in mind.

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
    scores[label] = {f"R2 (h={h})": r2_oos(y_te[:, j], pred[:, j], mean_forecast[:, j]) for j, h in enumerate(leak_task.horizons)}
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
# > `course_lib.checkpoint` saves a `state_dict` plus a JSON config and loads with
# > `weights_only=True`; a tampered file is refused.
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
assert abs(acf1_sq - _acf_sq) < 0.005, "square the returns (not their absolute value) before the autocorrelation"
print(f"Exercise 2 passed: lag-1 autocorrelation {acf1_ret:+.3f} for returns, {acf1_sq:+.3f} for squared returns")

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
assert np.isfinite(dm_garch_ewma.statistic) and 0 <= dm_garch_ewma.pvalue <= 1, "store diebold_mariano's result"
# the DM statistic has the sign of the mean loss difference (first forecast's minus second's)
_y = vol_task.test.y[:, 0]
_garch_lower = mse(_y, vol_base["garch"][:, 0]) < mse(_y, vol_base["ewma"][:, 0])
assert (dm_garch_ewma.statistic < 0) == _garch_lower, "compare garch (first) with ewma (second), next-day column"
assert isinstance(garch_better, bool | np.bool_), "garch_better should be True or False"
if garch_better:
    assert _garch_lower and dm_garch_ewma.pvalue < 0.05, "a win needs the lower loss AND p < 0.05"
else:
    assert not _garch_lower or dm_garch_ewma.pvalue >= 0.05, "GARCH has the lower loss and p < 0.05: it is better"
print(f"Exercise 4 passed: DM = {dm_garch_ewma.statistic:+.2f} (p = {dm_garch_ewma.pvalue:.3f}), GARCH better: {garch_better}")

# %% [markdown]
# ## Summary
#
# * `load_prices` gives the same real data online and offline and records its source.
# * Daily returns have fat tails and almost no linear predictability; their squares are strongly
#   autocorrelated, so volatility is where forecasting pays.
# * The tasks split by time, leave a gap before each boundary and fit the scaler on training rows
#   only. Shuffled splits and all-data statistics inflate scores without improving any model.
# * The baselines are strong: zero for returns, HAR and log-HAR for volatility. Every later chapter reports its
#   models beside them, with Diebold-Mariano tests, and says plainly when a baseline wins.
