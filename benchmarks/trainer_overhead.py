"""Benchmark: the Trainer's time per epoch against a bare hand-written loop (target: <= 1.15x).

Same model, same data (the S&P 500 returns task), same batch size, optimiser and gradient clipping.
The bare loop is the minimum a careful person would write; the Trainer adds validation, the
scheduler, early-stopping bookkeeping and the progress bar. Prints a table; run with `make bench`.
"""

import argparse
import statistics
import time

import torch
from torch import nn

from course_lib import set_seed
from course_lib.data.windows import make_task
from course_lib.training import Trainer, mse_loss


class SmallLSTM(nn.Module):
    def __init__(self, n_in: int, hidden: int = 32):
        super().__init__()
        self.lstm = nn.LSTM(n_in, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):  # (B, L, C) -> (B, 1)
        return self.head(self.lstm(x)[0][:, -1])


def bare_epochs(model, X, y, Xv, yv, epochs, batch_size, seed):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), batch_size):
            idx = order[i : i + batch_size]
            loss = mse_loss(model(X[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        model.eval()
        with torch.no_grad():
            mse_loss(model(Xv), yv).item()  # the same validation pass the Trainer makes
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    task = make_task("returns", lookback=30, offline=True)
    X, y = task.tensors("train")
    Xv, yv = task.tensors("val")
    bare, trainer = [], []
    for r in range(args.repeats):  # interleaved, so drift on a shared machine hits both alike
        set_seed(r)
        bare += bare_epochs(SmallLSTM(X.shape[-1]), X, y, Xv, yv, args.epochs, args.batch_size, r)[1:]
        set_seed(r)
        t = Trainer(
            SmallLSTM(X.shape[-1]),
            batch_size=args.batch_size,
            max_epochs=args.epochs,
            patience=args.epochs,
            device="cpu",
            seed=r,
            progress=True,
        )
        t.fit(X, y, Xv, yv)
        trainer += t.history["epoch_time"][1:]  # the first epoch of each run is warm-up
    b, tr = statistics.median(bare), statistics.median(trainer)
    print(
        f"samples {len(y)}, batch {args.batch_size}, epochs {args.epochs} x {args.repeats} runs (median, warm-up dropped)"
    )
    print(f"{'loop':<12} {'s/epoch':>9}")
    print(f"{'bare':<12} {b:9.4f}")
    print(f"{'Trainer':<12} {tr:9.4f}")
    print(f"{'ratio':<12} {tr / b:9.3f}   (target <= 1.15)")


if __name__ == "__main__":
    main()
