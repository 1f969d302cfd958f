"""Tests of course_lib.models.meta (MAML): closed-form meta-gradients, the fast-weights bug, episodes."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from course_lib import set_seed
from course_lib.losses import mse_loss
from course_lib.models.meta import MAML, Episode, sample_episodes
from course_lib.testing import parameters_without_gradient


def half_mse(output, target):
    return 0.5 * mse_loss(output, target)


def quadratic_episode(a, b, p, q):
    """With the model y = theta * x and loss 1/2 (y - t)^2, the input sqrt(a) and target sqrt(a) p give
    the support loss a/2 (theta - p)^2; likewise the query loss is b/2 (theta - q)^2."""
    ra, rb = math.sqrt(a), math.sqrt(b)
    t = lambda v: torch.tensor([[v]], dtype=torch.float64)  # noqa: E731
    return Episode(t(ra), t(ra * p), t(rb), t(rb * q))


def scalar_model(theta):
    model = nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        model.weight.fill_(theta)
    return model


def meta_gradient(maml, episode):
    maml.zero_grad(set_to_none=True)
    maml.task_loss(episode).backward()
    return maml.model.weight.grad.item()


positive = st.floats(0.1, 3.0)
real = st.floats(-3.0, 3.0)


@settings(max_examples=40, deadline=None)
@given(
    a=positive, b=positive, alpha=st.floats(0.01, 0.5), theta=real, p=real, q=real, steps=st.integers(1, 3)
)
def test_meta_gradient_matches_closed_form(a, b, alpha, theta, p, q, steps):
    episode = quadratic_episode(a, b, p, q)
    contraction = 1 - alpha * a  # d theta_{j+1} / d theta_j
    theta_k = p + contraction**steps * (theta - p)
    second = b * (theta_k - q) * contraction**steps
    first = b * (theta_k - q)
    maml = MAML(scalar_model(theta), inner_lr=alpha, inner_steps=steps, loss_fn=half_mse)
    fast = maml.adapt(episode.support_x, episode.support_y)
    assert fast["weight"].item() == pytest.approx(theta_k, abs=1e-9)
    assert meta_gradient(maml, episode) == pytest.approx(second, abs=1e-9)
    maml.first_order = True
    assert meta_gradient(maml, episode) == pytest.approx(first, abs=1e-9)


def test_source_module_inner_loop_never_uses_fast_weights():
    """The source module cloned the parameters, then called model(x) with the originals."""
    model = scalar_model(0.5)
    episode = quadratic_episode(1.0, 2.0, 1.0, -1.0)
    fast_weights = {name: p.clone() for name, p in model.named_parameters()}
    loss = half_mse(model(episode.support_x), episode.support_y)  # bug: fast_weights unused
    with pytest.raises(RuntimeError, match="not have been used in the graph"):
        torch.autograd.grad(loss, list(fast_weights.values()), create_graph=True)


def test_source_module_outer_loop_is_not_maml():
    """Evaluating the query at theta (not theta') gives b (theta - q): no adaptation in the meta-gradient."""
    a, b, alpha, theta, p, q = 1.0, 2.0, 0.3, 0.5, 1.0, -1.0
    episode = quadratic_episode(a, b, p, q)
    model = scalar_model(theta)
    half_mse(model(episode.query_x), episode.query_y).backward()  # the source's outer loop
    buggy = model.weight.grad.item()
    maml = MAML(scalar_model(theta), inner_lr=alpha, loss_fn=half_mse)
    correct = meta_gradient(maml, episode)
    theta_1 = theta - alpha * a * (theta - p)
    assert buggy == pytest.approx(b * (theta - q))
    assert correct == pytest.approx(b * (theta_1 - q) * (1 - alpha * a))
    assert abs(buggy - correct) > 0.5


class TinyLSTM(nn.Module):
    def __init__(self, c=2, h=6):
        super().__init__()
        self.lstm = nn.LSTM(c, h, batch_first=True)
        self.head = nn.Linear(h, 1)

    def forward(self, x):  # (B, L, C) -> (B, 1)
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


def lstm_episode(n=8, length=5, c=2):
    return Episode(torch.randn(n, length, c), torch.randn(n, 1), torch.randn(n, length, c), torch.randn(n, 1))


@pytest.mark.parametrize("first_order", [False, True])
def test_meta_gradient_reaches_every_parameter_of_an_lstm(first_order):
    set_seed(0)
    maml = MAML(TinyLSTM(), inner_lr=0.1, inner_steps=2, first_order=first_order)
    assert parameters_without_gradient(maml, maml.meta_loss([lstm_episode(), lstm_episode()])) == []


def test_second_and_first_order_differ_on_a_nonlinear_model():
    set_seed(1)
    model, episode = TinyLSTM(), lstm_episode()
    grads = {}
    for first_order in (False, True):
        maml = MAML(model, inner_lr=0.5, first_order=first_order)
        maml.zero_grad(set_to_none=True)
        maml.task_loss(episode).backward()
        grads[first_order] = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert (grads[False] - grads[True]).abs().max() > 1e-4


def test_adapt_leaves_the_model_unchanged_and_works_under_no_grad():
    set_seed(2)
    maml = MAML(TinyLSTM(), inner_lr=0.1, inner_steps=3)
    episode = lstm_episode()
    before = [p.detach().clone() for p in maml.parameters()]
    with torch.no_grad():
        fast = maml.adapt(episode.support_x, episode.support_y, create_graph=False)
        adapted = mse_loss(maml(episode.support_x, fast), episode.support_y)
        original = mse_loss(maml(episode.support_x), episode.support_y)
    assert adapted < original, "three inner steps should lower the support loss"
    assert all(torch.equal(p, b) for p, b in zip(maml.parameters(), before, strict=True))
    # forward with the module's own weights equals the plain call
    own = dict(maml.model.named_parameters())
    assert torch.equal(maml(episode.query_x, own), maml(episode.query_x))


def test_frozen_parameters_are_not_adapted():
    model = TinyLSTM()
    model.lstm.requires_grad_(False)
    fast = MAML(model).adapt(torch.randn(4, 5, 2), torch.randn(4, 1))
    assert set(fast) == {"head.weight", "head.bias"}


def test_unused_parameter_is_a_clear_error():
    class TwoHeads(TinyLSTM):
        def __init__(self):
            super().__init__()
            self.unused = nn.Linear(6, 1)

    with pytest.raises(ValueError, match=r"does not depend on.*unused.weight"):
        MAML(TwoHeads()).adapt(torch.randn(4, 5, 2), torch.randn(4, 1))


def test_meta_training_learns_an_initialisation_that_adapts():
    """Tasks y = w x with w = -2 or 2. With inner_lr 0.25 one inner step gives theta' ~ (theta + w) / 2, so
    the expected query loss ~ (theta^2 + 4) / 4 is smallest at theta = 0: MAML must move there from 5."""
    gen = torch.Generator().manual_seed(0)

    def episodes(n):
        out = []
        for _ in range(n):
            w = 2.0 if torch.rand(1, generator=gen) < 0.5 else -2.0
            xs, xq = torch.randn(20, 1, generator=gen), torch.randn(20, 1, generator=gen)
            out.append(Episode(xs, w * xs, xq, w * xq))
        return out

    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(5.0)
    maml = MAML(model, inner_lr=0.25, inner_steps=1)
    test_episodes = episodes(40)
    start = maml.meta_loss(test_episodes).item()
    opt = torch.optim.SGD(maml.parameters(), lr=0.5)
    for _ in range(40):
        maml.meta_step(episodes(8), opt)
    assert abs(model.weight.item()) < 0.5
    assert maml.meta_loss(test_episodes).item() < 0.3 * start


def test_sample_episodes_query_follows_support():
    x = torch.arange(100.0).reshape(100, 1, 1)
    y = torch.arange(100.0).reshape(100, 1)
    gen = torch.Generator().manual_seed(0)
    eps = sample_episodes(
        [(x, y), (x[:40] + 1000, y[:40] + 1000)], 20, n_support=5, n_query=3, gap=2, generator=gen
    )
    assert len(eps) == 20
    for e in eps:
        assert e.support_x.shape == (5, 1, 1) and e.query_y.shape == (3, 1)
        assert torch.equal(e.support_y[:, 0], e.support_x[:, 0, 0])
        assert e.query_y[0, 0] == e.support_y[-1, 0] + 3  # gap of 2 samples between them
    again = sample_episodes(
        [(x, y), (x[:40] + 1000, y[:40] + 1000)], 20, 5, 3, gap=2, generator=torch.Generator().manual_seed(0)
    )
    assert all(torch.equal(a.query_y, b.query_y) for a, b in zip(eps, again, strict=True))


def test_sample_episodes_rejects_bad_input():
    x, y = torch.randn(10, 4, 1), torch.randn(10, 1)
    with pytest.raises(ValueError, match="fewer than one episode needs"):
        sample_episodes([(x, y)], 1, n_support=8, n_query=4)
    with pytest.raises(ValueError, match="X has 10 samples but y has 9"):
        sample_episodes([(x, y[:9])], 1, 2, 2)
    with pytest.raises(ValueError, match="at least one"):
        sample_episodes([], 1, 2, 2)


def test_bad_hyperparameters_and_shape_mismatch():
    with pytest.raises(ValueError, match="inner_lr > 0"):
        MAML(TinyLSTM(), inner_lr=0.0)
    with pytest.raises(ValueError, match="refusing to broadcast"):
        MAML(TinyLSTM()).adapt(torch.randn(4, 5, 2), torch.randn(4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (cuDNN RNNs have no double backward)")
@pytest.mark.parametrize("training", [True, False])
def test_second_order_through_cudnn_lstm_on_cuda(training):
    set_seed(4)
    maml = MAML(TinyLSTM().cuda(), inner_lr=0.1, inner_steps=2).train(training)
    e = lstm_episode()
    episode = Episode(e.support_x.cuda(), e.support_y.cuda(), e.query_x.cuda(), e.query_y.cuda())
    assert parameters_without_gradient(maml, maml.task_loss(episode)) == []
    fast = maml.adapt(episode.support_x, episode.support_y, create_graph=False)  # test-time adaptation
    assert set(fast) == {n for n, _ in maml.model.named_parameters()}


def test_a_nan_query_target_stops_meta_step_naming_the_episode():
    # it used to turn every parameter NaN without a word
    set_seed(5)
    maml = MAML(TinyLSTM(), inner_lr=0.1, inner_steps=2)
    before = [p.detach().clone() for p in maml.parameters()]
    good, bad = lstm_episode(), lstm_episode()
    bad = Episode(bad.support_x, bad.support_y, bad.query_x, bad.query_y.clone().fill_(float("nan")))
    opt = torch.optim.SGD(maml.parameters(), lr=0.1)
    with pytest.raises(FloatingPointError, match="query loss of episode 1 is nan"):
        maml.meta_step([good, bad], opt)
    assert all(torch.equal(p, b) for p, b in zip(maml.parameters(), before, strict=True))


def test_a_nan_support_target_names_the_inner_step():
    maml = MAML(TinyLSTM(), inner_lr=0.1, inner_steps=2)
    e = lstm_episode()
    support_y = e.support_y.clone()
    support_y[3] = float("nan")
    with pytest.raises(FloatingPointError, match="support loss at inner step 1 of 2 is nan"):
        maml.adapt(e.support_x, support_y)
    with pytest.raises(FloatingPointError, match="inner step 2 of 2"):  # finite at step 1, blows up at 2
        MAML(scalar_model(1e100), inner_lr=1e100, inner_steps=2, loss_fn=half_mse).adapt(
            torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64)
        )
