"""The theory of chapter 06a checked in numbers: HiPPO-LegS (course_lib.models.ops.hippo), the scan's
associative operator and parallel prefix scan, the selective scan as a semiseparable matrix
(course_lib.models.ops.scan_algebra) and Mamba's Theorem 1 (a one-state selective SSM is a gated
recurrence)."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib.models.ops.hippo import (
    hippo_legs,
    legendre_reconstruction,
    legs_normal_plus_low_rank,
    legs_states,
)
from course_lib.models.ops.scan_algebra import combine, prefix_scan, selective_scan_matrix
from course_lib.models.ops.selective_scan import selective_scan

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------ HiPPO-LegS


def test_hippo_legs_matrices_are_those_of_the_paper():
    A, B = hippo_legs(4)
    s = [math.sqrt(2 * n + 1) for n in range(4)]
    for n in range(4):
        assert B[n] == pytest.approx(s[n], abs=1e-15)
        for k in range(4):
            expected = -s[n] * s[k] if n > k else (-(n + 1) if n == k else 0.0)
            assert A[n, k] == pytest.approx(expected, abs=1e-14), (n, k)
    # lower triangular with diagonal -(n+1): the eigenvalues are -1, ..., -N, Mamba's S4D-Real A
    torch.testing.assert_close(
        torch.linalg.eigvals(hippo_legs(8)[0]).real.sort().values, -torch.arange(8, 0, -1, dtype=F64)
    )
    with pytest.raises(ValueError, match="N"):
        hippo_legs(0)


def test_legs_is_normal_plus_low_rank_with_real_part_one_half():
    A, _ = hippo_legs(10)
    A_normal, P = legs_normal_plus_low_rank(10)
    torch.testing.assert_close(A_normal - torch.outer(P, P), A)
    S = A_normal + 0.5 * torch.eye(10, dtype=F64)
    torch.testing.assert_close(S, -S.T, rtol=0, atol=1e-14)  # skew-symmetric
    torch.testing.assert_close(torch.linalg.eigvals(A_normal).real, torch.full((10,), -0.5, dtype=F64))


def _smooth_signal(length: int) -> torch.Tensor:
    s = torch.arange(length, dtype=F64) + 0.5
    return torch.sin(2 * math.pi * s / 400) + 0.5 * torch.cos(2 * math.pi * s / 170)


def test_the_legs_state_holds_the_legendre_coefficients_of_the_past():
    f = _smooth_signal(1000)
    errors = {}
    for N in (4, 8, 16, 32):
        c = legs_states(f, N)
        assert c.shape == (1000, N)
        for t in (500, 1000):  # the whole past up to t, read back from the state at t alone
            past = f[:t]
            errors[N, t] = ((legendre_reconstruction(c[t - 1], t) - past).norm() / past.norm()).item()
    assert errors[32, 500] < 1e-3 and errors[32, 1000] < 1e-3, errors
    for t in (500, 1000):  # more coefficients, a better memory
        assert errors[4, t] > errors[8, t] > errors[16, t] > errors[32, t], errors


def test_the_legs_state_is_the_projection_for_a_polynomial():
    # f(s) = s / t over the first t days has exactly two Legendre coefficients: c_0 = 1/2,
    # c_1 = 1 / (2 sqrt 3); the ODE's state must find them (up to the discretisation)
    t = 2000
    f = (torch.arange(t, dtype=F64) + 0.5) / t
    c = legs_states(f, 4)[-1]
    torch.testing.assert_close(c, torch.tensor([0.5, 0.5 / math.sqrt(3), 0, 0], dtype=F64), rtol=0, atol=1e-4)


def test_legs_states_refuses_a_table():
    with pytest.raises(ValueError, match="1-D"):
        legs_states(torch.zeros(3, 2), 4)


# ------------------------------------------------------------------------- the scan as an operator


def _sequential(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    h, states = torch.zeros_like(b[:, 0]), []
    for a_t, b_t in zip(a.unbind(1), b.unbind(1), strict=True):
        h = a_t * h + b_t
        states.append(h)
    return torch.stack(states, 1)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_combine_is_associative_and_is_composition_of_affine_maps(seed):
    a, b = torch.randn(2, 3, 5, generator=_gen(seed), dtype=F64).unbind(0)
    pairs = list(zip(a.unbind(0), b.unbind(0), strict=True))
    left = combine(combine(pairs[0], pairs[1]), pairs[2])
    right = combine(pairs[0], combine(pairs[1], pairs[2]))
    for x, y in zip(left, right, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)
    h = torch.randn(5, generator=_gen(seed + 1), dtype=F64)
    (a12, b12) = combine(pairs[0], pairs[1])
    torch.testing.assert_close(a12 * h + b12, pairs[1][0] * (pairs[0][0] * h + pairs[0][1]) + pairs[1][1])


@settings(max_examples=30, deadline=None)
@given(length=st.integers(1, 70), seed=st.integers(0, 10_000))
def test_prefix_scan_equals_the_sequential_scan(length, seed):
    a = torch.rand(2, length, 3, generator=_gen(seed), dtype=F64)
    b = torch.randn(2, length, 3, generator=_gen(seed + 1), dtype=F64)
    out = prefix_scan(a, b)
    assert out.shape == b.shape and out.dtype == b.dtype
    torch.testing.assert_close(out, _sequential(a, b), rtol=0, atol=1e-12)


def test_prefix_scan_along_another_axis_and_with_decays_at_one_and_zero():
    a = torch.tensor([[1.0, 1.0, 0.0, 1 - 1e-9, 0.5]], dtype=F64)
    b = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]], dtype=F64)
    torch.testing.assert_close(prefix_scan(a.T, b.T, dim=0), _sequential(a, b).T, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="one shape"):
        prefix_scan(a, b[:, :3])


# ------------------------------------------------------------------- state space duality (Mamba-2)


def _scan_args(batch=2, length=11, d_inner=3, d_state=4, seed=0):
    g = _gen(seed)
    u = torch.randn(batch, length, d_inner, generator=g, dtype=F64)
    delta = torch.rand(batch, length, d_inner, generator=g, dtype=F64)
    A = -2 * torch.rand(d_inner, d_state, generator=g, dtype=F64) - 0.01
    B = torch.randn(batch, length, d_state, generator=g, dtype=F64)
    C = torch.randn(batch, length, d_state, generator=g, dtype=F64)
    return u, delta, A, B, C


def test_the_selective_scan_is_a_lower_triangular_matrix():
    u, delta, A, B, C = _scan_args()
    M = selective_scan_matrix(delta, A, B, C)
    assert M.shape == (2, 3, 11, 11)
    assert (M.triu(1) == 0).all()  # causal
    y = torch.einsum("bdts,bsd->btd", M, u)
    torch.testing.assert_close(y, selective_scan(u, delta, A, B, C, scan="sequential"), rtol=0, atol=1e-12)


def test_with_one_decay_per_channel_the_matrix_is_masked_attention():
    u, delta, A, B, C = _scan_args(seed=3)
    A = A[:, :1].expand(-1, 4).contiguous()  # Mamba-2: one scalar A per channel
    M = selective_scan_matrix(delta, A, B, C)
    total = torch.cumsum(delta, 1).transpose(1, 2)  # (batch, D, L)
    mask = torch.exp(A[:, 0, None, None] * (total.unsqueeze(-1) - total.unsqueeze(-2))).tril()  # L
    attention = torch.einsum("btn,bsn->bts", C, B).unsqueeze(1) * delta.transpose(1, 2).unsqueeze(2)  # C B^T
    torch.testing.assert_close(M, mask * attention, rtol=0, atol=1e-12)


def test_the_matrix_does_not_overflow_for_large_steps():
    u, delta, A, B, C = _scan_args(length=40, seed=1)
    M = selective_scan_matrix(delta * 100, A * 10, B, C)
    assert torch.isfinite(M).all()


# ------------------------------------------------------------- Mamba's Theorem 1: a gated recurrence


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_state_selective_ssm_is_a_gated_recurrence(seed):
    # Gu & Dao 2023, Theorem 1: N = 1, A = -1, B = 1, Delta = softplus(z) with the ZOH input factor
    # B-bar = (1 - exp(-Delta)): h_t = (1 - g_t) h_{t-1} + g_t x_t with g_t = sigmoid(z_t)
    g = _gen(seed)
    x = torch.randn(3, 50, 2, generator=g, dtype=F64)
    z = 3 * torch.randn(3, 50, 2, generator=g, dtype=F64)
    delta = F.softplus(z)
    gate = torch.sigmoid(z)
    torch.testing.assert_close(-torch.expm1(-delta), gate, rtol=1e-12, atol=1e-15)  # 1 - e^-Delta = g
    ones = torch.ones(3, 50, 1, dtype=F64)
    u_zoh = x * -torch.expm1(-delta) / delta  # the scan's input term Delta * u becomes B-bar * x
    y = selective_scan(u_zoh, delta, -torch.ones(2, 1, dtype=F64), ones, ones, scan="sequential")
    h, gated = torch.zeros(3, 2, dtype=F64), []
    for g_t, x_t in zip(gate.unbind(1), x.unbind(1), strict=True):
        h = (1 - g_t) * h + g_t * x_t
        gated.append(h)
    torch.testing.assert_close(y, torch.stack(gated, 1), rtol=0, atol=1e-12)
