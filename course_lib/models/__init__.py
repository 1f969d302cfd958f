"""The models of the course, one module per family (functions stay in their modules).

* :mod:`.recurrent` (chapter 01): LSTMCellScratch, FinancialLSTM, MultiHorizonLSTM, ResidualLSTM, FinancialGRU
* :mod:`.convolutional` (chapter 03): TemporalConvNet, TemporalBlock, Chomp1d, CausalConv1d, WaveNet, ResidualBlock
* :mod:`.hybrid` (chapter 04): CNNLSTM, AttentionLSTM, BahdanauAttention
* :mod:`.transfer`, :mod:`.meta`, :mod:`.bayesian` (chapter 05): FinancialTransferLearning, MAML, BayesianLSTM
"""

from .bayesian import BayesianLSTM
from .convolutional import CausalConv1d, Chomp1d, ResidualBlock, TemporalBlock, TemporalConvNet, WaveNet
from .hybrid import CNNLSTM, AttentionLSTM, BahdanauAttention
from .meta import MAML
from .recurrent import FinancialGRU, FinancialLSTM, LSTMCellScratch, MultiHorizonLSTM, ResidualLSTM
from .transfer import FinancialTransferLearning

__all__ = [
    "AttentionLSTM",
    "BahdanauAttention",
    "BayesianLSTM",
    "CNNLSTM",
    "CausalConv1d",
    "Chomp1d",
    "ResidualBlock",
    "TemporalBlock",
    "TemporalConvNet",
    "WaveNet",
    "FinancialGRU",
    "FinancialLSTM",
    "FinancialTransferLearning",
    "LSTMCellScratch",
    "MAML",
    "MultiHorizonLSTM",
    "ResidualLSTM",
]
