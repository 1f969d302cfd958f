"""The model contract, run over every entry of course_lib.models.registry.

A new model gets all of these tests by one registry line. Per-family test files keep only what is
specific to a family (reference implementations, closed forms, receptive fields, the errata).
"""

import inspect
import json

import numpy as np
import pytest
import torch
from torch import nn

import course_lib.models as models
from course_lib.models.checkpoint import META_FILE, WEIGHTS_FILE, load_checkpoint, save_checkpoint
from course_lib.models.registry import REGISTRY, Family, ModelSpec, model_class
from course_lib.outputs import prediction_of
from course_lib.testing import batch_coupling, future_gradient, parameters_without_gradient

B = 4
SPECS = {spec.id: spec for spec in REGISTRY}
PER_STEP = [name for name, spec in SPECS.items() if spec.per_step]

# Exported classes that are not forecasters with a config: building blocks, a single recurrence step
# with an explicit state, and wrappers around another model (see the registry's docstring).
NOT_MODELS = {
    "BahdanauAttention",
    "CausalConv1d",
    "Chomp1d",
    "FinancialTransferLearning",
    "LSTMCellScratch",
    "MAML",
    "PositionalEncoding",
    "ResidualBlock",
    "TemporalBlock",
}
# Synonyms of the vocabulary (input_size, hidden_size, output_size, n_layers, n_heads, dropout).
SYNONYMS = {
    "num_layers", "num_heads", "nhead", "n_out", "d_model", "num_inputs", "input_channels", "input_dim",
    "output_channels", "output_dim", "n_observed", "n_features", "hidden_dim", "lstm_hidden_size",
    "num_lstm_layers", "num_blocks", "num_layers_per_block", "num_filters",
}  # fmt: skip


def length_for(model: nn.Module) -> int:
    """A window long enough for the model's pooling and receptive field."""
    return max(16, getattr(model, "min_length", 1), getattr(model, "receptive_field", 1))


def setup(name: str, seed: int = 0, double: bool = False):
    spec = SPECS[name]
    model = spec.build(seed)
    if double:
        model = model.double()
    x, *extras = spec.inputs(model, B, length_for(model))
    return spec, model, x, extras


def all_outputs(output) -> list[torch.Tensor]:
    """Every floating-point tensor of a model's output (the prediction and extras such as "var")."""
    if isinstance(output, torch.Tensor):
        return [output]
    return [v for v in output.values() if isinstance(v, torch.Tensor) and v.is_floating_point()]


def probe_loss(output, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return sum((torch.randn(t.shape, generator=gen, dtype=t.dtype) * t).sum() for t in all_outputs(output))


# ---------------------------------------------------------------- the registry and the configs


def test_every_exported_model_class_is_registered():
    exported = {name for name in models.__all__ if inspect.isclass(getattr(models, name))}
    registered = {spec.cls.__name__ for spec in REGISTRY}
    missing = exported - registered - NOT_MODELS
    assert not missing, f"add a ModelSpec line to course_lib/models/registry.py for {sorted(missing)}"
    assert len(SPECS) == len(REGISTRY), "two registry entries share an id: give one a name="


@pytest.mark.parametrize("name", SPECS)
def test_constructor_uses_the_argument_vocabulary(name):
    parameters = inspect.signature(SPECS[name].cls).parameters
    assert "input_size" in parameters
    assert not SYNONYMS & set(parameters), f"rename {sorted(SYNONYMS & set(parameters))} (see common.py)"


@pytest.mark.parametrize("name", SPECS)
def test_config_holds_the_constructor_arguments_and_rebuilds_the_model(name):
    spec = SPECS[name]
    model = spec.build()
    parameters = inspect.signature(spec.cls).parameters
    assert set(model.config) == set(parameters), "config must hold exactly the constructor's arguments"
    assert json.loads(json.dumps(model.config)) == model.config, "config must be JSON"
    rebuilt = type(model)(**model.config)
    assert rebuilt.config == model.config
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes


def test_a_non_json_argument_is_refused_with_its_name():
    with pytest.raises(TypeError, match=r"horizons=.*JSON"):
        models.MultiHorizonLSTM(3, horizons=np.array([1, 5]))


def test_an_unregistered_class_is_refused_by_name():
    with pytest.raises(KeyError, match="not a registered model class"):
        model_class("Sequential")


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("name", SPECS)
def test_forecast_shape(name):
    spec, model, x, extras = setup(name)
    model.eval()
    with torch.no_grad():
        assert prediction_of(model(x, *extras)).shape == spec.forecast_shape(model, B)
        x1, *extras1 = spec.inputs(model, 1, x.shape[1])
        assert prediction_of(model(x1, *extras1)).shape == spec.forecast_shape(model, 1)


@pytest.mark.parametrize("name", PER_STEP)
def test_per_step_shape_and_its_last_steps_are_the_forecast(name):
    spec, model, x, extras = setup(name)
    model.eval()
    with torch.no_grad():
        steps = prediction_of(model(x, *extras, per_step=True))
        forecast = prediction_of(model(x, *extras))
    length = x.shape[1]
    if spec.future_steps:
        assert steps.shape == (B, length + spec.future_steps, *forecast.shape[2:])
        torch.testing.assert_close(steps[:, length:], forecast, rtol=1e-5, atol=1e-6)
    else:
        assert steps.shape == (B, length, *forecast.shape[1:])
        torch.testing.assert_close(steps[:, -1], forecast, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("name", SPECS)
def test_gradients_reach_every_parameter(name):
    # float64 and a random probe of every output: a dead parameter's round-off gradient is then ~1e-16 of
    # the others', far below the relative threshold, and no live gradient cancels by accident
    _, model, x, extras = setup(name, double=True)
    model.train()
    assert parameters_without_gradient(model, probe_loss(model(x, *extras))) == []


class _DeadScoreBias(nn.Module):
    """Additive attention pooling with a bias on the score: e_t = w^T tanh(W h_t) + b (b cancels)."""

    def __init__(self, hidden: int = 6):
        super().__init__()
        self.hidden = nn.Linear(3, hidden)
        self.score = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):  # (B, L, 3) -> (B, 1)
        h = torch.tanh(self.hidden(x))
        weights = torch.softmax(self.score(h).squeeze(-1), dim=1)  # (B, L)
        return self.head((weights.unsqueeze(-1) * h).sum(1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_gradient_check_catches_a_planted_dead_bias(dtype):
    torch.manual_seed(0)
    model = _DeadScoreBias().to(dtype)
    x = torch.randn(8, 10, 3, dtype=dtype)
    assert parameters_without_gradient(model, probe_loss(model(x))) == ["score.2.bias"]
    # the old exact test (grad != 0) is fooled by round-off: the dead bias has a tiny non-zero gradient...
    model.zero_grad()
    probe_loss(model(x)).backward()
    dead = model.score[2].bias.grad.abs().max().item()
    assert dead < 1e-6 * max(p.grad.abs().max().item() for p in model.parameters())
    # ...and changing it does not change the output at all (up to round-off): it is truly dead
    with torch.no_grad():
        before = model(x)
        model.score[2].bias += 5.0
        torch.testing.assert_close(model(x), before)


# ---------------------------------------------------------------- batch independence, look-ahead, determinism


@pytest.mark.parametrize("name", SPECS)
def test_batch_independence_in_eval_mode(name):
    _, model, x, extras = setup(name)
    assert batch_coupling(model, x, *extras) < 1e-6
    if SPECS[name].per_step:
        assert batch_coupling(model, x, *extras, per_step=True) < 1e-6


def probe_steps(length: int, seed: int, n: int = 3) -> list[int]:
    """The first and last probe-able steps and ``n`` random ones in between."""
    rng = np.random.default_rng(seed)
    return sorted({0, length - 2, *rng.integers(1, length - 2, size=n).tolist()})


@pytest.mark.parametrize("name", PER_STEP)
@pytest.mark.parametrize("train_mode", [False, True])
def test_no_look_ahead_in_per_step_outputs(name, train_mode):
    _, model, x, extras = setup(name, double=True)
    model.train(train_mode)
    length = x.shape[1]

    def per_step(z):  # the outputs at the L input positions (the TFT adds H decoder positions after them)
        return prediction_of(model(z, *extras, per_step=True))[:, :length]

    for t in probe_steps(length, seed=len(name)):
        torch.manual_seed(t)  # same dropout masks in train mode, for every call of this probe
        leak = future_gradient(per_step, x, t)  # 0 exactly, or FFT round-off (registry: lookahead_atol)
        assert leak <= SPECS[name].lookahead_atol, (
            f"the output at step {t} depends on later inputs ({leak:.1e})"
        )
        # the same probe must see the past, or the check above proves nothing
        z = x.clone().requires_grad_(True)
        torch.manual_seed(t)
        y = per_step(z)[:, t]
        (grad,) = torch.autograd.grad((torch.randn_like(y) * y).sum(), z)
        assert grad[:, : t + 1].abs().max() > 0, f"the output at step {t} ignores its own past"


@pytest.mark.parametrize("name", SPECS)
def test_deterministic_for_a_seed(name):
    spec, first, x, extras = setup(name, seed=3)
    second = spec.build(seed=3)
    torch.manual_seed(7)
    a = all_outputs(first.train()(x, *extras))  # train mode: the seed must fix the dropout masks too
    torch.manual_seed(7)
    b = all_outputs(second.train()(x, *extras))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    other = spec.build(seed=4).eval()
    with torch.no_grad():
        assert not torch.equal(prediction_of(other(x, *extras)), prediction_of(first.eval()(x, *extras)))


# ---------------------------------------------------------------- clear errors on bad input


BAD_INPUTS = [
    "NaN", "inf", "wrong feature count", "(B, L) input", "empty window", "too short", "float64", "device",
]  # fmt: skip


def _bad_window(x: torch.Tensor, case: str, min_length: int) -> tuple[torch.Tensor, str]:
    """A broken copy of the window ``x`` and the pattern the error message must match."""
    bad = x.clone()
    if case == "NaN":
        bad[1, 2, 0] = float("nan")
        return bad, r"NaN.*index \(1, 2, 0\)"
    if case == "inf":
        bad[0, -1, -1] = float("inf")
        return bad, "inf"
    if case == "wrong feature count":
        return torch.cat([x, x[..., :1]], dim=-1), "features"
    if case == "(B, L) input":
        return x[..., 0], r"\(B, L, C\)"
    if case == "empty window":
        return x[:, :0], "empty"
    if case == "float64":  # PyTorch's own error names neither the model nor the fix
        return x.double(), r"has torch\.float32 weights, got x(_past)? of dtype torch\.float64: .*\.float\(\)"
    if case == "device":  # the meta device stands in for a GPU: no data, and every other check passes
        return x.to(
            "meta"
        ), r"has its weights on cpu, got x(_past)? on meta: move the window with x(_past)?\.to\('cpu'\)"
    if min_length == 1:
        pytest.skip("the model accepts windows of one step: only the empty window is too short")
    return x[:, : min_length - 1], f"at least {min_length} steps"


@pytest.mark.parametrize("case", BAD_INPUTS)
@pytest.mark.parametrize("name", SPECS)
def test_bad_input_raises_a_clear_error(name, case):
    _, model, x, extras = setup(name)
    bad, message = _bad_window(x, case, getattr(model, "min_length", 1))
    with pytest.raises(ValueError, match=message):
        model(bad, *extras)


# ---------------------------------------------------------------- save and load


@pytest.mark.parametrize("name", SPECS)
def test_save_and_load_give_identical_outputs(name, tmp_path):
    spec, model, x, extras = setup(name)
    with torch.no_grad():  # move the weights away from the initialisation a load could silently give
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = save_checkpoint(model, tmp_path / "model")
    assert sorted(p.name for p in path.iterdir()) == sorted([META_FILE, WEIGHTS_FILE])
    loaded = load_checkpoint(path, map_location="cpu")
    assert type(loaded) is type(model) and loaded.config == model.config
    model.eval(), loaded.eval()
    with torch.no_grad():
        for a, b in zip(all_outputs(model(x, *extras)), all_outputs(loaded(x, *extras)), strict=True):
            assert torch.equal(a, b)


def test_registry_entry_is_one_line_for_a_new_model():
    # the format the registry documents: class, family, chapter, test config (+ per_step); nothing else
    test = dict(input_size=2, hidden_size=4)
    entry = ModelSpec(models.FinancialGRU, Family.RECURRENT, "01", {"test": test}, per_step=True)
    model = entry.build()
    x, *extras = entry.inputs(model, 2, 5)
    assert extras == [] and prediction_of(model(x)).shape == entry.forecast_shape(model, 2) == (2, 1)
