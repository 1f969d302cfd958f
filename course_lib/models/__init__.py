"""The models of the course, one module per family (functions stay in their modules).

* :mod:`.recurrent` (chapter 01): LSTMCellScratch, FinancialLSTM, MultiHorizonLSTM, ResidualLSTM, FinancialGRU
* :mod:`.transfer`, :mod:`.meta`, :mod:`.bayesian` (chapter 05): FinancialTransferLearning, MAML, BayesianLSTM
"""

from .bayesian import BayesianLSTM
from .meta import MAML
from .recurrent import FinancialGRU, FinancialLSTM, LSTMCellScratch, MultiHorizonLSTM, ResidualLSTM
from .transfer import FinancialTransferLearning

__all__ = [
    "BayesianLSTM",
    "FinancialGRU",
    "FinancialLSTM",
    "FinancialTransferLearning",
    "LSTMCellScratch",
    "MAML",
    "MultiHorizonLSTM",
    "ResidualLSTM",
]
