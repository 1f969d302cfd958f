"""The registry of every course_lib model: one line per model, and ``tests/test_contract.py`` runs the
whole model contract over it (shapes, gradients to every parameter, batch independence, no look-ahead,
determinism, clear input errors, save/load round trip).

Adding a model (a new chapter's, say) is one line in ``REGISTRY``::

    ModelSpec(FinancialMamba, dict(input_size=3, hidden_size=8), per_step=True),

The format of an entry (:class:`ModelSpec`):

* ``cls``: the model class. Its ``__init__`` is decorated with
  :func:`course_lib.models.common.keeps_config`, takes ``input_size`` (features per step) and uses the
  argument vocabulary ``hidden_size``, ``output_size``, ``n_layers``, ``n_heads``, ``dropout``.
* ``config``: keyword arguments that build a SMALL test instance (a few thousand parameters, so that the
  contract runs in seconds). Arguments left out take the constructor's defaults.
* ``per_step``: True if ``model(x, per_step=True)`` returns causal per-step outputs (B, L, ...), one per
  input step. Each of them is probed for look-ahead.
* ``name``: the test id, when one class has several entries (default: the class name).
* ``extra_inputs``: for models that take more than the window, ``f(config, batch, generator)`` returns
  the tensors passed after ``x``, e.g. the TFT's ``(x_future, x_static)``.
* ``output``: the trailing shape of one forecast, default ``(output_size,)`` from the config.
* ``future_steps``: H for models that forecast H decoder steps at once (the TFT): the forecast is then
  (B, H, *output) and ``per_step=True`` returns L + H positions, the last H being the forecast.
* ``lookahead_atol``: the largest gradient on later inputs that the look-ahead test accepts (float64).
  0 (exactly causal) for every model except those that convolve with an FFT (``FinancialS4D``): an FFT
  of length 2L is causal in exact arithmetic, and its round-off reaches later steps at about 1e-17.

The contract also reads two optional attributes of a model: ``min_length`` (the shortest window it
accepts; longer than 1 for pooling models) and ``receptive_field`` (the tests' windows cover it).

Not in the registry, on purpose: ``LSTMCellScratch`` (one step of a recurrence with an explicit state,
checked against ``nn.LSTM`` in tests/test_recurrent.py), and the wrappers ``MAML`` and
``FinancialTransferLearning``, which take a model, not a configuration.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..causal import CausalLSTM, CounterfactualRecurrentNetwork
from .bayesian import BayesianLSTM
from .continuous import AttentionNeuralODE, NeuralCDEFinance, NeuralODE
from .convolutional import TemporalConvNet, WaveNet
from .foundation import LagLlamaFinance, TimeSeriesFoundationModel
from .hybrid import CNNLSTM, AttentionLSTM
from .koopman import DeepKoopmanFinance
from .quantile import QuantileRegressionEnsemble
from .recurrent import FinancialGRU, FinancialLSTM, MultiHorizonLSTM, ResidualLSTM
from .ssm import FinancialMamba, FinancialS4D
from .tft import TemporalFusionTransformer
from .transformer import FinancialTransformer

__all__ = ["REGISTRY", "ModelSpec", "model_class", "spec"]


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry; see the module docstring for the meaning of each field."""

    cls: type[nn.Module]
    config: dict = field(default_factory=dict)
    per_step: bool = False
    name: str = ""
    extra_inputs: Callable[[dict, int, torch.Generator], tuple[torch.Tensor, ...]] | None = None
    output: tuple[int, ...] | None = None
    future_steps: int = 0
    lookahead_atol: float = 0.0

    @property
    def id(self) -> str:
        return self.name or self.cls.__name__

    def build(self, seed: int = 0) -> nn.Module:
        """A fresh test instance, its weights drawn with ``torch.manual_seed(seed)``."""
        torch.manual_seed(seed)
        return self.cls(**self.config)

    def inputs(self, model: nn.Module, batch: int, length: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """``(x, *extras)`` for ``model``: a standard normal window (B, L, input_size) and its extra inputs."""
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(batch, length, model.config["input_size"], generator=gen)
        extras = self.extra_inputs(model.config, batch, gen) if self.extra_inputs else ()
        dtype = next(model.parameters()).dtype
        return tuple(t.to(dtype) for t in (x, *extras))

    def forecast_shape(self, model: nn.Module, batch: int) -> tuple[int, ...]:
        step = self.output if self.output is not None else (model.config.get("output_size", 1),)
        return (batch, self.future_steps, *step) if self.future_steps else (batch, *step)


def _tft_inputs(config: dict, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    horizon, n_known, n_static = config["output_size"], config["n_known"], config["n_static"]
    x_future = torch.randn(batch, horizon, n_known, generator=gen)  # (B, H, 0) when there are none
    return (x_future, torch.randn(batch, n_static, generator=gen)) if n_static else (x_future,)


def _treatment_inputs(config: dict, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    return ((torch.rand(batch, generator=gen) < 0.5).float(),)  # one 0/1 decision per sample, (B,)


def _irregular_times(config: dict, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Strictly increasing observation times (B, 16), gaps of 0.5 to 3.5 days (16: the contract's window length)."""
    return (torch.cumsum(0.5 + 3 * torch.rand(batch, 16, generator=gen), dim=1),)


_TFT = dict(input_size=3, output_size=2, hidden_size=8, n_heads=2, dropout=0.1, quantiles=[0.1, 0.5, 0.9])

REGISTRY: list[ModelSpec] = [
    # chapter 01: recurrent networks
    ModelSpec(
        FinancialLSTM,
        dict(input_size=3, hidden_size=8, n_layers=2, output_size=2, n_heads=2, dropout=0.1),
        per_step=True,
    ),
    ModelSpec(
        FinancialLSTM,
        dict(input_size=3, hidden_size=8, n_heads=2, bidirectional=True),
        name="FinancialLSTM-bidirectional",
    ),
    ModelSpec(
        MultiHorizonLSTM,
        dict(input_size=3, hidden_size=8, horizons=[1, 5, 22], n_layers=2, dropout=0.1),
        per_step=True,
        output=(3,),
    ),
    ModelSpec(
        ResidualLSTM, dict(input_size=3, hidden_size=8, n_layers=2, output_size=2, dropout=0.1), per_step=True
    ),
    ModelSpec(
        FinancialGRU, dict(input_size=3, hidden_size=8, n_layers=2, output_size=2, dropout=0.1), per_step=True
    ),
    # chapter 02: transformers
    ModelSpec(
        FinancialTransformer,
        dict(input_size=3, hidden_size=8, n_heads=2, n_layers=2, dim_feedforward=16, output_size=2),
        per_step=True,
    ),
    ModelSpec(
        TemporalFusionTransformer,
        dict(_TFT, n_known=2, n_static=2),
        per_step=True,
        name="TFT",
        extra_inputs=_tft_inputs,
        output=(3,),
        future_steps=2,
    ),
    ModelSpec(
        TemporalFusionTransformer,
        dict(_TFT, n_known=0, n_static=0),
        per_step=True,
        name="TFT-past-only",
        extra_inputs=_tft_inputs,
        output=(3,),
        future_steps=2,
    ),
    # chapter 03: convolutional networks
    ModelSpec(
        TemporalConvNet,
        dict(input_size=3, num_channels=[6, 6], kernel_size=3, dropout=0.1, output_size=2),
        per_step=True,
    ),
    ModelSpec(
        WaveNet,
        dict(input_size=3, residual_channels=6, skip_channels=6, output_size=2, n_layers_per_block=3),
        per_step=True,
    ),
    # chapter 04: hybrids (CNNLSTM's per-step outputs live on the pooled grid: tested in tests/test_hybrid.py)
    ModelSpec(
        CNNLSTM, dict(input_size=3, n_filters=4, kernel_size=3, hidden_size=8, output_size=2, dropout=0.1)
    ),
    ModelSpec(
        AttentionLSTM,
        dict(input_size=3, hidden_size=8, n_layers=2, output_size=2, dropout=0.1),
        per_step=True,
    ),
    # chapter 05: uncertainty
    ModelSpec(BayesianLSTM, dict(input_size=3, hidden_size=8, n_layers=2, output_size=2, dropout=0.3)),
    # chapter 06b: foundation models (the patch model's per-patch outputs are probed in tests/test_foundation.py)
    ModelSpec(
        TimeSeriesFoundationModel,
        dict(input_size=3, patch_size=4, hidden_size=8, n_heads=2, n_layers=2, dropout=0.1, max_patches=8),
        output=(4, 3),
    ),
    ModelSpec(
        TimeSeriesFoundationModel,
        dict(
            input_size=3,
            patch_size=4,
            hidden_size=8,
            max_patches=8,
            head="quantile",
            quantiles=[0.1, 0.5, 0.9],
        ),
        name="TimeSeriesFoundationModel-quantile",
        output=(4, 3),
    ),
    ModelSpec(
        LagLlamaFinance,
        dict(input_size=3, hidden_size=8, n_heads=2, n_layers=2, dropout=0.1, lags=[1, 2, 5], max_len=32),
        per_step=True,
        output=(3,),
    ),
    # chapter 06d: conformal prediction (quantiles (B, output_size, Q) for conformalised quantile regression)
    ModelSpec(
        QuantileRegressionEnsemble,
        dict(input_size=3, hidden_size=8, n_layers=2, output_size=2, dropout=0.1, quantiles=[0.1, 0.5, 0.9]),
        per_step=True,
        output=(2, 3),
    ),
    # chapter 06e: Koopman operators (the forecast is the decoded state, input_size wide) and causal models
    ModelSpec(
        DeepKoopmanFinance,
        dict(input_size=3, hidden_size=8, latent_size=4, n_delays=3, dropout=0.1),
        per_step=True,
        output=(3,),
    ),
    ModelSpec(
        CausalLSTM,
        dict(input_size=3, hidden_size=8, n_layers=2, output_size=2, dropout=0.1),
        extra_inputs=_treatment_inputs,
    ),
    ModelSpec(
        CounterfactualRecurrentNetwork,
        dict(input_size=3, hidden_size=8, n_layers=2, output_size=2, dropout=0.1, alpha=0.5),
        extra_inputs=_treatment_inputs,
    ),
    # chapter 06c: continuous time (tests/test_continuous.py adds masks, closed forms and the adjoint)
    ModelSpec(NeuralODE, dict(input_size=3, hidden_size=8, output_size=2), per_step=True),
    ModelSpec(
        NeuralODE,
        dict(input_size=3, hidden_size=8, output_size=2),
        per_step=True,
        name="NeuralODE-irregular",
        extra_inputs=_irregular_times,
    ),
    ModelSpec(NeuralCDEFinance, dict(input_size=3, hidden_size=8, output_size=2), per_step=True),
    ModelSpec(
        NeuralCDEFinance,
        dict(input_size=3, hidden_size=8, output_size=2),
        per_step=True,
        name="NeuralCDEFinance-irregular",
        extra_inputs=_irregular_times,
    ),
    ModelSpec(AttentionNeuralODE, dict(input_size=3, hidden_size=8, output_size=2, n_heads=2), per_step=True),
    # chapter 06a: state space models
    ModelSpec(
        FinancialS4D,
        dict(input_size=3, hidden_size=8, n_layers=2, output_size=2, d_state=4, dropout=0.1),
        per_step=True,
        lookahead_atol=1e-12,
    ),
    ModelSpec(
        FinancialMamba,
        dict(input_size=3, hidden_size=8, n_layers=2, output_size=2, d_state=4, dropout=0.1),
        per_step=True,
    ),
    ModelSpec(  # the same model on the fused C scan (CPU; skipped where no C compiler is found)
        FinancialMamba,
        dict(input_size=3, hidden_size=8, n_layers=2, output_size=2, d_state=4, dropout=0.1, scan="fused"),
        per_step=True,
        name="FinancialMamba-fused",
    ),
]


def spec(name: str) -> ModelSpec:
    """The registry entry with this id (class name, or the entry's ``name``)."""
    for entry in REGISTRY:
        if entry.id == name:
            return entry
    raise KeyError(f"no registry entry {name!r}; entries: {[e.id for e in REGISTRY]}")


def model_class(name: str) -> type[nn.Module]:
    """The registered class called ``name``: the only classes that :func:`load_checkpoint` will build."""
    classes = {entry.cls.__name__: entry.cls for entry in REGISTRY}
    if name not in classes:
        raise KeyError(
            f"{name!r} is not a registered model class ({sorted(classes)}); add a line to "
            "course_lib/models/registry.py, or load with load_checkpoint(path, build=...)"
        )
    return classes[name]
