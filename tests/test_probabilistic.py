"""CRPS and the weighted quantile loss (course_lib.evaluation.probabilistic) against closed forms,
numerical integration and an independent library (scoringrules)."""

import numpy as np
import pytest
import scoringrules
from scipy import integrate, stats

from course_lib.evaluation.probabilistic import (
    crps_gaussian,
    crps_quantiles,
    crps_samples,
    crps_student_t,
    pinball,
    weighted_quantile_loss,
)

RNG = np.random.default_rng(0)
Y, MU, SIGMA = RNG.normal(size=6), RNG.normal(size=6), np.exp(RNG.normal(size=6))


def crps_by_integration(cdf, y):
    """int (F(x) - 1{y <= x})^2 dx, the definition, by quadrature on each side of y."""
    left = integrate.quad(lambda x: cdf(x) ** 2, -np.inf, y, limit=200)[0]
    right = integrate.quad(lambda x: (1 - cdf(x)) ** 2, y, np.inf, limit=200)[0]
    return left + right


def test_gaussian_crps_equals_the_definition_and_scoringrules():
    ours = crps_gaussian(Y, MU, SIGMA)
    by_definition = [
        crps_by_integration(stats.norm(m, s).cdf, y) for y, m, s in zip(Y, MU, SIGMA, strict=True)
    ]
    np.testing.assert_allclose(ours, by_definition, rtol=1e-6)
    np.testing.assert_allclose(ours, scoringrules.crps_normal(Y, MU, SIGMA), rtol=1e-12)


@pytest.mark.parametrize("df", [1.5, 3.0, 8.0])
def test_student_t_crps_equals_the_definition_and_tends_to_the_gaussian(df):
    ours = crps_student_t(Y, MU, SIGMA, df)
    by_definition = [
        crps_by_integration(stats.t(df, m, s).cdf, y) for y, m, s in zip(Y, MU, SIGMA, strict=True)
    ]
    np.testing.assert_allclose(ours, by_definition, rtol=1e-5)
    np.testing.assert_allclose(ours, scoringrules.crps_t(Y, df, MU, SIGMA), rtol=1e-10)
    np.testing.assert_allclose(crps_student_t(Y, MU, SIGMA, 1e7), crps_gaussian(Y, MU, SIGMA), rtol=1e-6)


def test_sample_crps_is_scoringrules_energy_estimate_and_converges_to_the_closed_form():
    small = RNG.normal(size=(6, 7))
    np.testing.assert_allclose(
        crps_samples(Y, small), scoringrules.crps_ensemble(Y, small, estimator="nrg"), rtol=1e-12
    )
    draws = MU[:, None] + SIGMA[:, None] * RNG.standard_normal((6, 20_000))
    np.testing.assert_allclose(crps_samples(Y, draws), crps_gaussian(Y, MU, SIGMA), rtol=0.03)


def test_quantile_crps_converges_to_the_closed_form_and_wql_is_its_scaled_sum():
    levels = (np.arange(2000) + 0.5) / 2000
    q = MU[:, None] + SIGMA[:, None] * stats.norm.ppf(levels)
    np.testing.assert_allclose(crps_quantiles(Y, q, levels), crps_gaussian(Y, MU, SIGMA), rtol=1e-3)
    deciles = np.arange(1, 10) / 10
    qd = MU[:, None] + SIGMA[:, None] * stats.norm.ppf(deciles)
    np.testing.assert_allclose(
        weighted_quantile_loss(Y, qd, deciles), crps_quantiles(Y, qd, deciles).sum() / np.abs(Y).sum()
    )


def test_pinball_by_hand_and_a_proper_score_prefers_the_truth():
    np.testing.assert_allclose(pinball([1.0], [[0.0, 2.0]], [0.1, 0.9]), [[0.1, 0.1]])
    y = RNG.normal(size=20_000)  # outcomes from N(0, 1)
    truth, too_narrow = crps_gaussian(y, 0.0, 1.0).mean(), crps_gaussian(y, 0.0, 0.5).mean()
    assert truth < too_narrow


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="sigma"):
        crps_gaussian(Y, MU, -SIGMA)
    with pytest.raises(ValueError, match="df > 1"):
        crps_student_t(Y, MU, SIGMA, 1.0)
    with pytest.raises(ValueError, match="samples must be"):
        crps_samples(Y, RNG.normal(size=(5, 3)))
    with pytest.raises(ValueError, match="levels"):
        crps_quantiles(Y[:1], [[0.0, 1.0]], [0.9, 0.1])
