"""The capstone's fixed task (chapter 08), the same for every model and every learner.

    v_t   = log sqrt( ln(H_t / L_t)^2 / (4 ln 2) )          next-day log Parkinson volatility
    X_t   = [r, v, log volume change] over days t-59 .. t    60 days, z-scored with training statistics
    y_t   = v_{t+1}

on the S&P 500 of the ``arch`` package, split by the date of the *target*: train <= 2006-12-31,
validation 2007-2008, test 2009-01-02 .. 2018-12-31 (2516 targets). ``v`` is in log percent (the
course's unit, :mod:`course_lib.data.features`), i.e. the v above plus log(100): MSE and QLIKE do not
change under that shift. Fixed, so that results compare with numbers measured outside the course
(:data:`OUTSIDE`).
"""

import numpy as np
import pandas as pd

from ..data.windows import Task, make_task

FEATURES = ["ret", "log_vol_parkinson", "volume_change"]
LOOKBACK = 60
# the last training target, the last validation target, the first and the last test target
TRAIN_END, VAL_END, TEST_START, TEST_END = "2006-12-31", "2008-12-31", "2009-01-02", "2018-12-31"
N_TEST = 2516  # targets from 2009-01-02 to 2018-12-31
# Numbers measured outside the course on exactly this task, with each library's defaults (darts,
# pytorch-forecasting, neuralforecast) and the classical models: raw test QLIKE, 5 seeds.
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


def capstone_task(
    prices: pd.DataFrame | None = None, ticker: str = "^GSPC", test_end: str = TEST_END
) -> Task:
    """The capstone's fixed task as a :class:`~course_lib.data.windows.Task` (see the module docstring).

    Samples are split by the date of their target (one day ahead; ``make_task(split_by="target")``):
    a window may look back into the previous split, its target never lies outside its own, and the test
    targets end on ``TEST_END``. The scaler is fitted on the rows the training inputs cover (up to the
    last training origin) and nothing later. ``prices`` (an OHLCV frame) replaces the packaged S&P 500
    of ``arch`` (for tests); the default is always the packaged data, offline, so that every learner
    has the same task. ``ticker`` and ``test_end`` put the same task on another asset's ``prices``
    (:func:`course_lib.capstone.holdout.holdout_task`).
    """
    return make_task(
        "volatility",
        ticker=ticker,
        lookback=LOOKBACK,
        horizons=(1,),
        features=FEATURES,
        train_end=TRAIN_END,
        val_end=VAL_END,
        end=TEST_END,
        prices=prices,
        offline=True,
        proxy="parkinson",
        split_by="target",
        test_end=test_end,
    )


def target_dates(task: Task, split: str) -> pd.DatetimeIndex:
    """The dates of the targets (the day after each origin) of one split."""
    return task.frame.index[task.split(split).rows + 1]


def random_walk(task: Task, split: str) -> np.ndarray:
    """The random walk of log volatility: tomorrow's v is today's, (N, 1)."""
    return task.frame["log_vol_parkinson"].to_numpy()[task.split(split).rows, None].astype(np.float32)
