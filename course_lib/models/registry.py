"""The catalogue of every course_lib model: one line per model, read by everything that maps a name to
a class (the contract tests, the checkpoint and bundle loaders, the DDP trainer, the capstone).

``tests/test_contract.py`` runs the whole model contract over it (shapes, gradients to every parameter,
batch independence, no look-ahead, determinism, clear input errors, save/load round trip). Adding a
model (a new chapter's, say) is one line in ``REGISTRY``::

    ModelSpec(FinancialMamba, Family.STATE_SPACE, "06a", {"test": dict(input_size=3, hidden_size=8)}, per_step=True),

The format of an entry (:class:`ModelSpec`):

* ``cls``: the model class. Its ``__init__`` is decorated with
  :func:`course_lib.models.common.keeps_config`, takes ``input_size`` (features per step) and uses the
  argument vocabulary ``hidden_size``, ``output_size``, ``n_layers``, ``n_heads``, ``dropout``.
* ``family`` (a :class:`Family`) and ``chapter`` (``"01"``, ``"06a"``): where the model is taught.
* ``sizes``: constructor keyword arguments per size. ``"test"`` (always there) builds a SMALL instance
  (a few thousand parameters, so that the contract runs in seconds). ``"small"`` and ``"full"``, for the
  models on the capstone's leaderboard, leave out ``input_size`` (the task's) and the output width (one
  value: :func:`build` adds it). Arguments left out take the constructor's defaults.
* ``leaderboard``: the model's display name on the capstone's leaderboard (``"CNN-LSTM"``, ``"S4D"``), or
  None for a model that is not on it.
* ``requires``: ``None``, or a function that returns why this machine cannot run the model (a string:
  the tests skip it with that reason) or None when it can. ``FinancialMamba-fused`` needs a C compiler.
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

Lookups: :func:`spec` (an entry by id or leaderboard name), :func:`model_class` (a registered class by
its class name: the only classes a checkpoint or a bundle may rebuild), :func:`build` (a fresh seeded
model at a size), :data:`LEADERBOARD` (the leaderboard's entries in its order).

Not in the registry, on purpose: ``LSTMCellScratch`` (one step of a recurrence with an explicit state,
checked against ``nn.LSTM`` in tests/test_recurrent.py), and the wrappers ``MAML`` and
``FinancialTransferLearning``, which take a model, not a configuration.
"""

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import torch
from torch import nn

from .. import set_seed
from .bayesian import BayesianLSTM
from .causal import CausalLSTM, CounterfactualRecurrentNetwork
from .continuous import GRUD, AttentionNeuralODE, NeuralCDEFinance, NeuralODE
from .convolutional import TemporalConvNet, WaveNet
from .foundation import LagLlamaFinance, TimeSeriesFoundationModel
from .hybrid import CNNLSTM, AttentionLSTM
from .koopman import DeepKoopmanFinance
from .mamba import FinancialMamba
from .ops.fused_build import fused_scan_unavailable_reason
from .quantile import QuantileRegressionEnsemble
from .recurrent import FinancialGRU, FinancialLSTM, MultiHorizonLSTM, ResidualLSTM
from .s4d import FinancialS4D
from .sde import NeuralSDE
from .tft import TemporalFusionTransformer
from .transformer import FinancialTransformer

__all__ = ["LEADERBOARD", "REGISTRY", "SIZES", "Family", "ModelSpec", "build", "model_class", "spec"]

SIZES = ("test", "small", "full")


class Family(StrEnum):
    """The model families of the course (a fixed set: the leaderboard and the docs group by them)."""

    RECURRENT = "recurrent"
    ATTENTION = "attention"
    CONVOLUTIONAL = "convolutional"
    HYBRID = "hybrid"
    BAYESIAN = "bayesian"
    STATE_SPACE = "state space"
    FOUNDATION = "foundation"
    CONTINUOUS = "continuous"
    QUANTILE = "quantile"
    KOOPMAN = "koopman"
    CAUSAL = "causal"


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry; see the module docstring for the meaning of each field."""

    cls: type[nn.Module]
    family: Family
    chapter: str
    sizes: dict[str, dict]
    per_step: bool = False
    name: str = ""
    leaderboard: str | None = None
    requires: Callable[[], str | None] | None = None
    extra_inputs: Callable[[dict, int, torch.Generator], tuple[torch.Tensor, ...]] | None = None
    output: tuple[int, ...] | None = None
    future_steps: int = 0
    lookahead_atol: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.family, Family):
            raise TypeError(f"{self.id}: family must be a registry.Family, got {self.family!r}")
        expected = set(SIZES) if self.leaderboard else {"test"}
        if set(self.sizes) != expected:
            raise ValueError(
                f"{self.id}: sizes must be {sorted(expected)} (a leaderboard model has 'small' and 'full' too), "
                f"got {sorted(self.sizes)}"
            )

    @property
    def id(self) -> str:
        return self.name or self.cls.__name__

    def build(self, seed: int = 0, size: str = "test", input_size: int | None = None) -> nn.Module:
        """A fresh instance at ``size``, its weights drawn after :func:`course_lib.set_seed` (``seed``).

        ``input_size`` replaces the config's (the "small" and "full" sizes have none: give it).
        The leaderboard's sizes forecast one value per window.
        """
        if size not in self.sizes:
            raise KeyError(f"{self.id} has no size {size!r}; choose from {list(self.sizes)}")
        config = dict(self.sizes[size])
        if size != "test":
            config["output_size"] = 1  # one forecast per window
        if input_size is not None:
            config["input_size"] = input_size
        elif "input_size" not in config:
            raise TypeError(f"{self.id} at size {size!r}: give input_size (the number of features per step)")
        set_seed(seed)
        return self.cls(**config)

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


def _irregular_times_and_mask(config: dict, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """:func:`_irregular_times` and a mask (B, 16) with about a third of the slots missing.

    Slot 2 is always observed: the contract's NaN probe sits at step 2 and must meet an observed entry.
    """
    mask = (torch.rand(batch, 16, generator=gen) >= 0.3).float()
    mask[:, 2] = 1.0
    return (*_irregular_times(config, batch, gen), mask)


_TFT = dict(input_size=3, output_size=2, hidden_size=8, n_heads=2, dropout=0.1, quantiles=[0.1, 0.5, 0.9])
_RNN_BOARD = dict(small=dict(hidden_size=16), full=dict(hidden_size=32, n_layers=2, dropout=0.1))

# The leaderboard's sizes ("small", "full") come from the capstone: "full" keeps one seed of every
# family within about 40 s of CPU (Mamba's scan is the slow one on a CPU: it stays narrow), so that
# ``make leaderboard`` fits its hour on a 2-core machine.
REGISTRY: list[ModelSpec] = [
    # chapter 01: recurrent networks
    ModelSpec(
        FinancialLSTM,
        Family.RECURRENT,
        "01",
        dict(
            test=dict(input_size=3, hidden_size=8, n_layers=2, output_size=2, n_heads=2, dropout=0.1),
            **_RNN_BOARD,
        ),
        per_step=True,
        leaderboard="LSTM",
    ),
    ModelSpec(
        FinancialLSTM,
        Family.RECURRENT,
        "01",
        dict(test=dict(input_size=3, hidden_size=8, n_heads=2, bidirectional=True)),
        name="FinancialLSTM-bidirectional",
    ),
    ModelSpec(
        MultiHorizonLSTM,
        Family.RECURRENT,
        "01",
        dict(test=dict(input_size=3, hidden_size=8, horizons=[1, 5, 22], n_layers=2, dropout=0.1)),
        per_step=True,
        output=(3,),
    ),
    ModelSpec(
        ResidualLSTM,
        Family.RECURRENT,
        "01",
        dict(test=dict(input_size=3, hidden_size=8, n_layers=2, output_size=2, dropout=0.1)),
        per_step=True,
    ),
    ModelSpec(
        FinancialGRU,
        Family.RECURRENT,
        "01",
        dict(test=dict(input_size=3, hidden_size=8, n_layers=2, output_size=2, dropout=0.1), **_RNN_BOARD),
        per_step=True,
        leaderboard="GRU",
    ),
    # chapter 02: transformers
    ModelSpec(
        FinancialTransformer,
        Family.ATTENTION,
        "02",
        dict(
            test=dict(input_size=3, hidden_size=8, n_heads=2, n_layers=2, dim_feedforward=16, output_size=2),
            small=dict(hidden_size=16, n_heads=2, n_layers=1, dim_feedforward=32),
            full=dict(hidden_size=32, n_heads=4, n_layers=2, dim_feedforward=64, dropout=0.1),
        ),
        per_step=True,
        leaderboard="Transformer",
    ),
    ModelSpec(  # on the leaderboard: trained on its own pinball loss, scored on the median
        TemporalFusionTransformer,
        Family.ATTENTION,
        "02",
        dict(
            test=dict(_TFT, n_known=2, n_static=2),
            small=dict(hidden_size=16, n_heads=2, dropout=0.0, quantiles=(0.1, 0.5, 0.9)),
            full=dict(hidden_size=32, n_heads=4, dropout=0.1, quantiles=(0.1, 0.5, 0.9)),
        ),
        per_step=True,
        name="TFT",
        leaderboard="TFT",
        extra_inputs=_tft_inputs,
        output=(3,),
        future_steps=2,
    ),
    ModelSpec(
        TemporalFusionTransformer,
        Family.ATTENTION,
        "02",
        dict(test=dict(_TFT, n_known=0, n_static=0)),
        per_step=True,
        name="TFT-past-only",
        extra_inputs=_tft_inputs,
        output=(3,),
        future_steps=2,
    ),
    # chapter 03: convolutional networks
    ModelSpec(
        TemporalConvNet,
        Family.CONVOLUTIONAL,
        "03",
        dict(
            test=dict(input_size=3, num_channels=[6, 6], kernel_size=3, dropout=0.1, output_size=2),
            small=dict(num_channels=[16, 16, 16], kernel_size=3, dropout=0.1),
            full=dict(num_channels=[32, 32, 32, 32], kernel_size=3, dropout=0.1),
        ),
        per_step=True,
        leaderboard="TCN",
    ),
    ModelSpec(
        WaveNet,
        Family.CONVOLUTIONAL,
        "03",
        dict(
            test=dict(
                input_size=3, residual_channels=6, skip_channels=6, output_size=2, n_layers_per_block=3
            ),
            small=dict(residual_channels=16, skip_channels=16, n_layers_per_block=5),
            full=dict(residual_channels=32, skip_channels=32, n_layers_per_block=6),
        ),
        per_step=True,
        leaderboard="WaveNet",
    ),
    # chapter 04: hybrids (CNNLSTM's per-step outputs live on the pooled grid: tested in tests/test_hybrid.py)
    ModelSpec(
        CNNLSTM,
        Family.HYBRID,
        "04",
        dict(
            test=dict(input_size=3, n_filters=4, kernel_size=3, hidden_size=8, output_size=2, dropout=0.1),
            small=dict(n_filters=16, kernel_size=3, hidden_size=16),
            full=dict(n_filters=32, kernel_size=3, hidden_size=32, dropout=0.1),
        ),
        leaderboard="CNN-LSTM",
    ),
    ModelSpec(
        AttentionLSTM,
        Family.HYBRID,
        "04",
        dict(test=dict(input_size=3, hidden_size=8, n_layers=2, output_size=2, dropout=0.1), **_RNN_BOARD),
        per_step=True,
        leaderboard="AttentionLSTM",
    ),
    # chapter 05: uncertainty
    ModelSpec(
        BayesianLSTM,
        Family.BAYESIAN,
        "05",
        dict(test=dict(input_size=3, hidden_size=8, n_layers=2, output_size=2, dropout=0.3)),
    ),
    # chapter 06b: foundation models (the patch model's per-patch outputs are probed in tests/test_foundation.py)
    ModelSpec(
        TimeSeriesFoundationModel,
        Family.FOUNDATION,
        "06b",
        dict(
            test=dict(
                input_size=3, patch_size=4, hidden_size=8, n_heads=2, n_layers=2, dropout=0.1, max_patches=8
            )
        ),
        output=(4, 3),
    ),
    ModelSpec(
        TimeSeriesFoundationModel,
        Family.FOUNDATION,
        "06b",
        dict(
            test=dict(
                input_size=3,
                patch_size=4,
                hidden_size=8,
                max_patches=8,
                head="quantile",
                quantiles=[0.1, 0.5, 0.9],
            )
        ),
        name="TimeSeriesFoundationModel-quantile",
        output=(4, 3),
    ),
    ModelSpec(
        LagLlamaFinance,
        Family.FOUNDATION,
        "06b",
        dict(
            test=dict(
                input_size=3, hidden_size=8, n_heads=2, n_layers=2, dropout=0.1, lags=[1, 2, 5], max_len=32
            )
        ),
        per_step=True,
        output=(3,),
    ),
    # chapter 06d: conformal prediction (quantiles (B, output_size, Q) for conformalised quantile regression)
    ModelSpec(
        QuantileRegressionEnsemble,
        Family.QUANTILE,
        "06d",
        dict(
            test=dict(
                input_size=3, hidden_size=8, n_layers=2, output_size=2, dropout=0.1, quantiles=[0.1, 0.5, 0.9]
            )
        ),
        per_step=True,
        output=(2, 3),
    ),
    # chapter 06e: Koopman operators (the forecast is the decoded state, input_size wide) and causal models
    ModelSpec(
        DeepKoopmanFinance,
        Family.KOOPMAN,
        "06e",
        dict(test=dict(input_size=3, hidden_size=8, latent_size=4, n_delays=3, dropout=0.1)),
        per_step=True,
        output=(3,),
    ),
    ModelSpec(
        CausalLSTM,
        Family.CAUSAL,
        "06e",
        dict(test=dict(input_size=3, hidden_size=8, n_layers=2, output_size=2, dropout=0.1)),
        extra_inputs=_treatment_inputs,
    ),
    ModelSpec(
        CounterfactualRecurrentNetwork,
        Family.CAUSAL,
        "06e",
        dict(test=dict(input_size=3, hidden_size=8, n_layers=2, output_size=2, dropout=0.1, alpha=0.5)),
        extra_inputs=_treatment_inputs,
    ),
    # chapter 06c: continuous time (tests/test_continuous.py adds masks, closed forms and the adjoint)
    ModelSpec(
        NeuralODE,
        Family.CONTINUOUS,
        "06c",
        dict(
            test=dict(input_size=3, hidden_size=8, output_size=2),
            small=dict(hidden_size=16),
            full=dict(hidden_size=32),
        ),
        per_step=True,
        leaderboard="NeuralODE",
    ),
    ModelSpec(
        NeuralODE,
        Family.CONTINUOUS,
        "06c",
        dict(test=dict(input_size=3, hidden_size=8, output_size=2)),
        per_step=True,
        name="NeuralODE-irregular",
        extra_inputs=_irregular_times,
    ),
    ModelSpec(
        NeuralCDEFinance,
        Family.CONTINUOUS,
        "06c",
        dict(test=dict(input_size=3, hidden_size=8, output_size=2)),
        per_step=True,
    ),
    ModelSpec(
        NeuralCDEFinance,
        Family.CONTINUOUS,
        "06c",
        dict(test=dict(input_size=3, hidden_size=8, output_size=2)),
        per_step=True,
        name="NeuralCDEFinance-irregular",
        extra_inputs=_irregular_times,
    ),
    ModelSpec(
        GRUD,
        Family.CONTINUOUS,
        "06c",
        {"test": dict(input_size=3, hidden_size=8, output_size=2)},
        per_step=True,
        extra_inputs=_irregular_times_and_mask,
    ),
    ModelSpec(
        AttentionNeuralODE,
        Family.CONTINUOUS,
        "06c",
        dict(test=dict(input_size=3, hidden_size=8, output_size=2, n_heads=2)),
        per_step=True,
    ),
    ModelSpec(  # samples (B, output, n_paths) beside the path mean; tests/test_sde.py: closed forms
        NeuralSDE,
        Family.CONTINUOUS,
        "06c",
        dict(test=dict(input_size=3, hidden_size=8, output_size=2, n_paths=8, n_steps=3)),
        per_step=True,
    ),
    # chapter 06a: state space models
    ModelSpec(
        FinancialS4D,
        Family.STATE_SPACE,
        "06a",
        dict(
            test=dict(input_size=3, hidden_size=8, n_layers=2, output_size=2, d_state=4, dropout=0.1),
            small=dict(hidden_size=16, n_layers=1, d_state=16),
            full=dict(hidden_size=32, n_layers=2, dropout=0.1),
        ),
        per_step=True,
        leaderboard="S4D",
        lookahead_atol=1e-12,
    ),
    ModelSpec(
        FinancialMamba,
        Family.STATE_SPACE,
        "06a",
        dict(
            test=dict(input_size=3, hidden_size=8, n_layers=2, output_size=2, d_state=4, dropout=0.1),
            small=dict(hidden_size=16, n_layers=1, d_state=8),
            full=dict(hidden_size=16, n_layers=2, d_state=8),
        ),
        per_step=True,
        leaderboard="Mamba",
    ),
    ModelSpec(  # the same model on the fused C scan (CPU)
        FinancialMamba,
        Family.STATE_SPACE,
        "06a",
        dict(
            test=dict(
                input_size=3, hidden_size=8, n_layers=2, output_size=2, d_state=4, dropout=0.1, scan="fused"
            )
        ),
        per_step=True,
        name="FinancialMamba-fused",
        requires=fused_scan_unavailable_reason,
    ),
]

# The capstone's leaderboard, in its order (display name -> entry).
LEADERBOARD: dict[str, ModelSpec] = {entry.leaderboard: entry for entry in REGISTRY if entry.leaderboard}


def spec(name: str) -> ModelSpec:
    """The entry with this id (class name, or the entry's ``name``) or this leaderboard name (``"GRU"``)."""
    for entry in REGISTRY:
        if name in (entry.id, entry.leaderboard):
            return entry
    raise KeyError(
        f"no registry entry {name!r}; entries: {[e.id for e in REGISTRY]}, leaderboard names: {list(LEADERBOARD)}"
    )


def build(name: str, size: str = "test", seed: int = 0, input_size: int | None = None) -> nn.Module:
    """A fresh model of entry ``name`` (see :func:`spec`) at ``size`` ("test", "small", "full"), seeded.

    The weights are drawn after :func:`course_lib.set_seed` (``seed``): equal arguments, equal weights.
    ``input_size`` is required for "small" and "full" (the task's feature count), which forecast one value.
    """
    return spec(name).build(seed, size, input_size)


def model_class(name: str) -> type[nn.Module]:
    """The registered class called ``name``: the only classes that a checkpoint or a bundle will build."""
    classes = {entry.cls.__name__: entry.cls for entry in REGISTRY}
    if name not in classes:
        raise KeyError(
            f"{name!r} is not a registered model class ({sorted(classes)}); add a line to "
            "course_lib/models/registry.py, or load with load_checkpoint(path, build=...)"
        )
    return classes[name]
