"""The economic reading of a volatility forecast (chapter 08): volatility targeting after costs, what a
mean-variance investor would pay for a forecast, and three VaR models backtested.

**The return's scale.** Every reading rescales the Parkinson forecast to the close-to-close return
scale with one factor learnt on validation (Parkinson ignores the overnight move, so it runs below the
return's variance):

    k^2 = mean( r_{t+1}^2 / sigma_hat_{t+1}^2 )  on validation          (:func:`return_scale`)

Like the level correction, k can be learnt three ways (``scale=``, :data:`SCALES`): not at all (k = 1),
on validation (the default of every reading), or causally, at each test origin from the returns already
known (the same expanding window as :func:`course_lib.evaluation.correction.causal_level_shift`, whose
formula it is with ``y = log |r|``); :func:`scale_variants` puts the three side by side.

**Volatility targeting** (Fleming, Kirby and Ostdiek 2001; Moreira and Muir 2017) holds
``w_t = target / (k sigma_hat_{t+1})`` of the index (capped at ``max_leverage``) from the close of day
t to the close of day t+1 (:func:`vol_targeting`, :func:`portfolio_returns`). Its daily return, net of a
proportional cost ``c`` (a fraction: 5 bp = 0.0005) per unit of weight traded, is

    r_p,t+1 = w_t R_t+1 - c |w_t - w_{t-1}|,     R = exp(r / 100) - 1 (the index's simple return)

(:func:`net_of_costs`; the first test day pays nothing: the position is taken to be held already). There
is no risk-free rate in the data, so the returns are read as excess returns.

* :func:`sharpe_ratio`: sqrt(252) mean(r_p) / sd(r_p).
* :func:`certainty_equivalent`: the certainty-equivalent return of a mean-variance investor with
  relative risk aversion gamma, CE = 252 [mean(r_p) - gamma/2 var(r_p)] (annualised, a fraction).
  Fleming, Kirby and Ostdiek's average utility (below) is mean(r_p) - gamma/2 mean(r_p^2): the two
  differ by gamma/2 mean(r_p)^2, about 10^-7 a day here.
* :func:`performance_fee`: Fleming, Kirby and Ostdiek's (2001) fee Delta, the return a
  quadratic-utility investor would give up each day to hold the model's portfolio instead of the
  benchmark forecast's. Their utility of gross returns R_p = 1 + r_p,
  U = W0 [R_p - gamma / (2 (1 + gamma)) R_p^2], is, up to a positive affine map, u(r) = r - gamma/2 r^2
  in the net return (divide by 1/(1+gamma) and drop the constant), so Delta solves

      sum_t u(r_model,t - Delta) = sum_t u(r_bench,t),

  the quadratic  gamma/2 Delta^2 + (1 - gamma m) Delta - (U_model - U_bench) = 0  (m = mean r_model,
  U = mean u(r)), whose root near zero is
  Delta = 2 (U_model - U_bench) / [(1 - gamma m) + sqrt((1 - gamma m)^2 + 2 gamma (U_model - U_bench))].
  Reported annualised in basis points (252 x 10^4 Delta).
* :func:`economic_value`: all three for one model against the benchmark at several cost levels, with
  moving-block bootstrap intervals (Kunsch 1989; ``arch.bootstrap.MovingBlockBootstrap``, seeded) for
  the Sharpe ratio and the fee; the model's and the benchmark's days are resampled together.

**Value at Risk.** ``VaR_t+1 = -q_alpha k sigma_hat_t+1`` with the standardised shock's ``alpha``
quantile ``q_alpha`` from one of three models (:func:`shock_quantile`), each fitted on the standardised
residuals z = r / (k sigma_hat) of the validation split (the course keeps no network's forecasts of
its own training years, where they would be in-sample anyway):

* ``"gaussian"``: q = Phi^-1(alpha);
* ``"student-t"``: q = t_nu^-1(alpha) sqrt((nu - 2) / nu), a Student-t scaled to unit variance, nu by
  maximum likelihood on z (:func:`fit_student_t`; Bollerslev 1987's GARCH-t shock);
* ``"fhs"``: filtered historical simulation (Barone-Adesi, Giannopoulos and Vosper 1999): q is the
  empirical ``alpha`` quantile of z, so the forecast volatility filters the returns and the history
  supplies the tail.

The violations are tested with Kupiec's (1995) proportion of failures and Christoffersen's (1998)
independence and conditional coverage (:func:`kupiec_test`, :func:`christoffersen_test`, which live in
:mod:`course_lib.evaluation.backtests` and are re-exported here).

References: Fleming, Kirby and Ostdiek (2001), "The economic value of volatility timing", Journal of
Finance 56(1); Moreira and Muir (2017), "Volatility-managed portfolios", Journal of Finance 72(4);
Barone-Adesi, Giannopoulos and Vosper (1999), "VaR without correlations for portfolios of derivative
securities", Journal of Futures Markets 19(5); Kunsch (1989), "The jackknife and the bootstrap for
general stationary observations", Annals of Statistics 17(3).
"""

import numpy as np
import pandas as pd
from scipy import optimize, stats

from ..data.windows import Task
from ..evaluation.backtests import christoffersen_test, kupiec_test
from ..evaluation.baselines import standard_baselines
from ..evaluation.correction import VARIANTS, causal_level_shift
from ..evaluation.protocol import benchmark_rule
from .entries import Entry
from .task import random_walk

PERIODS = 252  # trading days a year
VAR_METHODS = ("gaussian", "student-t", "fhs")
COSTS_BP = (0.0, 5.0, 10.0)  # proportional costs per unit of weight traded, basis points


def _flat(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return x


def _split_returns(task: Task, split: str) -> np.ndarray:
    """The index's next-day log return (percent) for each origin of ``split``: (N,)."""
    return task.frame["ret"].to_numpy()[task.split(split).rows + 1]


def return_scale(task: Task, val_logvol) -> float:
    """The factor k with E[r^2] = k^2 sigma_hat^2 on validation: Parkinson volatility -> return volatility."""
    r = _split_returns(task, "val")
    sigma = np.exp(_flat(val_logvol, "val_logvol"))
    if len(sigma) != len(r):
        raise ValueError(f"val_logvol has {len(sigma)} forecasts; the validation split has {len(r)} targets")
    return float(np.sqrt(np.mean(r**2 / sigma**2)))


SCALES = VARIANTS  # where the return scale k is learnt: "none", "validation" or "causal"


def _return_sigma(
    task: Task, split: str, logvol, val_logvol, scale: str = "validation"
) -> tuple[np.ndarray, np.ndarray]:
    """(r, k sigma_hat) on ``split``: the return (percent) and the forecast on its scale, each (N,)."""
    r = _split_returns(task, split)
    v = _flat(logvol, f"{split} forecasts")
    if len(v) != len(r):
        raise ValueError(f"{len(v)} {split} forecasts for a {split} split of {len(r)} targets")
    if scale == "validation":
        return r, return_scale(task, val_logvol) * np.exp(v)
    if scale == "none":
        return r, np.exp(v)
    if scale == "causal":  # k_t^2 = mean of r^2 / sigma_hat^2 over the days already known at origin t
        log_abs_r = 0.5 * np.log(np.maximum(r**2, 1e-12))  # a zero return: a ratio of 1e-12, not -inf
        return r, np.exp(v + causal_level_shift(log_abs_r, v, [1])[:, 0])
    raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")


def _weights(sigma: np.ndarray, target: float, max_leverage: float) -> np.ndarray:
    """w_t = target / (sqrt(252) sigma_hat_t+1), capped: sigma in daily percent, target in percent a year."""
    return np.minimum(target / np.sqrt(PERIODS) / sigma, max_leverage)


def vol_targeting(
    task: Task,
    test_logvol,
    val_logvol,
    target: float = 10.0,
    max_leverage: float = 3.0,
    scale: str = "validation",
) -> dict:
    """Volatility targeting on the S&P 500 with a forecast: position w_t = target / (k sigma_hat_{t+1}).

    ``target``: annualised volatility in percent; k from :func:`return_scale` (validation). Returns
    the realised annualised volatility of the targeted portfolio on the test years, its ratio to the
    target, the spread of its one-year rolling volatility around the target (RMSE, percent points) and
    the mean daily turnover ``mean |w_t - w_{t-1}|``. ``scale``: where k is learnt (:data:`SCALES`).
    """
    r, sigma = _return_sigma(task, "test", test_logvol, val_logvol, scale)
    w = _weights(sigma, target, max_leverage)
    pr = w * r
    realised = float(pr.std(ddof=1) * np.sqrt(PERIODS))
    rolling = pd.Series(pr).rolling(PERIODS).std().dropna().to_numpy() * np.sqrt(PERIODS)
    return {
        "realised vol": realised,
        "ratio": realised / target,
        "rolling RMSE": float(np.sqrt(np.mean((rolling - target) ** 2))),
        "turnover": float(np.mean(np.abs(np.diff(w)))),
    }


def portfolio_returns(
    task: Task, test_logvol, val_logvol, target: float = 10.0, max_leverage: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """The volatility-targeted portfolio's daily simple return before costs (a fraction) and its daily
    turnover ``|w_t - w_{t-1}|`` (0 on the first test day) on the test years: two arrays (N_test,)."""
    r, sigma = _return_sigma(task, "test", test_logvol, val_logvol)
    w = _weights(sigma, target, max_leverage)
    turnover = np.concatenate([[0.0], np.abs(np.diff(w))])
    return w * np.expm1(r / 100.0), turnover


def net_of_costs(gross, turnover, cost_bp: float) -> np.ndarray:
    """r_net = r_gross - (cost_bp / 10^4) |w_t - w_{t-1}|: proportional costs on the weight traded."""
    gross, turnover = _flat(gross, "gross returns"), _flat(turnover, "turnover")
    if gross.shape != turnover.shape:
        raise ValueError(f"gross returns {gross.shape} and turnover {turnover.shape} differ in length")
    if cost_bp < 0 or (turnover < 0).any():
        raise ValueError(f"costs and turnover must be >= 0 (cost_bp = {cost_bp})")
    return gross - cost_bp * 1e-4 * turnover


def sharpe_ratio(r, periods: int = PERIODS) -> float:
    """The annualised Sharpe ratio sqrt(periods) mean(r) / sd(r) of (excess) returns ``r``."""
    r = _flat(r, "returns")
    return float(np.sqrt(periods) * r.mean() / r.std(ddof=1))


def certainty_equivalent(r, gamma: float, periods: int = PERIODS) -> float:
    """The certainty-equivalent return of a mean-variance investor with risk aversion ``gamma``,
    CE = periods [mean(r) - gamma/2 var(r)] (annualised, a fraction; Fleming, Kirby and Ostdiek 2001)."""
    r = _flat(r, "returns")
    return float(periods * (r.mean() - 0.5 * gamma * r.var(ddof=0)))


def performance_fee(r_model, r_bench, gamma: float, periods: int = PERIODS) -> float:
    """Fleming, Kirby and Ostdiek's (2001) performance fee, annualised in basis points.

    The daily fee Delta with sum_t u(r_model,t - Delta) = sum_t u(r_bench,t), u(r) = r - gamma/2 r^2
    (their quadratic utility of gross returns with relative risk aversion ``gamma``, up to an affine
    map): the root near zero of gamma/2 Delta^2 + (1 - gamma m) Delta - (U_model - U_bench) = 0,
    m = mean(r_model), U = mean u(r). Positive: the investor would pay to switch to the model.
    """
    a, b = _flat(r_model, "r_model"), _flat(r_bench, "r_bench")
    if a.shape != b.shape:
        raise ValueError(f"r_model {a.shape} and r_bench {b.shape}: one return per day of the same days")
    if gamma <= 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")

    def u(x):
        return np.mean(x - 0.5 * gamma * x**2)

    gain, slope = u(a) - u(b), 1.0 - gamma * a.mean()
    disc = slope**2 + 2.0 * gamma * gain
    if slope <= 0 or disc < 0:
        raise ValueError(
            f"no fee solves the utility equation (gamma = {gamma} is beyond the quadratic's bliss point)"
        )
    delta = 2.0 * gain / (slope + np.sqrt(disc))
    return float(periods * 1e4 * delta)


def _statistics(gross, turnover, gross_b, turnover_b, *, costs_bp, gamma) -> np.ndarray:
    """[Sharpe at each cost, fee at each cost]: the function the bootstrap resamples."""
    sharpe, fee = [], []
    for c in costs_bp:
        net = net_of_costs(gross, turnover, c)
        sharpe.append(sharpe_ratio(net))
        fee.append(performance_fee(net, net_of_costs(gross_b, turnover_b, c), gamma))
    return np.array(sharpe + fee)


def economic_value(
    model: tuple[np.ndarray, np.ndarray],
    bench: tuple[np.ndarray, np.ndarray],
    costs_bp=COSTS_BP,
    gamma: float = 10.0,
    block_size: int = 22,
    reps: int = 500,
    seed: int = 0,
    size: float = 0.95,
) -> dict:
    """Sharpe ratio, certainty equivalent and performance fee of one portfolio against the benchmark's.

    ``model`` and ``bench``: ``(gross returns, turnover)`` of :func:`portfolio_returns` over the same days.
    For each cost c (basis points) returns ``Sharpe {c}bp``, ``CE {c}bp`` (percent a year) and
    ``fee {c}bp`` (bp a year), with percentile intervals ``... lo`` / ``... hi`` (level ``size``) for
    the Sharpe ratio and the fee from a moving-block bootstrap of ``reps`` resamples of blocks of
    ``block_size`` days (``arch.bootstrap.MovingBlockBootstrap``, seeded by ``seed``), the model's and the
    benchmark's days drawn together.
    """
    from arch.bootstrap import MovingBlockBootstrap

    g, t = (_flat(x, "model") for x in model)
    gb, tb = (_flat(x, "benchmark") for x in bench)
    if not (g.shape == t.shape == gb.shape == tb.shape):
        raise ValueError(f"model {g.shape, t.shape} and benchmark {gb.shape, tb.shape}: the same days")
    costs_bp = tuple(float(c) for c in costs_bp)
    kw = {"costs_bp": costs_bp, "gamma": gamma}
    point = _statistics(g, t, gb, tb, **kw)
    bs = MovingBlockBootstrap(block_size, g, t, gb, tb, seed=seed)
    lo, hi = bs.conf_int(lambda *a: _statistics(*a, **kw), reps=reps, method="percentile", size=size)
    out, n = {}, len(costs_bp)
    for i, c in enumerate(costs_bp):
        key = f"{c:g}bp"
        out[f"Sharpe {key}"], out[f"Sharpe {key} lo"], out[f"Sharpe {key} hi"] = point[i], lo[i], hi[i]
        out[f"CE {key}"] = 100 * certainty_equivalent(net_of_costs(g, t, c), gamma)
        j = n + i
        out[f"fee {key}"], out[f"fee {key} lo"], out[f"fee {key} hi"] = point[j], lo[j], hi[j]
    return out


def fit_student_t(z) -> float:
    """Degrees of freedom nu > 2 of a unit-variance Student-t, z = sqrt((nu - 2)/nu) T_nu, by maximum
    likelihood on standardised residuals ``z`` (searched in (2.05, 200]; 200 is practically Gaussian)."""
    z = _flat(z, "standardised residuals")
    if len(z) < 20:
        raise ValueError(f"fit_student_t needs at least 20 residuals, got {len(z)}")

    def nll(nu):
        s = np.sqrt((nu - 2.0) / nu)
        return -np.sum(stats.t.logpdf(z / s, nu) - np.log(s))

    res = optimize.minimize_scalar(nll, bounds=(2.05, 200.0), method="bounded", options={"xatol": 1e-4})
    return float(res.x)


def shock_quantile(z_fit, alpha: float, method: str = "gaussian") -> tuple[float, float]:
    """The ``alpha`` quantile of the unit-variance shock under ``method`` (one of :data:`VAR_METHODS`),
    fitted on standardised residuals ``z_fit``: ``(q, nu)`` (nu is NaN but for ``"student-t"``)."""
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha is the VaR's tail probability in (0, 0.5), got {alpha}")
    z = _flat(z_fit, "z_fit")
    if method == "gaussian":
        return float(stats.norm.ppf(alpha)), float("nan")
    if method == "student-t":
        nu = fit_student_t(z)
        return float(stats.t.ppf(alpha, nu) * np.sqrt((nu - 2.0) / nu)), nu
    if method == "fhs":
        if alpha * len(z) < 1:
            raise ValueError(f"{len(z)} residuals cannot give an empirical {alpha} quantile")
        return float(np.quantile(z, alpha)), float("nan")
    raise ValueError(f"unknown VaR method {method!r}; choose one of {VAR_METHODS}")


def value_at_risk(sigma, z_fit, alpha: float = 0.01, method: str = "gaussian") -> np.ndarray:
    """VaR_t = -q_alpha sigma_t: the loss exceeded with probability ``alpha`` (positive), (N,), for
    forecasts ``sigma`` on the return's scale and the shock quantile of :func:`shock_quantile`."""
    q, _ = shock_quantile(z_fit, alpha, method)
    return -q * _flat(sigma, "sigma")


def breach_tests(r, var, alpha: float) -> dict:
    """Breaches ``r < -VaR`` and their tests: count, rate, Kupiec's p-value, Christoffersen's
    independence and conditional-coverage p-values."""
    r, var = _flat(r, "returns"), _flat(var, "VaR")
    if r.shape != var.shape:
        raise ValueError(f"returns {r.shape} and VaR {var.shape}: one VaR per day")
    hits = r < -var
    _, p = kupiec_test(hits, alpha)
    ch = christoffersen_test(hits, alpha)
    return {
        "violations": int(hits.sum()),
        "rate": float(hits.mean()),
        "p_kupiec": p,
        "p_ind": ch["p_ind"],
        "p_cc": ch["p_cc"],
    }


def standardised_residuals(task: Task, split: str, logvol, val_logvol) -> np.ndarray:
    """z = r / (k sigma_hat) on ``split`` (N,): the return over the forecast on its scale (k from
    validation). Its root mean square is 1 on validation by construction of k; on the test years, above
    1 means the forecast ran below the realised volatility, below 1 above it (a conservative forecast)."""
    r, sigma = _return_sigma(task, split, logvol, val_logvol)
    return r / sigma


def var_backtest(
    task: Task,
    test_logvol,
    val_logvol,
    alpha: float = 0.01,
    method: str = "gaussian",
    scale: str = "validation",
) -> dict:
    """An ``alpha`` VaR from a volatility forecast, backtested on the test years.

    VaR_{t+1} = -q_alpha k sigma_hat_{t+1} (k from :func:`return_scale`, q_alpha of ``method``:
    ``"gaussian"``, ``"student-t"`` or ``"fhs"``, fitted on the validation residuals z = r / (k sigma_hat)).
    Returns the violation count and rate, Kupiec's p-value, Christoffersen's independence and
    conditional-coverage p-values, and ``nu`` for the Student-t. ``scale``: where k is learnt on the test
    years (:data:`SCALES`); the shock quantile is always fitted on validation residuals.
    """
    r, sigma = _return_sigma(task, "test", test_logvol, val_logvol, scale)
    q, nu = shock_quantile(standardised_residuals(task, "val", val_logvol, val_logvol), alpha, method)
    out = breach_tests(r, -q * sigma, alpha)
    if method == "student-t":
        out["nu"] = nu
    return out


VAR_PREFIX = {"gaussian": "VaR", "student-t": "VaR-t", "fhs": "VaR-FHS"}  # economic_table's columns


def economic_table(
    task: Task,
    table: pd.DataFrame,
    entries: list[Entry],
    models: list[str] | None = None,
    costs_bp=COSTS_BP,
    gamma: float = 10.0,
    alpha: float = 0.01,
    reps: int = 500,
    block_size: int = 22,
    seed: int = 0,
    **kw,
) -> pd.DataFrame:
    """What the seed ensembles of ``models`` (default: every entry) are worth, beside HAR and GARCH (and
    the combination when the table has one), one row each:

    * ``vt ...``: volatility targeting (:func:`vol_targeting`; ``kw``: ``target``, ``max_leverage``);
    * ``Sharpe {c}bp``, ``CE {c}bp`` (percent a year, risk aversion ``gamma``) and ``fee {c}bp`` (bp a
      year against the benchmark forecast's portfolio: ``table.attrs["benchmark"]``, else the benchmark
      rule's) at each cost of ``costs_bp``, with block-bootstrap intervals ``lo`` / ``hi``
      (:func:`economic_value`);
    * ``z rms``: the root mean square of the test shocks (:func:`standardised_residuals`): below 1, the
      forecast on the return's scale ran above the realised volatility of the test years;
    * ``VaR ...``, ``VaR-t ...``, ``VaR-FHS ...``: the Gaussian, Student-t and filtered-historical
      ``alpha`` VaR backtests (:func:`var_backtest`), ``VaR-t nu`` the fitted degrees of freedom.
    """
    base_t, base_v = standard_baselines(task, "test", "frozen"), standard_baselines(task, "val", "frozen")
    pool = {e.name: (np.mean(e.test, axis=0), np.mean(e.val, axis=0)) for e in entries}
    pool |= {n: (base_t[n], base_v[n]) for n in base_t}
    pool |= {"random_walk": (random_walk(task, "test"), random_walk(task, "val"))}
    bench = table.attrs.get("benchmark") or benchmark_rule(task)
    if bench not in pool:
        raise ValueError(f"the benchmark {bench!r} is neither an entry nor a baseline")
    series = {e.name: pool[e.name] for e in entries} | {n: pool[n] for n in ("har", "garch")}
    series.setdefault(bench, pool[bench])
    weights = table.attrs.get("weights")
    if weights is not None:
        series["combination"] = tuple(sum(w * pool[k][i] for k, w in weights.items()) for i in (0, 1))
    names = models or list(series)
    unknown = [n for n in names if n not in series]
    if unknown:
        raise ValueError(f"economic_table: no forecasts for {unknown}; known: {sorted(series)}")
    target = {k: kw[k] for k in ("target", "max_leverage") if k in kw}
    bench_pf = portfolio_returns(task, *pool[bench], **target)
    rows = {}
    for n in names:
        t, v = series[n]
        rows[n] = {f"vt {k}": x for k, x in vol_targeting(task, t, v, **kw).items()}
        rows[n]["z rms"] = float(np.sqrt(np.mean(standardised_residuals(task, "test", t, v) ** 2)))
        rows[n] |= economic_value(
            portfolio_returns(task, t, v, **target),
            bench_pf,
            costs_bp=costs_bp,
            gamma=gamma,
            block_size=block_size,
            reps=reps,
            seed=seed,
        )
        for method, prefix in VAR_PREFIX.items():
            res = var_backtest(task, t, v, alpha=alpha, method=method)
            rows[n] |= {f"{prefix} {k}": x for k, x in res.items()}
    out = pd.DataFrame(rows).T
    out.attrs.update(benchmark=bench, gamma=gamma, alpha=alpha, costs_bp=tuple(costs_bp))
    return out


def summary_columns(econ: pd.DataFrame) -> list[str]:
    """The columns of an :func:`economic_table` worth a printed table: realised volatility and turnover,
    the Sharpe ratio and the fee (with its interval) at the lowest and the highest cost, ``z rms`` and
    each VaR's breach rate and Kupiec and conditional-coverage p-values."""
    costs = econ.attrs.get("costs_bp", COSTS_BP)
    ends = [f"{c:g}bp" for c in dict.fromkeys((costs[0], costs[-1]))]
    cols = ["vt realised vol", "vt turnover"]
    cols += [f"Sharpe {c}" for c in ends] + [f"fee {c}{e}" for c in ends for e in ("", " lo", " hi")]
    cols += ["z rms"] + [f"{p} {k}" for p in VAR_PREFIX.values() for k in ("rate", "p_kupiec", "p_cc")]
    return [c for c in cols if c in econ.columns]


def scale_variants(task: Task, forecasts: dict, target: float = 10.0, alpha: float = 0.01) -> pd.DataFrame:
    """Volatility targeting's realised volatility and the Gaussian VaR's breach rate of each forecast
    (name -> (test log-vol, validation log-vol)) with the return scale k learnt each way of :data:`SCALES`:
    whether a verdict on the economic value is the forecast's or the scale's."""
    rows = {}
    for name, (t, v) in forecasts.items():
        for scale in SCALES:
            rows[name, scale] = {
                "vt realised vol": vol_targeting(task, t, v, target=target, scale=scale)["realised vol"],
                "VaR rate": var_backtest(task, t, v, alpha=alpha, scale=scale)["rate"],
            }
    out = pd.DataFrame(rows).T.unstack()
    out.attrs.update(target=target, alpha=alpha)
    return out
