"""Benchmark: latency of the HTTP forecast service (course_lib.production.serving) for one window and a batch of 256.

Saves a bundle of a small GRU (volatility task, S&P 500) into a temporary directory, starts the
service on a free localhost port in a subprocess, and sends requests one after another from one
client (keep-alive), bounded both in count and in seconds. Prints p50 and p99 in milliseconds, with
the same forecasts computed in-process by ModelDeployment for comparison (the HTTP and JSON cost is
the difference: for a batch of 256 windows, about 430 kB of JSON text, encoding and parsing dominate).
Then times the serving path of the batch stage by stage in this process
(:func:`course_lib.production.latency.stage_timings`), with the garbage collector on and off, and says
which stage makes the slowest repeats slow. Run with `make bench`.
"""

import argparse
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch

from course_lib import set_seed
from course_lib.data.windows import make_task
from course_lib.evaluation.walkforward import raw_windows
from course_lib.models import FinancialGRU
from course_lib.production.bundle import ModelDeployment, save_bundle
from course_lib.production.latency import STAGES, stage_timings, tail_summary
from course_lib.production.serving import serve_in_subprocess


def timed(call, count: int, seconds: float) -> np.ndarray:
    """Milliseconds of up to ``count`` calls, stopping after ``seconds`` (after 5 warm-up calls)."""
    for _ in range(5):
        call()
    times, deadline = [], time.perf_counter() + seconds
    while len(times) < count and time.perf_counter() < deadline:
        start = time.perf_counter()
        call()
        times.append(1e3 * (time.perf_counter() - start))
    return np.array(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300, help="most requests per case")
    parser.add_argument("--seconds", type=float, default=15.0, help="most seconds per case")
    args = parser.parse_args()
    torch.set_num_threads(1)
    set_seed(0)
    task = make_task("volatility", lookback=20)
    config = {"input_size": len(task.feature_names), "hidden_size": 16}
    model = FinancialGRU(**config)
    windows = raw_windows(task, "test")
    features = list(task.feature_names)
    one = {"features": features, "window": windows[0].tolist()}
    batch = {"features": features, "windows": windows[:256].tolist()}
    with tempfile.TemporaryDirectory() as tmp:
        path = save_bundle(Path(tmp) / "gru", model, task)
        deployment = ModelDeployment.load(path)
        results = {
            "in-process, 1 window": timed(
                lambda: deployment.predict(windows[:1]), args.requests, args.seconds
            ),
            "in-process, 256 windows": timed(
                lambda: deployment.predict(windows[:256]), args.requests, args.seconds
            ),
        }
        with serve_in_subprocess(path) as url, httpx.Client(base_url=url, timeout=30) as client:

            def post(route, body):
                response = client.post(route, json=body)
                response.raise_for_status()

            results["HTTP /predict, 1 window"] = timed(
                lambda: post("/predict", one), args.requests, args.seconds
            )
            results["HTTP /predict_batch, 256"] = timed(
                lambda: post("/predict_batch", batch), args.requests, args.seconds
            )
        breakdown = {
            collect: stage_timings(
                deployment, windows[:256], features, repeats=args.requests, collect=collect
            )
            for collect in (True, False)
        }
    print(f"{'case':<28} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for name, ms in results.items():
        print(f"{name:<28} {len(ms):>8} {np.percentile(ms, 50):>8.2f} {np.percentile(ms, 99):>8.2f}")
    summary = tail_summary(breakdown[True])
    print(f"\nthe batch of 256, stage by stage in-process ({args.requests} repeats, collector on), ms:")
    print(summary.round(2).to_string())
    off = breakdown[False]["total"]
    culprit = summary.loc[list(STAGES), "excess in tail"].idxmax()
    print(
        f"p99/p50: {summary.loc['total', 'p99'] / summary.loc['total', 'p50']:.1f} with the collector, "
        f"{off.quantile(0.99) / off.median():.1f} without; the slowest 5% of repeats spend "
        f"{summary.loc[culprit, 'excess in tail']:.1f} ms more than usual in '{culprit}', "
        f"{summary.loc['gc ms', 'excess in tail']:.1f} ms of the excess inside the garbage collector"
    )


if __name__ == "__main__":
    main()
