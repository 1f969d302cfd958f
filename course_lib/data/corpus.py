"""A pretraining corpus of daily log-volatility series that ships offline: real and synthetic.

A foundation model is only as good as the variety of series it has seen. This corpus holds:

* **real series** (:func:`real_series`): the daily log Parkinson volatility of the packaged tickers
  (``course_lib.data.prices``: ^GSPC, ^IXIC, AAPL, MSFT, IBM, GOOG), the log of the VIX index and a log
  volatility of WTI crude oil (``arch.data.vix``, ``arch.data.wti``: a 5-day mean of squared percent
  returns, as WTI has no high-low range there). Provenance and licences: data/README.md.
* **synthetic series** (:func:`synthetic_series`): GARCH(1,1) and GJR-GARCH paths simulated with
  ``arch`` (Student-t shocks), an AR(1) log-volatility (stochastic volatility) and a two-regime Markov
  switching log-volatility; each observed through a noisy variance proxy ``v_t = sigma_t^2 G_t``,
  ``G_t ~ Gamma(k, 1/k)``, as a realised range is.

An honest zero-shot test keeps something back twice: **held-out series** (``exclude``: never seen in
pretraining) and **held-out years** (``end``: every real series is cut there, so no pretraining value
comes from the evaluation years). A series with nothing left before ``end`` (the VIX starts in 2014)
is dropped, and :func:`real_series` says so in its ``dropped`` list.

:func:`sample_windows` draws the random training windows: a series uniformly, then a start uniformly.
"""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .features import VAR_FLOOR, feature_frame, horizon_log_vol
from .prices import available_tickers, load_prices

__all__ = [
    "Corpus",
    "Series",
    "contexts",
    "merge",
    "pretrain",
    "real_series",
    "sample_windows",
    "synthetic_series",
]


@dataclass
class Series:
    """One univariate daily series of the corpus (a log volatility), with where it came from."""

    name: str
    values: np.ndarray  # (T,) float32
    source: str
    dates: pd.DatetimeIndex | None = None  # None for synthetic paths

    def __len__(self) -> int:
        return len(self.values)


@dataclass
class Corpus:
    series: list[Series]
    dropped: list[str] = field(default_factory=list)  # "name: why" for series left out

    def summary(self) -> pd.DataFrame:
        rows = [
            {
                "series": s.name,
                "days": len(s),
                "first": s.dates[0].date() if s.dates is not None else "",
                "last": s.dates[-1].date() if s.dates is not None else "",
                "source": s.source,
            }
            for s in self.series
        ]
        return pd.DataFrame(rows).set_index("series")


def _arch_series() -> dict[str, tuple[pd.Series, str]]:
    from arch.data import vix, wti

    v = vix.load()["vix"].dropna()
    oil = wti.load()["DCOILWTICO"].dropna()
    oil = oil[oil > 0]
    ret = 100 * np.log(oil).diff().dropna()
    smooth = (ret**2).rolling(5).mean().dropna()
    return {
        "VIX": (np.log(v), "arch.data.vix: log of the CBOE VIX level"),
        "WTI": (
            horizon_log_vol(smooth, 1),
            "arch.data.wti: 0.5 log of the 5-day mean squared % return of WTI crude",
        ),
    }


def real_series(
    end: str = "2006-12-31", exclude: tuple[str, ...] = ("^IXIC",), min_days: int = 250
) -> Corpus:
    """The real log-volatility series, each cut at ``end`` (held-out years), without ``exclude``.

    ``exclude`` names held-out series (tickers or "VIX", "WTI"); a series with fewer than
    ``min_days`` days before ``end`` is dropped and listed in ``Corpus.dropped``.
    """
    end_ts = pd.Timestamp(end)
    candidates: dict[str, tuple[pd.Series, str]] = {}
    for ticker in available_tickers():
        if ticker in exclude:
            continue
        frame = feature_frame(load_prices(ticker, offline=True))
        candidates[ticker] = (
            frame["log_vol_parkinson"],
            f"course_lib.data.prices {ticker}: log Parkinson volatility",
        )
    for name, item in _arch_series().items():
        if name not in exclude:
            candidates[name] = item
    unknown = set(exclude) - set(available_tickers()) - {"VIX", "WTI"}
    if unknown:
        raise ValueError(
            f"exclude names unknown series {sorted(unknown)}; known: {available_tickers()} + VIX, WTI"
        )
    kept, dropped = [], [f"{name}: held out" for name in exclude]
    for name, (values, source) in candidates.items():
        values = values[values.index <= end_ts]
        if len(values) < min_days:
            dropped.append(f"{name}: {len(values)} days before {end_ts.date()} (< {min_days})")
            continue
        kept.append(Series(name, values.to_numpy(np.float32), source, values.index))
    return Corpus(kept, dropped)


def _observe(sigma2: np.ndarray, rng: np.random.Generator, k: float) -> np.ndarray:
    """0.5 log of a noisy variance proxy sigma^2 G, G ~ Gamma(k, 1/k) (mean 1)."""
    return (0.5 * np.log(np.maximum(sigma2 * rng.gamma(k, 1.0 / k, size=sigma2.shape), VAR_FLOOR))).astype(
        np.float32
    )


def synthetic_series(n_per_kind: int = 4, length: int = 2000, seed: int = 0) -> Corpus:
    """GARCH, GJR-GARCH (simulated with ``arch``), AR(1) and regime-switching log-volatility paths.

    Parameters are drawn per path around typical daily equity values (percent units), so the corpus
    covers calm and wild series; the same ``seed`` gives the same corpus.
    """
    from arch.univariate import GARCH, ConstantMean, StudentsT

    if n_per_kind < 1 or length < 100:
        raise ValueError(f"need n_per_kind >= 1 and length >= 100, got {n_per_kind} and {length}")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_per_kind):
        k = rng.uniform(2.0, 8.0)  # proxy precision
        for kind, o in (("GARCH", 0), ("GJR", 1)):
            model = ConstantMean(None, volatility=GARCH(p=1, o=o, q=1), distribution=StudentsT(seed=rng))
            persistence = rng.uniform(0.9, 0.99)
            alpha = rng.uniform(0.03, 0.12) if o == 0 else rng.uniform(0.0, 0.05)
            gamma = [rng.uniform(0.05, 0.15)] if o else []
            beta = persistence - alpha - (gamma[0] / 2 if o else 0.0)
            omega = rng.uniform(0.5, 2.0) * (1 - persistence)
            params = [0.0, omega, alpha, *gamma, beta, rng.uniform(5.0, 12.0)]
            sim = model.simulate(params, length, burn=250)
            out.append(
                Series(
                    f"{kind}-{i}",
                    _observe(sim["volatility"].to_numpy() ** 2, rng, k),
                    f"arch {kind}(1,1), t shocks",
                )
            )
        phi, mu, eta = rng.uniform(0.9, 0.995), rng.uniform(-0.3, 0.5), rng.uniform(0.1, 0.3)
        h = np.empty(length)
        h[0] = mu
        shocks = rng.standard_normal(length)
        for t in range(1, length):
            h[t] = mu + phi * (h[t - 1] - mu) + eta * np.sqrt(1 - phi**2) * shocks[t]
        out.append(Series(f"AR-{i}", _observe(np.exp(2 * h), rng, k), "AR(1) log volatility"))
        p_stay = rng.uniform(0.97, 0.995, size=2)
        levels = np.sort(rng.uniform(-0.5, 1.0, size=2))
        state, h2 = 0, np.empty(length)
        for t in range(length):
            state = state if rng.random() < p_stay[state] else 1 - state
            h2[t] = levels[state]
        h2 = h2 + np.convolve(0.1 * rng.standard_normal(length), np.ones(5) / 5, mode="same")
        out.append(
            Series(f"regime-{i}", _observe(np.exp(2 * h2), rng, k), "2-state Markov switching log volatility")
        )
    return Corpus(out)


def sample_windows(corpus: Corpus, n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random windows (n, length, 1) float32: a series uniformly, then a start uniformly."""
    usable = [s.values for s in corpus.series if len(s) >= length]
    if not usable:
        raise ValueError(
            f"no series of the corpus has {length} days; the longest has {max(map(len, corpus.series))}"
        )
    which = rng.integers(0, len(usable), size=n)
    starts = [rng.integers(0, len(usable[w]) - length + 1) for w in which]
    return np.stack([usable[w][s : s + length] for w, s in zip(which, starts, strict=True)])[..., None]


def merge(*corpora: Corpus) -> Corpus:
    """One corpus holding the series (and the dropped notes) of several."""
    return Corpus([s for c in corpora for s in c.series], [d for c in corpora for d in c.dropped])


def contexts(values: np.ndarray, rows: np.ndarray, length: int) -> np.ndarray:
    """The ``length`` values up to and including each origin row: (len(rows), length, 1) float32.

    Row t's context is ``values[t - length + 1 : t + 1]``: nothing after the forecast origin.
    """
    values, rows = np.asarray(values, dtype=np.float32), np.asarray(rows)
    if rows.min() < length - 1 or rows.max() >= len(values):
        raise ValueError(
            f"origin rows must lie in [{length - 1}, {len(values) - 1}] for contexts of {length} days"
        )
    index = rows[:, None] + np.arange(1 - length, 1)[None, :]
    return values[index][..., None]


def pretrain(
    model,
    corpus: Corpus,
    steps: int,
    length: int,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    device="cpu",
) -> list[float]:
    """Train ``model`` on its own next-step loss (``model.loss``) over random windows of the corpus.

    AdamW with a cosine learning-rate decay and gradient clipping; returns the loss of every step.
    The same ``seed`` draws the same windows. Used for pretraining and, on a one-series corpus, for
    fine-tuning.
    """
    import torch

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    losses = []
    for _ in range(steps):
        x = torch.from_numpy(sample_windows(corpus, batch_size, length, rng)).to(device)
        loss = model.loss(x)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the pretraining loss became {loss.item()} at step {len(losses)}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        schedule.step()
        losses.append(loss.item())
    model.eval()
    return losses
