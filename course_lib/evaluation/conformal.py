"""Conformal prediction: intervals whose coverage is a theorem, and the metrics that check it.

**Split conformal** (Vovk et al. 2005; Lei et al. 2018). Fit a forecaster on training data, then on a
separate calibration set of n points compute nonconformity scores S_i = s(y_i, forecast_i) and

    k = ceil((n + 1)(1 - alpha)),      q-hat = S_(k), the k-th smallest score   (q-hat = +inf if k > n)

The interval C(x) = {y : s(y, forecast(x)) <= q-hat} then covers a new exchangeable point with

    1 - alpha <= P(Y in C(X)) <= 1 - alpha + 1 / (n + 1)     (the upper bound when scores have no ties)

because the rank of the new score among the n + 1 scores is uniform. ``k`` is an order statistic,
not an interpolated quantile: the source module's ``torch.quantile(scores, ceil((n+1)(1-alpha))/n)``
interpolates, and crashes when that level exceeds 1 (n <= 8 at alpha = 0.1) instead of returning the
valid infinite interval; its ``|y - pred|`` with y (N,) and pred (N, 1) built an (N, N) score matrix.
Both are rows of docs/errata.md.

Scores (``SCORES``): ``"absolute"`` |y - mu| (interval mu -/+ q); ``"normalized"`` |y - mu| / sigma
for a model that also forecasts a scale (interval mu -/+ q sigma; heteroscedastic widths); ``"cqr"``,
conformalised quantile regression (Romano, Patterson & Candes 2019): E = max(lo - y, y - hi), interval
[lo - q, hi + q] (q < 0 shrinks an over-wide quantile band).

**Adaptive conformal inference** (ACI; Gibbs & Candes 2021, "Adaptive conformal inference under
distribution shift"). Markets are not exchangeable (volatility clusters, regimes change), so the level
itself is learnt online: with err_t = 1{y_t not in C_t(alpha_t)},

    alpha_{t+1} = alpha_t + gamma (alpha - err_t)

where C_t(a) uses the k = ceil((n+1)(1-a))-th smallest of the scores seen *before* t. alpha_t is NOT
clamped: alpha_t <= 0 gives the infinite interval (never an error) and alpha_t >= 1 the empty one (always
an error), which keeps alpha_t in [-gamma, 1 + gamma] and gives, for every sequence whatsoever,

    | (1/T) sum_t err_t - alpha | <= (max(alpha_1, 1 - alpha_1) + gamma) / (gamma T).

The source's clamp of alpha_t to [0.01, 0.5] voids that bound, and its interval was a Normal band
mu -/+ z sigma, not conformal at all (it under-covers whenever sigma is mis-scaled).

With several step sizes ``gammas`` the predictor runs the dynamically tuned ACI (DtACI) of Gibbs &
Candes (2024, JMLR 25, "Conformal inference for online prediction with arbitrary distribution shifts"):
one ACI expert per gamma, exponentially weighted by the pinball loss
l(beta_t, a) = alpha (beta_t - a) - min(0, beta_t - a) of beta_t = sup{a : y_t in C_t(a)}, mixed with
the uniform weights (sigma) so that the weights can move when the regime changes.

**Mondrian conformal** (Vovk et al. 2005): split conformal within each bin of a variable known in
advance (the forecast sigma), one q-hat per bin, so that coverage >= 1 - alpha holds in every bin
(:class:`MondrianConformalPredictor`), not only on average.

**Weighted conformal** (Barber et al. 2023): weights on the calibration scores, decaying with age, for
data that drift (:func:`weighted_conformal_quantile`).

**EnbPI** (Xu & Xie 2021, "Conformal prediction interval for dynamic time-series", ICML): no
calibration split. B models fitted on moving-block bootstrap resamples S_b of the T training points,
each point's out-of-bag residual from the models that never saw it, and a sliding window of residuals
that takes in each test residual once its label is known (:class:`EnbPI`).

Metrics: coverage, the worst coverage over rolling windows (250 days: a year), mean width, and the
interval score of Gneiting & Raftery (2007),
IS = (u - l) + (2 / alpha)(l - y) 1{y < l} + (2 / alpha)(y - u) 1{y > u}, a proper score (lower is
better) that rewards narrow intervals and punishes misses by how far they miss.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "SCORES",
    "AdaptiveConformalPredictor",
    "AdaptiveResult",
    "ConformalPredictor",
    "ConformalizedQuantileRegressor",
    "EnbPI",
    "MondrianConformalPredictor",
    "conformal_quantile",
    "conformal_rank",
    "coverage",
    "interval_metrics",
    "interval_score",
    "interval_scores",
    "mean_width",
    "moving_block_indices",
    "rolling_coverage",
    "weighted_conformal_quantile",
]

# The product (n + 1)(1 - alpha) picks up float round-off: (9 + 1)(1 - 0.7) = 3.0000000000000004, whose
# ceiling would be 4 instead of 3. Values within this tolerance of an integer are that integer.
_ROUND_OFF = 1e-9


def _check_alpha(alpha: float, name: str = "alpha") -> float:
    if not isinstance(alpha, int | float | np.floating) or not 0.0 < float(alpha) < 1.0:
        raise ValueError(
            f"{name} is a miscoverage level and must lie in (0, 1), got {alpha!r} (0.1 = 90% intervals)"
        )
    return float(alpha)


def _as_1d(name: str, a, allow_inf: bool = False) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D (one value per time step), got shape {a.shape}; pass one horizon at a "
            "time, e.g. y[:, 0] (an (N,) vs (N, 1) mix-up would silently broadcast to (N, N))"
        )
    if len(a) == 0:
        raise ValueError(f"{name} is empty")
    bad = np.isnan(a) if allow_inf else ~np.isfinite(a)
    if bad.any():
        raise ValueError(
            f"{name} contains NaN{'' if allow_inf else ' or inf'} (first at position {int(np.argmax(bad))})"
        )
    return a


def _same_length(**arrays: np.ndarray) -> None:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"arrays must have the same length (no silent broadcasting), got {lengths}")


# ---------------------------------------------------------------------------------------------
# Scores: s(y, forecast) and the interval {y : s <= q} they define
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    """A nonconformity score and its inverse: the interval {y : score(y, *forecast) <= q}."""

    forecast: tuple[str, ...]  # names of the forecast arrays, in order
    score: Callable[..., np.ndarray]
    interval: Callable[..., tuple[np.ndarray, np.ndarray]]


def _check_scale(sigma: np.ndarray) -> None:
    if np.any(sigma <= 0):
        raise ValueError(f"the scale sigma must be positive, found {int(np.sum(sigma <= 0))} values <= 0")


def _normalized_score(y, mu, sigma):
    _check_scale(sigma)
    return np.abs(y - mu) / sigma


def _normalized_interval(q, mu, sigma):
    _check_scale(sigma)
    return mu - q * sigma, mu + q * sigma


SCORES: dict[str, Score] = {
    "absolute": Score(("mu",), lambda y, mu: np.abs(y - mu), lambda q, mu: (mu - q, mu + q)),
    "normalized": Score(("mu", "sigma"), _normalized_score, _normalized_interval),
    "cqr": Score(
        ("lo", "hi"), lambda y, lo, hi: np.maximum(lo - y, y - hi), lambda q, lo, hi: (lo - q, hi + q)
    ),
}


def _score(name: str) -> Score:
    if name not in SCORES:
        raise ValueError(f"unknown score {name!r}; choose from {list(SCORES)}")
    return SCORES[name]


def _forecast_arrays(score: Score, forecast: Sequence, n: int | None = None) -> list[np.ndarray]:
    if len(forecast) != len(score.forecast):
        raise ValueError(f"this score needs the forecast arrays {score.forecast}, got {len(forecast)} arrays")
    arrays = [_as_1d(name, f) for name, f in zip(score.forecast, forecast, strict=True)]
    _same_length(**dict(zip(score.forecast, arrays, strict=True)))
    if n is not None and len(arrays[0]) != n:
        raise ValueError(f"y has {n} values but the forecast has {len(arrays[0])}")
    return arrays


# ---------------------------------------------------------------------------------------------
# The finite-sample quantile
# ---------------------------------------------------------------------------------------------


def conformal_rank(n: int, alpha: float) -> int:
    """k = ceil((n + 1)(1 - alpha)): the rank of the calibration score that is q-hat (k > n: q-hat = inf).

    ``alpha`` may lie outside (0, 1) here, as ACI's alpha_t does: k <= 0 means the empty interval.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return math.ceil((n + 1) * (1.0 - float(alpha)) - _ROUND_OFF)


def conformal_quantile(scores, alpha: float) -> float:
    """q-hat: the k-th smallest of the ``scores``, k = ceil((n+1)(1-alpha)); +inf if k > n.

    This is the split-conformal threshold that guarantees coverage >= 1 - alpha. It is an order
    statistic, not an interpolated quantile.
    """
    alpha = _check_alpha(alpha)
    scores = _as_1d("scores", scores)
    return _order_statistic(scores, conformal_rank(len(scores), alpha))


def weighted_conformal_quantile(scores, weights, alpha: float, test_weight: float = 1.0) -> float:
    """q-hat of nonexchangeable (weighted) conformal prediction (Barber, Candes, Ramdas & Tibshirani 2023).

    With fixed weights w_i >= 0 on the calibration scores S_i and w_{n+1} = ``test_weight`` on the new
    point, normalised to w~_i = w_i / (w_1 + ... + w_n + w_{n+1}),

        q-hat = the (1 - alpha) quantile of  sum_i w~_i delta_{S_i} + w~_{n+1} delta_{+inf}

    i.e. the smallest S_(j) whose cumulative weight (scores sorted) reaches 1 - alpha, +inf if none.
    Coverage >= 1 - alpha - sum_i w~_i d_TV(Z, Z^i) (the cost of swapping point i with the new one):
    weights that decay with age (w_i = rho^(n + 1 - i)) trade a little of the exchangeable guarantee for
    robustness to drift. Equal weights give split conformal's S_(k), k = ceil((n+1)(1-alpha)), exactly.
    """
    alpha = _check_alpha(alpha)
    scores, weights = _as_1d("scores", scores), _as_1d("weights", weights)
    _same_length(scores=scores, weights=weights)
    if np.any(weights < 0) or not test_weight > 0:
        raise ValueError("weights must be >= 0 and test_weight > 0 (the new point always carries weight)")
    order = np.argsort(scores, kind="stable")
    cum = np.cumsum(weights[order]) / (weights.sum() + test_weight)
    j = int(np.searchsorted(cum, 1.0 - alpha - _ROUND_OFF, side="left"))
    return float(scores[order][j]) if j < len(scores) else math.inf


def _order_statistic(scores: np.ndarray, k: int) -> float:
    """The k-th smallest score (1-based), +inf for k > n and -inf for k < 1 (ACI's alpha_t >= 1)."""
    if 1 <= k <= len(scores):
        return float(np.partition(scores, k - 1)[k - 1])
    return math.inf if k > len(scores) else -math.inf


def _order_statistic_sorted(sorted_scores: np.ndarray, k: int) -> float:
    if 1 <= k <= len(sorted_scores):
        return float(sorted_scores[k - 1])
    return math.inf if k > len(sorted_scores) else -math.inf


# ---------------------------------------------------------------------------------------------
# Split conformal and CQR
# ---------------------------------------------------------------------------------------------


class ConformalPredictor:
    """Split conformal prediction on top of any forecaster (its forecasts are the inputs).

    ``score``: ``"absolute"`` (forecast: mu), ``"normalized"`` (mu, sigma) or ``"cqr"`` (lo, hi); see
    the module docstring. ``calibrate(y_cal, *forecast_cal)`` computes q-hat; ``predict_interval(
    *forecast)`` returns (lower, upper). A calibration set too small for the level (k > n) raises unless
    ``allow_infinite=True``, which returns the (valid, useless) infinite interval instead.
    """

    def __init__(self, alpha: float = 0.1, score: str = "absolute", allow_infinite: bool = False):
        self.alpha = _check_alpha(alpha)
        self.score_name = score
        self.score = _score(score)
        self.allow_infinite = allow_infinite
        self.scores: np.ndarray | None = None
        self.q_hat: float | None = None
        self.k: int | None = None

    def calibrate(self, y, *forecast) -> "ConformalPredictor":
        y = _as_1d("y", y)
        arrays = _forecast_arrays(self.score, forecast, len(y))
        self.scores = self.score.score(y, *arrays)
        n = len(self.scores)
        self.k = conformal_rank(n, self.alpha)
        if self.k > n and not self.allow_infinite:
            need = math.ceil((1.0 - self.alpha) / self.alpha - _ROUND_OFF)
            raise ValueError(
                f"a calibration set of n={n} is too small for alpha={self.alpha}: k = ceil((n+1)(1-alpha)) = "
                f"{self.k} > n, so the only valid interval is infinite. Use at least n={need} calibration "
                "points, or pass allow_infinite=True to get the infinite interval"
            )
        self.q_hat = _order_statistic(self.scores, self.k)
        return self

    def predict_interval(self, *forecast) -> tuple[np.ndarray, np.ndarray]:
        if self.q_hat is None:
            raise RuntimeError("call calibrate(y_cal, *forecast_cal) before predict_interval")
        return self.score.interval(self.q_hat, *_forecast_arrays(self.score, forecast))


class ConformalizedQuantileRegressor(ConformalPredictor):
    """CQR (Romano, Patterson & Candes 2019): E_i = max(lo_i - y_i, y_i - hi_i), interval [lo - q, hi + q].

    ``lo``/``hi`` are a quantile model's alpha/2 and 1 - alpha/2 forecasts; with lo = hi = mu this is
    split conformal with absolute scores.
    """

    def __init__(self, alpha: float = 0.1, allow_infinite: bool = False):
        super().__init__(alpha, score="cqr", allow_infinite=allow_infinite)


class MondrianConformalPredictor:
    """Mondrian (group-conditional) split conformal (Vovk, Gammerman & Shafer 2005, ch. 4.5): one q-hat
    per bin of a variable ``by`` known before y is seen (the forecast sigma, a volatility regime).

    ``edges`` (increasing, fixed in advance) cut ``by`` into ``len(edges) + 1`` bins, bin b holding
    edges[b-1] <= by < edges[b]. In bin b, with n_b calibration points,

        q_b = S_(k_b),   k_b = ceil((n_b + 1)(1 - alpha))

    so a new point exchangeable with the calibration points of its own bin is covered with
    P(Y in C(X) | bin b) >= 1 - alpha for *every* bin, not only on average over bins (marginal split
    conformal can over-cover calm days and under-cover wild ones and still average 1 - alpha). The
    price: each bin has only n_b points, so q_b is noisier and k_b > n_b comes sooner. Learn the edges
    on other data (quantiles of sigma on a year before calibration, say), never on the calibration set.
    With no edges this is :class:`ConformalPredictor`.
    """

    def __init__(self, edges, alpha: float = 0.1, score: str = "absolute", allow_infinite: bool = False):
        edges = np.asarray(edges, dtype=np.float64).reshape(-1)
        if not np.isfinite(edges).all() or np.any(np.diff(edges) <= 0):
            raise ValueError(f"edges must be finite and strictly increasing, got {edges.tolist()}")
        self.edges = edges
        self.alpha = _check_alpha(alpha)
        self.score_name, self.allow_infinite = score, allow_infinite
        self.bins: list[ConformalPredictor] = []

    def bin_of(self, by) -> np.ndarray:
        """The bin index (0 .. len(edges)) of every value of ``by``."""
        return np.searchsorted(self.edges, _as_1d("by", by), side="right")

    def calibrate(self, y, *forecast, by) -> "MondrianConformalPredictor":
        y = _as_1d("y", y)
        b = self.bin_of(by)
        _same_length(y=y, by=b)
        forecast = [np.asarray(f) for f in forecast]
        self.bins = []
        for j in range(len(self.edges) + 1):
            mask = b == j
            if not mask.any():
                raise ValueError(
                    f"bin {j + 1} of {len(self.edges) + 1} (by in [{self._edge(j - 1)}, {self._edge(j)})) has no "
                    "calibration point; use fewer or wider bins"
                )
            cp = ConformalPredictor(self.alpha, self.score_name, self.allow_infinite)
            self.bins.append(cp.calibrate(y[mask], *[f[mask] for f in forecast]))
        return self

    @property
    def q_hat(self) -> np.ndarray:
        """q_b of every bin, shape (len(edges) + 1,)."""
        return np.array([cp.q_hat for cp in self.bins])

    def predict_interval(self, *forecast, by) -> tuple[np.ndarray, np.ndarray]:
        if not self.bins:
            raise RuntimeError("call calibrate(y_cal, *forecast_cal, by=...) before predict_interval")
        b = self.bin_of(by)
        arrays = _forecast_arrays(self.bins[0].score, forecast, len(b))
        lower, upper = np.empty(len(b)), np.empty(len(b))
        for j, cp in enumerate(self.bins):
            mask = b == j
            if mask.any():
                lower[mask], upper[mask] = cp.predict_interval(*[a[mask] for a in arrays])
        return lower, upper

    def _edge(self, j: int) -> float:
        return -math.inf if j < 0 else (math.inf if j >= len(self.edges) else float(self.edges[j]))


# ---------------------------------------------------------------------------------------------
# Adaptive conformal inference
# ---------------------------------------------------------------------------------------------


@dataclass
class AdaptiveResult:
    """Output of :meth:`AdaptiveConformalPredictor.run`, one entry per time step (all (T,))."""

    lower: np.ndarray
    upper: np.ndarray
    alpha_t: np.ndarray  # the level used at step t (before seeing y_t)
    err: np.ndarray  # 1.0 where y_t fell outside the interval
    gamma_t: np.ndarray  # the step size in use (the weighted mean over experts for DtACI)


def _pinball(beta: float, a: np.ndarray, alpha: float) -> np.ndarray:
    u = beta - a
    return alpha * u - np.minimum(0.0, u)


class AdaptiveConformalPredictor:
    """ACI (Gibbs & Candes 2021), or DtACI over several step sizes (Gibbs & Candes 2024); online.

    ``calibrate(y_cal, *forecast_cal)`` seeds the score history; ``run(y, *forecast)`` then walks through
    the sequence in time order: at step t the interval uses alpha_t and the scores of steps before t
    (the last ``window`` of them, or all), then y_t is revealed, err_t recorded, alpha updated and the
    score of step t appended. Nothing at step t depends on y_s for s >= t.

    ``gamma``: one step size (ACI) or a sequence of them (DtACI with ``sigma`` and ``eta``; defaults are
    the authors'). ``alpha_1`` is the starting level (default ``alpha``).
    """

    DTACI_GAMMAS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128)

    def __init__(
        self,
        alpha: float = 0.1,
        gamma: float | Sequence[float] = 0.005,
        score: str = "absolute",
        window: int | None = None,
        alpha_1: float | None = None,
        sigma: float = 1e-3,
        eta: float = 2.72,
    ):
        self.alpha = _check_alpha(alpha)
        gammas = np.atleast_1d(np.asarray(gamma, dtype=np.float64))
        if gammas.ndim != 1 or len(gammas) == 0 or not np.all(np.isfinite(gammas) & (gammas > 0)):
            raise ValueError(
                f"gamma must be a positive step size or a non-empty sequence of them, got {gamma!r}"
            )
        self.gammas = gammas
        self.score_name = score
        self.score = _score(score)
        if window is not None and (not isinstance(window, int) or window < 1):
            raise ValueError(
                f"window must be a positive int (number of recent scores) or None, got {window!r}"
            )
        self.window = window
        self.alpha_1 = self.alpha if alpha_1 is None else float(alpha_1)
        if not 0.0 <= sigma < 1.0 or not eta > 0:
            raise ValueError(f"DtACI needs 0 <= sigma < 1 and eta > 0, got sigma={sigma}, eta={eta}")
        self.sigma, self.eta = sigma, eta
        self.history: np.ndarray | None = None

    def calibrate(self, y, *forecast) -> "AdaptiveConformalPredictor":
        y = _as_1d("y", y)
        self.history = self.score.score(y, *_forecast_arrays(self.score, forecast, len(y)))
        return self

    def run(self, y, *forecast) -> AdaptiveResult:
        """Process the sequence online; see the class docstring. Returns an :class:`AdaptiveResult`."""
        if self.history is None:
            raise RuntimeError(
                "call calibrate(y_cal, *forecast_cal) first: ACI needs past scores to start from"
            )
        y = _as_1d("y", y)
        arrays = _forecast_arrays(self.score, forecast, len(y))
        scores = self.score.score(y, *arrays)  # score t is *used* only after step t
        T, K = len(y), len(self.gammas)
        experts = np.full(K, self.alpha_1)  # alpha_t of each expert
        weights = np.full(K, 1.0 / K)
        alpha_t, q_t, err, gamma_t = (np.empty(T) for _ in range(4))
        history = np.concatenate([self.history, scores])  # step t sees history[: n0 + t]
        n0 = len(self.history)
        for t in range(T):
            past = np.sort(history[max(0, n0 + t - self.window) if self.window else 0 : n0 + t])
            n = len(past)
            alpha_t[t] = weights @ experts
            gamma_t[t] = weights @ self.gammas
            q_t[t] = _order_statistic_sorted(past, conformal_rank(n, alpha_t[t]))
            err[t] = float(not scores[t] <= q_t[t])
            expert_err = np.array(
                [not scores[t] <= _order_statistic_sorted(past, conformal_rank(n, a)) for a in experts]
            )
            if K > 1:
                # beta_t = sup{a : y_t in C_t(a)} = 1 - #{past < score_t} / (n + 1): covered iff a < beta_t
                beta = 1.0 - np.searchsorted(past, scores[t], side="left") / (n + 1)
                w = weights * np.exp(-self.eta * _pinball(beta, experts, self.alpha))
                weights = (1.0 - self.sigma) * w / w.sum() + self.sigma / K
            experts = experts + self.gammas * (self.alpha - expert_err)
        lower, upper = self.score.interval(q_t, *arrays)
        return AdaptiveResult(lower=lower, upper=upper, alpha_t=alpha_t, err=err, gamma_t=gamma_t)


# ---------------------------------------------------------------------------------------------
# EnbPI: a bootstrap ensemble, out-of-bag residuals, a sliding window
# ---------------------------------------------------------------------------------------------


def moving_block_indices(n: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """One moving-block bootstrap resample (Kunsch 1989) of n time-ordered points, (n,) int.

    ceil(n / block) blocks of ``block`` consecutive indices, each starting uniformly in
    {0, ..., n - block}, concatenated and cut to n: resampling whole blocks keeps the serial dependence
    within a block.
    """
    if not isinstance(block, int | np.integer) or not 1 <= block <= n:
        raise ValueError(f"block must be an int in [1, n] with n = {n} points, got {block!r}")
    starts = rng.integers(0, n - block + 1, math.ceil(n / block))
    return (starts[:, None] + np.arange(block)).ravel()[:n]


class EnbPI:
    """Ensemble batch prediction intervals (Xu & Xie 2021, ICML, "Conformal prediction interval for
    dynamic time-series"), with any model: ``fit(X, y)`` returns a function ``predict(X) -> (N,)``.

    Training on (x_i, y_i), i = 1..T (``fit_ensemble``):

        f^b = fit(X[S_b], y[S_b]),   b = 1..B,   S_b a moving-block bootstrap resample of 1..T
        f_{-i}(x) = mean{ f^b(x) : i not in S_b }    (the ensemble of the models that never saw i)
        e_i = y_i - f_{-i}(x_i)                      (out-of-bag residuals; a point inside every S_b
                                                       has no f_{-i} and no residual)

    Test step t (``predict_interval``): the centre is the mean of the leave-one-out ensembles,
    f(x_t) = mean_i f_{-i}(x_t) (the aggregation of Xu & Xie and of MAPIE), and

        symmetric:  C_t = f(x_t) -/+ |e|_(k),   k = ceil((n + 1)(1 - alpha))
        asymmetric: C_t = [f(x_t) + e_(k_lo), f(x_t) + e_(k_hi)],
                    k_lo = floor((n + 1) alpha / 2), k_hi = ceil((n + 1)(1 - alpha / 2))

    over the n residuals in the window at t: the last ``window`` of the training residuals followed by
    the test residuals e_j = y_j - f(x_j) *whose label is known at t*, j <= t - ``delay`` (delay 1: a
    one-day-ahead forecast, yesterday's outcome is known; delay h for an h-day target). Each new residual
    pushes the oldest one out, which is how EnbPI adapts to a changing error distribution without
    refitting. ``window`` defaults to the number of training residuals (the paper's choice).

    What is proved is weaker than split conformal's finite-sample bound: Xu & Xie show coverage tends to
    1 - alpha as T grows when the errors are stationary and strongly mixing and the ensemble estimates the
    regression function consistently. Coverage here is measured, not guaranteed.
    """

    def __init__(
        self,
        fit: Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]],
        alpha: float = 0.1,
        n_models: int = 20,
        block: int = 22,
        window: int | None = None,
        symmetric: bool = True,
        seed: int = 0,
    ):
        if not callable(fit):
            raise ValueError("fit must be a callable fit(X, y) -> predict, with predict(X) -> (N,) forecasts")
        self.fit = fit
        self.alpha = _check_alpha(alpha)
        if not isinstance(n_models, int) or n_models < 1:
            raise ValueError(f"n_models must be a positive int, got {n_models!r}")
        if window is not None and (not isinstance(window, int) or window < 1):
            raise ValueError(f"window must be a positive int (number of residuals) or None, got {window!r}")
        self.n_models, self.block, self.window = n_models, block, window
        self.symmetric, self.seed = symmetric, seed
        self.predictors: list[Callable[[np.ndarray], np.ndarray]] = []
        self.weights: np.ndarray | None = None  # (B,): the test centre is predictions @ weights
        self.residuals: np.ndarray | None = None  # (n,) signed out-of-bag residuals, in time order
        self.n_without_residual = 0

    @staticmethod
    def _as_2d(X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (time steps, features), got shape {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("X contains NaN or inf")
        return X

    def _predict_all(self, X: np.ndarray) -> np.ndarray:
        out = np.column_stack([np.asarray(p(X), dtype=np.float64).reshape(len(X)) for p in self.predictors])
        return out  # (N, B)

    def fit_ensemble(self, X, y, resamples: Sequence[np.ndarray] | None = None) -> "EnbPI":
        """Fit the B bootstrap models and compute the out-of-bag residuals. ``resamples`` (B index arrays)
        replaces the moving-block draws, e.g. to reproduce another library's bootstrap."""
        X, y = self._as_2d(X), _as_1d("y", y)
        n = len(y)
        if len(X) != n:
            raise ValueError(f"X has {len(X)} rows but y has {n} values")
        if resamples is None:
            rng = np.random.default_rng(self.seed)
            resamples = [moving_block_indices(n, self.block, rng) for _ in range(self.n_models)]
        resamples = [np.asarray(idx) for idx in resamples]
        for idx in resamples:
            if (
                idx.ndim != 1
                or idx.dtype.kind not in "iu"
                or idx.size == 0
                or idx.min() < 0
                or idx.max() >= n
            ):
                raise ValueError(f"each resample must be a non-empty 1-D int array of indices in [0, {n})")
        self.predictors = [self.fit(X[idx], y[idx]) for idx in resamples]
        out_of_bag = np.ones((len(resamples), n), dtype=bool)  # (B, T)
        for b, idx in enumerate(resamples):
            out_of_bag[b, idx] = False
        counts = out_of_bag.sum(axis=0)  # (T,) models that never saw point i
        has = counts > 0
        if not has.any():
            raise ValueError(
                "every point is in every resample: no out-of-bag residual; use more or smaller blocks"
            )
        share = out_of_bag[:, has] / counts[has]  # (B, n): model b's weight in f_{-i}
        loo = np.sum(self._predict_all(X)[has] * share.T, axis=1)  # (n,) f_{-i}(x_i)
        self.residuals = y[has] - loo
        self.weights = share.mean(axis=1)  # mean_i f_{-i}(x) = sum_b weights_b f^b(x)
        self.n_without_residual = int((~has).sum())
        return self

    def predict(self, X) -> np.ndarray:
        """The centre f(x) = mean_i f_{-i}(x), (N,)."""
        if self.weights is None:
            raise RuntimeError("call fit_ensemble(X, y) before predict")
        return self._predict_all(self._as_2d(X)) @ self.weights

    def _bounds(self, past: np.ndarray) -> tuple[float, float]:
        n = len(past)
        if self.symmetric:
            q = _order_statistic(np.abs(past), conformal_rank(n, self.alpha))
            return -q, q
        k_lo = math.floor((n + 1) * self.alpha / 2 + _ROUND_OFF)
        return _order_statistic(past, k_lo), _order_statistic(past, conformal_rank(n, self.alpha / 2))

    def predict_interval(self, X, y=None, delay: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Intervals for the test steps of ``X`` in time order, (lower, upper), each (N,).

        With ``y`` (the test labels) the residual window slides online: step t uses the residuals of
        the steps j <= t - ``delay`` only. Without ``y`` every step uses the training residuals.
        """
        if self.residuals is None:
            raise RuntimeError("call fit_ensemble(X, y) before predict_interval")
        if not isinstance(delay, int) or delay < 1:
            raise ValueError(
                f"delay must be an int >= 1 (a label is known at the earliest one step after its forecast), got {delay!r}"
            )
        centre = self.predict(X)
        m = len(centre)
        if y is None:
            new = np.empty(0)
        else:
            y = _as_1d("y", y)
            if len(y) != m:
                raise ValueError(f"X has {m} rows but y has {len(y)} values")
            new = y - centre
        history = np.concatenate([self.residuals, new])
        n0 = len(self.residuals)
        width = self.window or n0
        lo_q, hi_q = np.empty(m), np.empty(m)
        for t in range(m):
            known = n0 + min(len(new), max(0, t - delay + 1))  # residuals of steps j <= t - delay
            lo_q[t], hi_q[t] = self._bounds(history[max(0, known - width) : known])
        return centre + lo_q, centre + hi_q


# ---------------------------------------------------------------------------------------------
# Metrics of interval forecasts
# ---------------------------------------------------------------------------------------------


def _interval_triple(y, lower, upper) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = _as_1d("y", y)
    lower, upper = _as_1d("lower", lower, allow_inf=True), _as_1d("upper", upper, allow_inf=True)
    _same_length(y=y, lower=lower, upper=upper)
    return y, lower, upper


def _covered(y, lower, upper) -> np.ndarray:
    return ((y >= lower) & (y <= upper)).astype(np.float64)


def coverage(y, lower, upper) -> float:
    """Fraction of targets inside [lower, upper]."""
    return float(np.mean(_covered(*_interval_triple(y, lower, upper))))


def rolling_coverage(y, lower, upper, window: int = 250) -> np.ndarray:
    """Coverage over every run of ``window`` consecutive steps: (N - window + 1,), entry i covers i..i+window-1."""
    y, lower, upper = _interval_triple(y, lower, upper)
    if not isinstance(window, int) or not 1 <= window <= len(y):
        raise ValueError(f"window must be an int in [1, {len(y)}] (the series length), got {window!r}")
    hits = np.concatenate([[0.0], np.cumsum(_covered(y, lower, upper))])
    return (hits[window:] - hits[:-window]) / window


def mean_width(lower, upper) -> float:
    """Mean of upper - lower (an empty interval counts as 0; an infinite one makes the mean infinite)."""
    lower, upper = _as_1d("lower", lower, allow_inf=True), _as_1d("upper", upper, allow_inf=True)
    _same_length(lower=lower, upper=upper)
    return float(np.mean(np.maximum(upper - lower, 0.0)))


def interval_scores(y, lower, upper, alpha: float) -> np.ndarray:
    """Interval score of Gneiting & Raftery (2007) of each step, (N,), for central (1 - alpha) intervals.

    An empty interval (lower > upper, ACI's alpha_t >= 1) counts as width 0 and misses by the distance
    to its nearer end; an infinite one scores +inf. Per-step scores feed a model confidence set
    (``course_lib.evaluation.model_confidence_set``).
    """
    alpha = _check_alpha(alpha)
    y, lower, upper = _interval_triple(y, lower, upper)
    empty = lower > upper
    miss = np.where(y < lower, lower - y, 0.0) + np.where(y > upper, y - upper, 0.0)
    miss = np.where(empty, np.minimum(np.abs(y - lower), np.abs(y - upper)), miss)
    return np.maximum(upper - lower, 0.0) + (2.0 / alpha) * miss


def interval_score(y, lower, upper, alpha: float) -> float:
    """Mean interval score (see :func:`interval_scores`); lower is better."""
    return float(np.mean(interval_scores(y, lower, upper, alpha)))


def interval_metrics(y, lower, upper, alpha: float, window: int = 250) -> dict[str, float]:
    """Coverage, worst rolling coverage over ``window`` steps, mean width, interval score, infinite count."""
    y, lower, upper = _interval_triple(y, lower, upper)
    return {
        "coverage": coverage(y, lower, upper),
        f"worst {window}d": float(rolling_coverage(y, lower, upper, window).min()),
        "width": mean_width(lower, upper),
        "interval score": interval_score(y, lower, upper, alpha),
        "infinite": int(np.sum(~np.isfinite(upper - lower) & (upper > lower))),
    }
