r"""HiPPO-LegS: the state matrix behind S4, and the memory it gives (chapter 06a).

HiPPO (Gu, Dao, Ermon, Rudra & Re 2020, "HiPPO: Recurrent Memory with Optimal Polynomial
Projections", arXiv:2008.07669) asks for a state :math:`c(t) \in \mathbb{R}^N` that holds the best
degree-:math:`N-1` polynomial approximation of the whole past :math:`f(s), 0 \le s \le t`, under the
uniform measure on :math:`[0, t]` (*LegS*: Legendre, scaled). Its Theorem 2 gives the linear ODE

.. math::  c'(t) = -\tfrac1t A c(t) + \tfrac1t B f(t), \qquad
   A_{nk} = \begin{cases} \sqrt{2n+1}\sqrt{2k+1} & n > k \\ n + 1 & n = k \\ 0 & n < k \end{cases},
   \qquad B_n = \sqrt{2n+1},

written here, as in S4, with the sign inside: :func:`hippo_legs` returns :math:`-A` and :math:`B`, so
the ODE reads :math:`c' = \tfrac1t (A c + B f)` with a stable :math:`A`. The past is read back as

.. math::  f(s) \approx \sum_{n<N} c_n(t)\, \sqrt{2n+1}\, P_n\!\left(\tfrac{2s}{t} - 1\right),

with :math:`P_n` the Legendre polynomials (:func:`legendre_reconstruction`).

S4 (Gu, Goel & Re 2022) writes this :math:`A` as *normal plus low rank*: :math:`A = A_N - P P^\top`
with :math:`P_n = \sqrt{n + 1/2}` and :math:`A_N = -\tfrac12 I + S`, :math:`S` skew-symmetric
(:func:`legs_normal_plus_low_rank`); diagonalising :math:`A_N` gives the DPLR form, and S4D keeps only
the diagonal, whose eigenvalues have real part :math:`-\tfrac12` (S4D-Lin's :math:`-\tfrac12 + i\pi n`
approximates them).

Shapes: ``f`` (L,), ``A`` (N, N), ``B`` (N,), states (L, N). Everything is float64.
"""

import torch

__all__ = ["hippo_legs", "legendre_reconstruction", "legs_normal_plus_low_rank", "legs_states"]


def hippo_legs(N: int) -> tuple[torch.Tensor, torch.Tensor]:
    r"""HiPPO-LegS's ``(A, B)`` with the sign of S4: :math:`A_{nk} = -\sqrt{2n+1}\sqrt{2k+1}` for
    :math:`n > k`, :math:`-(n+1)` for :math:`n = k`, 0 above; :math:`B_n = \sqrt{2n+1}`. (N, N) and (N,)."""
    if N < 1:
        raise ValueError(f"hippo_legs: N (the number of Legendre coefficients) must be >= 1, got {N}")
    s = torch.sqrt(2 * torch.arange(N, dtype=torch.float64) + 1)  # sqrt(2n+1)
    A = -torch.tril(torch.outer(s, s), diagonal=-1) - torch.diag(torch.arange(1, N + 1, dtype=torch.float64))
    return A, s.clone()


def legs_normal_plus_low_rank(N: int) -> tuple[torch.Tensor, torch.Tensor]:
    r"""S4's split of :func:`hippo_legs`'s ``A`` as :math:`A_N - P P^\top`: returns ``(A_N (N, N), P (N,))``
    with :math:`P_n = \sqrt{n + 1/2}`; :math:`A_N + \tfrac12 I` is skew-symmetric, so :math:`A_N` is normal."""
    A, _ = hippo_legs(N)
    P = torch.sqrt(torch.arange(N, dtype=torch.float64) + 0.5)
    return A + torch.outer(P, P), P


def legs_states(f: torch.Tensor, N: int) -> torch.Tensor:
    r"""The LegS state after each day of ``f`` (L,): (L, N), row ``k`` holds :math:`c(t)` at :math:`t = k + 1`.

    Day ``k`` of ``f`` is the value on :math:`[k, k+1)`. Started at :math:`t = 1` from the projection of
    the first day (:math:`c = (f_0, 0, \dots)`), each step from :math:`t` to :math:`t + 1` is the
    bilinear (trapezoid) rule on :math:`c' = \tfrac1t (A c + B f)` at the midpoint
    :math:`\tau = t + \tfrac12`: :math:`(I - \tfrac{A}{2\tau}) c_{t+1} = (I + \tfrac{A}{2\tau}) c_t + \tfrac{B}{\tau} f_t`.
    """
    if f.dim() != 1 or len(f) == 0:
        raise ValueError(f"legs_states: f must be a non-empty 1-D series (L,), got shape {tuple(f.shape)}")
    A, B = hippo_legs(N)
    f = f.to(torch.float64)
    eye = torch.eye(N, dtype=torch.float64)
    c = torch.zeros(N, dtype=torch.float64)
    c[0] = f[0]
    states = [c]
    for k in range(1, len(f)):
        tau = k + 0.5
        rhs = (eye + A / (2 * tau)) @ c + B * f[k] / tau
        c = torch.linalg.solve_triangular(eye - A / (2 * tau), rhs.unsqueeze(-1), upper=False).squeeze(-1)
        states.append(c)
    return torch.stack(states)


def legendre_reconstruction(c: torch.Tensor, length: int) -> torch.Tensor:
    r"""The past read back from one LegS state ``c`` (N,): (length,), the value
    :math:`\sum_n c_n \sqrt{2n+1} P_n(2s/t - 1)` at the middle :math:`s = k + \tfrac12` of each day
    :math:`k < t = ` ``length``."""
    x = 2 * (torch.arange(length, dtype=torch.float64) + 0.5) / length - 1  # in (-1, 1)
    p_prev, p = torch.zeros_like(x), torch.ones_like(x)  # P_{-1}, P_0
    out = torch.zeros_like(x)
    for n in range(len(c)):  # Bonnet: (n + 1) P_{n+1} = (2n + 1) x P_n - n P_{n-1}
        out += c[n] * (2 * n + 1) ** 0.5 * p
        p_prev, p = p, ((2 * n + 1) * x * p - n * p_prev) / (n + 1)
    return out
