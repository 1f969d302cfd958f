"""Transfer learning: pretrain on a source market, fine-tune on a target market with little data.

A forecaster trained on a long source series (the NASDAQ composite, or a pool of large stocks) has
learnt features that many markets share: volatility clusters, it mean-reverts, it jumps after
large moves. On a target with a short history we start from the source weights theta_S instead of a
random initialisation and train only part of the network, or all of it with a small step:

    theta_S = argmin_theta  L_source(theta)
    theta_T = argmin_{theta_trainable}  L_target(theta),   started at theta_S,

where the frozen parameters keep their source values. With few target samples the start point acts
as a prior (the L2-SP penalty ||theta - theta_S||^2 of Li, Grandvalet & Davoine 2018 makes that
explicit); with many, fine-tuning and training from scratch converge to similar errors.
Reference: Yosinski, Clune, Bengio & Lipson (2014), "How transferable are features in deep
neural networks?".

Two rules this module enforces (both broken in the source module, see docs/errata.md):

* freeze BY NAME: ``model.children()`` lists submodules in registration order (the order of the
  assignments in ``__init__``), not by depth in the forward pass, so "freeze the first k children"
  can freeze the head and train the encoder;
* an optimizer over the trainable parameters only, and a clear error when nothing is left to train
  (``torch.optim.Adam([])`` fails with an obscure "empty parameter list").
"""

import copy
import importlib
import warnings
from collections.abc import Iterable

import torch
from torch import nn

__all__ = [
    "FinancialTransferLearning",
    "freeze",
    "require_trainable",
    "trainable_optimizer",
    "trainable_parameters",
    "unfreeze",
]


def _submodules(model: nn.Module, names: Iterable[str]) -> list[nn.Module]:
    """The submodules called ``names`` (dotted paths as in ``model.named_modules()``)."""
    names = list(names)
    if not names:
        raise ValueError("give at least one submodule name, e.g. freeze(model, 'lstm')")
    available = [n for n, _ in model.named_modules() if n]
    modules = []
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"submodule names are strings like 'lstm' or 'head.0', got {name!r}")
        try:
            modules.append(model.get_submodule(name))
        except AttributeError:
            raise KeyError(f"{type(model).__name__} has no submodule {name!r}; it has {available}") from None
    return modules


def freeze(model: nn.Module, *names: str) -> nn.Module:
    """Stop training the named submodules (``requires_grad = False`` on all their parameters)."""
    for module in _submodules(model, names):
        module.requires_grad_(False)
    return model


def unfreeze(model: nn.Module, *names: str) -> nn.Module:
    """Train the named submodules again; with no names, train the whole model."""
    modules = _submodules(model, names) if names else [model]
    for module in modules:
        module.requires_grad_(True)
    return model


def trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` pairs that will be updated (``requires_grad`` is True)."""
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def trainable_optimizer(
    model: nn.Module, lr: float, weight_decay: float = 0.0, optimizer: type = torch.optim.AdamW
) -> torch.optim.Optimizer:
    """An optimizer over the trainable parameters only; a ``ValueError`` if every parameter is frozen."""
    return optimizer(require_trainable(model), lr=lr, weight_decay=weight_decay)


def require_trainable(model: nn.Module) -> list[nn.Parameter]:
    """The trainable parameters of ``model``; a ``ValueError`` that says what to unfreeze if there are none."""
    params = [p for _, p in trainable_parameters(model)]
    if not params:
        raise ValueError(
            f"every parameter of {type(model).__name__} is frozen: there is nothing to fine-tune. "
            "Unfreeze at least the head, e.g. unfreeze(model, 'head')."
        )
    return params


class FinancialTransferLearning:
    """A copy of a pretrained model, with by-name control of what is fine-tuned on the target.

    The pretrained model itself is never modified (it is deep-copied), so that several target
    data sets can start from the same source weights.

        tl = FinancialTransferLearning(source_model).freeze("lstm")   # train only the rest
        trainer = course_lib.training.fine_tune(tl, X_target, y_target, X_val, y_val, lr=1e-3, max_epochs=30)
        prediction = trainer.predict(X_test)
    """

    def __init__(self, pretrained: nn.Module):
        if not isinstance(pretrained, nn.Module):
            raise TypeError(f"pretrained must be an nn.Module, got {type(pretrained).__name__}")
        self.model = copy.deepcopy(pretrained)

    def freeze(self, *names: str) -> "FinancialTransferLearning":
        freeze(self.model, *names)
        return self

    def unfreeze(self, *names: str) -> "FinancialTransferLearning":
        unfreeze(self.model, *names)
        return self

    @property
    def trainable_names(self) -> list[str]:
        return [name for name, _ in trainable_parameters(self.model)]

    @property
    def frozen_names(self) -> list[str]:
        return [name for name, p in self.model.named_parameters() if not p.requires_grad]

    def optimizer(self, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
        return trainable_optimizer(self.model, lr=lr, weight_decay=weight_decay)

    def fine_tune(self, X_train, y_train, X_val, y_val, **trainer_kwargs):
        """Moved to :func:`course_lib.training.fine_tune` (``fine_tune(tl, X_train, y_train, X_val, y_val)``):
        the models layer does not import the training layer. Kept for one release."""
        warnings.warn(
            "FinancialTransferLearning.fine_tune has moved to course_lib.training.fine_tune(tl, X_train, "
            "y_train, X_val, y_val, ...); the method is kept for one release",
            FutureWarning,
            stacklevel=2,
        )
        training = importlib.import_module("course_lib.training")  # by name: no upward import at load
        return training.fine_tune(self, X_train, y_train, X_val, y_val, **trainer_kwargs)
