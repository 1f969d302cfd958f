"""Tests of EnbPI (course_lib.evaluation.conformal.EnbPI, Xu & Xie 2021) and of the moving-block
bootstrap it resamples with."""

import numpy as np
import pytest

from course_lib.evaluation.conformal import EnbPI, conformal_quantile, coverage, moving_block_indices


def least_squares(X, y):
    """The model EnbPI wraps: ordinary least squares with an intercept, returned as predict(X)."""
    A = np.column_stack([X, np.ones(len(X))])
    coef = np.linalg.lstsq(A, y, rcond=None)[0]
    return lambda Z: np.column_stack([Z, np.ones(len(Z))]) @ coef


def linear_data(n, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    return X, X @ np.array([1.0, -2.0, 0.5]) + rng.standard_normal(n)


# ---------------------------------------------------------------------------------------------
# The moving-block bootstrap
# ---------------------------------------------------------------------------------------------


def test_moving_block_indices_are_blocks_of_consecutive_points():
    idx = moving_block_indices(103, 10, np.random.default_rng(0))
    assert idx.shape == (103,) and idx.min() >= 0 and idx.max() < 103
    blocks = [idx[i : i + 10] for i in range(0, 100, 10)]
    assert all(np.array_equal(b, np.arange(b[0], b[0] + 10)) for b in blocks)
    assert len({int(b[0]) for b in blocks}) > 1  # the starts are drawn, not fixed


@pytest.mark.parametrize("block", [0, 11, 2.5])
def test_moving_block_indices_rejects_a_bad_block(block):
    with pytest.raises(ValueError, match="block"):
        moving_block_indices(10, block, np.random.default_rng(0))


# ---------------------------------------------------------------------------------------------
# Out-of-bag residuals and the centre
# ---------------------------------------------------------------------------------------------


def test_residuals_come_only_from_models_that_never_saw_the_point():
    """With a model that predicts the mean of its training labels, f_{-i} is computable by hand."""
    y = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    X = np.zeros((6, 1))
    resamples = [np.array([0, 1, 2, 0, 1, 2]), np.array([3, 4, 5, 3, 4, 5]), np.array([0, 5, 0, 5, 0, 5])]

    def mean_model(X_, y_):
        m = float(y_.mean())
        return lambda Z: np.full(len(Z), m)

    enbpi = EnbPI(mean_model).fit_ensemble(X, y, resamples=resamples)
    means = [1.0, 4.0, 2.5]  # the three models' predictions
    oob = [[1], [1, 2], [1, 2], [0, 2], [0, 2], [0]]  # models that left point i out
    expected = [y[i] - np.mean([means[b] for b in oob[i]]) for i in range(6)]
    np.testing.assert_allclose(enbpi.residuals, expected)
    # the centre is the mean over i of f_{-i}(x), a weighted mean of the three models
    centre = np.mean([np.mean([means[b] for b in oob[i]]) for i in range(6)])
    np.testing.assert_allclose(enbpi.predict(np.zeros((2, 1))), [centre, centre])


def test_a_point_inside_every_resample_gets_no_residual():
    X, y = linear_data(50, 0)
    everywhere = [np.r_[np.arange(0, 50, 2), np.arange(0, 50, 2)][:50], np.r_[0, np.arange(1, 50, 2)]]
    enbpi = EnbPI(least_squares).fit_ensemble(X, y, resamples=everywhere)
    assert enbpi.n_without_residual == 1 and len(enbpi.residuals) == 49
    with pytest.raises(ValueError, match="out-of-bag"):
        EnbPI(least_squares).fit_ensemble(X, y, resamples=[np.arange(50), np.arange(50)])


# ---------------------------------------------------------------------------------------------
# Coverage and the window
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("symmetric", [True, False])
def test_coverage_is_near_nominal_on_exchangeable_data(symmetric):
    X, y = linear_data(3600, 1)
    enbpi = EnbPI(least_squares, alpha=0.1, n_models=20, block=10, symmetric=symmetric, seed=0)
    enbpi.fit_ensemble(X[:600], y[:600])
    lower, upper = enbpi.predict_interval(X[600:], y[600:])
    assert abs(coverage(y[600:], lower, upper) - 0.9) < 0.02  # 3000 test points: sd of the rate 0.0055
    assert np.all(upper > lower)


def test_without_labels_every_step_uses_the_training_residuals():
    X, y = linear_data(400, 2)
    enbpi = EnbPI(least_squares, alpha=0.2, block=5).fit_ensemble(X[:300], y[:300])
    lower, upper = enbpi.predict_interval(X[300:])
    q = conformal_quantile(np.abs(enbpi.residuals), 0.2)
    np.testing.assert_allclose(upper - enbpi.predict(X[300:]), q)
    np.testing.assert_allclose(enbpi.predict(X[300:]) - lower, q)


@pytest.mark.parametrize("delay", [1, 5])
def test_the_window_never_uses_a_label_before_it_is_known(delay):
    """Probe: a huge label at test step j may change the intervals only from step j + delay on."""
    X, y = linear_data(500, 3)
    enbpi = EnbPI(least_squares, alpha=0.1, block=5, window=50).fit_ensemble(X[:300], y[:300])
    X_test, y_test, j = X[300:], y[300:].copy(), 100
    before = enbpi.predict_interval(X_test, y_test, delay=delay)
    y_test[j] = 1e6
    after = enbpi.predict_interval(X_test, y_test, delay=delay)
    for b, a in zip(before, after, strict=True):
        np.testing.assert_array_equal(a[: j + delay], b[: j + delay])
        assert a[j + delay] != b[j + delay]  # the probe reaches the window exactly when it is known


def test_a_short_window_forgets_the_training_residuals():
    """After a jump in the noise, a 50-residual window widens to the new noise; the full window lags."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((900, 2))
    y = X @ np.array([1.0, 1.0]) + rng.standard_normal(900) * np.r_[np.ones(300), 3 * np.ones(600)]
    fitted = EnbPI(least_squares, block=5).fit_ensemble(X[:300], y[:300])
    full = fitted.predict_interval(X[300:], y[300:])
    fitted.window = 50
    short = fitted.predict_interval(X[300:], y[300:])
    cover_full, cover_short = coverage(y[300:], *full), coverage(y[300:], *short)
    assert cover_short > cover_full and abs(cover_short - 0.9) < abs(cover_full - 0.9)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 1.5}, "alpha"),
        ({"n_models": 0}, "n_models"),
        ({"window": 0}, "window"),
        ({"fit": 3}, "fit"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EnbPI(**({"fit": least_squares} | kwargs))


def test_bad_inputs_are_named():
    X, y = linear_data(100, 5)
    with pytest.raises(ValueError, match="2-D"):
        EnbPI(least_squares).fit_ensemble(y, y)
    with pytest.raises(ValueError, match="rows"):
        EnbPI(least_squares).fit_ensemble(X[:50], y)
    with pytest.raises(ValueError, match="resample"):
        EnbPI(least_squares).fit_ensemble(X, y, resamples=[np.array([0, 100])])
    with pytest.raises(RuntimeError, match="fit_ensemble"):
        EnbPI(least_squares).predict_interval(X)
    enbpi = EnbPI(least_squares, block=5).fit_ensemble(X[:80], y[:80])
    with pytest.raises(ValueError, match="delay"):
        enbpi.predict_interval(X[80:], y[80:], delay=0)
    with pytest.raises(ValueError, match="values"):
        enbpi.predict_interval(X[80:], y[81:])


# ---------------------------------------------------------------------------------------------
# Against MAPIE
# ---------------------------------------------------------------------------------------------


def test_enbpi_against_mapie():
    """MAPIE's TimeSeriesRegressor (method "enbpi", cv=BlockBootstrap, mean aggregation) on the same
    bootstrap resamples: the same signed out-of-bag residuals, the same centre (``ensemble=True``), the
    same asymmetric interval (its default: the alpha/2 and 1 - alpha/2 order statistics of the signed
    residuals), and MAPIE's ``update`` (the newest residuals replace the oldest) is our window after
    those labels are known. Where they differ: MAPIE has no symmetric |e| variant for EnbPI (its
    default score is asymmetric) and no label delay (the caller decides when to call ``update``).
    """
    mapie = pytest.importorskip(
        "mapie", reason="MAPIE (the dev cross-check, pinned in pyproject) is not installed"
    )
    from mapie.regression import TimeSeriesRegressor
    from mapie.subsample import BlockBootstrap
    from sklearn.linear_model import LinearRegression

    assert mapie.__version__ == "1.6.0"  # the pinned version whose API this test is written against
    rng = np.random.default_rng(3)
    X = rng.standard_normal((400, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + rng.standard_t(4, 400)
    train, test = slice(0, 300), slice(300, 400)
    cv = BlockBootstrap(n_resamplings=15, length=10, overlapping=True, random_state=0)
    resamples = [idx for idx, _ in cv.split(X[train])]
    theirs = TimeSeriesRegressor(LinearRegression(), method="enbpi", cv=cv, agg_function="mean")
    theirs.fit(X[train], y[train])
    ours = EnbPI(lambda A, b: LinearRegression().fit(A, b).predict, alpha=0.1, symmetric=False)
    ours.fit_ensemble(X[train], y[train], resamples=resamples)
    np.testing.assert_allclose(ours.residuals, theirs.conformity_scores_, atol=1e-12)
    centre, bounds = theirs.predict(X[test], ensemble=True, confidence_level=0.9)
    np.testing.assert_allclose(ours.predict(X[test]), centre, atol=1e-12)
    lower, upper = ours.predict_interval(X[test])  # no labels: the training residuals throughout
    np.testing.assert_allclose(lower, bounds[:, 0, 0], atol=1e-12)
    np.testing.assert_allclose(upper, bounds[:, 1, 0], atol=1e-12)
    # after the first 20 test labels: MAPIE's update against our window at step 20 (delay 1)
    with pytest.warns(UserWarning, match="behavior has been changed"):
        theirs.update(X[300:320], y[300:320], ensemble=True)
    _, bounds = theirs.predict(X[320:321], ensemble=True, confidence_level=0.9)
    lower, upper = ours.predict_interval(X[test], y[test], delay=1)
    assert lower[20] == pytest.approx(bounds[0, 0, 0], abs=1e-12)
    assert upper[20] == pytest.approx(bounds[0, 1, 0], abs=1e-12)
    assert lower[19] != pytest.approx(bounds[0, 0, 0], abs=1e-12) or upper[19] != pytest.approx(
        bounds[0, 1, 0]
    )
