"""The data layer: market prices, features, the forecasting tasks and their windows, corpora.

* :mod:`.prices`: daily OHLCV prices, packaged (S&P 500, NASDAQ, four stocks) or live from Yahoo
* :mod:`.features`: log returns, range-based variances (Parkinson, Garman-Klass), the feature frame
* :mod:`.windows`: the two tasks (returns, volatility), chronological splits, scalers fitted on training
* :mod:`.corpus`: many real and simulated series for pretraining (chapter 06b)
* :mod:`.irregular`: irregularly sampled tasks (chapter 06c)

``from course_lib.data import load_prices`` (the path before v3) still works: the price API is
re-exported here.
"""

from .prices import (
    DATA_DIR,
    DataFallbackWarning,
    UnknownTickerError,
    available_tickers,
    cache_dir,
    is_offline,
    load_prices,
)

__all__ = [
    "DATA_DIR",
    "DataFallbackWarning",
    "UnknownTickerError",
    "available_tickers",
    "cache_dir",
    "is_offline",
    "load_prices",
]
