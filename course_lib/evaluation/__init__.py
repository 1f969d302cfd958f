"""Honest evaluation: metrics, the baselines every model must face, and tests a quant would sign.

* :mod:`.metrics`: MSE, MAE, R2_oos (Campbell & Thompson, 2008), directional accuracy, QLIKE (Patton,
  2011), per-observation losses (:func:`loss_series`, :data:`LOSSES`)
* :mod:`.comparison`: Newey-West lags, Diebold-Mariano (with the Harvey-Leybourne-Newbold factor),
  Clark-West, the model confidence set (Hansen, Lunde & Nason, 2011) and SPA (Hansen, 2005)
* :mod:`.correction`: the level shift of log-volatility forecasts (the Jensen gap), learnt three ways
  (none, on validation, causally on past errors)
* :mod:`.protocol`: the course's protocol written once: what "frozen" means, the benchmark rule
* :mod:`.baselines`: zero, mean and AR(1) for returns; EWMA, GARCH(1,1), HAR and log-HAR for volatility,
  under the ``"frozen"`` or ``"walk_forward"`` protocol
* :mod:`.irregular_baselines`: HAR and log-HAR on a forward-filled proxy and a calendar-time EWMA, fed
  only the days a removal mask keeps (chapter 06c; imported from its own path)
* :mod:`.tables`: :func:`results_table`, :func:`seed_summary`, :func:`verdicts` (one line per model),
  :func:`verdict_summary` (the verdict in a few sentences, MCS first), and the correction
  variants side by side (:func:`correction_variants`, :func:`correction_reversals`)
* :mod:`.walkforward`: networks re-trained every year on an expanding window (chapter 07)
* :mod:`.backtests`: Kupiec's proportion of failures and Christoffersen's independence test on a
  sequence of misses (VaR violations, interval misses; chapters 06d and 08)
* :mod:`.conformal`: conformal intervals and their coverage metrics (chapter 06d; numpy and scipy only)
* :mod:`.probabilistic`: proper scoring rules, CRPS (closed forms, samples, quantiles) and the weighted
  quantile loss (chapter 06b; numpy and scipy only)

``from course_lib.evaluation import results_table`` (the path before v3) still works: the API of the
first six submodules and :mod:`.backtests` is re-exported here; :mod:`.walkforward`, :mod:`.conformal` and
:mod:`.probabilistic` (which need torch, or are used alone) are imported from their own paths.
"""

from .backtests import christoffersen_test, kupiec_test
from .baselines import (
    HAR_WARMUP,
    LONG_MEMORY_LAGS,
    PROTOCOLS,
    VOLATILITY_BASELINES,
    log_har_forecasts,
    return_baselines,
    standard_baselines,
    volatility_baselines,
)
from .comparison import (
    VERDICTS,
    DMResult,
    clark_west,
    diebold_mariano,
    model_confidence_set,
    newey_west_lags,
    spa_test,
    verdict_word,
)
from .correction import (
    CORRECTIONS,
    RANKING_VARIANT,
    VARIANTS,
    apply_correction,
    causal_level_shift,
    level_correct,
    level_shift,
)
from .metrics import LOSSES, directional_accuracy, loss_series, mae, mse, qlike, r2_oos, up_rate
from .protocol import benchmark_rule, validation_scores
from .tables import (
    correction_reversals,
    correction_variants,
    results_table,
    seed_summary,
    verdict_summary,
    verdicts,
)

__all__ = [
    "CORRECTIONS",
    "HAR_WARMUP",
    "LONG_MEMORY_LAGS",
    "LOSSES",
    "PROTOCOLS",
    "RANKING_VARIANT",
    "VARIANTS",
    "VERDICTS",
    "VOLATILITY_BASELINES",
    "DMResult",
    "apply_correction",
    "benchmark_rule",
    "causal_level_shift",
    "christoffersen_test",
    "clark_west",
    "correction_reversals",
    "correction_variants",
    "diebold_mariano",
    "directional_accuracy",
    "kupiec_test",
    "level_correct",
    "level_shift",
    "log_har_forecasts",
    "loss_series",
    "mae",
    "model_confidence_set",
    "mse",
    "newey_west_lags",
    "qlike",
    "r2_oos",
    "results_table",
    "return_baselines",
    "seed_summary",
    "spa_test",
    "standard_baselines",
    "up_rate",
    "validation_scores",
    "verdict_summary",
    "verdict_word",
    "verdicts",
    "volatility_baselines",
]
