"""The one output convention that every course_lib model, loss and metric follows.

A model's ``forward`` returns either

* a ``Tensor``: the prediction, ``(B, n_out)`` for a forecast made at the last step of the
  window, or ``(B, L, n_out)`` for per-step outputs; or
* a ``dict`` with the key ``"prediction"`` and named extras, for example
  ``"attention"`` (weights over time), ``"variable_weights"`` (variable selection),
  ``"var"`` (a predictive variance, for the Gaussian NLL), ``"scale"`` and ``"df"`` (Student-t).

Models whose extras are optional (attention weights, say) return the plain tensor by default and
the dict when asked (``return_attention=True``). Probabilistic models always return the dict,
because their loss needs the extras. Generic code (Trainer, metrics, tests) calls
:func:`prediction_of` and never guesses at tuples: the source module's ``(out, weights)`` tuples
broke every generic consumer (see docs/errata.md: AttentionLSTM).
"""

from collections.abc import Mapping

import torch

PREDICTION = "prediction"


def prediction_of(output) -> torch.Tensor:
    """The prediction tensor inside a model output (a tensor or a dict with ``"prediction"``)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        if PREDICTION not in output:
            raise KeyError(f"a model output dict must hold {PREDICTION!r}; it has {sorted(output)}")
        return output[PREDICTION]
    raise TypeError(
        f"a model must return a Tensor or a dict with {PREDICTION!r}, not {type(output).__name__} "
        "(tuples are ambiguous: see course_lib.outputs)"
    )
