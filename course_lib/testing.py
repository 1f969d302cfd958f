"""Checks that every course_lib model must pass; the tests call them and so can learners.

The two checks that found most silent bugs in the source module (see docs/errata.md):

* batch mixing: in eval mode, changing sample 1 of a batch must leave sample 0's output unchanged;
* look-ahead: the output at step t must not depend on inputs after t. We measure the gradient of
  ``<v, y_t>`` for a random probe vector ``v`` with respect to ``x[:, t+1:]``. A plain ``.sum()``
  would be blind after a LayerNorm (its outputs sum to a constant), hence the random probe.

And two aids to measure cost without a clock: :class:`WorkCounter` counts what PyTorch operations
write, and :func:`source_module_scan` re-creates the source module's quadratic scan to measure
against (tests, ``benchmarks/ssm_scan.py`` and chapter 06a).
"""

from collections.abc import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from .outputs import prediction_of


def batch_coupling(model: nn.Module, x: torch.Tensor, *args, **kwargs) -> float:
    """Largest change of sample 0's prediction when only sample 1 of the batch changes (eval mode).

    ``x`` must hold at least two samples. A correct model returns 0 (up to float round-off).
    Extra positional/keyword arguments (static covariates, ...) are passed to the model unchanged.
    """
    if x.shape[0] < 2:
        raise ValueError(f"batch_coupling needs a batch of at least 2 samples, got shape {tuple(x.shape)}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            before = prediction_of(model(x, *args, **kwargs))[0].clone()
            x2 = x.clone()
            x2[1] = x2[1] + 3.0 * torch.randn_like(x2[1])
            after = prediction_of(model(x2, *args, **kwargs))[0]
    finally:
        model.train(was_training)
    return (before - after).abs().max().item()


def future_gradient(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, t: int) -> float:
    """Largest |d <v, y[:, t]> / d x[:, t+1:]| for a random probe vector v.

    ``fn`` maps the input ``x`` of shape (B, L, C) to per-step outputs whose dimension 1 is time,
    e.g. ``lambda x: model(x, per_step=True)``. Returns 0.0 exactly for a causal model.
    """
    if not 0 <= t < x.shape[1] - 1:
        raise ValueError(f"t must leave at least one later step: 0 <= t < {x.shape[1] - 1}, got {t}")
    x = x.detach().clone().requires_grad_(True)
    y = prediction_of(fn(x))
    if y.shape[:2] != x.shape[:2]:
        raise ValueError(
            f"fn must return per-step outputs (B, L, ...); got {tuple(y.shape)} for {tuple(x.shape)}"
        )
    probe = torch.randn_like(y[:, t])
    (grad,) = torch.autograd.grad((probe * y[:, t]).sum(), x, allow_unused=True)
    if grad is None:
        return 0.0
    return grad[:, t + 1 :].abs().max().item()


def input_support(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Boolean mask over time steps (L,) of the inputs that the last output depends on.

    ``fn`` maps (B, L, C) to an output whose last time step (or only vector) is probed.
    Used to check receptive fields: the support is exactly the last ``receptive_field`` steps.
    """
    x = x.detach().clone().requires_grad_(True)
    y = prediction_of(fn(x))
    last = y[:, -1] if y.dim() == 3 else y
    probe = torch.randn_like(last)
    (grad,) = torch.autograd.grad((probe * last).sum(), x)
    return grad.abs().sum(dim=(0, 2)) > 0


def parameters_without_gradient(model: nn.Module, loss: torch.Tensor, rtol: float = 1e-6) -> list[str]:
    """Names of the parameters that ``loss.backward()`` leaves without a real gradient.

    A parameter counts as dead when its gradient is missing, or when its largest entry is at most
    ``rtol`` times the typical size of a gradient in the model (the median over parameters of their
    largest entry). Testing ``grad != 0`` exactly is not enough: a bias that cancels in a softmax gets
    round-off gradients of 1e-10 to 1e-18 instead of 0 (docs/errata.md: dead parameters). Measured on
    every registered model, live parameters sit above 1e-4 of the median and a dead bias below 1e-7
    (float32) or 1e-15 (float64). Use a random-probe loss such as ``(torch.randn_like(y) * y).sum()``
    so that no gradient cancels by accident, and float64 for the widest margin.
    """
    model.zero_grad(set_to_none=True)
    loss.backward()
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    size = {name: 0.0 if p.grad is None else p.grad.abs().max().item() for name, p in trainable}
    live = [v for v in size.values() if v > 0]
    typical = float(torch.tensor(live, dtype=torch.float64).median()) if live else 0.0
    return [name for name, _ in trainable if size[name] == 0.0 or size[name] <= rtol * typical]


class WorkCounter(TorchDispatchMode):
    """Counts the operations run under it, backward passes included, and the elements they write.

    ``with WorkCounter() as work: ...`` then ``work.ops`` and ``work.elements``: a cost that no machine
    load skews, so a test can check how it grows with the input size.
    """

    def __init__(self):
        super().__init__()
        self.ops, self.elements = 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops += 1
        self.elements += sum(
            o.numel() for o in (out if isinstance(out, tuple | list) else (out,)) if torch.is_tensor(o)
        )
        return out


def source_module_scan(u, delta, A, B, C):
    """RE-CREATION of the source module's selective scan, to measure it (never use it).

    The loop reads ``dA[:, t]``, ``dB[:, t]``, ``u[:, t]`` and ``C[:, t]`` of full (B, L, ...) tensors;
    each such slice has a backward that writes a zero-filled tensor of the full size, so the backward
    pass is O(L^2) (docs/errata.md; :func:`course_lib.models.ops.selective_scan.selective_scan` is the fix).
    """
    dA, dB = torch.exp(delta.unsqueeze(-1) * A), delta.unsqueeze(-1) * B.unsqueeze(2)  # (B, L, D, N)
    h, ys = torch.zeros_like(dA[:, 0]), []
    for t in range(u.shape[1]):
        h = dA[:, t] * h + dB[:, t] * u[:, t].unsqueeze(-1)
        ys.append((h * C[:, t].unsqueeze(1)).sum(-1))
    return torch.stack(ys, dim=1)


def _layout(x) -> str:
    """What a value is, for a test's message: type, shape and dtype (never its numbers)."""
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    if type(x).__module__ == "numpy" and hasattr(x, "shape"):
        return f"a NumPy {type(x).__name__} of shape {x.shape} and dtype {x.dtype}"
    if isinstance(x, list | tuple | dict):
        return f"a {type(x).__name__} of {len(x)} items"
    return f"a {type(x).__name__}"


def matches(mine, ref, *, atol: float = 1e-8, rtol: float = 1e-5, what: str = "the answer") -> bool:
    """Whether ``mine`` equals ``ref`` within ``|mine - ref| <= atol + rtol |ref|`` (NumPy's ``allclose``
    and its default tolerances; integers, bools and strings exactly), checked in this order:

    1. the kind: a tensor for a tensor, a NumPy array for an array, a number (not a bool, not an array)
       for a number, a bool for a bool, a string for a string, and for lists, tuples and dicts the same
       container with as many items (the items are then compared one by one);
    2. the shape and dtype of arrays and tensors, exactly;
    3. the values (NaN equals NaN).

    A wrong kind, shape or dtype raises ``AssertionError`` naming ``what`` and describing ``mine`` only
    (never ``ref``); wrong values return ``False``, so that ``assert matches(...), "hint"`` shows the
    test's own hint. ``torch.allclose`` alone would accept an empty answer of shape ``(0, *ref.shape)``
    (it broadcasts), and ``abs(x - ref) < tol`` a scalar wrapped in an array.
    """
    import numpy as np

    def wrong() -> AssertionError:
        return AssertionError(f"{what} has the wrong type, shape or dtype: it is {_layout(mine)}")

    if isinstance(ref, torch.Tensor | np.ndarray):
        kind = torch.Tensor if isinstance(ref, torch.Tensor) else np.ndarray
        if not isinstance(mine, kind) or tuple(mine.shape) != tuple(ref.shape) or mine.dtype != ref.dtype:
            raise wrong()
        if kind is torch.Tensor:
            if not (ref.is_floating_point() or ref.is_complex()):
                return bool(torch.equal(mine, ref))
            return bool(torch.allclose(mine.detach(), ref.detach(), atol=atol, rtol=rtol, equal_nan=True))
        if ref.dtype.kind in "biufc":
            return bool(np.allclose(mine, ref, atol=atol, rtol=rtol, equal_nan=ref.dtype.kind in "fc"))
        return bool(np.array_equal(mine, ref))
    if isinstance(ref, bool | np.bool_):
        if not isinstance(mine, bool | np.bool_):
            raise wrong()
        return bool(mine) == bool(ref)
    if isinstance(ref, int | float | complex | np.number):
        if isinstance(mine, bool | np.bool_) or not isinstance(mine, int | float | complex | np.number):
            raise wrong()
        if mine == ref or (mine != mine and ref != ref):  # equal (infinities too), or both NaN
            return True
        return bool(abs(mine - ref) <= atol + rtol * abs(ref))
    if isinstance(ref, str):
        if not isinstance(mine, str):
            raise wrong()
        return mine == ref
    if isinstance(ref, list | tuple):
        if (
            not isinstance(mine, list | tuple)
            or isinstance(mine, list) != isinstance(ref, list)
            or len(mine) != len(ref)
        ):
            raise wrong()
        return all(
            matches(m, r, atol=atol, rtol=rtol, what=f"{what}[{i}]")
            for i, (m, r) in enumerate(zip(mine, ref, strict=True))
        )
    if isinstance(ref, dict):
        if not isinstance(mine, dict) or set(mine) != set(ref):
            raise wrong()
        return all(matches(mine[k], ref[k], atol=atol, rtol=rtol, what=f"{what}[{k!r}]") for k in ref)
    return mine == ref
