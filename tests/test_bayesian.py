"""Tests of course_lib.models.bayesian: BayesianLSTM, MC dropout and the calibration helpers."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from torch import nn

from course_lib import set_seed
from course_lib.losses import GaussianNLLLoss
from course_lib.models.bayesian import (
    BayesianLSTM,
    gaussian_interval,
    gaussian_pit,
    interval_coverage,
    mc_dropout_predict,
)
from course_lib.testing import input_support, parameters_without_gradient
from course_lib.training import Trainer

gaussian_nll = GaussianNLLLoss()


def make_model(seed=0, **kw):
    set_seed(seed)
    return BayesianLSTM(
        input_size=3, hidden_size=8, **{"n_layers": 2, "output_size": 2, "dropout": 0.3, **kw}
    )


def test_output_shapes_and_positive_variance():
    out = make_model()(torch.randn(5, 12, 3))
    assert set(out) == {"prediction", "var"}
    assert out["prediction"].shape == out["var"].shape == (5, 2)
    assert torch.all(out["var"] > 0)


def test_gradients_of_the_nll_reach_every_parameter():
    model = make_model().train()
    loss = gaussian_nll(model(torch.randn(6, 10, 3)), torch.randn(6, 2))
    assert parameters_without_gradient(model, loss) == []


def test_full_window_support():
    model = make_model().eval()
    assert input_support(lambda z: model(z)["prediction"], torch.randn(4, 10, 3)).all()


def test_eval_mode_is_deterministic_and_mc_samples_differ():
    model = make_model().eval()
    x = torch.randn(4, 10, 3)
    assert torch.equal(model(x)["prediction"], model(x)["prediction"])
    mc = model.predict_with_uncertainty(x, n_samples=20)
    samples = mc["samples"]
    assert samples.shape == (20, 4, 2)
    assert (samples[0] - samples[1]).abs().max() > 1e-4
    assert torch.all(mc["epistemic"] > 0)
    assert torch.allclose(mc["var"], mc["aleatoric"] + mc["epistemic"])
    assert not samples.requires_grad and not mc["var"].requires_grad, "MC dropout must run under no_grad"


@pytest.mark.parametrize("start_in_train", [True, False])
def test_mc_dropout_restores_the_mode(start_in_train):
    model = make_model().train(start_in_train)
    mc_dropout_predict(model, torch.randn(2, 6, 3), n_samples=3)
    assert all(m.training == start_in_train for m in model.modules())


def test_mc_dropout_restores_mixed_modes_and_enables_only_dropout():
    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.seen = []

        def forward(self, x):
            self.seen.append(self.training)
            return x

    probe = Probe()
    model = nn.Sequential(nn.Linear(3, 3), probe, nn.Dropout(0.5), nn.Linear(3, 1)).train()
    model[3].eval()
    mc_dropout_predict(model, torch.randn(4, 3), n_samples=4)
    assert probe.seen == [False] * 4, "non-dropout modules must run in eval mode"
    assert [m.training for m in model] == [True, True, True, False]


def test_mc_dropout_on_plain_tensor_model_matches_dropout_variance():
    """y = sum_i dropout(x)_i with x = 1: each term is 0 or 1/(1-p), so Var(y) = n p / (1 - p)."""
    set_seed(0)
    n, p = 50, 0.2

    class DropoutSum(nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(p)

        def forward(self, z):  # (B, n) -> (B, 1)
            return self.drop(z).sum(dim=1, keepdim=True)

    x = torch.ones(1, n)
    mc = mc_dropout_predict(DropoutSum(), x, n_samples=4000)
    assert torch.all(mc["aleatoric"] == 0)
    assert mc["prediction"].item() == pytest.approx(n, rel=0.02)
    assert mc["var"].item() == pytest.approx(n * p / (1 - p), rel=0.1)


def test_mc_dropout_errors():
    with pytest.raises(ValueError, match=r"no nn.Dropout"):
        mc_dropout_predict(nn.Linear(2, 1), torch.randn(3, 2))
    with pytest.raises(ValueError, match="at least 2"):
        mc_dropout_predict(make_model(), torch.randn(2, 5, 3), n_samples=1)


def test_softplus_scale_cannot_overflow():
    model = make_model(n_layers=1)
    with torch.no_grad():
        model.scale_head.bias.fill_(100.0)  # exp(100)**2 overflows float32; softplus(100)**2 = 1e4
    var = model.eval()(torch.randn(2, 5, 3))["var"]
    assert torch.isfinite(var).all()
    assert torch.exp(torch.tensor(100.0)) ** 2 == float("inf")


def test_nll_equals_minus_normal_log_prob():
    model = make_model().eval()
    out, y = model(torch.randn(6, 9, 3)), torch.randn(6, 2)
    reference = -torch.distributions.Normal(out["prediction"], out["var"].sqrt()).log_prob(y).mean()
    assert gaussian_nll(out, y).item() == pytest.approx(reference.item(), abs=1e-5)


def test_learns_a_heteroscedastic_variance():
    """Noise sd 0.3 when the last input is positive, 1.5 otherwise: the NLL-trained variances must follow."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(512, 4, 1, generator=gen)
    sd = torch.where(x[:, -1] > 0, 0.3, 1.5)  # (N, 1)
    y = sd * torch.randn(512, 1, generator=gen)
    set_seed(0)
    model = BayesianLSTM(input_size=1, hidden_size=8, dropout=0.1)
    trainer = Trainer(
        model, loss=GaussianNLLLoss(), lr=2e-2, max_epochs=15, batch_size=128, device="cpu", progress=False
    )
    trainer.fit(x, y, x, y)
    var = trainer.predict_output(x)["var"]
    calm, wild = var[x[:, -1, 0] > 0.5].median().item(), var[x[:, -1, 0] < -0.5].median().item()
    assert calm == pytest.approx(0.09, rel=0.5) and wild == pytest.approx(2.25, rel=0.5), (calm, wild)


def test_empty_window_gets_the_library_message_not_pytorch_s():
    # it used to reach nn.LSTM and fail with PyTorch's RuntimeError; now check_window names the problem
    with pytest.raises(ValueError, match=r"BayesianLSTM got an empty window: x has shape \(2, 0, 3\)"):
        make_model()(torch.randn(2, 0, 3))


def test_bad_hyperparameters_raise():
    with pytest.raises(ValueError, match="0 < dropout < 1"):
        BayesianLSTM(3, dropout=0.0)


@settings(max_examples=20, deadline=None)
@given(level=st.sampled_from([0.5, 0.8, 0.95]), scale=st.floats(0.1, 10.0), seed=st.integers(0, 2**16))
def test_calibrated_gaussian_intervals_cover_their_level(level, scale, seed):
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=4000)
    var = (scale * rng.uniform(0.5, 2.0, size=4000)) ** 2
    y = mean + np.sqrt(var) * rng.normal(size=4000)
    lower, upper = gaussian_interval(mean, var, level)
    assert interval_coverage(y, lower, upper) == pytest.approx(level, abs=0.03)
    # an interval built with half the true variance under-covers
    lower, upper = gaussian_interval(mean, var / 4, level)
    assert interval_coverage(y, lower, upper) < level - 0.1


def test_pit_is_uniform_only_when_calibrated():
    rng = np.random.default_rng(0)
    y = rng.normal(size=3000)
    mean, var = np.zeros(3000), np.ones(3000)
    assert stats.kstest(gaussian_pit(y, mean, var), "uniform").pvalue > 0.01
    assert stats.kstest(gaussian_pit(y, mean, var / 4), "uniform").pvalue < 1e-6


def test_calibration_helpers_reject_shape_mismatch_and_bad_levels():
    with pytest.raises(ValueError, match="same shape"):
        interval_coverage(np.zeros((5, 1)), np.zeros(5), np.ones(5))
    with pytest.raises(ValueError, match="same shape"):
        gaussian_pit(np.zeros(5), np.zeros((5, 1)), np.ones(5))
    with pytest.raises(ValueError, match="level"):
        gaussian_interval(np.zeros(3), np.ones(3), 1.5)
    with pytest.raises(ValueError, match="positive"):
        gaussian_interval(np.zeros(3), np.zeros(3), 0.9)
