"""Why did FinancialGRU (chapter 01) and CNNLSTM (chapter 04) lose to HAR? An ablation.

Every variant is trained on the standard volatility task (``make_task("volatility")``, S&P 500, 20-day
windows, horizon 1) with the Trainer settings of its chapter, for several seeds, and scored on the
test years by QLIKE (on variances) and MSE (on log volatility) beside HAR and log-HAR. One change
per variant, so that the difference to the first row is the effect of that change.

    PYTHONPATH=. COURSE_OFFLINE=1 python benchmarks/recurrent_ablation.py gru      # about 2 min of CPU
    PYTHONPATH=. COURSE_OFFLINE=1 python benchmarks/recurrent_ablation.py cnnlstm

The result is summarised in docs/errata.md (FinancialGRU, CNNLSTM) and in chapters 01 and 04.
"""

import argparse
import time

import numpy as np
import pandas as pd
import torch
from torch import nn

from course_lib import set_seed
from course_lib.data.windows import make_task
from course_lib.evaluation import mse, qlike, volatility_baselines
from course_lib.models import CNNLSTM, FinancialGRU, FinancialLSTM
from course_lib.models.common import check_window, mlp_head
from course_lib.training import Trainer

# the chapters' settings (notebooks/01_lstm_gru.py and notebooks/04_hybrids.py, parameters cells)
CHAPTER = {
    "gru": dict(hidden=16, lr=3e-3, batch=256, epochs=12, patience=3, dropout=0.0),
    "cnnlstm": dict(hidden=16, lr=3e-3, batch=256, epochs=8, patience=3, dropout=0.1, filters=8, kernel=3),
}


class PooledGRU(nn.Module):
    """FinancialGRU's old design, with switches: attention pooling only (the head never sees h_L), or h_L only."""

    def __init__(self, input_size, hidden_size, pooling="attention", score_bias=False, cell="gru"):
        super().__init__()
        self.input_size, self.pooling = input_size, pooling
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(input_size, hidden_size, batch_first=True)
        self.score = nn.Sequential(
            nn.Linear(hidden_size, hidden_size), nn.Tanh(), nn.Linear(hidden_size, 1, bias=score_bias)
        )
        self.norm = nn.LayerNorm(hidden_size) if pooling == "residual" else None
        self.head = mlp_head(hidden_size * (2 if pooling == "both" else 1), hidden_size, 1)

    def forward(self, x):
        check_window(x, self.input_size)
        h, _ = self.rnn(x)  # (B, L, H)
        if self.pooling == "last":
            return self.head(h[:, -1])
        weights = torch.softmax(self.score(h).squeeze(-1), dim=-1)  # (B, L)
        context = (weights.unsqueeze(-1) * h).sum(1)  # (B, H)
        if self.pooling == "both":
            return self.head(torch.cat([context, h[:, -1]], dim=-1))
        if self.pooling == "residual":
            return self.head(self.norm(h[:, -1] + context))
        return self.head(context)


class CNNLSTMVariant(nn.Module):
    """CNNLSTM (course_lib.models.hybrid) rebuilt with switches: per-step LayerNorm, ReLU, the two max-pools,
    and a skip path that also feeds the LSTM the raw inputs of the last day of each pooled block."""

    def __init__(self, c, filters, kernel, hidden, dropout, norm=True, relu=True, pools=True, skip=False):
        super().__init__()
        base = CNNLSTM(c, filters, kernel, hidden, dropout=dropout)
        self.convs = nn.ModuleList([base.conv1, base.conv2])
        self.norms = nn.ModuleList([base.norm1, base.norm2] if norm else [nn.Identity(), nn.Identity()])
        self.relu, self.pools, self.skip = relu, pools, skip
        self.lstm = nn.LSTM(2 * filters + (c if skip else 0), hidden, batch_first=True)
        self.fc = base.fc

    def forward(self, x):
        h = x.transpose(1, 2)  # (B, C, L)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = norm(conv(h).transpose(1, 2)).transpose(1, 2)
            h = torch.relu(h) if self.relu else h
            h = nn.functional.max_pool1d(h[:, :, h.shape[-1] % 2 :], 2) if self.pools else h
        h = h.transpose(1, 2)  # (B, L', F)
        if self.skip:
            ends = CNNLSTM.pooled_ends(x.shape[1]) if self.pools else list(range(x.shape[1]))
            h = torch.cat([h, x[:, ends]], dim=-1)
        out, _ = self.lstm(h)
        return self.fc(out[:, -1])


def variants(kind: str, c: int) -> dict:
    s = CHAPTER[kind]
    H = s["hidden"]
    if kind == "gru":
        return {
            "old FinancialGRU (attention pooling, score bias)": lambda: PooledGRU(c, H, score_bias=True),
            "attention pooling, no score bias": lambda: PooledGRU(c, H),
            "attention pooling, LSTM cell": lambda: PooledGRU(c, H, cell="lstm"),
            "last state h_L only": lambda: PooledGRU(c, H, pooling="last"),
            "old design, hidden 32": lambda: PooledGRU(c, 2 * H, score_bias=True),
            "pooled context + h_L": lambda: PooledGRU(c, H, pooling="both"),
            "LayerNorm(h_L + pooled context)": lambda: PooledGRU(c, H, pooling="residual"),
            "FinancialGRU (course_lib, that design)": lambda: FinancialGRU(c, H),
            "FinancialLSTM (reference)": lambda: FinancialLSTM(c, H, n_heads=2),
        }
    f, k, p = s["filters"], s["kernel"], s["dropout"]
    return {
        "CNNLSTM without the skip (before)": lambda: CNNLSTMVariant(c, f, k, H, p),
        "without the per-step LayerNorm": lambda: CNNLSTMVariant(c, f, k, H, p, norm=False),
        "without the ReLUs": lambda: CNNLSTMVariant(c, f, k, H, p, relu=False),
        "without the max-pools": lambda: CNNLSTMVariant(c, f, k, H, p, pools=False),
        "with the raw-input skip": lambda: CNNLSTMVariant(c, f, k, H, p, skip=True),
        "raw-input skip, no ReLUs": lambda: CNNLSTMVariant(c, f, k, H, p, skip=True, relu=False),
        "raw-input skip, no max-pools": lambda: CNNLSTMVariant(c, f, k, H, p, skip=True, pools=False),
        "CNNLSTM (course_lib, with the skip)": lambda: CNNLSTM(c, f, k, H, dropout=p),
        "FinancialLSTM (reference)": lambda: FinancialLSTM(c, H, dropout=p),
    }


def run(kind: str, seeds: tuple[int, ...]) -> pd.DataFrame:
    torch.set_num_threads(1)
    s = CHAPTER[kind]
    task = make_task("volatility", ticker="^GSPC", lookback=20, horizons=(1,))
    y = task.test.y[:, 0].astype(np.float64)
    base = volatility_baselines(task)
    rows = []
    for name in ("har", "log_har"):
        p = base[name][:, 0].astype(np.float64)
        rows.append(
            {"variant": name, "seed": "-", "QLIKE": qlike(np.exp(2 * y), np.exp(2 * p)), "MSE": mse(y, p)}
        )
    for name, make in variants(kind, task.train.X.shape[-1]).items():
        for seed in seeds:
            set_seed(seed)
            trainer = Trainer(make(), lr=s["lr"], batch_size=s["batch"], max_epochs=s["epochs"],
                              patience=s["patience"], seed=seed, device="cpu", progress=False)  # fmt: skip
            trainer.fit(task.train.X, task.train.y, task.val.X, task.val.y)
            p = trainer.predict(task.test.X)[:, 0].astype(np.float64)
            rows.append(
                {
                    "variant": name,
                    "seed": seed,
                    "QLIKE": qlike(np.exp(2 * y), np.exp(2 * p)),
                    "MSE": mse(y, p),
                }
            )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(CHAPTER))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    start = time.process_time()
    table = run(args.model, tuple(args.seeds))
    pd.set_option("display.width", 140)
    print(table.to_string(index=False, float_format="{:.4f}".format))
    summary = table.groupby("variant", sort=False)[["QLIKE", "MSE"]].agg(["mean", "max"])
    print("\nmean and worst seed:\n" + summary.to_string(float_format="{:.4f}".format))
    print(f"\n{time.process_time() - start:.0f} s of CPU")


if __name__ == "__main__":
    main()
