r"""The algebra behind every fast scan, and the selective scan as one matrix (chapter 06a).

**An associative operator.** One step of a linear recurrence :math:`h_t = a_t h_{t-1} + b_t` is the
affine map :math:`h \mapsto a_t h + b_t`, stored as the pair :math:`(a_t, b_t)`. Doing one map and then
another is again such a map:

.. math::  (a_1, b_1) \circ (a_2, b_2) = (a_1 a_2,\; a_2 b_1 + b_2),

and composing maps is associative, so the states :math:`h_t = ((a_0, b_0) \circ \dots \circ (a_t, b_t))_b`
(from :math:`h_{-1} = 0`) are the *prefix sums* of the pairs under :func:`combine`. Any bracketing gives
the same result: :func:`prefix_scan` uses the Hillis-Steele (1986) bracketing, :math:`\lceil \log_2 L \rceil`
rounds that each combine every position with the one ``2^r`` steps back (Blelloch 1990 does it in
about :math:`2L` combines instead of :math:`L \log_2 L`). The chunked scan of :mod:`.selective_scan` is
the bracketing "inside each chunk, then across chunk ends"; the fused scan is the same bracketing with
the state kept in cache. (Martin & Cundy 2018 first used this to parallelise linear RNNs; S5 and Mamba
scan this way.)

**The scan as a matrix** (Mamba-2, Dao & Gu 2024, "Transformers are SSMs", arXiv:2405.21060, state space
duality). Unrolled, the selective scan is :math:`y = M u` per channel with the lower-triangular
(semiseparable) matrix

.. math::  M_{ts} = \sum_n C_{t,n}\, e^{A_n \sum_{r=s+1}^{t} \Delta_r}\, \Delta_s B_{s,n}  \quad (s \le t),

and when :math:`A` is one scalar per channel (Mamba-2's choice) this is
:math:`M = \mathcal{L} \circ (C B^\top)` with :math:`\mathcal{L}_{ts} = e^{A \sum_{r=s+1}^t \Delta_r}`:
masked linear attention, with :math:`C` as queries, :math:`B` as keys and a decaying mask.
:func:`selective_scan_matrix` builds it; it costs :math:`O(L^2)` memory, so it is for checking, not for
long windows.
"""

import torch

__all__ = ["combine", "prefix_scan", "selective_scan_matrix"]


def combine(
    first: tuple[torch.Tensor, torch.Tensor], second: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``first`` then ``second``, as affine maps ``h -> a h + b``: ``(a1 a2, a2 b1 + b2)``. Elementwise."""
    (a1, b1), (a2, b2) = first, second
    return a1 * a2, a2 * b1 + b2


def prefix_scan(a: torch.Tensor, b: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """The states ``h_t = a_t h_{t-1} + b_t`` (``h_{-1} = 0``) along ``dim``, by a Hillis-Steele parallel scan.

    ``a`` and ``b`` of one shape; returns that shape. Round ``r`` replaces the pair at ``t`` by
    ``combine(pair[t - 2^r], pair[t])`` for every ``t >= 2^r`` at once: ``ceil(log2 L)`` rounds of
    whole-tensor operations instead of ``L`` sequential steps (and ``O(L log L)`` combines in all).
    """
    if a.shape != b.shape:
        raise ValueError(
            f"prefix_scan: a and b must have one shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    a, b = a.movedim(dim, 0), b.movedim(dim, 0)
    length, offset = a.shape[0], 1
    while offset < length:
        new_a, new_b = combine((a[:-offset], b[:-offset]), (a[offset:], b[offset:]))
        a = torch.cat([a[:offset], new_a])  # out of place: every position reads the previous round
        b = torch.cat([b[:offset], new_b])
        offset *= 2
    return b.movedim(0, dim)


def selective_scan_matrix(
    delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> torch.Tensor:
    r"""The matrix ``M`` (batch, d_inner, L, L) with ``y[b, :, d] = M[b, d] @ u[b, :, d]`` for
    :func:`~.selective_scan.selective_scan` without ``D``: :math:`M_{ts} = \sum_n C_{tn}
    e^{A_{dn} \sum_{s<r\le t} \Delta_r} \Delta_s B_{sn}` below the diagonal, 0 above.

    Shapes as in ``selective_scan``: ``delta`` (batch, L, d_inner), ``A`` (d_inner, d_state), ``B``,
    ``C`` (batch, L, d_state). Builds a (batch, d_inner, d_state, L, L) tensor: for short windows only.
    """
    length = delta.shape[1]
    total = torch.cumsum(delta, dim=1).transpose(1, 2)  # (batch, D, L): sum_{r <= t} delta_r
    gap = total.unsqueeze(-1) - total.unsqueeze(-2)  # (batch, D, L, L): sum_{s < r <= t} delta_r
    causal = torch.ones(length, length, dtype=torch.bool, device=delta.device).tril()
    gap = gap.masked_fill(~causal, 0.0)  # above the diagonal s > t: no decay is computed there ...
    decay = torch.exp(A[None, :, :, None, None] * gap.unsqueeze(2))  # (batch, D, N, L, L)
    decay = decay.masked_fill(~causal, 0.0)  # ... and M is 0: day t never reads a later day s
    return torch.einsum("btn,bdnts,bsn,bsd->bdts", C, decay, B, delta)
