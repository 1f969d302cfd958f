"""Where a batch request's time goes: the serving path of :mod:`.serving` cut into timed stages.

A ``/predict_batch`` request of ``B`` windows of ``L`` days and ``C`` features carries ``B L C`` numbers
as JSON text. The service (1) parses the text into Python lists and floats, (2) checks that every leaf
is a number (:func:`.serving._check_numbers`), (3) turns the lists into a float64 array and validates
shapes and ranges (:meth:`.bundle.ModelDeployment.validate`), (4) hands the work to a thread of the
pool (``run_in_threadpool``, so the event loop stays free), (5) scales and runs the network, and (6)
encodes the forecasts as JSON. The client (0) encodes the request. :func:`stage_timings` times each
stage with ``time.perf_counter`` over many repeats, in-process (no socket), and records the Python
garbage collector's work during each repeat through :data:`gc.callbacks`.

Why a tail. Parsing allocates one Python object per number and per list (about ``B L (C + 1)``), and
CPython's cyclic collector runs a generation-0 pass every 700 net allocations of container objects
(the default of :func:`gc.get_threshold`), promoting survivors; now and then a generation-2 pass walks
*every* live container object of the process (the model, torch, FastAPI and whatever else it holds),
which can cost more than many requests. Which stage carries the tail,
and whether a collection did, is measured, not assumed: the p99 of a stage against its p50, and the
share of the slowest repeats that saw a generation-2 collection.
"""

import asyncio
import gc
import json
import threading
import time

import numpy as np
import pandas as pd
from fastapi.concurrency import run_in_threadpool

from .bundle import ModelDeployment
from .serving import _check_numbers, _fields

STAGES = (
    "encode request",
    "parse JSON",
    "check types",
    "to array + validate",
    "thread-pool hop",
    "scale + forward",
    "encode response",
)


class _GCRecorder:
    """Time spent in the cyclic garbage collector and the oldest generation collected, per interval."""

    def __init__(self):
        self.seconds, self.oldest, self._start = 0.0, -1, 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start
            self.oldest = max(self.oldest, info["generation"])

    def clear(self) -> None:
        self.seconds, self.oldest = 0.0, -1


def stage_timings(
    deployment: ModelDeployment,
    windows: np.ndarray,
    features: list[str],
    repeats: int = 200,
    collect: bool = True,
) -> pd.DataFrame:
    """Milliseconds of each serving stage (:data:`STAGES`) for one batch, ``repeats`` times.

    ``windows``: (B, L, C) unscaled feature windows, sent as ``/predict_batch`` would send them.
    ``collect=False`` disables the cyclic garbage collector during the measurement (restored after).
    Returns one row per repeat: a column per stage, ``total`` (their sum), ``gc ms`` (time inside the
    collector during the repeat) and ``gc generation`` (the oldest generation collected, -1 for none).
    """
    windows = np.asarray(windows, dtype=np.float64)
    if windows.ndim != 3:
        raise ValueError(f"windows must have shape (batch, lookback, features), got {windows.shape}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    body = {"features": list(features), "windows": windows.tolist()}
    recorder, rows = _GCRecorder(), []

    async def run() -> None:
        for r in range(repeats + 3):  # 3 warm-up repeats, dropped
            recorder.clear()
            t = [time.perf_counter()]
            text = json.dumps(body).encode()
            t.append(time.perf_counter())
            payload = json.loads(text)
            t.append(time.perf_counter())
            names = _fields(payload, "windows")
            _check_numbers(payload["windows"], "windows", 3)
            t.append(time.perf_counter())
            x = deployment.validate(payload["windows"], names)  # (B, L, C) float64
            t.append(time.perf_counter())
            await run_in_threadpool(lambda: None)
            t.append(time.perf_counter())
            out = deployment.predict(x)  # (B, n_h)
            t.append(time.perf_counter())
            json.dumps({"forecasts": out.tolist()})
            t.append(time.perf_counter())
            if r >= 3:
                rows.append([*(1e3 * np.diff(t)), 1e3 * recorder.seconds, recorder.oldest])

    enabled = gc.isenabled()
    gc.callbacks.append(recorder)
    try:
        if not collect:
            gc.disable()
        # a thread of its own, so that asyncio.run works where a loop already runs (Jupyter)
        worker = threading.Thread(target=lambda: asyncio.run(run()))
        worker.start()
        worker.join()
    finally:
        gc.callbacks.remove(recorder)
        if enabled:
            gc.enable()
    table = pd.DataFrame(rows, columns=[*STAGES, "gc ms", "gc generation"])
    table.insert(len(STAGES), "total", table[list(STAGES)].sum(axis=1))
    table["gc generation"] = table["gc generation"].astype(int)
    return table


def tail_summary(table: pd.DataFrame, tail: float = 0.05) -> pd.DataFrame:
    """Per stage: p50, p99 (ms), and its mean excess over its p50 in the slowest ``tail`` of repeats.

    The ``excess in tail`` column says which stages make the slow repeats slow (it sums, over stages,
    to the tail's mean total minus the sum of the p50s).
    """
    if not 0 < tail < 1:
        raise ValueError(f"tail must lie in (0, 1), got {tail}")
    slow = table["total"] >= table["total"].quantile(1 - tail)
    columns = [*STAGES, "total", "gc ms"]
    return pd.DataFrame(
        {
            "p50": table[columns].median(),
            "p99": table[columns].quantile(0.99),
            "excess in tail": table.loc[slow, columns].mean() - table[columns].median(),
        }
    )
