"""The models of the course, one module per family.

* :mod:`.recurrent`: LSTMCellScratch, FinancialLSTM, MultiHorizonLSTM, ResidualLSTM, FinancialGRU
"""

from .recurrent import FinancialGRU, FinancialLSTM, LSTMCellScratch, MultiHorizonLSTM, ResidualLSTM

__all__ = ["FinancialGRU", "FinancialLSTM", "LSTMCellScratch", "MultiHorizonLSTM", "ResidualLSTM"]
