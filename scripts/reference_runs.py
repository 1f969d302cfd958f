"""Full-budget reference results for chapters 01-04, 06a, 06c and 06e, written to docs/reference/.

    make reference                                   # every chapter: 5 seeds, epochs to early stopping
    make reference CHAPTER=06a
    python scripts/reference_runs.py --chapter 06c --rates 0.0 0.6 --seeds 0 1 2 3 4
    python scripts/reference_runs.py --chapter 06a --seeds 0 --max-epochs 1 --out /tmp/ref   # a smoke run

Each chapter's own comparison, at a budget its notebook cannot afford: the same task, the same models
(the recipes below; ``tests/test_reference.py`` checks them against the notebooks' parameters cells),
the same seed-summary table (the benchmark of the course's rule, the causal level correction), but more
seeds and epochs up to early stopping on the validation loss. Writes ``<chapter>.json`` (read by the
notebooks through :func:`course_lib.evaluation.reference.load_reference`), ``<chapter>.md`` and
``<chapter>.npz`` (float32 test forecasts: seed ensemble and per seed). Budget: under 30 minutes per
chapter on a 2-core CPU (one thread per process: run two chapters side by side).
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("COURSE_OFFLINE", "1")  # the packaged data, as the tests and the notebooks under CI
sys.path.insert(0, str(ROOT))

from course_lib import set_seed
from course_lib.evaluation import correction_reversals, correction_variants, seed_summary, verdicts
from course_lib.evaluation.correction import RANKING_VARIANT
from course_lib.evaluation.reference import CHAPTERS, REFERENCE_DIR, table_records
from course_lib.training import Trainer

# The chapters' recipes: the constants of each notebook's parameters cell that define its comparison
# (task and models; the notebook's own EPOCHS, PATIENCE and SEEDS are its budget, not the recipe).
SSM = dict(
    LOOKBACK=256, SHORT_LOOKBACK=20, HIDDEN=16, S4D_STATE=16, S4D_LAYERS=1, MAMBA_STATE=4, MAMBA_LAYERS=1,
    MAMBA_EXPAND=1, TCN_KERNEL=3, TCN_LEVELS=6, DROPOUT=0.1, BATCH_SIZE=256, LR=5e-3,
)  # fmt: skip
ODE = dict(
    LOOKBACK=20,
    HIDDEN=16,
    METHOD="rk4",
    STEPS_PER_GAP=1,
    REMOVAL_RATES=(0.0, 0.3, 0.6),
    BATCH_SIZE=128,
    LR=3e-3,
)
KOOPMAN = dict(
    N_DELAYS=22,
    LATENT=4,
    HIDDEN=16,
    TRAIN_HORIZON=5,
    HORIZONS=(1, 5, 22),
    DMD_RANK=4,
    LR=3e-3,
    BATCH_SIZE=256,
)
# Chapters 01, 03 and 04 share one task (volatility, 20-day windows of the default features, h = 1): their
# full-budget references put the same FinancialLSTM at one budget in all three
RNN = dict(LOOKBACK=20, HIDDEN=16, HEADS=2, LR=3e-3, BATCH=256)
# chapter 02: its transformer on its own feature set (the TFT, with calendar inputs and a quantile loss,
# has no reference; its only full-budget row is the board's)
ATTENTION = dict(
    LOOKBACK=20, D_MODEL=16, HEADS=4, LAYERS=1, DROPOUT=0.0, LR=3e-3, BATCH=64,
    FEATURES=["ret", "log_vol_gk", "log_vol_parkinson", "ret_std22", "volume_change"],
)  # fmt: skip
CONV = dict(
    LOOKBACK=20, KERNEL_SIZE=3, TCN_CHANNELS=(12, 12, 12), WAVENET_CHANNELS=12, LSTM_HIDDEN=16, DROPOUT=0.1,
    BATCH_SIZE=256, LR=3e-3,
)  # fmt: skip
HYBRID = dict(LOOKBACK=20, NUM_FILTERS=8, KERNEL_SIZE=3, HIDDEN=16, DROPOUT=0.1, BATCH_SIZE=256, LR=3e-3)
RECIPES = {"01": RNN, "02": ATTENTION, "03": CONV, "04": HYBRID, "06a": SSM, "06c": ODE, "06e": KOOPMAN}
# The full budget: (max epochs, patience). The small networks of chapters 01-04 take a second or two per
# epoch and some still improve after 40, so they get 100; the deep Koopman network's epochs are short and
# noisy (its notebook trains 30 fixed epochs), so it gets more of both.
BUDGET = {
    "01": (100, 5),
    "02": (100, 5),
    "03": (100, 5),
    "04": (100, 5),
    "06a": (40, 5),
    "06c": (40, 5),
    "06e": (300, 20),
}
NOTEBOOKS = {
    "01": "notebooks/01_lstm_gru.py",
    "02": "notebooks/02_transformers_tft.py",
    "03": "notebooks/03_tcn_wavenet.py",
    "04": "notebooks/04_hybrids.py",
    "06a": "notebooks/06a_state_space_models.py",
    "06c": "notebooks/06c_neural_ode_cde.py",
    "06e": "notebooks/06e_koopman.py",
}
TITLES = {
    "01": "LSTM, GRU and their variants on the volatility task (20-day windows)",
    "02": "The causal transformer on the volatility task (20-day windows of five features)",
    "03": "TCN and WaveNet against the LSTM on the volatility task (20-day windows)",
    "04": "CNN-LSTM and attention-LSTM against the LSTM on the volatility task (20-day windows)",
    "06a": "S4D and Mamba on the volatility task, with a year of history (256-day windows)",
    "06c": "GRU with time gaps, ODE-RNN and neural CDE as days go missing (20-day windows, thinned)",
    "06e": "The deep Koopman network on volatility (22-day delay embedding, h = 1, 5, 22)",
}


def ssm_models(task, short_task) -> dict:
    """06a's networks: name -> (task, factory), as in the notebook's ``factories``."""
    from course_lib.models.convolutional import TemporalConvNet
    from course_lib.models.mamba import FinancialMamba
    from course_lib.models.recurrent import FinancialLSTM
    from course_lib.models.s4d import FinancialS4D

    c, n = SSM, task.train.X.shape[-1]
    return {
        "S4D": (task, lambda: FinancialS4D(n, c["HIDDEN"], c["S4D_LAYERS"], d_state=c["S4D_STATE"], dropout=c["DROPOUT"])),
        "Mamba": (task, lambda: FinancialMamba(n, c["HIDDEN"], c["MAMBA_LAYERS"], d_state=c["MAMBA_STATE"],
                                               expand=c["MAMBA_EXPAND"], dropout=c["DROPOUT"])),
        "TCN": (task, lambda: TemporalConvNet(n, (c["HIDDEN"],) * c["TCN_LEVELS"], c["TCN_KERNEL"], dropout=c["DROPOUT"])),
        f"LSTM, {c['SHORT_LOOKBACK']} days": (short_task, lambda: FinancialLSTM(n, hidden_size=c["HIDDEN"], dropout=c["DROPOUT"])),
    }  # fmt: skip


def ode_models(n_features: int) -> dict:
    """06c's networks: name -> (factory, inputs of a split), as in the notebook's ``MODELS``."""
    from course_lib.models.continuous import NeuralCDEFinance, NeuralODE, gap_features
    from course_lib.models.recurrent import FinancialGRU

    c = ODE

    def gru_inputs(split):
        return gap_features(*(torch.from_numpy(a) for a in split.inputs())).numpy()

    def continuous_inputs(split):
        return split.inputs()

    return {
        "GRU + gaps": (lambda: FinancialGRU(n_features + 2, c["HIDDEN"]), gru_inputs),
        "NeuralODE": (lambda: NeuralODE(n_features, c["HIDDEN"], method=c["METHOD"], steps_per_gap=c["STEPS_PER_GAP"]),
                      continuous_inputs),
        "NeuralCDE": (lambda: NeuralCDEFinance(n_features, c["HIDDEN"], method=c["METHOD"],
                                               steps_per_gap=c["STEPS_PER_GAP"]), continuous_inputs),
    }  # fmt: skip


LINEAR = {
    "01": "linear window (ch. 00)",
    "02": "linear window (ch. 00)",
    "03": "linear window",
    "04": "linear window",
}  # each notebook's name


def foundation_models(chapter: str, n_features: int) -> dict:
    """The networks of chapter 01 (``MODELS``), 02 (its transformer), 03 or 04 (``factories``) on the
    volatility task, with chapter 00's linear model over the same window, each under the notebook's own
    name: name -> factory."""
    from course_lib.models.convolutional import TemporalConvNet, WaveNet
    from course_lib.models.hybrid import CNNLSTM, AttentionLSTM
    from course_lib.models.recurrent import FinancialGRU, FinancialLSTM, MultiHorizonLSTM, ResidualLSTM
    from course_lib.models.transformer import FinancialTransformer

    c, n = RECIPES[chapter], n_features
    nets = {
        "01": {
            "FinancialLSTM": lambda: FinancialLSTM(n, c["HIDDEN"], output_size=1, n_heads=c["HEADS"]),
            "LSTM (MultiHorizonLSTM)": lambda: MultiHorizonLSTM(n, c["HIDDEN"], horizons=(1,)),
            "ResidualLSTM": lambda: ResidualLSTM(n, c["HIDDEN"], n_layers=2, output_size=1),
            "FinancialGRU": lambda: FinancialGRU(n, c["HIDDEN"], output_size=1),
        },
        "02": {
            "Transformer": lambda: FinancialTransformer(n, c["D_MODEL"], c["HEADS"], c["LAYERS"], 2 * c["D_MODEL"],
                                                        dropout=c["DROPOUT"]),
        },
        "03": {
            "TCN": lambda: TemporalConvNet(n, c["TCN_CHANNELS"], c["KERNEL_SIZE"], dropout=c["DROPOUT"]),
            "WaveNet": lambda: WaveNet.for_lookback(n, c["LOOKBACK"], residual_channels=c["WAVENET_CHANNELS"],
                                                    skip_channels=c["WAVENET_CHANNELS"]),
            "LSTM": lambda: FinancialLSTM(n, hidden_size=c["LSTM_HIDDEN"], dropout=c["DROPOUT"]),
        },
        "04": {
            "CNN-LSTM": lambda: CNNLSTM(n, c["NUM_FILTERS"], c["KERNEL_SIZE"], c["HIDDEN"], dropout=c["DROPOUT"]),
            "AttentionLSTM": lambda: AttentionLSTM(n, c["HIDDEN"], dropout=c["DROPOUT"]),
            "LSTM": lambda: FinancialLSTM(n, hidden_size=c["HIDDEN"], dropout=c["DROPOUT"]),
        },
    }[chapter]  # fmt: skip
    return nets | {
        LINEAR[chapter]: lambda: torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(c["LOOKBACK"] * n, 1)
        )
    }


KOOPMAN_MODELS = ("DeepKoopman", "HankelDMD")


def fit_one(make, data, inputs, seed: int, args) -> tuple[np.ndarray, np.ndarray, int, int, float]:
    """One seed, as ``fit_seeds`` does it (``set_seed(seed)`` before ``make()``, the Trainer's seed):
    test and validation forecasts, the best epoch, the epochs run and the seconds it took."""
    start = time.perf_counter()
    set_seed(seed)
    trainer = Trainer(make(), lr=args.lr, batch_size=args.batch_size, max_epochs=args.max_epochs,
                      patience=args.patience, seed=seed, device="cpu", progress=False)  # fmt: skip
    history = trainer.fit(inputs(data.train), data.train.y, inputs(data.val), data.val.y)
    return (trainer.predict(inputs(data.test)), trainer.predict(inputs(data.val)), int(trainer.best_epoch),
            len(history["val_loss"]), time.perf_counter() - start)  # fmt: skip


def cached(args, key: str, train):
    """``train()`` -> (test, val, best epoch, epochs run, seconds), kept in ``args.cache/<key>.npz`` so that
    workers (``--models ... --train-only``) can share a chapter and a run can resume; the cache is keyed
    by the budget too, so a different budget never reads it."""
    if args.cache is None:
        return train()
    path = Path(args.cache) / f"{key} e{args.max_epochs} p{args.patience}.npz"
    if path.is_file():
        z = np.load(path)
        return z["test"], z["val"], int(z["best"]), int(z["ran"]), float(z["seconds"])
    test, val, best, ran, seconds = out = train()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, test=test, val=val, best=best, ran=ran, seconds=seconds)
    return out


def selected(names, args) -> list[str]:
    """The models of ``names`` that ``--models`` asks for (all without it)."""
    unknown = sorted(set(args.models or []) - set(names))
    if unknown:
        raise SystemExit(f"--models {unknown} are not models of this chapter: {list(names)}")
    return [n for n in names if not args.models or n in args.models]


def run_foundation(chapter: str, args) -> dict:
    """Chapter 01, 02, 03 or 04: every network of the chapter and the linear window on its task."""
    from course_lib.data.windows import make_task
    from course_lib.evaluation import volatility_baselines

    c = RECIPES[chapter]
    features = {"features": c["FEATURES"]} if "FEATURES" in c else {}  # chapter 02 reads five features
    task = make_task("volatility", ticker="^GSPC", lookback=c["LOOKBACK"], horizons=(1,), **features)
    baselines = volatility_baselines(task)
    args.lr, args.batch_size = c["LR"], c.get("BATCH_SIZE", c.get("BATCH"))
    preds, vals, best, ran, seconds = {}, {}, {}, {}, {}
    models = foundation_models(chapter, task.train.X.shape[-1])
    for name in selected(models, args):
        for seed in args.seeds:
            test, val, b, r, t = cached(
                args, f"{chapter} {name} seed {seed}", partial(fit_one, models[name], task, lambda split: split.X, seed, args)
            )  # fmt: skip
            for store, value in ((preds, test), (vals, val), (best, b), (ran, r), (seconds, round(t, 1))):
                store.setdefault(name, []).append(value)
            print(f"  {name} seed {seed}: best epoch {b} of {r} ({t:.0f} s)", flush=True)
    return dict(
        task=task, tables={"main": (preds, vals, baselines)}, best=best, ran=ran, seconds=seconds, models=list(preds),
        window=c["LOOKBACK"], features=list(task.feature_names), loss="mse",
        note="the linear window (chapter 00's model) trains under the same budget as the networks",
    )  # fmt: skip


def run_06a(args) -> dict:
    from course_lib.data.windows import make_task
    from course_lib.evaluation import LONG_MEMORY_LAGS, log_har_forecasts, volatility_baselines

    task = make_task("volatility", ticker="^GSPC", lookback=SSM["LOOKBACK"], horizons=(1,))
    short_task = make_task("volatility", ticker="^GSPC", lookback=SSM["SHORT_LOOKBACK"], horizons=(1,))
    baselines = volatility_baselines(task) | {"log_har_long": log_har_forecasts(task, lags=LONG_MEMORY_LAGS)}
    args.lr, args.batch_size = SSM["LR"], SSM["BATCH_SIZE"]
    preds, vals, best, ran, seconds = {}, {}, {}, {}, {}
    models = ssm_models(task, short_task)
    for name in selected(models, args):
        model_task, make = models[name]
        for seed in args.seeds:
            test, val, b, r, t = cached(
                args,
                f"06a {name} seed {seed}",
                partial(fit_one, make, model_task, lambda split: split.X, seed, args),
            )
            preds.setdefault(name, []).append(test)
            vals.setdefault(name, []).append(val)
            best.setdefault(name, []).append(b)
            ran.setdefault(name, []).append(r)
            seconds.setdefault(name, []).append(round(t, 1))
            print(f"  {name} seed {seed}: best epoch {b} of {r} ({t:.0f} s)", flush=True)
    return dict(
        task=task, tables={"main": (preds, vals, baselines)}, best=best, ran=ran, seconds=seconds, models=list(preds),
        window=SSM["LOOKBACK"], features=list(task.feature_names), loss="mse",
        note=f"the LSTM reads {SSM['SHORT_LOOKBACK']}-day windows of the same features (same test days)",
    )  # fmt: skip


def run_06c(args) -> dict:
    from course_lib.data.irregular import make_irregular
    from course_lib.data.windows import make_task
    from course_lib.evaluation import volatility_baselines
    from course_lib.evaluation.irregular_baselines import thinned_volatility_baselines

    task = make_task("volatility", ticker="^GSPC", lookback=ODE["LOOKBACK"], horizons=(1,))
    baselines = volatility_baselines(task)
    models = ode_models(task.train.X.shape[-1])
    args.lr, args.batch_size = ODE["LR"], ODE["BATCH_SIZE"]
    rates = tuple(args.rates) if args.rates else ODE["REMOVAL_RATES"]
    unknown = [r for r in rates if r not in ODE["REMOVAL_RATES"]]
    if unknown:
        raise SystemExit(f"--rates {unknown} are not the chapter's removal rates {ODE['REMOVAL_RATES']}")
    tables, best, ran, seconds = {}, {}, {}, {}
    for rate in rates:
        preds, vals = {}, {}
        for seed in args.seeds:  # seed s: mask draw s and training seed s, as in the notebook
            data = make_irregular(task, rate, kind="random", seed=seed)
            for split, store in (("test", preds), ("val", vals)):
                for name, forecast in thinned_volatility_baselines(data, split).items():
                    store.setdefault(name, []).append(forecast)
            for name in selected(models, args):
                make, inputs = models[name]
                test, val, b, r, t = cached(
                    args, f"06c {rate} {name} seed {seed}", partial(fit_one, make, data, inputs, seed, args)
                )
                preds.setdefault(name, []).append(test)
                vals.setdefault(name, []).append(val)
                best.setdefault(f"{name} at {rate:.0%}", []).append(b)
                ran.setdefault(f"{name} at {rate:.0%}", []).append(r)
                seconds.setdefault(f"{name} at {rate:.0%}", []).append(round(t, 1))
                print(
                    f"  {rate:.0%} removed, {name} seed {seed}: best epoch {b} of {r} ({t:.0f} s)", flush=True
                )
        tables[f"{rate:.0%} removed"] = (preds, vals, baselines)
    return dict(
        task=task, tables=tables, best=best, ran=ran, seconds=seconds, models=selected(models, args), window=ODE["LOOKBACK"], loss="mse",
        features=list(task.feature_names), rates=list(rates),
        note="seed s trains on mask draw s (random removal); the thinned baselines read the same draw",
    )  # fmt: skip


def run_06e(args) -> dict:
    from numpy.lib.stride_tricks import sliding_window_view

    from course_lib.data.windows import make_task
    from course_lib.evaluation import volatility_baselines
    from course_lib.models.koopman import DeepKoopmanFinance, dmd, koopman_loss, logvol_path_to_targets
    from course_lib.training import fit_koopman

    c = KOOPMAN
    task = make_task("volatility", ticker="^GSPC", lookback=c["N_DELAYS"], horizons=c["HORIZONS"],
                     features=["log_vol_parkinson"])  # fmt: skip
    baselines = volatility_baselines(task)
    mean, scale = task.scaler.mean_[0], task.scaler.scale_[0]
    scaled = (task.frame["log_vol_parkinson"].to_numpy() - mean) / scale
    train_series = scaled[: task.train.rows[-1] + 1]
    window = c["N_DELAYS"] + c["TRAIN_HORIZON"]
    sequences = torch.from_numpy(sliding_window_view(train_series, window)[:, :, None].astype(np.float32))
    val_series = scaled[task.val.rows[0] - c["N_DELAYS"] + 1 : task.val.rows[-1] + 1]
    val_sequences = torch.from_numpy(sliding_window_view(val_series, window)[:, :, None].astype(np.float32))

    def targets(model, split):
        with torch.no_grad():
            path = model.rollout(torch.from_numpy(task.split(split).X), max(c["HORIZONS"]))[..., 0]
        return logvol_path_to_targets(path.numpy() * scale + mean, c["HORIZONS"]).astype(np.float32)

    preds, vals, best, ran, seconds = ({"DeepKoopman": []} for _ in range(5))
    for seed in args.seeds:
        start = time.perf_counter()
        set_seed(seed)
        model = DeepKoopmanFinance(
            1, hidden_size=c["HIDDEN"], latent_size=c["LATENT"], n_delays=c["N_DELAYS"]
        )
        state = {"best": np.inf, "epoch": 0, "weights": None}

        def early_stop(epoch, _loss, model=model, state=state):
            """Early stopping on the validation Koopman loss (the training objective on 2007-2008)."""
            with torch.no_grad():
                val = koopman_loss(model, val_sequences, c["TRAIN_HORIZON"], stability=1.0)["total"].item()
            if val < state["best"]:
                state.update(
                    best=val, epoch=epoch, weights={k: v.clone() for k, v in model.state_dict().items()}
                )
            return epoch - state["epoch"] >= args.patience

        history = fit_koopman(model, sequences, c["TRAIN_HORIZON"], epochs=args.max_epochs, lr=c["LR"],
                              batch_size=c["BATCH_SIZE"], stability=1.0, seed=seed, after_epoch=early_stop)  # fmt: skip
        model.load_state_dict(state["weights"])
        preds["DeepKoopman"].append(targets(model, "test"))
        vals["DeepKoopman"].append(targets(model, "val"))
        best["DeepKoopman"].append(state["epoch"])
        ran["DeepKoopman"].append(len(history))
        seconds["DeepKoopman"].append(round(time.perf_counter() - start, 1))
        print(f"  DeepKoopman seed {seed}: best epoch {state['epoch']} of {len(history)}", flush=True)
    hankel = dmd(sliding_window_view(train_series, c["N_DELAYS"]), rank=c["DMD_RANK"])
    for split, store in (("test", preds), ("val", vals)):
        path = hankel.predict(task.split(split).X[..., 0], max(c["HORIZONS"]))[..., -1]
        forecast = logvol_path_to_targets(path * scale + mean, c["HORIZONS"]).astype(np.float32)
        store["HankelDMD"] = [forecast] * len(args.seeds)  # deterministic: the same forecast for every seed
    return dict(
        task=task, tables={"main": (preds, vals, baselines)}, best=best, ran=ran, seconds=seconds, models=list(KOOPMAN_MODELS),
        window=c["N_DELAYS"], features=["log_vol_parkinson"],
        loss=f"koopman_loss (reconstruction, linearity and prediction MSE over {c['TRAIN_HORIZON']} steps, stability 1.0)",
        note="DeepKoopman: early stopping on the validation Koopman loss (the notebook trains a fixed number of "
        "epochs); Hankel DMD is a least-squares fit (no seeds, no epochs)",
    )  # fmt: skip


RUNS = {chapter: partial(run_foundation, chapter) for chapter in ("01", "02", "03", "04")}
RUNS |= {"06a": run_06a, "06c": run_06c, "06e": run_06e}


def markdown(df: pd.DataFrame) -> str:
    """A DataFrame as a markdown table (the course does not ship tabulate)."""

    def cell(v):
        if isinstance(v, float | np.floating):
            return "" if np.isnan(v) else f"{v:.4f}"
        return str(v)

    df = df.reset_index()
    head = "| " + " | ".join(str(c) for c in df.columns) + " |"
    rule = "|" + "---|" * len(df.columns)
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.to_numpy()]
    return "\n".join([head, rule, *body])


def write_chapter(chapter: str, run: dict, args, start: float, command: str) -> None:
    """The tables of ``run`` into <chapter>.json, .md and .npz; the wall time runs from ``start`` to the files."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    task = run["task"]
    machine = f"{platform.node()}, {platform.platform()}, {os.cpu_count()} CPUs"
    date = f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC"
    budget = {"epochs": [b for v in run["best"].values() for b in v], "seeds": list(args.seeds)}
    settings = {
        "window": run["window"], "features": run["features"], "horizons": list(task.horizons),
        "seeds": list(args.seeds), "max_epochs": args.max_epochs, "patience": args.patience,
        "best_epoch": run["best"], "epochs_run": run["ran"], "train_seconds": run["seconds"], "loss": run["loss"], "correction": RANKING_VARIANT,
        "protocol": "frozen", "budget": budget, "recipe": {k: list(v) if isinstance(v, tuple) else v
                                                           for k, v in RECIPES[chapter].items()},
        "note": run["note"],
    }  # fmt: skip
    if "rates" in run:
        settings["removal_rates"] = run["rates"]
    record = {
        "chapter": chapter, "title": TITLES[chapter], "command": command, "machine": machine,
        "torch": torch.__version__, "date": date, "wall_seconds": None, "load_average": None,
        "models": run["models"], "settings": settings, "tables": {},
    }  # fmt: skip
    md = [
        f"# Chapter {chapter}: full-budget reference",
        "",
        f"{TITLES[chapter]}. Written by `scripts/reference_runs.py`; the notebook prints its own budget's "
        "rows beside these (`course_lib.evaluation.reference`).",
        "",
        f"- command: `{command}`",
        f"- machine: {machine}, torch {torch.__version__}",
        "- date: (below)",
        f"- settings: window {run['window']} days, features {', '.join(run['features'])}, horizons "
        f"{list(task.horizons)}, seeds {list(args.seeds)}, up to {args.max_epochs} epochs with patience "
        f"{args.patience} on the validation loss, training loss {run['loss']}, protocol frozen, QLIKE_lc and the tests "
        f"with the {RANKING_VARIANT} level correction; {run['note']}",
        "- best epoch per seed: "
        + "; ".join(f"{name} {b} (of {run['ran'][name]})" for name, b in run["best"].items()),
        "",
    ]
    arrays = {}
    for label, (preds, vals, baselines) in run["tables"].items():
        table = seed_summary(task, preds, baselines, val_predictions=vals)
        # the models only, as the notebooks do (the standard baselines join them)
        variants = correction_variants(
            task, {m: preds[m] for m in run["models"]}, {m: vals[m] for m in run["models"]}
        )
        bench = table.attrs["benchmark"]
        record["tables"][label] = {"benchmark": bench, "rows": table_records(table)}
        md += [
            f"## {label}" if len(run["tables"]) > 1 else "## Results",
            "",
            f"Benchmark: **{bench}** (the course's rule: the strongest classical baseline on validation). "
            f"{table.columns.name}.",
            "",
            markdown(table.rename_axis(columns=None)),
            "",
            "```",
            verdicts(table, models=[m for m in run["models"] if m != bench]),
            "```",
            "",
            f"### The three level corrections ({variants.columns.name})",
            "",
            markdown(variants.rename_axis(columns=None)),
            "",
            "```",
            correction_reversals(variants),
            "```",
            "",
        ]
        prefix = "" if len(run["tables"]) == 1 else f"{label}/"
        for name, p in preds.items():
            stack = np.asarray(p, dtype=np.float32)  # (seeds, N, n_h)
            arrays[f"{prefix}{name}/ensemble"] = stack.mean(axis=0)
            if name in run["models"] and name != "HankelDMD":
                arrays[f"{prefix}{name}/seeds"] = stack
        for name, p in vals.items():  # for the correction learnt on validation
            arrays[f"{prefix}{name}/val_ensemble"] = np.mean(np.asarray(p, dtype=np.float32), axis=0)
    elapsed, load = time.perf_counter() - start, os.getloadavg()
    record.update(wall_seconds=round(elapsed, 1), load_average=[round(x, 2) for x in load])
    trained = sum(t for v in run["seconds"].values() for t in v)
    record.update(train_seconds_total=round(trained, 1), workers=args.workers)
    how = (
        f"this run read every trained (model, seed) from the cache, written by {args.workers} parallel "
        f"workers (`--models ... --train-only`); their training took {trained / 60:.1f} min in all"
        if args.workers
        else f"training {trained / 60:.1f} min in all"
    )
    md[md.index("- date: (below)")] = (
        f"- date: {date}; wall time {elapsed / 60:.1f} min ({how}); load average at the end "
        f"{', '.join(f'{x:.2f}' for x in load)} (1, 5, 15 min; a shared machine inflates the wall time)"
    )
    arrays["y_test"] = task.test.y.astype(np.float32)
    arrays["test_dates"] = np.asarray(task.test.dates, dtype="datetime64[D]").astype(np.int64)
    np.savez_compressed(out / f"{chapter}.npz", **arrays)
    (out / f"{chapter}.json").write_text(json.dumps(record, indent=1) + "\n")
    (out / f"{chapter}.md").write_text("\n".join(md))
    print(f"wrote {out / chapter}.json, .md, .npz ({(out / f'{chapter}.npz').stat().st_size / 1e6:.2f} MB)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--chapter", choices=CHAPTERS)
    which.add_argument("--all", action="store_true", help="every chapter, one after the other")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--max-epochs",
        type=int,
        help="default: the chapter's BUDGET (100 for 01-04, 40 for 06a and 06c, 300 for 06e)",
    )
    parser.add_argument(
        "--patience", type=int, help="epochs without a better validation loss (BUDGET: 5; 20)"
    )
    parser.add_argument("--rates", type=float, nargs="+", help="06c only: a subset of the removal rates")
    parser.add_argument("--models", nargs="+", help="06a, 06c: train only these models (with --train-only)")
    parser.add_argument("--train-only", action="store_true", help="train into --cache, write no results")
    parser.add_argument("--cache", help="keep every trained (model, seed) here: parallel workers, resuming")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="for the record: how many parallel --train-only workers filled --cache",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (small models: 1 is fastest)")
    parser.add_argument("--out", default=str(REFERENCE_DIR))
    args = parser.parse_args(argv)
    if (args.max_epochs or 1) < 1 or (args.patience or 1) < 1 or not args.seeds:
        parser.error("--max-epochs and --patience must be >= 1 and --seeds non-empty")
    if args.rates and args.chapter != "06c":
        parser.error("--rates applies to --chapter 06c only")
    if (args.models and not args.train_only) or (args.train_only and not args.cache):
        parser.error(
            "--models goes with --train-only (a table needs every model), and --train-only with --cache"
        )
    torch.set_num_threads(args.threads)
    command = "python scripts/reference_runs.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    for chapter in CHAPTERS if args.all else (args.chapter,):
        print(f"chapter {chapter}: {TITLES[chapter]}", flush=True)
        start = time.perf_counter()
        budget = argparse.Namespace(**vars(args))
        budget.max_epochs = args.max_epochs or BUDGET[chapter][0]
        budget.patience = args.patience or BUDGET[chapter][1]
        run = RUNS[chapter](budget)
        if not args.train_only:
            write_chapter(chapter, run, budget, start, command)


if __name__ == "__main__":
    main()
