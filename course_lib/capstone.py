"""The capstone (chapter 08): one fixed task, one leaderboard, and what the forecasts are worth.

The task (fixed, so that results compare with numbers measured outside the course)::

    v_t   = log sqrt( ln(H_t / L_t)^2 / (4 ln 2) )          next-day log Parkinson volatility
    X_t   = [r, v, log volume change] over days t-59 .. t    60 days, z-scored with training statistics
    y_t   = v_{t+1}

on the S&P 500 of the ``arch`` package, split by the date of the *target*: train <= 2006-12-31,
validation 2007-2008, test 2009-01-02 .. 2018-12-31 (2516 targets). ``v`` is in log percent (the
course's unit, :mod:`course_lib.data.features`), i.e. the issue's v plus log(100): MSE and QLIKE do not
change under that shift.

Then:

* :func:`train_entry` trains any model of the registry's families (by name, with a size config) for
  several seeds through the :class:`~course_lib.training.Trainer`; :func:`leaderboard_entry` wraps a
  learner's own forecasts; :func:`leaderboard` puts entries, the baselines (EWMA, GARCH, HAR, log-HAR,
  random walk) and a forecast combination into one table (QLIKE raw and level-corrected, MSE, DM
  against HAR on QLIKE with Newey-West variance, seeds beating HAR, the seed ensemble, time,
  parameters, the 90% model confidence set); :func:`evaluate_submission` is that in one call.
* Two families keep the training protocol of their chapter: :func:`foundation_entries` (chapter
  06b's patch model, pretrained on a corpus without the S&P 500 and cut at the end of the training
  years, zero-shot and fine-tuned) and :func:`koopman_entry` (chapter 06e's deep Koopman model on
  its own losses). The TFT trains on its pinball loss, and the leaderboard scores its median.
* :func:`combination_weights`: weights of a forecast combination, learnt on the validation split only.
* The economic reading: :func:`vol_targeting` (realised volatility of a volatility-targeted
  portfolio against its target, turnover) and :func:`var_backtest` (1% VaR with the Kupiec and
  Christoffersen tests, :func:`kupiec_test`, :func:`christoffersen_test`). Both rescale the
  Parkinson forecast to the close-to-close return scale with one factor learnt on validation
  (Parkinson ignores the overnight move, so it runs below the return's variance).
"""

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from scipy import optimize, stats
from torch import nn

from . import get_device, set_seed
from .data.features import feature_frame, validate_series
from .data.prices import load_prices
from .data.windows import SplitData, StandardScaler, Task, make_windows
from .evaluation import loss_series, seed_summary
from .models import (
    CNNLSTM,
    AttentionLSTM,
    FinancialGRU,
    FinancialLSTM,
    FinancialMamba,
    FinancialS4D,
    FinancialTransformer,
    NeuralODE,
    TemporalConvNet,
    TemporalFusionTransformer,
    TimeSeriesFoundationModel,
    WaveNet,
)
from .models.koopman import DeepKoopmanFinance, fit_koopman
from .training import PinballLoss, Trainer

FEATURES = ["ret", "log_vol_parkinson", "volume_change"]
LOOKBACK = 60
TRAIN_END, VAL_END, TEST_START, TEST_END = "2006-12-31", "2008-12-31", "2009-01-02", "2018-12-31"
N_TEST = 2516  # targets from 2009-01-02 to 2018-12-31
BENCHMARK = "har"
# The numbers measured outside the course on exactly this task (issue 20): raw test QLIKE, 5 seeds.
OUTSIDE = {
    "darts TCNModel": 0.447,
    "pytorch-forecasting TFT": 0.464,
    "neuralforecast PatchTST": 0.538,
    "neuralforecast NHITS": 0.652,
    "HAR": 0.518,
    "EWMA": 0.516,
    "GARCH(1,1)": 0.534,
    "random walk": 0.786,
}
GOAL = {"QLIKE": 0.41, "QLIKE_lc": 0.37}  # the goal for the best course model (mean over seeds)


# ---------------------------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------------------------


def capstone_task(prices: pd.DataFrame | None = None) -> Task:
    """The capstone's fixed task as a :class:`~course_lib.data.windows.Task` (see the module docstring).

    Samples are split by the date of their target (one day ahead): a window may look back into the
    previous split, its target never lies outside its own. The scaler is fitted on the rows the
    training inputs cover (up to the last training origin) and nothing later. ``prices`` (an OHLCV
    frame) replaces the packaged S&P 500 of ``arch`` (for tests); the default is always the
    packaged data, offline, so that every learner has the same task.
    """
    if prices is None:
        prices = load_prices("^GSPC", end=TEST_END, offline=True)
    else:
        validate_series(prices, "prices", min_length=LOOKBACK + 24)
    frame = feature_frame(prices)
    X, y, origins = make_windows(
        frame[FEATURES].to_numpy(), frame["var_parkinson"].to_numpy(), LOOKBACK, (1,), "volatility"
    )
    target_date = frame.index[origins + 1]
    bounds = {
        "train": (None, TRAIN_END),
        "val": (pd.Timestamp(TRAIN_END) + pd.Timedelta(days=1), VAL_END),
        "test": (TEST_START, TEST_END),
    }
    masks = {}
    for name, (lo, hi) in bounds.items():
        mask = np.asarray(target_date <= pd.Timestamp(hi))
        if lo is not None:
            mask &= np.asarray(target_date >= pd.Timestamp(lo))
        if not mask.any():
            raise ValueError(
                f"the {name} split is empty: the prices run {frame.index[0].date()} to {frame.index[-1].date()}, "
                f"the {name} targets must fall in {lo or 'the start'} .. {hi}"
            )
        masks[name] = mask
    last_train_row = origins[masks["train"]].max()
    scaler = StandardScaler().fit(frame[FEATURES].to_numpy()[: last_train_row + 1])
    mean, scale = scaler.mean_.astype(np.float32), scaler.scale_.astype(np.float32)
    splits = {
        name: SplitData(X=(X[m] - mean) / scale, y=y[m], dates=frame.index[origins[m]], rows=origins[m])
        for name, m in masks.items()
    }
    return Task(
        kind="volatility",
        ticker=prices.attrs.get("ticker", "^GSPC"),
        lookback=LOOKBACK,
        horizons=(1,),
        feature_names=list(FEATURES),
        frame=frame,
        scaler=scaler,
        source=prices.attrs.get("source", "user-supplied prices"),
        target_column="var_parkinson",
        **splits,
    )


def target_dates(task: Task, split: str) -> pd.DatetimeIndex:
    """The dates of the targets (the day after each origin) of one split."""
    return task.frame.index[task.split(split).rows + 1]


def random_walk(task: Task, split: str) -> np.ndarray:
    """The random walk of log volatility: tomorrow's v is today's, (N, 1)."""
    return task.frame["log_vol_parkinson"].to_numpy()[task.split(split).rows, None].astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Entries: trained course models or a learner's own forecasts
# ---------------------------------------------------------------------------------------------


@dataclass
class Entry:
    """One leaderboard row before scoring: forecasts per seed on validation and test (each (N, 1))."""

    name: str
    test: list[np.ndarray]
    val: list[np.ndarray]
    family: str = "learner"
    seconds: float = float("nan")  # training time per seed
    params: int | None = None
    protocol: str = "frozen"
    extra: dict = field(default_factory=dict)


def _check_forecasts(task: Task, name: str, split: str, preds) -> list[np.ndarray]:
    if isinstance(preds, np.ndarray | torch.Tensor):
        preds = [preds]
    if len(preds) == 0:
        raise ValueError(f"{name}: no {split} forecasts (give one array per seed)")
    n = len(task.split(split))
    out = []
    for s, p in enumerate(preds):
        p = np.asarray(p.detach().cpu() if isinstance(p, torch.Tensor) else p, dtype=np.float64)
        given = p.shape
        if p.ndim == 1:
            p = p[:, None]
        if p.shape != (n, 1):
            raise ValueError(
                f"{name}: seed {s} {split} forecasts have shape {given}; the {split} split has {n} targets, "
                f"so give ({n}, 1) or ({n},) log-volatility forecasts, one per target in task.{split}.dates order"
            )
        if not np.isfinite(p).all():
            raise ValueError(f"{name}: seed {s} {split} forecasts contain NaN or inf")
        out.append(p)
    return out


def leaderboard_entry(
    name: str,
    test_predictions,
    val_predictions,
    task: Task,
    family: str = "learner",
    seconds: float = float("nan"),
    params: int | None = None,
) -> Entry:
    """A learner's own forecasts as a leaderboard entry (checked against the task's splits).

    ``test_predictions`` / ``val_predictions``: one array per seed (or one array), log-volatility
    forecasts of ``task.test.y`` / ``task.val.y``. The validation forecasts are required: the level
    correction and the combination weights are learnt on them, never on the test years.
    """
    test = _check_forecasts(task, name, "test", test_predictions)
    val = _check_forecasts(task, name, "val", val_predictions)
    if len(test) != len(val):
        raise ValueError(f"{name}: {len(test)} test seeds but {len(val)} validation seeds")
    return Entry(name, test, val, family=family, seconds=seconds, params=params)


# Course models for the leaderboard: family, class and the size configs (``input_size`` is added).
# "full" keeps one seed of every family within about 40 s of CPU (Mamba's scan is the slow one on a
# CPU: it stays narrow), so that ``make leaderboard`` fits its hour on a 2-core machine.
MODELS: dict[str, tuple[str, type[nn.Module], dict[str, dict]]] = {
    "LSTM": (
        "recurrent",
        FinancialLSTM,
        {"small": dict(hidden_size=16), "full": dict(hidden_size=32, n_layers=2, dropout=0.1)},
    ),
    "GRU": (
        "recurrent",
        FinancialGRU,
        {"small": dict(hidden_size=16), "full": dict(hidden_size=32, n_layers=2, dropout=0.1)},
    ),
    "Transformer": (
        "attention",
        FinancialTransformer,
        {
            "small": dict(hidden_size=16, n_heads=2, n_layers=1, dim_feedforward=32),
            "full": dict(hidden_size=32, n_heads=4, n_layers=2, dim_feedforward=64, dropout=0.1),
        },
    ),
    "TFT": (  # trained on its own pinball loss; the leaderboard scores the median
        "TFT",
        TemporalFusionTransformer,
        {
            "small": dict(hidden_size=16, n_heads=2, dropout=0.0, quantiles=(0.1, 0.5, 0.9)),
            "full": dict(hidden_size=32, n_heads=4, dropout=0.1, quantiles=(0.1, 0.5, 0.9)),
        },
    ),
    "TCN": (
        "convolutional",
        TemporalConvNet,
        {
            "small": dict(num_channels=[16, 16, 16], kernel_size=3, dropout=0.1),
            "full": dict(num_channels=[32, 32, 32, 32], kernel_size=3, dropout=0.1),
        },
    ),
    "WaveNet": (
        "convolutional",
        WaveNet,
        {
            "small": dict(residual_channels=16, skip_channels=16, n_layers_per_block=5),
            "full": dict(residual_channels=32, skip_channels=32, n_layers_per_block=6),
        },
    ),
    "CNN-LSTM": (
        "hybrid",
        CNNLSTM,
        {
            "small": dict(n_filters=16, kernel_size=3, hidden_size=16),
            "full": dict(n_filters=32, kernel_size=3, hidden_size=32, dropout=0.1),
        },
    ),
    "AttentionLSTM": (
        "hybrid",
        AttentionLSTM,
        {"small": dict(hidden_size=16), "full": dict(hidden_size=32, n_layers=2, dropout=0.1)},
    ),
    "NeuralODE": ("continuous", NeuralODE, {"small": dict(hidden_size=16), "full": dict(hidden_size=32)}),
    "S4D": (
        "state space",
        FinancialS4D,
        {
            "small": dict(hidden_size=16, n_layers=1, d_state=16),
            "full": dict(hidden_size=32, n_layers=2, dropout=0.1),
        },
    ),
    "Mamba": (
        "state space",
        FinancialMamba,
        {
            "small": dict(hidden_size=16, n_layers=1, d_state=8),
            "full": dict(hidden_size=16, n_layers=2, d_state=8),
        },
    ),
}

# Models of MODELS that forecast quantiles (their config names the levels): they train on their
# pinball loss, and the leaderboard scores their median (see train_entry).
QUANTILE_MODELS = [name for name, (_, _, sizes) in MODELS.items() if "quantiles" in sizes["full"]]


def qlike_loss(output, target: torch.Tensor) -> torch.Tensor:
    """QLIKE of log-volatility forecasts as a training loss: mean(exp(e) - e - 1), e = 2 (y - p).

    Its minimiser is the log of E[s^2] (not E[log s], as under MSE), so a network trained with it needs
    no Jensen correction; the exponential makes it sensitive to outliers, so clip gradients (the
    Trainer does by default).
    """
    pred = output["prediction"] if isinstance(output, dict) else output
    if pred.shape != target.shape:
        raise ValueError(
            f"qlike_loss: prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}"
        )
    e = 2.0 * (target - pred)
    return torch.mean(torch.exp(e) - e - 1.0)


def build_model(name: str, size: str = "small", seed: int = 0, input_size: int = len(FEATURES)) -> nn.Module:
    """A fresh course model of the leaderboard (see :data:`MODELS`), its weights drawn from ``seed``."""
    if name not in MODELS:
        raise KeyError(f"unknown leaderboard model {name!r}; choose from {list(MODELS)}")
    _, cls, sizes = MODELS[name]
    if size not in sizes:
        raise KeyError(f"{name} has no size {size!r}; choose from {list(sizes)}")
    set_seed(seed)
    # the TFT's decoder forecasts ``horizon`` steps (one quantile vector each); the others one output
    out = dict(horizon=1) if cls is TemporalFusionTransformer else dict(output_size=1)
    return cls(input_size=input_size, **out, **sizes[size])


def _quantile_levels(net: nn.Module) -> tuple[float, ...] | None:
    """The quantile levels of a model that forecasts quantiles (the TFT), else None."""
    levels = getattr(net, "quantiles", None)
    return tuple(levels) if levels is not None else None


def _point(net: nn.Module, forecast: np.ndarray) -> np.ndarray:
    """A (N, 1) log-volatility forecast: the median of a quantile model's (N, 1, Q) output."""
    levels = _quantile_levels(net)
    if levels is None:
        return forecast
    if 0.5 not in levels:
        raise ValueError(
            f"a quantile model on the leaderboard needs the median among its levels, got {levels}"
        )
    return forecast[..., levels.index(0.5)]


def train_entry(
    model: str | nn.Module | Callable[[int], nn.Module],
    task: Task,
    seeds=(0,),
    size: str = "small",
    name: str | None = None,
    family: str | None = None,
    **trainer_kwargs,
) -> Entry:
    """Train a model for each seed with the :class:`Trainer` (MSE on v, early stopping on validation).

    ``model``: a name of :data:`MODELS` (built at ``size``), a function ``seed -> fresh model``, or one
    untrained model (copied for each seed; only the batch order then differs between seeds).
    ``trainer_kwargs`` go to the Trainer (``max_epochs``, ``lr``, ``batch_size``, ``loss``: ``"mse"`` on
    v, the default, or ``"qlike"`` for :func:`qlike_loss`). A model that forecasts quantiles (the TFT)
    trains on its pinball loss, and its median is the forecast; ``loss`` does not apply to it.
    """
    if isinstance(model, str):
        label, fam = model, MODELS[model][0] if model in MODELS else None
        factory = lambda seed: build_model(label, size, seed, task.train.X.shape[-1])  # noqa: E731
    elif isinstance(model, nn.Module):
        label, fam, template = type(model).__name__, None, copy.deepcopy(model)
        factory = lambda seed: copy.deepcopy(template)  # noqa: E731
    elif callable(model):
        label, fam, factory = getattr(model, "__name__", "model"), None, model
    else:
        raise TypeError(
            f"model must be a name, an nn.Module or a function seed -> model, not {type(model).__name__}"
        )
    if trainer_kwargs.get("loss") == "qlike":
        trainer_kwargs = trainer_kwargs | {"loss": qlike_loss}
    kwargs = dict(progress=False) | trainer_kwargs
    test, val, seconds, params = [], [], [], None
    for seed in seeds:
        net = factory(seed)
        params = sum(p.numel() for p in net.parameters() if p.requires_grad)
        levels = _quantile_levels(net)
        if levels is not None:
            if "loss" in trainer_kwargs:
                raise ValueError(
                    f"{label} forecasts the quantiles {levels}: it trains on its pinball loss and the "
                    f"leaderboard scores its median, so leave out loss= (got {trainer_kwargs['loss']!r})"
                )
            kwargs = kwargs | {"loss": PinballLoss(levels)}
        trainer = Trainer(net, seed=seed, **kwargs)
        start = time.perf_counter()
        trainer.fit(task.train.X, task.train.y, task.val.X, task.val.y)
        seconds.append(time.perf_counter() - start)
        test.append(_point(net, trainer.predict(task.test.X)))
        val.append(_point(net, trainer.predict(task.val.X)))
    return leaderboard_entry(
        name or label,
        test,
        val,
        task,
        family=family or fam or "learner",
        seconds=float(np.mean(seconds)),
        params=params,
    )


# ---------------------------------------------------------------------------------------------
# Families with their own training protocol: a pretrained foundation model, deep Koopman
# ---------------------------------------------------------------------------------------------


def _logvol_series(task: Task) -> np.ndarray:
    """The daily log Parkinson volatility of ``task.frame``; its value after each origin is the target."""
    series = task.frame["log_vol_parkinson"].to_numpy(np.float32)
    for name in ("train", "val", "test"):
        split = task.split(name)
        if not np.allclose(series[split.rows + 1], split.y[:, 0], atol=1e-5):
            raise ValueError(
                f"the {name} targets are not the next day's log_vol_parkinson: not the capstone task"
            )
    return series


def foundation_entries(
    task: Task,
    seeds=(0,),
    pretrain_steps: int = 500,
    finetune_steps: int = 100,
    pretrain_length: int = 128,
    n_synthetic: int = 3,
    size: dict | None = None,
) -> list[Entry]:
    """Chapter 06b's foundation model on the capstone: ``Foundation zero-shot`` and ``Foundation fine-tuned``.

    Per seed, a :class:`TimeSeriesFoundationModel` (channel-independent patches, causal RevIN,
    Student-t head; ``size`` overrides the chapter's sizes) is pretrained for ``pretrain_steps`` on a
    corpus that never contains the S&P 500 (the other packaged series and the arch VIX and WTI series,
    each cut at the end of the training years, plus ``n_synthetic`` simulated paths of each kind). The
    zero-shot forecast of v_{t+1} is the median of its next-patch forecast from the same 60 days of v
    that the other models read (the last 56, 7 patches of 8). A copy fine-tuned for ``finetune_steps``
    on the S&P 500's training years (nothing later) gives the second row. Validation forecasts come
    from the same models, for the level correction.
    """
    from .data.corpus import Corpus, Series, contexts, merge, pretrain, real_series, synthetic_series

    series = _logvol_series(task)
    corpus = merge(real_series(end=TRAIN_END, exclude=(task.ticker,)), synthetic_series(n_synthetic, seed=0))
    own = Corpus([Series(task.ticker, series[: task.fit_end_row + 1], "capstone training years")])
    config = dict(patch_size=8, hidden_size=32, n_heads=2, n_layers=2) | (size or {})
    device = get_device()
    rows = {
        "zero-shot": {"test": [], "val": [], "seconds": []},
        "fine-tuned": {"test": [], "val": [], "seconds": []},
    }

    def forecast(model, split):
        x = torch.from_numpy(contexts(series, task.split(split).rows, LOOKBACK)).to(device)
        with torch.no_grad():
            return model(x)["prediction"][:, 0, :].cpu().numpy()  # (N, 1): the first day of the next patch

    params = None
    for seed in seeds:
        set_seed(seed)
        model = TimeSeriesFoundationModel(1, max_patches=pretrain_length // config["patch_size"], **config)
        params = sum(p.numel() for p in model.parameters())
        start = time.perf_counter()
        pretrain(model, corpus, pretrain_steps, pretrain_length, seed=seed, device=device)
        rows["zero-shot"]["seconds"].append(time.perf_counter() - start)
        tuned = copy.deepcopy(model)
        start = time.perf_counter()
        pretrain(tuned, own, finetune_steps, pretrain_length, lr=1e-3, seed=seed, device=device)
        rows["fine-tuned"]["seconds"].append(rows["zero-shot"]["seconds"][-1] + time.perf_counter() - start)
        for kind, net in (("zero-shot", model), ("fine-tuned", tuned)):
            rows[kind]["test"].append(forecast(net, "test"))
            rows[kind]["val"].append(forecast(net, "val"))
    return [
        leaderboard_entry(
            f"Foundation {kind}",
            r["test"],
            r["val"],
            task,
            family="foundation",
            seconds=float(np.mean(r["seconds"])),
            params=params,
        )
        for kind, r in rows.items()
    ]


def koopman_entry(
    task: Task,
    seeds=(0,),
    n_delays: int = 22,
    latent_size: int = 4,
    hidden_size: int = 16,
    horizon: int = 5,
    epochs: int = 30,
    lr: float = 3e-3,
    stability: float = 1.0,
) -> Entry:
    """Chapter 06e's :class:`DeepKoopmanFinance` on the capstone, trained on its own losses.

    Per seed, the model reads a delay embedding of the last ``n_delays`` days of v (scaled with the
    task's training statistics), and :func:`fit_koopman` trains reconstruction, linear latent
    dynamics and prediction over ``horizon`` days (with the penalty on unstable eigenvalues) on the
    sequences of the training years only. Its one-step forecast psi(K z_t), unscaled, is the entry.
    """
    from numpy.lib.stride_tricks import sliding_window_view

    col = task.feature_names.index("log_vol_parkinson")
    mean, scale = float(task.scaler.mean_[col]), float(task.scaler.scale_[col])
    scaled = (_logvol_series(task) - mean) / scale
    train = scaled[: task.train.rows[-1] + 1]  # what the training inputs cover, nothing later
    sequences = torch.from_numpy(
        np.ascontiguousarray(sliding_window_view(train, n_delays + horizon)[:, :, None], dtype=np.float32)
    )  # (N, T, 1)
    device = get_device()
    test, val, seconds, params = [], [], [], None

    def forecast(model, split):
        x = torch.from_numpy(task.split(split).X[..., col : col + 1]).to(device)  # (N, 60, 1), scaled v
        with torch.no_grad():
            return model(x).cpu().numpy() * scale + mean  # (N, 1)

    for seed in seeds:
        set_seed(seed)
        model = DeepKoopmanFinance(1, hidden_size=hidden_size, latent_size=latent_size, n_delays=n_delays)
        model.to(device)
        params = sum(p.numel() for p in model.parameters())
        start = time.perf_counter()
        fit_koopman(
            model, sequences.to(device), horizon, epochs=epochs, lr=lr, stability=stability, seed=seed
        )
        seconds.append(time.perf_counter() - start)
        test.append(forecast(model, "test"))
        val.append(forecast(model, "val"))
    return leaderboard_entry(
        "DeepKoopman", test, val, task, family="Koopman", seconds=float(np.mean(seconds)), params=params
    )


# ---------------------------------------------------------------------------------------------
# Combination and the leaderboard
# ---------------------------------------------------------------------------------------------


def combination_weights(val_forecasts: dict[str, np.ndarray], y_val) -> pd.Series:
    """Weights on the simplex (>= 0, sum 1) of a combination of log-volatility forecasts.

    Chosen to minimise the *validation* QLIKE of the level-corrected combination
    ``sum_i w_i v_i + c`` (c: the QLIKE-optimal shift of :func:`course_lib.evaluation.level_shift`,
    profiled out), so nothing of the test years enters them.
    """
    names = list(val_forecasts)
    if len(names) < 2:
        raise ValueError(f"a combination needs at least two forecasts, got {names}")
    y = np.asarray(y_val, dtype=np.float64).reshape(-1)
    V = np.column_stack([np.asarray(val_forecasts[n], dtype=np.float64).reshape(-1) for n in names])
    if V.shape[0] != len(y):
        raise ValueError(f"validation forecasts have {V.shape[0]} rows, y_val {len(y)}")

    def corrected_qlike(z):
        w = np.exp(z - z.max()) / np.exp(z - z.max()).sum()  # softmax: the simplex without constraints
        p = V @ w
        p = p + 0.5 * np.log(np.mean(np.exp(2 * (y - p))))
        return float(loss_series(y, p, "qlike").mean())

    res = optimize.minimize(
        corrected_qlike,
        np.zeros(len(names)),
        method="Nelder-Mead",
        options=dict(xatol=1e-6, fatol=1e-9, maxiter=4000),
    )
    w = np.exp(res.x - res.x.max())
    w = np.where(w / w.sum() < 1e-3, 0.0, w)  # weights below 0.1% are round-off of a corner solution
    return pd.Series(w / w.sum(), index=names, name="weight")


def _baseline_entries(task: Task, n_seeds: int) -> dict[str, tuple[list, list]]:
    return {"random_walk": ([random_walk(task, "test")] * n_seeds, [random_walk(task, "val")] * n_seeds)}


def _refuse_twins(task: Task, preds: dict, vals: dict, base_test: dict, base_val: dict) -> None:
    """Refuse two rows whose seed ensembles are the same forecast after the level correction (a
    copy, or a constant shift, of another row): the model confidence set cannot rank identical losses."""
    from .evaluation import level_correct

    ens = {k: np.mean(v, axis=0) for k, v in preds.items()} | dict(base_test)
    ens_val = {k: np.mean(v, axis=0) for k, v in vals.items()} | dict(base_val)
    corrected = level_correct(ens, ens_val, task.val.y)
    names = list(corrected)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if np.allclose(corrected[a], corrected[b], rtol=0, atol=1e-6):
                raise ValueError(
                    f"{a!r} and {b!r} are the same forecast after the level correction (one is a copy or a "
                    "constant shift of the other): the model confidence set cannot tell them apart; drop one"
                )


def leaderboard(
    task: Task,
    entries: list[Entry],
    benchmark: str = BENCHMARK,
    combine: int = 3,
    mcs_size: float = 0.1,
) -> pd.DataFrame:
    """The capstone table: every entry beside the baselines, a forecast combination, one protocol.

    Columns: family, params, seconds (training per seed), QLIKE (raw, mean over seeds) and its sd,
    QLIKE_lc (level-corrected with the shift learnt on validation) and sd, MSE and sd, ``ens QLIKE``
    and ``ens QLIKE_lc`` (the seed ensemble), ``ens DM_QLIKE`` / ``ens p_QLIKE`` (Diebold-Mariano of
    the seed ensemble against ``benchmark`` on the corrected QLIKE differential, Newey-West
    variance), ``better QLIKE (p<0.05)`` (seeds that beat the benchmark significantly) and ``in_MCS``
    (the 1 - ``mcs_size`` model confidence set of the seed ensembles on corrected QLIKE). Sorted by
    QLIKE_lc. ``combine``: the ``combine`` entries (models, not baselines) with the lowest *validation*
    corrected QLIKE (seed ensembles) are combined with :func:`combination_weights` into the row ``combination`` (0: none);
    its weights are in ``table.attrs["weights"]``.
    """
    if not entries:
        raise ValueError("the leaderboard needs at least one entry (train_entry or leaderboard_entry)")
    n = {len(e.test) for e in entries}
    if len(n) != 1:
        raise ValueError(
            f"every entry needs the same number of seeds, got {sorted(n)}: train them with the same seeds"
        )
    (n_seeds,) = n
    names = [e.name for e in entries]
    if len(set(names)) != len(names) or set(names) & {
        "ewma",
        "garch",
        "har",
        "log_har",
        "random_walk",
        "combination",
    }:
        raise ValueError(f"entry names must be unique and differ from the baselines' names, got {names}")
    protocols = {e.protocol for e in entries}
    if len(protocols) != 1:
        raise ValueError(f"one protocol per table, got {sorted(protocols)}")
    (protocol,) = protocols
    from .evaluation import standard_baselines as _baselines

    base_test, base_val = _baselines(task, "test", protocol), _baselines(task, "val", protocol)
    preds = {e.name: e.test for e in entries}
    vals = {e.name: e.val for e in entries}
    for name, (t, v) in _baseline_entries(task, n_seeds).items():
        preds[name], vals[name] = t, v
    weights = None
    if combine and len(entries) >= 2:
        pool_val = {e.name: np.mean(e.val, axis=0) for e in entries}
        pool_test = {e.name: np.mean(e.test, axis=0) for e in entries}
        y = task.val.y[:, 0].astype(np.float64)

        def val_lc(p):
            p = p[:, 0] + 0.5 * np.log(np.mean(np.exp(2 * (y - p[:, 0]))))
            return loss_series(y, p, "qlike").mean()

        best = sorted(pool_val, key=lambda k: val_lc(pool_val[k]))[: max(combine, 2)]
        weights = combination_weights({k: pool_val[k] for k in best}, task.val.y)
    if weights is not None and (weights > 0).sum() < 2:  # a corner: the "combination" is one model
        weights = None
    if weights is not None:
        preds["combination"] = [sum(w * pool_test[k] for k, w in weights.items())] * n_seeds
        vals["combination"] = [sum(w * pool_val[k] for k, w in weights.items())] * n_seeds
    _refuse_twins(task, preds, vals, base_test, base_val)
    table = seed_summary(
        task,
        preds,
        base_test,
        benchmark=benchmark,
        val_predictions=vals,
        protocol=protocol,
        mcs_size=mcs_size,
    )
    # raw and corrected QLIKE of the seed ensembles
    from .evaluation import level_correct

    ens = {k: np.mean(v, axis=0) for k, v in preds.items()} | dict(base_test)
    ens_val = {k: np.mean(v, axis=0) for k, v in vals.items()} | dict(base_val)
    corrected = level_correct(ens, ens_val, task.val.y)
    yt = task.test.y[:, 0].astype(np.float64)
    table["ens QLIKE"] = [loss_series(yt, ens[m][:, 0], "qlike").mean() for m in table.index]
    table["ens QLIKE_lc"] = [loss_series(yt, corrected[m][:, 0], "qlike").mean() for m in table.index]
    info = {e.name: (e.family, e.params, e.seconds) for e in entries}
    fam = {
        "ewma": "baseline",
        "garch": "baseline",
        "har": "baseline",
        "log_har": "baseline",
        "random_walk": "baseline",
    }
    table.insert(0, "family", [info[m][0] if m in info else fam.get(m, "combination") for m in table.index])
    table.insert(1, "params", [info[m][1] if m in info else np.nan for m in table.index])
    table.insert(2, "seconds", [info[m][2] if m in info else np.nan for m in table.index])
    attrs = dict(table.attrs)
    table = table.sort_values("QLIKE_lc")
    table.attrs.update(attrs, weights=weights, n_seeds=n_seeds)
    return table


def evaluate_submission(
    model_or_predictions,
    task: Task | None = None,
    name: str = "my_model",
    seeds=(0,),
    others: list[Entry] | None = None,
    **kwargs,
) -> pd.DataFrame:
    """A learner's model on the capstone leaderboard in one call.

    ``model_or_predictions``: an :class:`Entry`; a dict ``{"test": [...], "val": [...]}`` of forecasts
    per seed; or a model (an nn.Module, or a function ``seed -> model``), trained here with
    :func:`train_entry` (``kwargs`` go to the Trainer). ``others``: entries already trained (course
    models) to rank against. Returns :func:`leaderboard`'s table.
    """
    task = task or capstone_task()
    if kwargs and isinstance(model_or_predictions, Entry | dict):
        raise TypeError(
            f"trainer arguments {sorted(kwargs)} only apply to a model; forecasts are not trained"
        )
    if isinstance(model_or_predictions, Entry):
        entry = model_or_predictions
    elif isinstance(model_or_predictions, dict):
        missing = {"test", "val"} - set(model_or_predictions)
        if missing:
            raise KeyError(f"a dict of forecasts needs the keys 'test' and 'val' (missing {sorted(missing)})")
        entry = leaderboard_entry(name, model_or_predictions["test"], model_or_predictions["val"], task)
    else:
        entry = train_entry(model_or_predictions, task, seeds=seeds, name=name, family="learner", **kwargs)
    return leaderboard(task, [*(others or []), entry])


# ---------------------------------------------------------------------------------------------
# The economic reading
# ---------------------------------------------------------------------------------------------


def return_scale(task: Task, val_logvol) -> float:
    """The factor k with E[r^2] = k^2 sigma_hat^2 on validation: Parkinson volatility -> return volatility."""
    r = task.frame["ret"].to_numpy()[task.val.rows + 1]
    sigma = np.exp(np.asarray(val_logvol, dtype=np.float64).reshape(-1))
    return float(np.sqrt(np.mean(r**2 / sigma**2)))


def vol_targeting(
    task: Task, test_logvol, val_logvol, target: float = 10.0, max_leverage: float = 3.0
) -> dict:
    """Volatility targeting on the S&P 500 with a forecast: position w_t = target / (k sigma_hat_{t+1}).

    ``target``: annualised volatility in percent; k from :func:`return_scale` (validation). Returns
    the realised annualised volatility of the targeted portfolio on the test years, its ratio to the
    target, the spread of its one-year rolling volatility around the target (RMSE, percent points) and
    the mean daily turnover ``mean |w_t - w_{t-1}|``.
    """
    k = return_scale(task, val_logvol)
    r = task.frame["ret"].to_numpy()[task.test.rows + 1]
    sigma = k * np.exp(np.asarray(test_logvol, dtype=np.float64).reshape(-1))
    w = np.minimum(target / np.sqrt(252) / sigma, max_leverage)
    pr = w * r
    realised = float(pr.std(ddof=1) * np.sqrt(252))
    rolling = pd.Series(pr).rolling(252).std().dropna().to_numpy() * np.sqrt(252)
    return {
        "realised vol": realised,
        "ratio": realised / target,
        "rolling RMSE": float(np.sqrt(np.mean((rolling - target) ** 2))),
        "turnover": float(np.mean(np.abs(np.diff(w)))),
    }


def kupiec_test(hits, alpha: float) -> tuple[float, float]:
    """Kupiec's (1995) proportion-of-failures LR test: is the violation rate ``alpha``? (LR, p), chi2(1)."""
    hits = np.asarray(hits, dtype=bool)
    n, x = len(hits), int(hits.sum())
    if n == 0:
        raise ValueError("no observations to test")
    pi = x / n

    def loglik(p):
        return (
            (n - x) * np.log1p(-p) + (x * np.log(p) if x else 0.0) if p < 1 else (0.0 if x == n else -np.inf)
        )

    lr = -2.0 * (loglik(alpha) - loglik(pi))
    return float(lr), float(stats.chi2.sf(lr, 1))


def christoffersen_test(hits, alpha: float) -> dict:
    """Christoffersen's (1998) tests of VaR violations: independence (a first-order Markov chain
    against independence) and conditional coverage (Kupiec + independence), chi2(1) and chi2(2).
    """
    hits = np.asarray(hits, dtype=int)
    prev, cur = hits[:-1], hits[1:]
    n00, n01 = int(np.sum((prev == 0) & (cur == 0))), int(np.sum((prev == 0) & (cur == 1)))
    n10, n11 = int(np.sum((prev == 1) & (cur == 0))), int(np.sum((prev == 1) & (cur == 1)))

    def xlogy(a, b):
        return a * np.log(b) if a > 0 else 0.0

    pi01 = n01 / max(n00 + n01, 1)
    pi11 = n11 / max(n10 + n11, 1)
    pi = (n01 + n11) / max(n00 + n01 + n10 + n11, 1)
    l_markov = xlogy(n00, 1 - pi01) + xlogy(n01, pi01) + xlogy(n10, 1 - pi11) + xlogy(n11, pi11)
    l_iid = xlogy(n00 + n10, 1 - pi) + xlogy(n01 + n11, pi)
    lr_ind = float(-2.0 * (l_iid - l_markov))
    lr_pof, _ = kupiec_test(hits, alpha)
    lr_cc = lr_pof + lr_ind
    return {
        "LR_ind": lr_ind,
        "p_ind": float(stats.chi2.sf(lr_ind, 1)),
        "LR_cc": lr_cc,
        "p_cc": float(stats.chi2.sf(lr_cc, 2)),
        "n11": n11,
    }


def var_backtest(task: Task, test_logvol, val_logvol, alpha: float = 0.01) -> dict:
    """A Gaussian ``alpha`` VaR from a volatility forecast, backtested on the test years.

    VaR_{t+1} = -z_alpha k sigma_hat_{t+1} (k from :func:`return_scale`, validation). Returns the
    violation rate, Kupiec's p-value and Christoffersen's independence and conditional-coverage p-values.
    """
    k = return_scale(task, val_logvol)
    r = task.frame["ret"].to_numpy()[task.test.rows + 1]
    var = -stats.norm.ppf(alpha) * k * np.exp(np.asarray(test_logvol, dtype=np.float64).reshape(-1))
    hits = r < -var
    lr, p = kupiec_test(hits, alpha)
    ch = christoffersen_test(hits, alpha)
    return {
        "violations": int(hits.sum()),
        "rate": float(hits.mean()),
        "p_kupiec": p,
        "p_ind": ch["p_ind"],
        "p_cc": ch["p_cc"],
    }


def economic_table(
    task: Task, table: pd.DataFrame, entries: list[Entry], models: list[str] | None = None, **kw
) -> pd.DataFrame:
    """Volatility targeting and the 1% VaR backtest for the seed ensembles of ``models`` (default:
    every entry) beside HAR and GARCH (and the combination when the table has one)."""
    from .evaluation import standard_baselines as _baselines

    base_t, base_v = _baselines(task, "test", "frozen"), _baselines(task, "val", "frozen")
    series = {e.name: (np.mean(e.test, axis=0), np.mean(e.val, axis=0)) for e in entries}
    series |= {n: (base_t[n], base_v[n]) for n in ("har", "garch")}
    weights = table.attrs.get("weights")
    if weights is not None:
        pool = (
            series
            | {n: (base_t[n], base_v[n]) for n in base_t}
            | {"random_walk": (random_walk(task, "test"), random_walk(task, "val"))}
        )
        series["combination"] = tuple(sum(w * pool[k][i] for k, w in weights.items()) for i in (0, 1))
    names = models or list(series)
    rows = {}
    for n in names:
        t, v = series[n]
        rows[n] = {
            **{f"vt {k}": x for k, x in vol_targeting(task, t, v, **kw).items()},
            **{f"VaR {k}": x for k, x in var_backtest(task, t, v).items()},
        }
    return pd.DataFrame(rows).T


def plot_leaderboard(table: pd.DataFrame, ax=None, column: str = "QLIKE_lc"):
    """The leaderboard at a glance: test QLIKE per model (mean over seeds, bars of +- 1 sd across
    seeds), the benchmark's level as a line, members of the model confidence set filled, the others
    hollow. Returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.35 * len(table) + 1.5))
    t = table.sort_values(column, ascending=False)
    y = np.arange(len(t))
    sd = t[f"{column} sd"].fillna(0).to_numpy()
    member = t["in_MCS"].fillna(False).astype(bool).to_numpy()
    ax.errorbar(t[column], y, xerr=sd, fmt="none", ecolor="grey", capsize=3)
    ax.scatter(t[column][member], y[member], color="C0", zorder=3, label="in the 90% MCS (corrected QLIKE)")
    ax.scatter(
        t[column][~member], y[~member], facecolor="white", edgecolor="C3", zorder=3, label="outside the MCS"
    )
    bench = table.attrs.get("benchmark", BENCHMARK)
    if bench in t.index:
        ax.axvline(t.loc[bench, column], color="k", lw=0.8, ls="--", label=f"{bench}")
    ax.set_yticks(y, [f"{m} ({f})" for m, f in zip(t.index, t["family"], strict=True)])
    label = "level-corrected QLIKE" if column == "QLIKE_lc" else "raw QLIKE"
    ax.set_xlabel(f"test {label}, 2009-2018 (lower is better; bars: +-1 sd over seeds)")
    ax.set_title(f"Capstone leaderboard, {label} ({table.attrs.get('n_seeds', '?')} seeds)")
    ax.legend(loc="best", fontsize=8)
    return ax
