"""The models of the course, one module per family (functions stay in their modules).

* :mod:`.recurrent` (chapter 01): LSTMCellScratch, FinancialLSTM, MultiHorizonLSTM, ResidualLSTM, FinancialGRU
* :mod:`.transformer`, :mod:`.tft` (chapter 02): PositionalEncoding, FinancialTransformer, TemporalFusionTransformer
* :mod:`.convolutional` (chapter 03): TemporalConvNet, TemporalBlock, Chomp1d, CausalConv1d, WaveNet, ResidualBlock
* :mod:`.hybrid` (chapter 04): CNNLSTM, AttentionLSTM, BahdanauAttention
* :mod:`.transfer`, :mod:`.meta`, :mod:`.bayesian` (chapter 05): FinancialTransferLearning, MAML, BayesianLSTM
* :mod:`.quantile` (chapter 06d): QuantileRegressionEnsemble
* :mod:`.continuous` (chapter 06c): NeuralODE, AttentionNeuralODE, NeuralCDEFinance, GRUD (and the vector fields)
* :mod:`.sde` (chapter 06c): NeuralSDE (and its Euler-Maruyama simulator, ``euler_maruyama``)
* :mod:`.s4d`, :mod:`.mamba` (chapter 06a): FinancialS4D, FinancialMamba (building blocks S4DKernel, S4D
  and MambaBlock stay in their modules; the selective scan, its fused C kernel and the S4D convolution
  are numerical ops, in :mod:`.ops`)
* :mod:`.koopman` (chapter 06e): DeepKoopmanFinance, with DMD and EDMD
* :mod:`.causal` (chapter 06e): CausalLSTM, CounterfactualRecurrentNetwork (the simulators and tests of
  causal inference live in :mod:`course_lib.causal`)
* :mod:`.foundation` (chapter 06b): TimeSeriesFoundationModel, LagLlamaFinance (and MeanScaleTokenizer, Chronos-style)
"""

from .bayesian import BayesianLSTM
from .causal import CausalLSTM, CounterfactualRecurrentNetwork
from .continuous import GRUD, AttentionNeuralODE, NeuralCDEFinance, NeuralODE
from .convolutional import CausalConv1d, Chomp1d, ResidualBlock, TemporalBlock, TemporalConvNet, WaveNet
from .foundation import LagLlamaFinance, TimeSeriesFoundationModel
from .hybrid import CNNLSTM, AttentionLSTM, BahdanauAttention
from .koopman import DeepKoopmanFinance
from .mamba import FinancialMamba
from .meta import MAML
from .quantile import QuantileRegressionEnsemble
from .recurrent import FinancialGRU, FinancialLSTM, LSTMCellScratch, MultiHorizonLSTM, ResidualLSTM
from .s4d import FinancialS4D
from .sde import NeuralSDE
from .tft import TemporalFusionTransformer
from .transfer import FinancialTransferLearning
from .transformer import FinancialTransformer, PositionalEncoding

__all__ = [
    "CNNLSTM",
    "GRUD",
    "MAML",
    "AttentionLSTM",
    "AttentionNeuralODE",
    "BahdanauAttention",
    "BayesianLSTM",
    "CausalConv1d",
    "CausalLSTM",
    "Chomp1d",
    "CounterfactualRecurrentNetwork",
    "DeepKoopmanFinance",
    "FinancialGRU",
    "FinancialLSTM",
    "FinancialMamba",
    "FinancialS4D",
    "FinancialTransferLearning",
    "FinancialTransformer",
    "LSTMCellScratch",
    "LagLlamaFinance",
    "MultiHorizonLSTM",
    "NeuralCDEFinance",
    "NeuralODE",
    "NeuralSDE",
    "PositionalEncoding",
    "QuantileRegressionEnsemble",
    "ResidualBlock",
    "ResidualLSTM",
    "TemporalBlock",
    "TemporalConvNet",
    "TemporalFusionTransformer",
    "TimeSeriesFoundationModel",
    "WaveNet",
]
