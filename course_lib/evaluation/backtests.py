"""Backtests of a sequence of misses (VaR violations, interval misses): is the miss rate right, and
are the misses independent from one day to the next?

* :func:`kupiec_test`: Kupiec's (1995) proportion of failures. With ``x`` misses in ``n`` days and
  ``pi = x / n``,  LR_pof = -2 [ log L(alpha) - log L(pi) ],  L(p) = (1 - p)^(n - x) p^x,  chi2(1).
* :func:`christoffersen_test`: Christoffersen's (1998) independence test. The misses as a first-order
  Markov chain with ``pi_01 = P(miss | hit yesterday)`` and ``pi_11 = P(miss | miss yesterday)``:
  LR_ind = -2 [ log L(pi) - log L(pi_01, pi_11) ],  chi2(1); conditional coverage
  LR_cc = LR_pof + LR_ind,  chi2(2). Misses that cluster (a band too narrow for days in a row) give
  pi_11 >> pi_01 and a small ``p_ind``.

Used by chapter 06d (interval misses) and chapter 08 (VaR violations); numpy and scipy only.
"""

import numpy as np
from scipy import stats


def kupiec_test(hits, alpha: float) -> tuple[float, float]:
    """Kupiec's (1995) proportion-of-failures LR test: is the violation rate ``alpha``? (LR, p), chi2(1)."""
    hits = np.asarray(hits, dtype=bool)
    n, x = len(hits), int(hits.sum())
    if n == 0:
        raise ValueError("kupiec_test: no observations to test (hits is empty)")
    pi = x / n

    def loglik(p):
        return (
            (n - x) * np.log1p(-p) + (x * np.log(p) if x else 0.0) if p < 1 else (0.0 if x == n else -np.inf)
        )

    lr = -2.0 * (loglik(alpha) - loglik(pi))
    return float(lr), float(stats.chi2.sf(lr, 1))


def christoffersen_test(hits, alpha: float) -> dict:
    """Christoffersen's (1998) tests of a miss sequence: independence (a first-order Markov chain
    against independence) and conditional coverage (Kupiec + independence), chi2(1) and chi2(2).

    Returns ``LR_ind``, ``p_ind``, ``LR_cc``, ``p_cc`` and ``n11`` (the number of misses that follow
    a miss).
    """
    hits = np.asarray(hits, dtype=int)
    prev, cur = hits[:-1], hits[1:]
    n00, n01 = int(np.sum((prev == 0) & (cur == 0))), int(np.sum((prev == 0) & (cur == 1)))
    n10, n11 = int(np.sum((prev == 1) & (cur == 0))), int(np.sum((prev == 1) & (cur == 1)))

    def xlogy(a, b):
        return a * np.log(b) if a > 0 else 0.0

    pi01 = n01 / max(n00 + n01, 1)
    pi11 = n11 / max(n10 + n11, 1)
    pi = (n01 + n11) / max(n00 + n01 + n10 + n11, 1)
    l_markov = xlogy(n00, 1 - pi01) + xlogy(n01, pi01) + xlogy(n10, 1 - pi11) + xlogy(n11, pi11)
    l_iid = xlogy(n00 + n10, 1 - pi) + xlogy(n01 + n11, pi)
    lr_ind = float(-2.0 * (l_iid - l_markov))
    lr_pof, _ = kupiec_test(hits, alpha)
    lr_cc = lr_pof + lr_ind
    return {
        "LR_ind": lr_ind,
        "p_ind": float(stats.chi2.sf(lr_ind, 1)),
        "LR_cc": lr_cc,
        "p_cc": float(stats.chi2.sf(lr_cc, 2)),
        "n11": n11,
    }
