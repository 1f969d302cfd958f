"""The training layer: the Trainer and the fits that need an optimiser loop.

* :mod:`.trainer`: :class:`Trainer` (early stopping, best weights in memory), :func:`fit_seeds`,
  :func:`fine_tune` (a partly frozen model), :func:`fit_minibatches` (a plain Adam loop for models with
  their own loss);
* :mod:`.objectives`: fits of models trained on their own objective (:func:`fit_koopman`).

The losses live one layer down, in :mod:`course_lib.losses` (the models use them too); their names
are re-exported here, so ``from course_lib.training import PinballLoss`` keeps working.
"""

from ..losses import (
    LOSSES,
    GaussianNLLLoss,
    PinballLoss,
    SampleCRPSLoss,
    StudentTNLLLoss,
    loss_by_name,
    mse_loss,
    pinball_loss,
    qlike_loss,
    student_t_nll,
)
from .objectives import fit_koopman
from .trainer import Inputs, SeedRuns, Trainer, fine_tune, fit_minibatches, fit_seeds

__all__ = [
    "LOSSES",
    "GaussianNLLLoss",
    "Inputs",
    "PinballLoss",
    "SampleCRPSLoss",
    "SeedRuns",
    "StudentTNLLLoss",
    "Trainer",
    "fine_tune",
    "fit_koopman",
    "fit_minibatches",
    "fit_seeds",
    "loss_by_name",
    "mse_loss",
    "pinball_loss",
    "qlike_loss",
    "student_t_nll",
]
