"""The capstone (chapter 08): one fixed task, one leaderboard, and what the forecasts are worth.

* :mod:`.task`: the fixed task (next-day log Parkinson volatility of the S&P 500 from 60 days of
  [r, v, log volume change], split by the date of the target; test 2009-01-02 .. 2018-12-31, 2516
  targets), the numbers measured outside the course (:data:`OUTSIDE`), the random walk
* :mod:`.entries`: leaderboard entries: a learner's forecasts (:func:`leaderboard_entry`), course models
  of :data:`MODELS` trained for several seeds (:func:`train_entry`), and the two families that keep the
  protocol of their chapter (:func:`foundation_entries`, :func:`koopman_entry`)
* :mod:`.leaderboard`: :func:`leaderboard` (QLIKE raw and level-corrected over seeds, DM against the benchmark rule's pick, the
  model confidence set, a forecast combination learnt on validation, :func:`combination_weights`),
  :func:`evaluate_submission` and :func:`plot_leaderboard`
* :mod:`.holdout`: the sealed cross-asset hold-out (the board's recipes re-fitted on ^IXIC, AAPL, MSFT,
  IBM); :mod:`.pooled`: one model trained on the training years of every asset at once
* :mod:`.reconcile`: a family's result in its own chapter beside its board result, with the settings
  that differ, and a sentence wherever the verdict flips (:func:`reconciliation`, :func:`flips`)
* :mod:`.economics`: volatility targeting after proportional costs (Sharpe ratio, certainty equivalent,
  Fleming, Kirby and Ostdiek's performance fee against the benchmark, block-bootstrap intervals) and a
  1% VaR backtest (Gaussian, Student-t, filtered historical simulation; Kupiec, Christoffersen), on the
  return's scale learnt on validation

``from course_lib import capstone as cap; cap.leaderboard(...)`` (the path before v3) still works: the
API of the four submodules is re-exported here.
"""

from ..losses import qlike_loss  # the capstone's QLIKE training loss (was defined here)
from .economics import (
    COSTS_BP,
    VAR_METHODS,
    breach_tests,
    certainty_equivalent,
    christoffersen_test,
    economic_table,
    economic_value,
    fit_student_t,
    kupiec_test,
    net_of_costs,
    performance_fee,
    portfolio_returns,
    return_scale,
    scale_variants,
    sharpe_ratio,
    shock_quantile,
    standardised_residuals,
    summary_columns,
    value_at_risk,
    var_backtest,
    vol_targeting,
)
from .entries import (
    MODELS,
    QUANTILE_MODELS,
    Entry,
    build_model,
    foundation_entries,
    koopman_entry,
    leaderboard_entry,
    train_entry,
)
from .leaderboard import (
    combination_weights,
    committed_board,
    evaluate_submission,
    leaderboard,
    load_entries,
    plot_leaderboard,
    save_predictions,
    validation_choice,
)
from .reconcile import board_rows, chapter_rows, flips, reconciliation
from .task import (
    FEATURES,
    LOOKBACK,
    N_TEST,
    OUTSIDE,
    TEST_END,
    TEST_START,
    TRAIN_END,
    VAL_END,
    capstone_task,
    random_walk,
    target_dates,
)

__all__ = [
    "COSTS_BP",
    "FEATURES",
    "LOOKBACK",
    "MODELS",
    "N_TEST",
    "OUTSIDE",
    "QUANTILE_MODELS",
    "TEST_END",
    "TEST_START",
    "TRAIN_END",
    "VAL_END",
    "VAR_METHODS",
    "Entry",
    "board_rows",
    "breach_tests",
    "build_model",
    "capstone_task",
    "certainty_equivalent",
    "chapter_rows",
    "christoffersen_test",
    "combination_weights",
    "committed_board",
    "economic_table",
    "economic_value",
    "evaluate_submission",
    "fit_student_t",
    "flips",
    "foundation_entries",
    "koopman_entry",
    "kupiec_test",
    "leaderboard",
    "leaderboard_entry",
    "load_entries",
    "net_of_costs",
    "performance_fee",
    "plot_leaderboard",
    "portfolio_returns",
    "qlike_loss",
    "random_walk",
    "reconciliation",
    "return_scale",
    "save_predictions",
    "scale_variants",
    "sharpe_ratio",
    "shock_quantile",
    "standardised_residuals",
    "summary_columns",
    "target_dates",
    "train_entry",
    "validation_choice",
    "value_at_risk",
    "var_backtest",
    "vol_targeting",
]
