"""Tests of course_lib.losses (the one table of losses) and course_lib.models.heads (non-crossing quantiles)."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import course_lib.training
from course_lib import losses, set_seed
from course_lib.evaluation import loss_series
from course_lib.losses import LOSSES, PinballLoss, StudentTNLLLoss, loss_by_name, pinball_loss, qlike_loss
from course_lib.models.foundation import LagLlamaFinance, TimeSeriesFoundationModel, robust_prefix_scaler
from course_lib.models.heads import QuantileHead, monotone_quantiles
from course_lib.models.quantile import QuantileRegressionEnsemble
from course_lib.models.tft import TemporalFusionTransformer
from course_lib.training import Trainer


def test_every_loss_is_chosen_by_name_from_the_one_table():
    assert set(LOSSES) == {"mse", "qlike", "gaussian_nll", "student_t_nll", "pinball", "crps_samples"}
    assert loss_by_name("mse") is losses.mse_loss and loss_by_name("qlike") is qlike_loss
    assert isinstance(loss_by_name("student_t_nll"), StudentTNLLLoss)
    pinball = loss_by_name("pinball", quantiles=(0.1, 0.9))
    assert isinstance(pinball, PinballLoss) and pinball.quantiles.tolist() == pytest.approx([0.1, 0.9])
    with pytest.raises(ValueError, match=r"unknown loss 'huber'; use one of \['mse', 'qlike'"):
        loss_by_name("huber")
    with pytest.raises(TypeError, match="'pinball' loss could not be built"):
        loss_by_name("pinball")
    with pytest.raises(TypeError, match="'mse' loss takes no arguments"):
        loss_by_name("mse", quantiles=(0.5,))
    assert Trainer(torch.nn.Linear(1, 1), loss="qlike", device="cpu").loss_fn is qlike_loss
    with pytest.raises(ValueError, match="unknown loss"):
        Trainer(torch.nn.Linear(1, 1), loss="huber", device="cpu")


def test_the_training_package_re_exports_the_losses_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("LOSSES", "mse_loss", "qlike_loss", "GaussianNLLLoss", "StudentTNLLLoss", "PinballLoss"):
            assert getattr(course_lib.training, name) is getattr(losses, name)


def test_qlike_loss_is_the_course_qlike():
    rng = np.random.default_rng(4)
    y, p = torch.tensor(rng.normal(0, 0.6, (50, 1))), torch.tensor(rng.normal(0, 0.6, (50, 1)))
    assert qlike_loss(p, y).item() == pytest.approx(
        loss_series(y.numpy()[:, 0], p.numpy()[:, 0], "qlike").mean()
    )
    assert qlike_loss({"prediction": p}, y) == qlike_loss(p, y)
    with pytest.raises(ValueError, match="shape"):
        qlike_loss(p[:, 0], y)


def test_student_t_loss_with_a_scalar_df_matches_torch():
    loc, scale, y = (
        torch.randn(5, 2, dtype=torch.float64),
        torch.rand(5, 2, dtype=torch.float64) + 0.5,
        torch.randn(5, 2, dtype=torch.float64),
    )
    df = torch.tensor(3.5)  # a float32 scalar next to float64 tensors
    expected = -torch.distributions.StudentT(df.double(), loc, scale).log_prob(y).mean()
    got = StudentTNLLLoss()({"prediction": loc, "scale": scale, "df": df}, y)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_pinball_loss_by_hand_on_a_grid_of_levels():
    levels = torch.tensor([0.25, 0.75])
    y, q = torch.tensor([1.0, 0.0]), torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    # errors y - q: [1, -1] and [-1, -1] -> 0.25, 0.25, 0.75, 0.25
    assert pinball_loss(q, y, levels).item() == pytest.approx((0.25 + 0.25 + 0.75 + 0.25) / 4)


# ---- one monotone-quantile head, and the three models that use it


def _old_cat_spelling(raw):
    """The spelling of tft.QuantileHead and QuantileRegressionEnsemble.forward before v3."""
    return torch.cat([raw[..., :1], raw[..., :1] + F.softplus(raw[..., 1:]).cumsum(dim=-1)], dim=-1)


def _old_cumsum_spelling(raw):
    """The spelling of TimeSeriesFoundationModel._normalised before v3: the same sums in another order."""
    return torch.cat([raw[..., :1], F.softplus(raw[..., 1:])], dim=-1).cumsum(-1)


def test_monotone_quantiles_never_cross_and_keep_the_first_value():
    raw = 30 * torch.randn(64, 5)
    q = monotone_quantiles(raw)
    assert torch.equal(q[:, 0], raw[:, 0]) and torch.all(q[:, 1:] >= q[:, :-1])
    assert torch.equal(q, _old_cat_spelling(raw))
    torch.testing.assert_close(q, _old_cumsum_spelling(raw))


def _head_output(model, head, *inputs, **kwargs):
    """The model's output and what its head module returned on the way."""
    seen = []
    handle = head.register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        out = model(*inputs, **kwargs)
    finally:
        handle.remove()
    return out, seen[0]


def test_the_tft_and_the_quantile_network_give_the_same_numbers_as_before_for_fixed_weights():
    set_seed(0)
    tft = TemporalFusionTransformer(
        3, 2, output_size=2, hidden_size=8, n_heads=2, quantiles=(0.1, 0.5, 0.9)
    ).eval()
    assert isinstance(tft.head, QuantileHead)
    assert {"head.fc.weight", "head.fc.bias"} <= set(tft.state_dict())  # the keys checkpoints rely on
    out, raw = _head_output(tft, tft.head.fc, torch.randn(4, 6, 3), torch.randn(4, 2, 2))
    assert torch.equal(out, _old_cat_spelling(raw))

    qre = QuantileRegressionEnsemble(3, hidden_size=8, output_size=2, quantiles=(0.05, 0.5, 0.95)).eval()
    assert {"head.weight", "head.bias"} <= set(qre.state_dict())
    out, raw = _head_output(qre, qre.head, torch.randn(4, 6, 3))
    assert torch.equal(out, _old_cat_spelling(raw.unflatten(-1, (2, 3))))


def test_the_foundation_quantile_head_changes_only_by_round_off():
    """The foundation model summed the increments in another order (cumsum of [a_1, softplus...]): its
    quantiles move by round-off (a few float32 ulps), nothing more; no notebook uses this head."""
    set_seed(0)
    model = TimeSeriesFoundationModel(
        2, patch_size=4, hidden_size=8, max_patches=8, head="quantile", quantiles=[0.1, 0.5, 0.9]
    ).eval()
    assert {"head.weight", "head.bias"} <= set(model.state_dict())
    out, raw = _head_output(model._normalised, model.head, torch.randn(3, 16, 2))
    new = out["quantiles"]  # (B*C, N, P, Q) in normalised units
    assert torch.equal(new, monotone_quantiles(raw.unflatten(-1, (4, 3))))
    torch.testing.assert_close(new, _old_cumsum_spelling(raw.unflatten(-1, (4, 3))), rtol=1e-6, atol=1e-6)


def test_lag_llama_loss_reuses_the_scaler_and_equals_the_old_loss(monkeypatch):
    set_seed(0)
    model = LagLlamaFinance(2, hidden_size=8, lags=[1, 2, 5]).double().eval()
    x = torch.randn(3, 20, 2, dtype=torch.float64)
    # the loss as it was: the scaler computed again next to forward's
    median, iqr = robust_prefix_scaler(x)
    out = model(x, per_step=True)
    target = (x[:, 1:] - median[:, :-1]) / iqr[:, :-1]
    loc = (out["prediction"][:, :-1] - median[:, :-1]) / iqr[:, :-1]
    old = losses.student_t_nll(target, loc, out["scale"][:, :-1] / iqr[:, :-1], out["df"][:, :-1])

    import course_lib.models.foundation as foundation

    calls = []
    real = foundation.robust_prefix_scaler
    monkeypatch.setattr(foundation, "robust_prefix_scaler", lambda x: calls.append(1) or real(x))
    assert torch.equal(model.loss(x), old)
    assert len(calls) == 1, "LagLlamaFinance.loss computed the robust scaler more than once"
