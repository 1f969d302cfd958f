"""Tests of course_lib.models.tft (Temporal Fusion Transformer) and the attention plots."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from course_lib import set_seed
from course_lib.losses import PinballLoss
from course_lib.models.tft import (
    GatedLinearUnit,
    GatedResidualNetwork,
    InterpretableMultiHeadAttention,
    TemporalFusionTransformer,
    VariableSelectionNetwork,
)
from course_lib.plotting import (
    plot_attention,
    plot_quantile_bands,
    plot_variable_importance,
    plot_variable_weights_over_dates,
    time_labels,
    visualize_attention_weights,
)
from course_lib.testing import batch_coupling, future_gradient, parameters_without_gradient
from course_lib.training import Trainer

B, L, H, C_OBS, C_KNOWN, C_STATIC = 4, 10, 3, 5, 2, 3
QUANTILES = (0.1, 0.5, 0.9)
# (n_known, n_static): every combination of optional inputs
VARIANTS = [(0, 0), (C_KNOWN, 0), (0, C_STATIC), (C_KNOWN, C_STATIC)]


def make_tft(
    n_known=C_KNOWN, n_static=C_STATIC, output_size=H, n_heads=4, seed=0
) -> TemporalFusionTransformer:
    set_seed(seed)
    return TemporalFusionTransformer(
        C_OBS,
        n_known,
        n_static,
        output_size=output_size,
        hidden_size=16,
        n_heads=n_heads,
        dropout=0.1,
        quantiles=QUANTILES,
    )


def make_inputs(model: TemporalFusionTransformer, batch=B, length=L):
    x_past = torch.randn(batch, length, model.input_size)
    x_future = torch.randn(batch, model.output_size, model.n_known) if model.n_known else None
    x_static = torch.randn(batch, model.n_static) if model.n_static else None
    return x_past, x_future, x_static


class Packed(nn.Module):
    """All inputs of a TFT in one (B, L + H, C_obs + C_known + C_static) tensor, for the generic checks.

    Row t < L carries x_past[t] in the first C_obs columns; row L + h carries x_future[h] in the next
    C_known columns; the static covariates sit in row 0 (they are known before the first step).
    """

    def __init__(self, tft: TemporalFusionTransformer, length: int):
        super().__init__()
        self.tft, self.length = tft, length

    def pack(self, x_past, x_future, x_static) -> torch.Tensor:
        m = self.tft
        z = torch.zeros(x_past.shape[0], self.length + m.output_size, m.input_size + m.n_known + m.n_static)
        z[:, : self.length, : m.input_size] = x_past
        if x_future is not None:
            z[:, self.length :, m.input_size : m.input_size + m.n_known] = x_future
        if x_static is not None:
            z[:, 0, m.input_size + m.n_known :] = x_static
        return z

    def forward(self, z: torch.Tensor, per_step: bool = True):
        m, n = self.tft, self.length
        x_future = z[:, n:, m.input_size : m.input_size + m.n_known] if m.n_known else None
        x_static = z[:, 0, m.input_size + m.n_known :] if m.n_static else None
        return m(z[:, :n, : m.input_size], x_future, x_static, per_step=per_step)


# ---------------------------------------------------------------- building blocks


def test_glu_drops_the_input_not_the_gate_logits():
    set_seed(0)
    glu = GatedLinearUnit(6, 4, dropout=0.5).train()
    x = torch.randn(8, 6)
    torch.manual_seed(123)
    got = glu(x)
    torch.manual_seed(123)
    value, gate = glu.fc(F.dropout(x, 0.5, training=True)).chunk(2, dim=-1)
    torch.testing.assert_close(got, value * torch.sigmoid(gate))
    glu.eval()
    value, gate = glu.fc(x).chunk(2, dim=-1)
    torch.testing.assert_close(glu(x), value * torch.sigmoid(gate))


def test_grn_matches_formula_with_context_broadcast_over_time():
    set_seed(0)
    grn = GatedResidualNetwork(3, 8, 5, dropout=0.0, context_size=4).eval()
    a, c = torch.randn(2, 7, 3), torch.randn(2, 4)
    eta2 = F.elu(grn.fc_input(a) + grn.fc_context(c)[:, None, :])
    eta1 = grn.fc_hidden(eta2)
    value, gate = grn.gate_norm.glu.fc(eta1).chunk(2, dim=-1)
    expected = grn.gate_norm.norm(grn.skip(a) + value * torch.sigmoid(gate))
    torch.testing.assert_close(grn(a, c), expected)
    torch.testing.assert_close(grn(a[:, 4], c), expected[:, 4])  # the same GRN on (B, d)
    with pytest.raises(ValueError, match="with a context"):
        grn(a)
    with pytest.raises(ValueError, match="without a context"):
        GatedResidualNetwork(3, 8, 5)(a, c)


@settings(max_examples=20, deadline=None)
@given(n_vars=st.integers(1, 6), length=st.integers(1, 8), scale=st.floats(0.01, 100.0))
def test_vsn_weights_are_a_distribution_over_variables(n_vars, length, scale):
    set_seed(0)
    vsn = VariableSelectionNetwork(n_vars, 8, context_size=3)
    selected, weights = vsn(scale * torch.randn(2, length, n_vars), torch.randn(2, 3))
    assert selected.shape == (2, length, 8)
    assert weights.shape == (2, length, n_vars)
    assert torch.all(weights >= 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, length))


def test_vsn_step_t_uses_only_step_t():
    """Stricter than causal: the selection at t depends on x_t alone (the source module used the window mean)."""
    set_seed(0)
    vsn = VariableSelectionNetwork(4, 8)
    x = torch.randn(3, 9, 4)
    for t in range(8):
        assert future_gradient(lambda z: vsn(z)[1], x, t) == 0.0
        assert future_gradient(lambda z: vsn(z)[0], x, t) == 0.0
    x = x.requires_grad_(True)
    (grad,) = torch.autograd.grad((torch.randn(3, 8) * vsn(x)[0][:, 5]).sum(), x)
    assert grad[:, :5].abs().max() == 0 and grad[:, 5].abs().max() > 0


def test_single_head_interpretable_attention_is_scaled_dot_product_attention():
    set_seed(0)
    attn = InterpretableMultiHeadAttention(d_model=8, n_heads=1).eval()
    x = torch.randn(3, 11, 8)
    out, weights = attn(x)
    q, k, v = attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)
    torch.testing.assert_close(out, attn.out_proj(F.scaled_dot_product_attention(q, k, v, is_causal=True)))
    assert weights.shape == (3, 1, 11, 11)


def test_multi_head_interpretable_attention_averages_heads_with_shared_values():
    set_seed(0)
    attn = InterpretableMultiHeadAttention(d_model=12, n_heads=3).eval()
    x = torch.randn(2, 7, 12)
    out, weights = attn(x)
    q = attn.q_proj(x).view(2, 7, 3, 4).transpose(1, 2)  # (B, h, T, 4)
    k = attn.k_proj(x).view(2, 7, 3, 4).transpose(1, 2)
    v = attn.v_proj(x).unsqueeze(1).expand(-1, 3, -1, -1)  # shared by the heads
    heads = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, h, T, 4)
    torch.testing.assert_close(out, attn.out_proj(heads.mean(1)))
    torch.testing.assert_close(out, attn.out_proj(weights.mean(1) @ attn.v_proj(x)))
    assert torch.all(weights.triu(diagonal=1) == 0)


# ---------------------------------------------------------------- the full model


@pytest.mark.parametrize(("n_known", "n_static"), VARIANTS)
def test_output_shapes(n_known, n_static):
    model = make_tft(n_known, n_static).eval()
    inputs = make_inputs(model)
    assert model(*inputs).shape == (B, H, len(QUANTILES))
    assert model(*inputs, per_step=True).shape == (B, L + H, len(QUANTILES))
    out = model(*inputs, return_attention=True)
    assert out["prediction"].shape == (B, H, len(QUANTILES))
    assert out["attention"].shape == (B, L + H, L + H)
    assert out["variable_weights"].shape == (B, L, C_OBS)
    assert ("future_variable_weights" in out) == bool(n_known)
    assert ("static_variable_weights" in out) == bool(n_static)
    if n_known:
        assert out["future_variable_weights"].shape == (B, H, C_KNOWN)
    if n_static:
        assert out["static_variable_weights"].shape == (B, C_STATIC)
    for key in ("variable_weights", "future_variable_weights", "static_variable_weights", "attention"):
        if key in out:
            assert torch.all(out[key] >= 0)
            torch.testing.assert_close(out[key].sum(-1), torch.ones(out[key].shape[:-1]))
    assert torch.all(out["attention"].triu(diagonal=1) == 0)


@pytest.mark.parametrize(("n_known", "n_static"), VARIANTS)
def test_gradients_reach_every_parameter(n_known, n_static):
    # every combination of optional inputs (the contract covers two of them)
    model = make_tft(n_known, n_static).double()
    y = model(*(None if t is None else t.double() for t in make_inputs(model)))
    assert parameters_without_gradient(model, (torch.randn_like(y) * y).sum()) == []


def test_attention_key_projection_has_no_dead_bias():
    # q . b_K is the same for every key of a query: it cancels in the softmax and never gets a gradient
    assert make_tft().attention.k_proj.bias is None
    set_seed(0)
    attn = InterpretableMultiHeadAttention(d_model=8, n_heads=2).double()
    attn.k_proj = nn.Linear(8, 8).double()  # plant the bias back: the gradient check names it
    y, _ = attn(torch.randn(3, 6, 8, dtype=torch.float64))
    assert parameters_without_gradient(attn, (torch.randn_like(y) * y).sum()) == ["k_proj.bias"]


@pytest.mark.parametrize(("n_known", "n_static"), VARIANTS)
def test_batch_independence(n_known, n_static):
    packed = Packed(make_tft(n_known, n_static), L)
    z = packed.pack(*make_inputs(packed.tft))
    assert batch_coupling(packed, z, per_step=False) < 1e-6
    assert batch_coupling(packed, z, per_step=True) < 1e-6


@pytest.mark.parametrize(("n_known", "n_static"), VARIANTS)
@pytest.mark.parametrize("train_mode", [False, True])
def test_no_look_ahead_over_all_positions(n_known, n_static, train_mode):
    """Output at position t (past or forecast step) ignores observed inputs after t and known inputs beyond t."""
    packed = Packed(make_tft(n_known, n_static), L).train(train_mode)
    z = packed.pack(*make_inputs(packed.tft))
    for t in range(L + H - 1):
        assert future_gradient(packed, z, t) == 0.0, f"position {t} depends on later inputs"


def test_forecast_step_h_ignores_known_inputs_beyond_h():
    model = make_tft().eval()
    x_past, x_future, x_static = make_inputs(model)
    for h in range(H - 1):
        assert future_gradient(lambda xf: model(x_past, xf, x_static), x_future, h) == 0.0
    x_future = x_future.requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x_past, x_future, x_static)[:, -1].sum(), x_future)
    assert grad.abs().sum(dim=(0, 2)).gt(0).all(), "the last forecast step should use every known-future step"


def test_future_gradient_detects_a_non_causal_selection():
    """The checks can fail: a VSN that mixes in the window mean (the source module's bug) leaks."""
    set_seed(0)
    vsn = VariableSelectionNetwork(4, 8)
    x = torch.randn(3, 9, 4)
    leaky = lambda z: vsn(z + z.mean(dim=1, keepdim=True))[1]  # noqa: E731
    assert future_gradient(leaky, x, 2) > 1e-6


@settings(max_examples=15, deadline=None)
@given(scale=st.floats(1e-3, 1e3), head_scale=st.floats(0.1, 50.0), seed=st.integers(0, 1000))
def test_quantiles_never_cross(scale, head_scale, seed):
    model = make_tft(seed=seed).eval()
    with torch.no_grad():
        model.head.fc.weight.mul_(head_scale)
        x_past, x_future, x_static = make_inputs(model)
        q = model(scale * x_past, scale * x_future, scale * x_static, per_step=True)
    assert torch.all(q[..., 1:] >= q[..., :-1])


def test_pinball_training_recovers_the_quantiles_of_noise():
    """Target ~ N(0, 1) independent of the inputs: the fitted quantiles approach -1.28, 0, 1.28."""
    set_seed(0)
    model = TemporalFusionTransformer(
        2, 1, output_size=1, hidden_size=8, n_heads=2, dropout=0.0, quantiles=QUANTILES
    )
    x_past, x_future, y = torch.randn(256, 4, 2), torch.randn(256, 1, 1), torch.randn(256, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    pinball = PinballLoss(QUANTILES)
    for _ in range(60):
        optimizer.zero_grad()
        loss = pinball(model(x_past, x_future), y)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        q = model(torch.randn(512, 4, 2), torch.randn(512, 1, 1)).mean(dim=(0, 1))
    empirical = torch.quantile(y, torch.tensor(QUANTILES))
    torch.testing.assert_close(q, empirical, atol=0.3, rtol=0)


def test_one_model_learns_different_quantiles_at_each_horizon():
    """Multi-horizon output (B, H, Q) without known-future inputs: each decoder position (a horizon, e.g.
    1, 5 and 22 days) has its own learned embedding, so targets with different levels and spreads per
    horizon get their own quantiles from one model trained on one pinball loss."""
    set_seed(0)
    model = TemporalFusionTransformer(
        2, 0, output_size=3, hidden_size=8, n_heads=2, dropout=0.0, quantiles=QUANTILES
    )
    mu, sigma = torch.tensor([-2.0, 0.0, 3.0]), torch.tensor([0.5, 1.0, 2.0])
    x_past, y = torch.randn(512, 4, 2), mu + sigma * torch.randn(512, 3)  # (B, L, C), (B, H)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    pinball = PinballLoss(QUANTILES)
    for _ in range(150):
        optimizer.zero_grad()
        loss = pinball(model(x_past), y)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        q = model(torch.randn(512, 4, 2)).mean(dim=0)  # (H, Q)
    expected = torch.quantile(y, torch.tensor(QUANTILES), dim=0).T  # (H, Q) empirical quantiles per horizon
    torch.testing.assert_close(q, expected, atol=0.35, rtol=0)


def test_every_residual_has_its_own_layer_norm():
    model = make_tft()
    norms = [m for _, m in model.named_modules(remove_duplicate=False) if isinstance(m, nn.LayerNorm)]
    assert len(norms) == len({id(m) for m in norms}), "a LayerNorm is shared between residuals"
    assert model.lstm_gate.norm is not model.attention_gate.norm is not model.output_gate.norm


def test_bad_inputs_raise_clear_errors():
    model = make_tft()
    x_past, x_future, x_static = make_inputs(model)
    with pytest.raises(ValueError, match="pass x_future"):
        model(x_past, None, x_static)
    with pytest.raises(ValueError, match="x_future must be"):
        model(x_past, x_future[:, :2], x_static)
    with pytest.raises(ValueError, match="built for 5 features, got x_past of shape"):
        model(x_past[..., :4], x_future, x_static)
    with pytest.raises(ValueError, match=r"empty window: x_future has shape \(4, 0, 2\)"):
        model(x_past, x_future[:, :0], x_static)
    with pytest.raises(ValueError, match="x_static must be"):
        model(x_past, x_future, x_static[:2])
    bad = x_future.clone()
    bad[0, 1, 0] = float("nan")
    with pytest.raises(ValueError, match=r"x_future with NaN values, the first at index \(0, 1, 0\)"):
        model(x_past, bad, x_static)
    with pytest.raises(ValueError, match="received x_future with values"):
        make_tft(n_known=0)(x_past, x_future, x_static)
    with pytest.raises(ValueError, match="strictly increasing"):
        TemporalFusionTransformer(3, quantiles=(0.9, 0.5))
    with pytest.raises(ValueError, match="must divide"):
        TemporalFusionTransformer(3, hidden_size=10, n_heads=4)


def test_trainer_fits_the_tft_from_a_tuple_of_arrays():
    """The Trainer calls model(*X): (x_past, x_future, x_static), with an empty x_future when n_known=0."""
    for n_known in (C_KNOWN, 0):
        model = make_tft(n_known=n_known)
        x_past, x_future, x_static = make_inputs(model, batch=64)
        x_future = x_future if n_known else torch.zeros(64, H, 0)
        X, y = (
            (x_past.numpy(), x_future.numpy(), x_static.numpy()),
            np.random.default_rng(0).normal(size=(64, H)),
        )
        trainer = Trainer(model, loss=PinballLoss(QUANTILES), max_epochs=2, batch_size=32, progress=False)
        history = trainer.fit(X, y, X, y)
        assert len(history["train_loss"]) == 2 and np.isfinite(history["val_loss"]).all()
        assert trainer.predict(X).shape == (64, H, len(QUANTILES))


# ---------------------------------------------------------------- plots


def test_time_labels():
    assert time_labels(3, 2) == ["t-2", "t-1", "t", "t+1", "t+2"]
    assert time_labels(1) == ["t"]


def test_attention_plot_is_labelled_with_time_not_features():
    model = make_tft()
    ax, mean = visualize_attention_weights(model, make_inputs(model))
    assert mean.shape == (L + H, L + H)
    np.testing.assert_allclose(mean.sum(axis=1), 1.0, rtol=1e-5)
    labels = {t.get_text() for t in ax.get_xticklabels()}
    assert "t+3" in labels and labels <= set(time_labels(L, H))
    assert model.training, "the plot must restore the training mode"
    plt.close("all")


def test_relative_attention_is_one_for_uniform_causal_weights():
    uniform = np.tril(np.ones((5, 5))) / np.arange(1, 6)[:, None]
    ax = plot_attention(uniform, relative=True)
    np.testing.assert_allclose(ax.images[0].get_array()[np.tril_indices(5)], 1.0)
    with pytest.raises(ValueError, match="square"):
        plot_attention(np.ones((3, 4)))
    plt.close("all")


def test_attention_plot_of_the_transformer():
    from course_lib.models.transformer import FinancialTransformer

    model = FinancialTransformer(C_OBS, hidden_size=8, n_heads=2, n_layers=2)
    ax, mean = visualize_attention_weights(model, torch.randn(3, L, C_OBS))
    assert mean.shape == (L, L)
    assert {t.get_text() for t in ax.get_yticklabels()} <= set(time_labels(L))
    plt.close("all")


def test_variable_and_quantile_plots_run_and_check_shapes():
    model = make_tft().eval()
    out = model(*make_inputs(model), return_attention=True)
    names = [f"f{i}" for i in range(C_OBS)]
    ax = plot_variable_importance(out["variable_weights"], names)
    assert sorted(t.get_text() for t in ax.get_yticklabels()) == names
    plot_variable_weights_over_dates(np.arange(B), out["variable_weights"], names, window=2)
    with pytest.raises(ValueError, match="want weights"):
        plot_variable_weights_over_dates(np.arange(B + 1), out["variable_weights"], names)
    with pytest.raises(ValueError, match="feature names"):
        plot_variable_importance(out["variable_weights"], names[:-1])
    q = out["prediction"][:, 0].detach()
    plot_quantile_bands(np.arange(B), torch.randn(B), q, QUANTILES)
    with pytest.raises(ValueError, match="quantile_pred"):
        plot_quantile_bands(np.arange(B), torch.randn(B), q[:, :2], QUANTILES)
    plt.close("all")


@pytest.mark.parametrize("name", ["FinancialLSTM", "FinancialGRU", "AttentionLSTM"])
def test_pooling_weights_are_plotted_over_the_window_not_as_a_matrix(name):
    # (B, L) weights with B == L used to be drawn as an (L, L) matrix: samples on the query axis
    from course_lib.models.registry import spec

    model = spec(name).build()
    x = torch.randn(12, 12, 3)
    ax, mean = visualize_attention_weights(model, x)
    expected = model.eval()(x, return_attention=True)["attention"].mean(0).detach().numpy()
    assert mean.shape == (12,)
    np.testing.assert_allclose(mean, expected, rtol=1e-6)
    assert [p.get_height() for p in ax.patches] == pytest.approx(expected.tolist(), rel=1e-6)
    assert ax.get_xlabel().startswith("input day") and ax.get_xticklabels()[-1].get_text() == "t"
    ax, matrix = visualize_attention_weights(model, x, per_step=True)  # every step a query: (L, L)
    assert matrix.shape == (12, 12) and np.allclose(np.triu(matrix, 1), 0)
    assert ax.get_ylabel() == "query: position attending"
    plt.close("all")


def test_output_size_is_the_number_of_forecast_steps_and_horizon_is_its_old_name():
    new = make_tft(output_size=2)
    assert new.config["output_size"] == 2 and "horizon" not in new.config
    assert new(*make_inputs(new)).shape == (B, 2, len(QUANTILES))
    set_seed(0)
    with pytest.warns(FutureWarning, match=r"TemporalFusionTransformer\(output_size=H\)"):
        old = TemporalFusionTransformer(
            C_OBS, C_KNOWN, C_STATIC, horizon=2, hidden_size=16, n_heads=4, dropout=0.1, quantiles=QUANTILES
        )
    assert old.config == new.config
    assert all(
        torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values(), strict=True)
    )
    with pytest.warns(FutureWarning, match=r"\.output_size"):
        assert old.horizon == 2
    with pytest.raises(TypeError, match="output_size only"):
        TemporalFusionTransformer(C_OBS, horizon=2, output_size=2)
