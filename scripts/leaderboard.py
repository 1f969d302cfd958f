"""The capstone leaderboard (chapter 08): every family, several seeds, written to docs/leaderboard.md.

    make leaderboard                      # the full table: every family, MSE and QLIKE losses, 5 seeds, size "full"
    python scripts/leaderboard.py --models GRU TCN --seeds 0 1 --size small --max-epochs 5 --out /tmp/lb

The same code as notebooks/08_capstone.py (course_lib.capstone). One protocol per table: the frozen
table (trained once on 1999-2006, validation 2007-2008) and, with --walk-forward (chapter 07's
course_lib.evaluation.walkforward), a walk-forward table of --wf-models (re-trained every year).
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from course_lib import capstone as cap
from course_lib.data.prices import load_prices
from course_lib.evaluation import correction_reversals, correction_variants, loss_series

COLUMNS = [
    "family", "params", "seconds", "QLIKE", "QLIKE sd", "QLIKE_lc", "QLIKE_lc sd", "MSE", "MSE sd",
    "ens QLIKE", "ens QLIKE_lc", "ens DM_QLIKE", "ens p_QLIKE", "better QLIKE (p<0.05)", "in_MCS",
]  # fmt: skip


def markdown(df) -> str:
    """A DataFrame as a markdown table (pandas' to_markdown needs tabulate, which the course does not ship)."""

    def cell(v):
        if v is pd.NA:
            return ""
        if isinstance(v, float | np.floating):
            return "" if np.isnan(v) else f"{v:.3f}"
        return str(v)

    head = "| " + " | ".join([df.index.name or ""] + [str(c) for c in df.columns]) + " |"
    rule = "|" + "---|" * (len(df.columns) + 1)
    body = [
        "| " + " | ".join([str(i)] + [cell(v) for v in row]) + " |"
        for i, row in zip(df.index, df.to_numpy(), strict=True)
    ]
    return "\n".join([head, rule, *body])


def own_protocols(args) -> str:
    """What the families with their own training protocol did, for the header of the table."""
    parts = []
    if "foundation" in args.own_protocol:
        parts.append(
            f"Foundation zero-shot: chapter 06b's patch model pretrained for {args.pretrain_steps} steps on a "
            "corpus without the S&P 500 (other packaged series and arch's VIX and WTI to 2006, simulated paths), "
            f"forecasting from the same 60 days of v; Foundation fine-tuned: {args.finetune_steps} more steps "
            "on the S&P 500's training years"
        )
    if "koopman" in args.own_protocol:
        parts.append(
            f"DeepKoopman: chapter 06e's model on a 22-day delay embedding of v, {args.koopman_epochs} epochs "
            "of the Koopman losses on the training years, one-step forecast"
        )
    return "; ".join(parts) or "none"


WF_YEARS = range(2009, 2019)


def walk_forward_predictions(models, seeds, size, epochs) -> dict[str, list[np.ndarray]]:
    """Walk-forward (chapter 07) forecasts of each model per seed, re-trained every year."""
    from course_lib.evaluation.walkforward import walk_forward

    prices = load_prices("^GSPC", end=cap.TEST_END, offline=True)
    preds = {}
    for name in models:
        preds[name] = []
        for seed in seeds:
            result = walk_forward(
                "volatility", prices, lambda name=name, seed=seed: cap.build_model(name, size, seed),
                WF_YEARS, epochs=epochs, initial_epochs=4 * epochs, seed=seed, **WF_TASK,
            )  # fmt: skip
            preds[name].append(result.predictions["walk_forward"])
    return preds


WF_TASK = dict(lookback=cap.LOOKBACK, features=cap.FEATURES, horizons=(1,))


def walk_forward_table(preds: dict[str, list[np.ndarray]]):
    """The walk-forward forecasts against the walk-forward baselines, QLIKE raw and with the causal
    correction (it needs no validation year, which the blocks do not share)."""
    from course_lib.evaluation import seed_summary, standard_baselines
    from course_lib.evaluation.walkforward import walk_forward_task

    prices = load_prices("^GSPC", end=cap.TEST_END, offline=True)
    task = walk_forward_task("volatility", prices, WF_YEARS, **WF_TASK)
    base = standard_baselines(task, "test", "walk_forward")
    n_seeds = len(next(iter(preds.values())))
    rw = task.frame["log_vol_parkinson"].to_numpy()[task.test.rows, None]
    preds = dict(preds) | {"random_walk": [rw] * n_seeds}
    table = seed_summary(task, preds, base, protocol="walk_forward")
    y = task.test.y[:, 0]
    table["ens QLIKE"] = [
        loss_series(y, np.mean(preds[m], axis=0)[:, 0] if m in preds else base[m][:, 0], "qlike").mean()
        for m in table.index
    ]
    return table.sort_values("QLIKE")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(cap.MODELS), choices=list(cap.MODELS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--size", default="full", choices=["small", "full"])
    p.add_argument("--max-epochs", type=int, default=20)
    p.add_argument(
        "--loss", nargs="+", default=["mse", "qlike"], choices=["mse", "qlike"],
        help="training losses: each model is trained with each (rows NAME and NAME-qlike)",
    )  # fmt: skip
    p.add_argument(
        "--own-protocol", nargs="*", default=["foundation", "koopman"], choices=["foundation", "koopman"],
        help="families trained on their own protocol: the pretrained foundation model (zero-shot and "
        "fine-tuned, chapter 06b) and deep Koopman (chapter 06e)",
    )  # fmt: skip
    p.add_argument("--pretrain-steps", type=int, default=500, help="foundation model pretraining steps")
    p.add_argument("--finetune-steps", type=int, default=100, help="foundation model fine-tuning steps")
    p.add_argument("--koopman-epochs", type=int, default=30)
    p.add_argument("--walk-forward", action="store_true", help="add the walk-forward table (chapter 07)")
    p.add_argument("--wf-epochs", type=int, default=2, help="epochs per walk-forward block")
    p.add_argument(
        "--wf-models", nargs="+", default=["TCN", "GRU"], choices=list(cap.MODELS),
        help="models re-trained walk-forward (MSE loss; ten fits a seed, so only a few by default)",
    )  # fmt: skip
    p.add_argument("--out", default=str(ROOT / "docs"), help="folder for leaderboard.md and leaderboard.png")
    p.add_argument("--label", default="", help="a line saying what this run is (e.g. a reduced check)")
    p.add_argument(
        "--from-predictions", metavar="DIR",
        help="re-score the forecasts a training run stored in DIR (seconds, no training): every table, "
        "figure and test of the board is re-derived from leaderboard_predictions.npz",
    )  # fmt: skip
    args = p.parse_args(argv)
    os.environ.setdefault("COURSE_OFFLINE", "1")
    torch.set_num_threads(1)  # small models: one thread is faster (and leaves a core for the rest)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    task = cap.capstone_task()
    command = "python scripts/leaderboard.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    if args.from_predictions:
        stored = Path(args.from_predictions)
        run = json.loads((stored / "leaderboard_run.json").read_text())
        entries = cap.load_entries(stored / "leaderboard_predictions.npz", task)
        wf_file = stored / "leaderboard_walkforward.npz"
        wf_preds = None
        if wf_file.exists():
            with np.load(wf_file) as data:
                wf_preds = {k: list(data[k]) for k in data.files}
    else:
        entries, wf_preds = train_all(args, task)
        run = dict(
            command=command,
            machine=f"{platform.node()}, {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
            date=f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
            minutes=round((time.perf_counter() - start) / 60, 1),
            settings=vars(args),
        )
        cap.save_predictions(entries, out / "leaderboard_predictions.npz")
        if wf_preds is not None:
            np.savez_compressed(
                out / "leaderboard_walkforward.npz",
                **{k: np.stack(v).astype(np.float32) for k, v in wf_preds.items()},
            )
        (out / "leaderboard_run.json").write_text(json.dumps(run, indent=1))
    write_board(run, entries, wf_preds, task, out, rescored=command if args.from_predictions else None)


def train_all(args, task):
    """Train every entry of the board (and the walk-forward models); their forecasts per seed."""
    entries = []
    for name in args.models:
        # a quantile model trains on its own pinball loss (loss None), once
        for loss in [None] if name in cap.QUANTILE_MODELS else args.loss:
            label = name if loss in (None, "mse") else f"{name}-{loss}"
            print(f"training {label} ({args.size}) for seeds {args.seeds}", flush=True)
            entries.append(
                cap.train_entry(
                    name,
                    task,
                    seeds=args.seeds,
                    size=args.size,
                    max_epochs=args.max_epochs,
                    name=label,
                    **({} if loss is None else {"loss": loss}),
                )
            )
    if "foundation" in args.own_protocol:
        print(f"pretraining the foundation model for seeds {args.seeds}", flush=True)
        entries += cap.foundation_entries(
            task, args.seeds, pretrain_steps=args.pretrain_steps, finetune_steps=args.finetune_steps
        )
    if "koopman" in args.own_protocol:
        print(f"training deep Koopman for seeds {args.seeds}", flush=True)
        entries.append(cap.koopman_entry(task, args.seeds, epochs=args.koopman_epochs))
    wf_preds = None
    if args.walk_forward:
        print("walk-forward", flush=True)
        wf_preds = walk_forward_predictions(args.wf_models, args.seeds, args.size, args.wf_epochs)
    return entries, wf_preds


def write_board(run, entries, wf_preds, task, out: Path, rescored: str | None = None):
    """Score the entries and write leaderboard.md, .csv and .png into ``out``."""
    args = argparse.Namespace(**run["settings"])
    table = cap.leaderboard(task, entries)
    table["params"] = table["params"].astype("Int64")
    econ = cap.economic_table(task, table, entries)
    scales = cap.scale_variants(
        task, {e.name: (np.mean(e.test, axis=0), np.mean(e.val, axis=0)) for e in entries}
    )
    scales.columns = [f"{a} {b}" for a, b in scales.columns]
    wf = walk_forward_table(wf_preds) if wf_preds is not None else None

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(15, 0.35 * len(table) + 2), sharey=False)
    cap.plot_leaderboard(table, axes[0], "QLIKE")
    cap.plot_leaderboard(table, axes[1], "QLIKE_lc")
    fig.tight_layout()
    fig.savefig(out / "leaderboard.png", dpi=110)

    table.to_csv(out / "leaderboard.csv")
    variants = correction_variants(task, {e.name: e.test for e in entries}, {e.name: e.val for e in entries})
    models = table[~table["family"].isin(["baseline", "combination"])]
    chosen, val_scores = cap.validation_choice(task, entries)
    row = table.loc[chosen]
    best_raw, best_lc = models["QLIKE"].idxmin(), models["QLIKE_lc"].idxmin()
    bench = table.attrs["benchmark"]
    lowest = (
        f"**Chosen on validation** (the lowest validation QLIKE at its best level, before the test years are "
        f"seen): {chosen}, test QLIKE_lc {row['QLIKE_lc']:.3f} against {bench} {table.loc[bench, 'QLIKE_lc']:.3f} "
        f"(ensemble DM on QLIKE {row['ens DM_QLIKE']:+.2f}, p = {row['ens p_QLIKE']:.3f}; "
        f"{'inside' if row['in_MCS'] else 'outside'} the 90% MCS). In hindsight the lowest test QLIKE of a "
        f"single course model was {best_raw} raw ({models.loc[best_raw, 'QLIKE']:.3f}) and {best_lc} corrected "
        f"({models.loc[best_lc, 'QLIKE_lc']:.3f}): picked on the test years themselves, they flatter the winner."
    )
    weights = table.attrs.get("weights")
    lines = [
        "# Capstone leaderboard (chapter 08)",
        "",
        *([f"**{args.label}**", ""] if args.label else []),
        f"- command: `{run['command']}`",
        f"- machine: {run['machine']}",
        f"- date: {run['date']}; run time {run['minutes']:.1f} min",
        *(
            [
                f"- re-scored from the stored forecasts with `{rescored}` on {datetime.datetime.now(datetime.UTC):%Y-%m-%d}"
            ]
            if rescored
            else []
        ),
        f"- models: {', '.join(args.models)}; training losses {args.loss} (NAME: MSE on v, NAME-qlike: QLIKE; "
        f"{', '.join(cap.QUANTILE_MODELS) or 'no model'} on its pinball loss for quantiles, scored on the median); "
        f"seeds {args.seeds}; size {args.size}; max epochs {args.max_epochs}",
        f"- own protocols: {own_protocols(args)}",
        "- task: next-day S&P 500 log Parkinson volatility, 60 days of [r, v, log volume change], split by "
        "target date (train <= 2006, validation 2007-2008, test 2009-01-02..2018-12-31, 2516 targets)",
        "",
        "## Frozen protocol",
        "",
        f"{table.columns.name}. The benchmark is the course's rule: the strongest classical baseline on "
        "validation. DM and the MCS on corrected QLIKE (the causal correction: the variance factor learnt at "
        "each origin from the errors already known, no look-ahead); `seconds` is training time per seed. "
        "Forecasts per seed: `leaderboard_predictions.npz`; the table: `leaderboard.csv`.",
        "",
        markdown(table[COLUMNS]),
        "",
        lowest,
        "",
        "Outside numbers on this task (other libraries' defaults and the classical models, raw QLIKE): "
        + ", ".join(f"{k} {v}" for k, v in cap.OUTSIDE.items()),
        "",
        f"Combination weights (validation only): {'none (a corner solution)' if weights is None else ', '.join(f'{k} {w:.2f}' for k, w in weights.items())}",
        "",
        "![leaderboard](leaderboard.png)",
        "",
        "## Where the level correction is learnt",
        "",
        "Seed ensembles; `factor`: the variance multiplier learnt on validation (2007-2008), causally by the "
        "last test day, and in hindsight on the test years (for reading only); QLIKE and the verdict against "
        "the benchmark under each variant.",
        "",
        markdown(variants.round(3)),
        "",
        *correction_reversals(variants).splitlines(),
        "",
        "## Economic reading (seed ensembles; scale to return volatility learnt on validation)",
        "",
        f"Volatility targeting at 10% a year (vt): realised volatility and daily turnover; Sharpe ratio and the "
        f"performance fee (bp a year, risk aversion {econ.attrs['gamma']:g}) a mean-variance investor would pay to "
        f"switch from {econ.attrs['benchmark']}'s portfolio, with 90% block-bootstrap intervals, at the lowest "
        "and highest cost per unit traded; `z rms` (below 1: a conservative forecast); Gaussian, Student-t and "
        "filtered-historical-simulation 1% VaR backtests (Kupiec, Christoffersen). Every column: "
        "`python scripts/leaderboard.py --from-predictions docs`.",
        "",
        markdown(econ[cap.summary_columns(econ)]),
        "",
        "### Where the return scale is learnt",
        "",
        "Realised volatility of the 10% target and the Gaussian 1% VaR's breach rate with the scale k learnt not "
        "at all, on validation (the table above), or causally from the returns already known.",
        "",
        markdown(scales.round(3)),
        "",
    ]
    if wf is not None:
        lines += [
            "## Walk-forward protocol (re-trained every year, chapter 07)",
            "",
            f"{wf.columns.name}; models {', '.join(args.wf_models)} trained on MSE, {args.wf_epochs} epochs a block; "
            "QLIKE raw and with the causal correction, test origins 2009-2018.",
            "",
            markdown(wf[[c for c in ("QLIKE", "QLIKE sd", "QLIKE_lc", "MSE", "ens QLIKE", "ens DM_QLIKE",
                            "ens p_QLIKE", "better QLIKE (p<0.05)", "in_MCS") if c in wf.columns]]),
            "",
        ]  # fmt: skip
    (out / "leaderboard.md").write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {out / 'leaderboard.md'}")


if __name__ == "__main__":
    main()
