"""The course's evaluation protocol, written once: what "frozen" means, which baseline every model is
tested against, and which level correction the rankings use.

**Frozen.** A frozen forecaster is fitted once, on the task's training split, and then only filters
forward: its parameters (a network's weights, a baseline's coefficients, a scaler's statistics) never
see a validation or test target. On the course's S&P 500 tasks the training split ends on 2006-12-31,
validation is 2007-2008 and the test years are 2009-2018, in every chapter and on the leaderboard; a
chapter that re-fits (chapter 07's walk-forward) says so and is a different protocol
(``"walk_forward"``, :data:`~course_lib.evaluation.baselines.PROTOCOLS`), one per table.

**The benchmark rule** (:func:`benchmark_rule`). Volatility: every model is tested (Diebold-Mariano)
against the strongest classical baseline *on validation*: the one of EWMA, GARCH(1,1), HAR and log-HAR
with the lowest validation QLIKE at its best level (the level shift learnt on validation itself, so
the rule compares shapes, not levels; averaged over horizons; ties broken by validation MSE). It is
chosen before the test years are looked at, and every baseline also enters the model confidence set,
so a model that beats the benchmark but not another baseline is not mistaken for the best. Returns:
the zero forecast (a martingale), which every return forecast nests (Clark-West, chapter 00).

**The correction.** Tables report QLIKE raw and level-corrected; tests and rankings use the
:data:`~course_lib.evaluation.correction.RANKING_VARIANT` (the causal one, learnt from past test-period
errors only), and :func:`~course_lib.evaluation.tables.correction_variants` shows the other two beside it.
"""

import numpy as np

from ..data.windows import Task
from .baselines import VOLATILITY_BASELINES, check_protocol, standard_baselines
from .correction import level_shift
from .metrics import loss_series

RETURNS_BENCHMARK = "zero"
RULE = (
    "the classical baseline with the lowest validation QLIKE at its best level (shift learnt on "
    "validation), averaged over horizons"
)


def validation_scores(task: Task, protocol: str = "frozen", candidates: dict | None = None) -> dict:
    """Validation (level-free QLIKE, MSE) of each classical baseline and of ``candidates`` (name ->
    validation forecasts (N_val, n_h)), the two numbers :func:`benchmark_rule` ranks on."""
    check_protocol(protocol)
    forecasts = dict(standard_baselines(task, "val", protocol)) | dict(candidates or {})
    y = task.val.y.astype(np.float64)
    out = {}
    for name, p in forecasts.items():
        p = np.asarray(p, dtype=np.float64)
        if p.shape != y.shape:
            raise ValueError(f"{name}: validation forecasts have shape {p.shape}, the targets {y.shape}")
        levelled = p + level_shift(y, p)[None, :]
        out[name] = (float(loss_series(y, levelled, "qlike").mean()), float(loss_series(y, p, "se").mean()))
    return out


def benchmark_rule(task: Task, protocol: str = "frozen", candidates: dict | None = None) -> str:
    """The name of the baseline every model of ``task`` is tested against (see the module docstring).

    ``candidates``: more validation forecasts that may compete (e.g. a linear model over the same
    window); without them the answer is cached on the task.
    """
    if task.kind == "returns":
        return RETURNS_BENCHMARK
    key = ("benchmark", protocol)
    if candidates or key not in task.cache:
        scores = validation_scores(task, protocol, candidates)
        pool = [*VOLATILITY_BASELINES, *(candidates or {})]
        best = min(pool, key=lambda n: scores[n])
        if candidates:
            return best
        task.cache[key] = best
    return task.cache[key]
