"""Causal inference for time series (chapter 06f): effects of interventions, and Granger causality.

Prediction asks E[y | history, a]; an intervention asks E[y | history, do(a)]. The two agree only
when every common cause of the treatment a and the outcome y is in the observed history (no hidden
confounding), and every history has a chance of each treatment (overlap). Then, for one decision,

    tau = E[ E[y | h, a=1] - E[y | h, a=0] ]            (adjustment over the observed history h)

and when treatments at every step move later confounders, the g-formula (:func:`g_computation`) or
inverse probability weighting of a marginal structural model (:func:`msm_ipw`) replace it.

* :mod:`.simulate`: simulators with a known answer (point treatment, treatment-confounder feedback,
  Granger graphs, an omitted common driver, heteroskedastic noise).
* :mod:`.estimators`: naive, regression, IPW, AIPW; history regression, g-computation, IPW-MSM; the
  bootstrap; propensity and overlap diagnostics.
* :mod:`.sensitivity`: the E-value and Cinelli-Hazlett's robustness value and omitted-variable bias.
* :mod:`.granger`: ADF, classical and heteroskedasticity-robust Granger tests with a multiplicity
  correction.
* :mod:`.designs`: the market-model event study, difference-in-differences (two-way fixed effects)
  and synthetic control with placebos in space.
* :func:`fit_outcome_model` trains the recurrent outcome models of :mod:`course_lib.models.causal`
  (:class:`~course_lib.models.causal.CausalLSTM`, the balanced
  :class:`~course_lib.models.causal.CounterfactualRecurrentNetwork` of Bica et al., ICLR 2020).

PCMCI (tigramite) is not used: it is GPL-3 and not a dependency of the course.
"""

import torch
import torch.nn.functional as F

from .. import set_seed
from .._moved import moved_names
from ..models import causal as outcome_models
from ..outputs import prediction_of
from ..training import fit_minibatches
from .designs import (
    DifferenceInDifferences,
    EventStudy,
    SyntheticControl,
    difference_in_differences,
    event_study,
    synthetic_control,
    synthetic_weights,
)
from .estimators import (
    EffectEstimate,
    aipw_effect,
    bootstrap,
    g_computation,
    history_regression,
    ipw_effect,
    msm_ipw,
    naive_effect,
    overlap_table,
    propensity_scores,
    regression_effect,
    stabilised_weights,
)
from .granger import adf_table, granger_matrix, granger_tests
from .sensitivity import e_value, omitted_variable_bias, partial_r2, robustness_value
from .simulate import (
    FeedbackData,
    TreatmentData,
    simulate_common_driver,
    simulate_feedback,
    simulate_heteroskedastic_pair,
    simulate_treatment,
    simulate_var,
)

__all__ = [
    "DifferenceInDifferences",
    "EffectEstimate",
    "EventStudy",
    "FeedbackData",
    "SyntheticControl",
    "TreatmentData",
    "adf_table",
    "aipw_effect",
    "bootstrap",
    "difference_in_differences",
    "e_value",
    "event_study",
    "fit_outcome_model",
    "g_computation",
    "granger_matrix",
    "granger_tests",
    "history_regression",
    "ipw_effect",
    "msm_ipw",
    "naive_effect",
    "omitted_variable_bias",
    "outcome_model_q",
    "overlap_table",
    "partial_r2",
    "propensity_scores",
    "regression_effect",
    "robustness_value",
    "simulate_common_driver",
    "simulate_feedback",
    "simulate_heteroskedastic_pair",
    "simulate_treatment",
    "simulate_var",
    "stabilised_weights",
    "synthetic_control",
    "synthetic_weights",
]

# The models left for the models layer (course_lib.models.causal); the old names work for one release.
__getattr__ = moved_names(
    __name__,
    {
        "CausalLSTM": "course_lib.models.causal",
        "CounterfactualRecurrentNetwork": "course_lib.models.causal",
        "GradientReversal": "course_lib.models.causal",
        "crn_loss": "course_lib.models.causal",
    },
)


def fit_outcome_model(
    model: outcome_models.CausalLSTM,
    x: torch.Tensor,
    treatment: torch.Tensor,
    outcome: torch.Tensor,
    epochs: int = 30,
    lr: float = 1e-2,
    batch_size: int = 256,
    seed: int = 0,
) -> list[float]:
    """Adam on MSE (CausalLSTM) or :func:`~course_lib.models.causal.crn_loss` (CRN) for (N, L, C)
    histories; returns the mean loss per epoch."""
    if not (len(x) == len(treatment) == len(outcome)) or len(x) == 0:
        raise ValueError(
            f"x, treatment and outcome need the same non-zero length, got {len(x)}, "
            f"{len(treatment)}, {len(outcome)}"
        )
    outcome = outcome.reshape(len(outcome), -1)
    balanced = isinstance(model, outcome_models.CounterfactualRecurrentNetwork)

    def batch_loss(idx):
        output = model(x[idx], treatment[idx])
        if balanced:
            return outcome_models.crn_loss(output, outcome[idx], treatment[idx])
        return F.mse_loss(output, outcome[idx])

    return fit_minibatches(model, len(x), batch_loss, epochs, lr, batch_size, seed, x.device)


def outcome_model_q(make_model, epochs: int = 30, lr: float = 1e-2, seed: int = 0, device=None):
    """A ``fit_predict`` for :func:`g_computation` from a recurrent outcome model: each step trains a fresh
    ``make_model()`` (a CausalLSTM or CRN over the (N, t+1, 2) history) on the step's target with
    :func:`fit_outcome_model`, and returns its predictions at the regime's treatment, (N,)."""

    def fit_predict(history, treatment, target, value):
        set_seed(seed)
        model = make_model().to(device or "cpu")
        x = torch.as_tensor(history, dtype=torch.float32, device=device)
        a = torch.as_tensor(treatment, dtype=torch.float32, device=device)
        y = torch.as_tensor(target, dtype=torch.float32, device=device)
        fit_outcome_model(model, x, a, y, epochs=epochs, lr=lr, seed=seed)
        model.eval()
        with torch.no_grad():
            out = model(x, torch.full_like(a, value))
        return prediction_of(out)[:, 0].cpu().numpy()

    return fit_predict
