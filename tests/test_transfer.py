"""Tests of course_lib.models.transfer: freezing by name, optimizer over trainable parameters only."""

import pytest
import torch
from torch import nn

from course_lib import set_seed
from course_lib.models.transfer import (
    FinancialTransferLearning,
    freeze,
    trainable_optimizer,
    trainable_parameters,
    unfreeze,
)
from course_lib.training import fine_tune


class HeadFirst(nn.Module):
    """The head is registered BEFORE the encoder: children() order is not the forward order."""

    def __init__(self, c: int = 3, h: int = 8):
        super().__init__()
        self.head = nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 1))
        self.encoder = nn.LSTM(c, h, batch_first=True)

    def forward(self, x):  # (B, L, C) -> (B, 1)
        out, _ = self.encoder(x)  # (B, L, H)
        return self.head(out[:, -1])


def _names(model, prefix):
    return {n for n, _ in model.named_parameters() if n.startswith(prefix)}


def test_children_order_is_registration_order_not_depth():
    model = HeadFirst()
    # The source module froze children()[:k] assuming the first child is the input layer: here it is the head.
    assert next(iter(model.children())) is model.head


def test_freeze_by_name_freezes_exactly_that_module():
    model = freeze(HeadFirst(), "encoder")
    trainable = {n for n, _ in trainable_parameters(model)}
    assert trainable == _names(model, "head.")
    assert all(not p.requires_grad for p in model.encoder.parameters())


def test_freeze_nested_name_and_unfreeze():
    model = freeze(HeadFirst(), "encoder", "head.0")
    assert {n for n, _ in trainable_parameters(model)} == {"head.2.weight", "head.2.bias"}
    unfreeze(model, "head.0")
    assert {n for n, _ in trainable_parameters(model)} == _names(model, "head.")
    unfreeze(model)
    assert len(trainable_parameters(model)) == len(list(model.parameters()))


def test_unknown_name_raises_and_lists_the_names():
    with pytest.raises(KeyError, match=r"has no submodule 'lstm'.*encoder"):
        freeze(HeadFirst(), "lstm")
    with pytest.raises(ValueError, match="at least one submodule name"):
        freeze(HeadFirst())


def test_optimizer_holds_only_trainable_parameters():
    model = freeze(HeadFirst(), "encoder")
    opt = trainable_optimizer(model, lr=1e-2)
    in_opt = {id(p) for group in opt.param_groups for p in group["params"]}
    assert in_opt == {id(p) for p in model.head.parameters()}


def test_everything_frozen_is_a_clear_error():
    model = freeze(HeadFirst(), "encoder", "head")
    with pytest.raises(ValueError, match="nothing to fine-tune"):
        trainable_optimizer(model, lr=1e-3)
    with pytest.raises(ValueError, match="nothing to fine-tune"):
        FinancialTransferLearning(HeadFirst()).freeze("encoder", "head").optimizer(lr=1e-3)


def test_fine_tuning_moves_the_head_only_and_leaves_the_source_untouched():
    set_seed(0)
    source = HeadFirst()
    before = {n: p.detach().clone() for n, p in source.named_parameters()}
    tl = FinancialTransferLearning(source).freeze("encoder")
    assert set(tl.frozen_names) == _names(source, "encoder.")
    opt = tl.optimizer(lr=1e-2, weight_decay=1e-2)
    x, y = torch.randn(16, 10, 3), torch.randn(16, 1)
    for _ in range(3):
        opt.zero_grad()
        torch.mean((tl.model(x) - y) ** 2).backward()
        opt.step()
    for n, p in tl.model.named_parameters():
        moved = not torch.equal(p, before[n])
        assert moved == n.startswith("head."), n
        if n.startswith("encoder."):
            assert p.grad is None, f"frozen {n} received a gradient"
    for n, p in source.named_parameters():
        assert torch.equal(p, before[n]), f"the pretrained model was modified ({n})"


def test_rejects_non_module():
    with pytest.raises(TypeError, match=r"nn.Module"):
        FinancialTransferLearning({"weights": 1})


def test_fine_tune_with_the_trainer_updates_only_the_unfrozen_part():
    set_seed(1)
    x, y = torch.randn(64, 8, 3), torch.randn(64, 1)
    tl = FinancialTransferLearning(HeadFirst()).freeze("head")
    before = {n: p.detach().clone() for n, p in tl.model.named_parameters()}
    trainer = fine_tune(tl, x, y, x, y, lr=1e-2, max_epochs=2, batch_size=16, device="cpu", progress=False)
    assert len(trainer.history["val_loss"]) == 2
    for n, p in tl.model.named_parameters():
        assert torch.equal(p, before[n]) == n.startswith("head."), n
    with pytest.raises(ValueError, match="nothing to fine-tune"):
        fine_tune(tl.freeze("encoder"), x, y, x, y, device="cpu", progress=False)
    with pytest.raises(TypeError, match=r"nn.Module or a FinancialTransferLearning"):
        fine_tune({"weights": 1}, x, y, x, y)


def test_the_fine_tune_method_still_works_for_one_release_and_says_where_it_went():
    set_seed(1)
    x, y = torch.randn(32, 8, 3), torch.randn(32, 1)
    tl = FinancialTransferLearning(HeadFirst()).freeze("encoder")
    with pytest.warns(FutureWarning, match="course_lib.training.fine_tune"):
        trainer = tl.fine_tune(x, y, x, y, max_epochs=1, device="cpu", progress=False)
    assert trainer.model is tl.model and len(trainer.history["val_loss"]) == 1
