r"""Mamba's selective scan: the recurrence, three ways to compute it, and one step of it.

Mamba (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces",
arXiv:2312.00752) computes the SSM's :math:`\Delta_t, B_t, C_t` from the input at each step
(selectivity), so the model is no longer a convolution; it is computed by a *scan* of

.. math::  h_t = e^{\Delta_t A} h_{t-1} + \Delta_t B_t u_t, \qquad y_t = C_t h_t + D u_t,

from :math:`h_{-1} = 0`, per channel :math:`d` and state :math:`n` (:math:`A` is diagonal per channel).

Three scans sit behind :func:`selective_scan` (``scan=``): ``"sequential"``, the recurrence written
step by step (the reference); ``"chunked"``, a linear-time scan with a hand-written backward pass (a
reverse scan) that does a few Python steps per chunk instead of one per time step; and ``"fused"``,
the same scan as one C kernel (``selective_scan.c``, built once per machine by
:mod:`.fused_build`) that keeps the state in cache instead of writing it to memory, the CPU analogue
of Mamba's hardware-aware scan. The tests check that all three agree in outputs and gradients, also
when the decay :math:`e^{\Delta A}` is within 1e-4 of 1.

Symbols and shapes:

=========================  =========================  ==============================================
``u``                      (batch, L, d_inner)        the input :math:`u_t`
``delta``                  (batch, L, d_inner)        the step :math:`\Delta_t`, one per channel and day
``A``                      (d_inner, d_state)         the diagonal state matrix (negative real part)
``B``, ``C``               (batch, L, d_state)        :math:`B_t, C_t`, shared by the channels
``D``                      (d_inner,) or None         the skip connection
``a_t``, ``b_t``           (batch, L, d_inner, d_st)  :math:`e^{\Delta_t A}` and :math:`\Delta_t u_t B_t`
``h_t``, ``g_t``           (batch, L, d_inner, d_st)  the state, and :math:`\partial \mathrm{Loss} / \partial b_t`
=========================  =========================  ==============================================

Defect of the source module fixed here (see docs/errata.md): its scan indexed ``x[:, t]`` in a loop,
whose backward pass is quadratic in ``L``.
"""

import math
import warnings

import torch

from .fused_build import load_kernel

__all__ = ["SCANS", "selective_scan", "selective_scan_step"]

SCANS = ("sequential", "chunked", "fused")


def _scan_(a: torch.Tensor, x: torch.Tensor, chunk: int, reverse: bool = False) -> torch.Tensor:
    """A linear recurrence along dim 1 of (B, L, ...) tensors, in place in ``x``, without autograd.

    Forward: ``h_t = x_t + a_t h_{t-1}`` from ``h_{-1} = 0``. Reverse (for the backward pass):
    ``g_t = x_t + a_{t+1} g_{t+1}`` from ``g_L = 0``. In chunks of ``T`` steps, two sweeps:
    (1) every chunk's own end state from a zero start, and its total decay (the product of its
    ``a``), kept only for the chunk ends: (B, L/T, ...) tensors, T Python steps; then the state
    entering each chunk, carried chunk after chunk (L/T small steps); (2) the scan inside every chunk,
    all chunks at once, started from the state that enters it (T Python steps). Nothing of the full
    (B, L, ...) size is made besides ``x`` itself; only products and sums of decays, so nothing
    overflows, and a decay within 1e-6 of 1 or an underflow to 0 is as exact as in the sequential loop.
    """
    batch, length, rest = a.shape[0], a.shape[1], a.shape[2:]
    T = max(1, min(chunk, length))
    n_chunks = -(-length // T)
    pad = n_chunks * T - length
    if pad:  # padded steps (a = 1, x = 0) come after the data: they change nothing before it
        a = torch.cat([a, a.new_ones(batch, pad, *rest)], dim=1)
        x = torch.cat([x, x.new_zeros(batch, pad, *rest)], dim=1)
    a = a.view(batch, n_chunks, T, *rest)
    h = x.view(batch, n_chunks, T, *rest)
    if n_chunks > 1:  # (1) chunk ends, then the carry across chunks
        end, decay = torch.zeros_like(h[:, :, 0]), torch.ones_like(h[:, :, 0])  # (B, L/T, ...)
        for t in range(T - 1, -1, -1) if reverse else range(T):
            if not reverse or t < T - 1:  # the decay that multiplies what came before step t
                a_t = a[:, :, t + 1] if reverse else a[:, :, t]
                end.mul_(a_t)
                decay.mul_(a_t)
            end.add_(h[:, :, t])
        carry = torch.zeros_like(end)  # carry[:, c]: what enters chunk c from the chunk before it
        if not reverse:  # h_{end of c} = end_c + decay_c * carry_c, and a_0 of chunk c multiplies it
            for c in range(1, n_chunks):
                torch.addcmul(end[:, c - 1], decay[:, c - 1], carry[:, c - 1], out=carry[:, c])
            h[:, :, 0].addcmul_(a[:, :, 0], carry)
        else:  # g_{start of c+1} = end_{c+1} + decay_{c+1} carry_{c+1}, sent back times a_{start of c+1}
            for c in range(n_chunks - 2, -1, -1):
                torch.addcmul(end[:, c + 1], decay[:, c + 1], carry[:, c + 1], out=carry[:, c])
                carry[:, c].mul_(a[:, c + 1, 0])
            h[:, :, -1].add_(carry)
    if not reverse:  # (2) the scan inside every chunk, all chunks at once
        for t in range(1, T):
            h[:, :, t].addcmul_(a[:, :, t], h[:, :, t - 1])
    else:
        for t in range(T - 2, -1, -1):
            h[:, :, t].addcmul_(a[:, :, t + 1], h[:, :, t + 1])
    return h.view(batch, n_chunks * T, *rest)[:, :length]


class _ChunkedSelectiveScan(torch.autograd.Function):
    """``y = C_t h_t`` with ``h`` from the chunked scan, and its backward pass written out.

    With ``a_t = exp(delta_t A)``, ``b_t = delta_t u_t B_t`` and ``g_t = dLoss/db_t``:
    ``g_t = C_t dLoss/dy_t + a_{t+1} g_{t+1}`` (the same recurrence, backwards in time), and the
    gradient on ``log a_t = delta_t A`` is ``g_t h_{t-1} a_t``; the rest is the chain rule through
    products, done with einsums and in place, so that the backward pass makes one (B, L, d_inner, d_state)
    tensor (``g``).
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, chunk: int):
        a = (delta.unsqueeze(-1) * A).exp_()  # (batch, L, d_inner, d_state), exp in place
        h = _scan_(a, (delta * u).unsqueeze(-1) * B.unsqueeze(2), chunk)  # b_t, scanned in place
        ctx.save_for_backward(u, delta, A, B, C, a, h)
        ctx.chunk = chunk
        return torch.einsum("bldn,bln->bld", h, C)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        u, delta, A, B, C, a, h = ctx.saved_tensors
        grad_C = torch.einsum("bld,bldn->bln", grad_y, h)
        g = _scan_(a, grad_y.unsqueeze(-1) * C.unsqueeze(2), ctx.chunk, reverse=True)  # dLoss/db_t
        du = delta * u
        grad_du = torch.einsum("bldn,bln->bld", g, B)
        grad_B = torch.einsum("bldn,bld->bln", g, du)
        g[:, 1:].mul_(h[:, :-1])  # g now holds dLoss/d(log a_t) = g_t h_{t-1} a_t (h_{-1} = 0)
        g[:, 0] = 0
        g.mul_(a)
        grad_delta = torch.einsum("bldn,dn->bld", g, A) + grad_du * u
        grad_A = torch.einsum("bldn,bld->dn", g, delta)
        return grad_du * delta, grad_delta, grad_A, grad_B, grad_C, None


def _run_kernel(function, shape: tuple[int, ...], tensors: list[torch.Tensor]) -> None:
    """Call a kernel of ``selective_scan.c`` on ``torch.get_num_threads()`` threads, or raise."""
    if function(torch.get_num_threads(), *shape, *(t.data_ptr() for t in tensors)):
        raise MemoryError("selective_scan(scan='fused'): the kernel could not allocate its work buffers")


class _FusedSelectiveScan(torch.autograd.Function):
    """``y = C_t h_t`` from the fused C kernel (``selective_scan.c``): same equations as the chunked
    scan, but the state stays in cache. Saves only the state entering each chunk (1/chunk of the
    (B, L, d_inner, d_state) size) and recomputes the rest in the backward pass."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, chunk: int):
        if u.device.type != "cpu":
            raise ValueError(f"selective_scan(scan='fused') runs on the CPU; got {u.device} (use 'chunked')")
        for name, t in zip(("delta", "A", "B", "C"), (delta, A, B, C), strict=True):
            if t.dtype != u.dtype or t.device != u.device:
                raise TypeError(
                    f"selective_scan(scan='fused'): {name} is {t.dtype} on {t.device}, u is {u.dtype} "
                    f"on {u.device}; pass all five in one dtype on one device"
                )
        kernel = load_kernel(u.dtype)
        u, delta, A, B, C = (t.detach().contiguous() for t in (u, delta, A, B, C))
        batch, length, d_inner = u.shape
        chunk = max(1, min(chunk, length))
        y = u.new_empty(batch, length, d_inner)
        checkpoints = u.new_empty(batch, -(-length // chunk), d_inner, A.shape[1])  # (B, L/T, D, N)
        shape = (batch, length, d_inner, A.shape[1], chunk)
        _run_kernel(kernel.scan_forward, shape, [u, delta, A, B, C, y, checkpoints])
        ctx.save_for_backward(u, delta, A, B, C, checkpoints)
        ctx.shape = shape
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        u, delta, A, B, C, checkpoints = ctx.saved_tensors
        grads = [torch.empty_like(t) for t in (u, delta)] + [u.new_empty(u.shape[0], *A.shape)]
        grads += [torch.empty_like(B), torch.empty_like(C)]
        tensors = [u, delta, A, B, C, checkpoints, grad_y.contiguous(), *grads]
        _run_kernel(load_kernel(u.dtype).scan_backward, ctx.shape, tensors)
        grad_u, grad_delta, grad_A_rows, grad_B, grad_C = grads
        return grad_u, grad_delta, grad_A_rows.sum(0), grad_B, grad_C, None


def _check_scan_inputs(u, delta, A, B, C, D) -> None:
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be (batch, L, d_inner), got shape {tuple(u.shape)}")
    batch, length, d_inner = u.shape
    d_state = A.shape[-1] if A.dim() == 2 else -1
    expected = {
        "delta": (delta, (batch, length, d_inner)),
        "A": (A, (d_inner, d_state)),
        "B": (B, (batch, length, d_state)),
        "C": (C, (batch, length, d_state)),
    }
    if D is not None:
        expected["D"] = (D, (d_inner,))
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(
                f"selective_scan: {name} must have shape {shape} for u of shape {tuple(u.shape)} "
                f"(A: (d_inner, d_state)), got {tuple(tensor.shape)}"
            )


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    scan: str = "chunked",
    chunk_size: int | None = None,
    *,
    method: str | None = None,
) -> torch.Tensor:
    r"""Mamba's selective SSM: :math:`h_t = e^{\Delta_t A} h_{t-1} + \Delta_t B_t u_t`, :math:`y_t = C_t h_t + D u_t`.

    Shapes: ``u``, ``delta`` (batch, L, d_inner); ``A`` (d_inner, d_state); ``B``, ``C``
    (batch, L, d_state); ``D`` (d_inner,) or None. Returns ``y`` (batch, L, d_inner).

    ``scan="sequential"``: one autograd step per time step (the reference). ``scan="chunked"``:
    the same numbers from a chunked linear-time scan with a reverse-scan backward; ``chunk_size``
    (default about sqrt(L)) trades Python steps inside chunks against steps across them. Both run on
    any device. ``scan="fused"`` (CPU, float32 or float64): the same scan as one C kernel
    (``selective_scan.c``, built once per machine and cached; needs a C compiler the first time) that
    keeps the state in cache and stores only one state per chunk of ``chunk_size`` days for the
    backward pass. ``method=`` is the old name of ``scan=`` (kept for one release, with a FutureWarning).
    """
    if method is not None:
        warnings.warn(
            "selective_scan(method=...) is now selective_scan(scan=...), the name FinancialMamba uses; "
            "method= is kept for one release",
            FutureWarning,
            stacklevel=2,
        )
        scan = method
    if scan not in SCANS:
        raise ValueError(f"unknown scan method {scan!r}; choose from {SCANS}")
    _check_scan_inputs(u, delta, A, B, C, D)
    if scan == "sequential":
        dA = torch.exp(delta.unsqueeze(-1) * A)  # (batch, L, d_inner, d_state)
        dBu = (delta * u).unsqueeze(-1) * B.unsqueeze(2)  # (batch, L, d_inner, d_state)
        h, states = torch.zeros_like(dBu[:, 0]), []
        for a_t, b_t in zip(dA.unbind(1), dBu.unbind(1), strict=True):  # unbind, never x[:, t] in a loop
            h = a_t * h + b_t
            states.append(h)
        y = torch.einsum("bldn,bln->bld", torch.stack(states, dim=1), C)  # C_t h_t
    else:
        chunk = chunk_size or max(1, math.isqrt(u.shape[1]))
        function = _ChunkedSelectiveScan if scan == "chunked" else _FusedSelectiveScan
        y = function.apply(u, delta, A, B, C, chunk)
    return y if D is None else y + D * u


def selective_scan_step(
    state: torch.Tensor,
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of :func:`selective_scan`: ``state`` (batch, d_inner, d_state), ``u``, ``delta``
    (batch, d_inner), ``B``, ``C`` (batch, d_state) -> ``(y (batch, d_inner), new state)``."""
    state = torch.exp(delta.unsqueeze(-1) * A) * state + (delta * u).unsqueeze(-1) * B.unsqueeze(1)
    y = torch.einsum("bdn,bn->bd", state, C)
    return (y if D is None else y + D * u), state
