"""How strong would a hidden confounder have to be? (chapter 06f)

* :func:`e_value`: VanderWeele & Ding (2017). For a risk ratio RR >= 1, E = RR + sqrt(RR (RR - 1)): the
  minimum strength of association, on the risk-ratio scale, that a confounder needs with both the
  treatment and the outcome to explain the estimate away. For a continuous outcome, the standardised
  effect d = estimate / sd(y) gives RR ~ exp(0.91 d) (VanderWeele & Ding's approximation).
* :func:`robustness_value`, :func:`omitted_variable_bias`, :func:`partial_r2`: Cinelli & Hazlett
  (2020, JRSS-B), for a linear regression of y on (D, X) with residual degrees of freedom ``dof``.
  A confounder Z with partial R^2 ``r2_yz`` = R^2(Y ~ Z | D, X) and ``r2_dz`` = R^2(D ~ Z | X) changes
  the coefficient of D by exactly

      |bias| = se(D) * sqrt(dof * r2_yz * r2_dz / (1 - r2_dz)),

  and the robustness value RV_q = (sqrt(f^4 + 4 f^2) - f^2) / 2 with f = q |t| / sqrt(dof) is the
  strength (the same partial R^2 with both) that would reduce the estimate by 100 q %.
"""

import numpy as np
from scipy import stats

__all__ = ["e_value", "omitted_variable_bias", "partial_r2", "robustness_value"]


def _e_of_rr(rr: float) -> float:
    rr = 1 / rr if rr < 1 else rr
    return float(rr + np.sqrt(rr * (rr - 1)))


def e_value(estimate: float, sd_outcome: float, lower: float | None = None, upper: float | None = None):
    """E-values of a difference in means on a continuous outcome: (point, interval limit nearest the null).

    RR = exp(0.91 * estimate / sd_outcome); the second value is 1 when the interval contains 0.
    """
    if sd_outcome <= 0:
        raise ValueError(f"sd_outcome must be > 0, got {sd_outcome}")
    point = _e_of_rr(np.exp(0.91 * estimate / sd_outcome))
    if lower is None or upper is None:
        return point, None
    if lower <= 0 <= upper:
        return point, 1.0
    nearest = lower if estimate > 0 else upper
    return point, _e_of_rr(np.exp(0.91 * nearest / sd_outcome))


def robustness_value(t_stat: float, dof: float, q: float = 1.0, alpha: float | None = None) -> float:
    """Cinelli-Hazlett RV_q (``alpha`` None) or RV_{q, alpha}: the partial R^2 with treatment and outcome
    a confounder needs to cut the estimate by 100 q % (or to make it insignificant at level alpha)."""
    if dof <= 1 or q <= 0:
        raise ValueError(f"need dof > 1 and q > 0, got dof={dof}, q={q}")
    f = q * abs(t_stat) / np.sqrt(dof)
    if alpha is not None:
        f = f - stats.t.ppf(1 - alpha / 2, dof - 1) / np.sqrt(dof - 1)
        if f <= 0:
            return 0.0
    return float((np.sqrt(f**4 + 4 * f**2) - f**2) / 2)


def omitted_variable_bias(se: float, dof: float, r2_yz: float, r2_dz: float) -> float:
    """|bias| of the treatment coefficient from leaving out Z, from its two partial R^2 (exact in sample)."""
    if not (0 <= r2_yz <= 1 and 0 <= r2_dz < 1):
        raise ValueError(f"partial R^2 must lie in [0, 1) (r2_dz < 1), got r2_yz={r2_yz}, r2_dz={r2_dz}")
    return float(se * np.sqrt(dof * r2_yz * r2_dz / (1 - r2_dz)))


def partial_r2(y, z, controls) -> float:
    """R^2 of y on z after both are residualised on (1, controls) (Frisch-Waugh-Lovell)."""
    y, z, C = np.asarray(y, float), np.asarray(z, float), np.asarray(controls, float)
    C = np.column_stack([np.ones(len(y)), C.reshape(len(y), -1)])
    ry = y - C @ np.linalg.lstsq(C, y, rcond=None)[0]
    rz = z - C @ np.linalg.lstsq(C, z, rcond=None)[0]
    return float((ry @ rz) ** 2 / ((ry @ ry) * (rz @ rz)))
