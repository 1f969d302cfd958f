import numpy as np
import pytest
import torch
from torch import nn

from course_lib.losses import GaussianNLLLoss, PinballLoss, StudentTNLLLoss, mse_loss
from course_lib.models.checkpoint import load_checkpoint, read_meta
from course_lib.training import Trainer, fit_seeds


def _linear_data(n=512, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 8, c, generator=g)
    y = X[:, -1, :1] * 2.0 - X[:, -2, 1:2] + 0.1 * torch.randn(n, 1, generator=g)
    return X[:384], y[:384], X[384:], y[384:]


class _Last(nn.Module):
    def __init__(self, c=3, out=1):
        super().__init__()
        self.lin = nn.Linear(2 * c, out)

    def forward(self, x):
        return self.lin(x[:, -2:].flatten(1))


def test_trainer_learns_and_restores_the_best_weights(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Xt, yt, Xv, yv = _linear_data()
    model = _Last()
    before = mse_loss(model(Xv), yv).item()
    trainer = Trainer(model, lr=0.05, max_epochs=30, patience=3, progress=False, device="cpu")
    hist = trainer.fit(Xt, yt, Xv, yv)
    after = mse_loss(model(Xv), yv).item()
    assert after < 0.1 * before
    assert after == pytest.approx(min(hist["val_loss"]), rel=1e-5)  # the best epoch's weights
    assert trainer.best_epoch == int(np.argmin(hist["val_loss"])) + 1
    assert set(hist) == {"train_loss", "val_loss", "lr", "epoch_time", "val_per_output", "grad_norm"}
    assert list(tmp_path.iterdir()) == []  # nothing written into the working directory


def test_early_stopping_stops():
    Xt, yt, Xv, _ = _linear_data()
    noise = torch.randn(len(Xv), 1)  # unlearnable validation target
    hist = Trainer(_Last(), lr=0.05, max_epochs=50, patience=2, progress=False, device="cpu").fit(
        Xt, yt, Xv, noise
    )
    assert len(hist["val_loss"]) < 50


def test_same_seed_same_history():
    data = _linear_data()
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        runs.append(
            Trainer(_Last(), max_epochs=3, progress=False, device="cpu", seed=7).fit(*data)["val_loss"]
        )
    assert runs[0] == runs[1]


def test_nan_loss_stops_with_the_epoch_named():
    class Explodes(_Last):
        calls = 0

        def forward(self, x):
            Explodes.calls += 1
            out = super().forward(x)
            return out * float("nan") if Explodes.calls > 4 else out

    Xt, yt, Xv, yv = _linear_data()
    trainer = Trainer(Explodes(), batch_size=128, max_epochs=5, progress=False, device="cpu")
    with pytest.raises(FloatingPointError, match="NaN at epoch 2"):
        trainer.fit(Xt, yt, Xv, yv)


def test_after_a_nan_loss_the_best_weights_are_restored():
    # they used to stay NaN, and the best state was dropped
    class ExplodesLater(_Last):
        calls = 0

        def forward(self, x):
            ExplodesLater.calls += 1
            if ExplodesLater.calls == 12:  # the validation pass of epoch 3: poison the weights
                with torch.no_grad():
                    self.lin.weight.fill_(float("nan"))
            return super().forward(x)

    Xt, yt, Xv, yv = _linear_data()
    model = ExplodesLater()
    trainer = Trainer(model, lr=0.05, batch_size=128, max_epochs=5, progress=False, device="cpu")
    with pytest.raises(FloatingPointError, match=r"NaN at epoch 3 .*best weights, of epoch 2"):
        trainer.fit(Xt, yt, Xv, yv)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert mse_loss(model(Xv), yv).item() == pytest.approx(trainer.history["val_loss"][1], rel=1e-5)


def test_a_nan_loss_in_the_first_epoch_says_the_weights_are_not_restored():
    Xt, yt, Xv, yv = _linear_data()
    yt = yt.clone()
    yt[5] = float("nan")
    with pytest.raises(FloatingPointError, match=r"NaN at epoch 1 .*NOT restored"):
        Trainer(_Last(), max_epochs=3, progress=False, device="cpu").fit(Xt, yt, Xv, yv)


@pytest.mark.parametrize("empty", ["training", "validation"])
def test_an_empty_split_is_refused(empty):
    Xt, yt, Xv, yv = _linear_data()
    if empty == "training":
        Xt, yt = Xt[:0], yt[:0]
    else:
        Xv, yv = Xv[:0], yv[:0]
    with pytest.raises(ValueError, match=f"the {empty} split is empty"):
        Trainer(_Last(), max_epochs=2, progress=False, device="cpu").fit(Xt, yt, Xv, yv)


def test_checkpoint_path_writes_the_best_state_in_the_one_format(tmp_path):
    path = tmp_path / "best"
    trainer = Trainer(_Last(), max_epochs=2, progress=False, device="cpu", checkpoint_path=path)
    trainer.fit(*_linear_data())
    meta = read_meta(path)
    assert meta["class"] == "_Last" and meta["config"] == {} and meta["epoch"] == trainer.best_epoch
    loaded = load_checkpoint(path, build=lambda config: _Last())  # a model without a config: build=
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


def test_tuple_inputs_dict_outputs_and_per_output_losses():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 2), nn.Linear(1, 2)

        def forward(self, x, static):
            return {"prediction": self.a(x[:, -1]) + self.b(static), "attention": torch.ones(len(x), 8)}

    Xt, yt, Xv, yv = _linear_data()
    st, sv = torch.randn(len(Xt), 1), torch.randn(len(Xv), 1)
    trainer = Trainer(TwoInputs(), max_epochs=2, progress=False, device="cpu")
    hist = trainer.fit((Xt, st), yt.repeat(1, 2), (Xv, sv), yv.repeat(1, 2))
    assert len(hist["val_per_output"][-1]) == 2
    out = trainer.predict_output((Xv, sv))
    assert out["attention"].shape == (len(Xv), 8)
    assert trainer.predict((Xv, sv)).shape == (len(Xv), 2)


def test_grad_norm_is_recorded_before_clipping_and_clipping_changes_the_updates():
    Xt, yt, Xv, yv = _linear_data()
    runs = {}
    for clip in (None, 1e-2):
        torch.manual_seed(0)
        trainer = Trainer(_Last(), lr=0.05, batch_size=100, max_epochs=3, patience=5, grad_clip=clip,
                          progress=False, device="cpu", seed=3)  # fmt: skip
        runs[clip] = trainer.fit(Xt, yt, Xv, yv)
    steps = -(-len(Xt) // 100)  # ceil: 4 steps per epoch
    assert all(len(epoch) == steps for h in runs.values() for epoch in h["grad_norm"])
    # the first step: same weights, same batch, so the same pre-clip norm, computed here by hand
    torch.manual_seed(0)
    model = _Last()
    first = torch.randperm(len(Xt), generator=torch.Generator().manual_seed(3))[:100]
    mse_loss(model(Xt[first]), yt[first]).backward()
    by_hand = torch.cat([p.grad.flatten() for p in model.parameters()]).norm().item()
    for h in runs.values():
        assert h["grad_norm"][0][0] == pytest.approx(by_hand, rel=1e-5)
    assert runs[1e-2]["grad_norm"][0][0] > 1e-2  # the clip fired on that step...
    assert runs[1e-2]["val_loss"] != runs[None]["val_loss"]  # ...and changed the training
    with pytest.raises(ValueError, match="grad_clip"):
        Trainer(_Last(), grad_clip=0.0)


def test_shape_mismatch_is_refused():
    Xt, yt, Xv, yv = _linear_data()
    with pytest.raises(ValueError, match="refusing to broadcast"):
        Trainer(_Last(), max_epochs=1, progress=False, device="cpu").fit(Xt, yt[:, 0], Xv, yv[:, 0])


def test_frozen_model_is_refused():
    model = _Last().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        Trainer(model, max_epochs=1, progress=False, device="cpu").fit(*_linear_data())


def test_gaussian_nll_equals_normal_log_prob():
    mean, var, y = torch.randn(6, 2), torch.rand(6, 2) + 0.1, torch.randn(6, 2)
    expected = -torch.distributions.Normal(mean, var.sqrt()).log_prob(y).mean()
    assert GaussianNLLLoss()({"prediction": mean, "var": var}, y).item() == pytest.approx(
        expected.item(), rel=1e-6
    )


def test_student_t_nll_equals_log_prob():
    loc, scale, y = torch.randn(5, 1), torch.rand(5, 1) + 0.5, torch.randn(5, 1)
    df = torch.tensor(4.0)
    expected = -torch.distributions.StudentT(df, loc, scale).log_prob(y).mean()
    out = {"prediction": loc, "scale": scale, "df": df}
    assert StudentTNLLLoss()(out, y).item() == pytest.approx(expected.item(), rel=1e-6)


def test_pinball_loss_by_hand():
    loss = PinballLoss([0.1, 0.9])
    y = torch.tensor([[1.0]])
    pred = torch.tensor([[[0.0, 2.0]]])  # under by 1 at q=0.1, over by 1 at q=0.9
    assert loss(pred, y).item() == pytest.approx((0.1 * 1 + 0.1 * 1) / 2)
    with pytest.raises(ValueError, match="quantile prediction"):
        loss(torch.zeros(1, 2), y)
    with pytest.raises(ValueError, match="quantiles"):
        PinballLoss([0.0, 1.5])


def test_pinball_training_finds_the_quantiles():
    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = nn.Parameter(torch.zeros(3))

        def forward(self, x):
            return self.q.expand(len(x), 1, 3)  # (B, 1, Q)

    g = torch.Generator().manual_seed(0)
    y = torch.randn(4000, 1, generator=g)
    X = torch.zeros(4000, 1, 1)
    trainer = Trainer(
        Constant(),
        loss=PinballLoss([0.1, 0.5, 0.9]),
        lr=0.05,
        max_epochs=60,
        patience=60,
        weight_decay=0.0,
        progress=False,
        device="cpu",
    )
    trainer.fit(X[:3000], y[:3000], X[3000:], y[3000:])
    expected = torch.quantile(y[:3000, 0], torch.tensor([0.1, 0.5, 0.9]))
    torch.testing.assert_close(trainer.model.q.detach(), expected, atol=0.08, rtol=0)


def test_fit_seeds_repeats_a_seed_exactly_and_keeps_every_seeds_model():
    from types import SimpleNamespace

    Xt, yt, Xv, yv = _linear_data()
    split = SimpleNamespace
    task = SimpleNamespace(train=split(X=Xt, y=yt), val=split(X=Xv, y=yv), test=split(X=Xv[:50], y=yv[:50]))
    settings = dict(lr=0.05, max_epochs=3, device="cpu")
    runs = fit_seeds(_Last, task, (0, 1), **settings)
    again = fit_seeds(_Last, task, (1,), **settings)
    assert len(runs.test) == len(runs.val) == len(runs.models) == 2 and runs.test[0].shape == (50, 1)
    np.testing.assert_array_equal(again.test[0], runs.test[1])  # seed 1 alone = seed 1 of the pair
    assert not np.allclose(runs.test[0], runs.test[1])  # seeds draw different weights
    with torch.no_grad():  # the kept models hold the weights that made the forecasts
        np.testing.assert_allclose(runs.models[0].eval()(Xv[:50]).numpy(), runs.test[0], rtol=1e-6)
    assert len(runs.epoch_times) == 6 and runs.seconds_per_epoch > 0
    assert runs.epochs_run == [3, 3] and all(1 <= b <= 3 for b in runs.best_epochs)  # the budget, per seed
    assert runs.best_epochs[1] == again.best_epochs[0]
    with pytest.raises(ValueError, match="at least one seed"):
        fit_seeds(_Last, task, ())
