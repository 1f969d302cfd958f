"""The sealed cross-asset hold-out of the capstone (chapter 08): the board's recipes re-fitted on assets
they were never tuned on, scored once, into docs/holdout.md (course_lib.capstone.holdout).

    make holdout                      # every family, MSE loss, 3 seeds, size "full", on ^IXIC, AAPL, MSFT, IBM
    python scripts/holdout.py --models GRU TCN --seeds 0 --size small --max-epochs 2 --out /tmp/ho

Each recipe keeps everything the S&P 500 board fixed (architecture, size, epochs with early stopping,
training loss, the causal correction, the benchmark rule); the S&P 500 board is read from
docs/leaderboard.csv (run `make leaderboard` first). The foundation model and deep Koopman keep their
own protocols and are left out here (their pretraining corpus holds these assets' training years).
"""

import argparse
import datetime
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from leaderboard import markdown, train_all

from course_lib import capstone as cap
from course_lib.capstone import holdout
from course_lib.capstone.pooled import pooled_entries


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--assets", nargs="+", default=list(holdout.HOLDOUT_ASSETS), choices=holdout.HOLDOUT_ASSETS
    )
    p.add_argument("--models", nargs="+", default=list(cap.MODELS), choices=list(cap.MODELS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--size", default="full", choices=["small", "full"])
    p.add_argument("--max-epochs", type=int, default=20)
    p.add_argument("--loss", nargs="+", default=["mse"], choices=["mse", "qlike"])
    p.add_argument(
        "--pooled", nargs="*", default=["GRU", "TCN"], choices=list(cap.MODELS),
        help="recipes also trained once on the training years of every asset (S&P 500 included), MSE loss",
    )  # fmt: skip
    p.add_argument("--board", default=str(ROOT.parent / "docs"), help="folder of the S&P 500 leaderboard.csv")
    p.add_argument("--out", default=str(ROOT.parent / "docs"), help="folder for holdout.md and holdout.csv")
    args = p.parse_args(argv)
    args.own_protocol, args.walk_forward = [], False  # what train_all reads besides the recipe
    os.environ.setdefault("COURSE_OFFLINE", "1")
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    sp500 = cap.capstone_task()
    tasks = {"^GSPC": sp500, **{asset: holdout.holdout_task(asset) for asset in args.assets}}
    pooled: dict[str, list] = {asset: [] for asset in tasks}
    for name in args.pooled:
        print(f"pooled {name}: one model per seed on the training years of {', '.join(tasks)}", flush=True)
        fitted = pooled_entries(name, tasks, args.seeds, args.size, max_epochs=args.max_epochs)
        for asset, entry in fitted.items():
            pooled[asset].append(entry)
    # the S&P 500 board: the committed one, with the pooled rows added when its forecasts are stored (then
    # re-scored on the hold-out's number of seeds, the board's first ones)
    stored = Path(args.board) / "leaderboard_predictions.npz"
    if pooled["^GSPC"] and stored.exists():
        board_entries = cap.load_entries(stored, sp500)
        n = len(args.seeds)  # the board's first n seeds (0, 1, ...): the hold-out's seed count everywhere
        for e in board_entries:
            e.test, e.val = e.test[:n], e.val[:n]
        reference = cap.leaderboard(sp500, board_entries + pooled["^GSPC"])
    else:
        reference = cap.committed_board(args.board)
    boards, benchmarks = {}, {"^GSPC": reference.attrs["benchmark"]}
    for asset in args.assets:
        print(f"hold-out asset {asset}", flush=True)
        task = tasks[asset]
        entries, _ = train_all(args, task)
        entries += pooled[asset]
        boards[asset] = cap.leaderboard(task, entries)
        benchmarks[asset] = boards[asset].attrs["benchmark"]
        cap.save_predictions(entries, out / f"holdout_{asset.strip('^')}.npz")
    table, rho = holdout.holdout_summary(boards, reference)
    table.to_csv(out / "holdout.csv")
    minutes = (time.perf_counter() - start) / 60
    command = "python scripts/holdout.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    flat = table.copy()
    flat.columns = [f"{a} {c}" for a, c in table.columns]
    lines = [
        "# Capstone hold-out: the board's recipes on assets they were never tuned on",
        "",
        f"- command: `{command}`",
        f"- machine: {platform.node()}, {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; run time {minutes:.1f} min",
        f"- recipes: {', '.join(args.models)}; losses {args.loss}; seeds {args.seeds}; size {args.size}; "
        f"max epochs {args.max_epochs}; pooled recipes (one model per seed on the training years of every "
        f"asset at once, each asset z-scored on its own training rows): {', '.join(args.pooled) or 'none'}; "
        "the capstone's task on each asset (train <= 2006, validation "
        "2007-2008, test from 2009 to 2018 or the asset's last day); causal correction; benchmark by the rule",
        "",
        "Corrected QLIKE of the seed ensembles, the verdict of their DM test on QLIKE against each asset's "
        "benchmark (better / worse / no significant difference at 5%), and membership of each asset's 90% MCS.",
        "",
        markdown(flat.round(3)),
        "",
        *holdout.holdout_sentences(table, rho, benchmarks).splitlines(),
        "",
    ]
    (out / "holdout.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
