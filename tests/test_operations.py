"""Chapter 07's operations: covariate vs concept drift with label delay, re-fit triggers, shadow
deployment and the serving latency breakdown."""

import json

import numpy as np
import pandas as pd
import pytest

from course_lib.evaluation.baselines import log_har_forecasts
from course_lib.production.monitoring import DriftMonitor, ErrorMonitor, delayed_error_monitor, monitor_losses
from course_lib.production.retraining import (
    LogHARFitter,
    equal_budget_every,
    simulate_policy,
)
from course_lib.production.shadow import PromotionTest, ShadowLog

N, BREAK = 1000, 500  # days of the simulated stream, and the day the world changes


def _stream(kind: str, seed: int = 0):
    """x: one input feature; y = b x + noise; the model knows b before the break.

    ``"covariate"``: x moves (mean 0 -> 2), b stays: the model stays right.
    ``"concept"``: x stays, b moves (0.5 -> 1.5): the model becomes wrong.
    """
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2010-01-04", periods=N)
    x = rng.normal(size=N) + (2.0 * (np.arange(N) >= BREAK) if kind == "covariate" else 0.0)
    b = np.where((np.arange(N) >= BREAK) & (kind == "concept"), 1.5, 0.5)
    y = b * x + 0.3 * rng.normal(size=N)
    model = 0.5 * x
    reference_x = rng.normal(size=2000)  # the training inputs
    reference_loss = monitor_losses(0.3 * rng.normal(size=250), np.zeros(250))  # on validation
    return dates, x, y, model, reference_x, reference_loss


def _monitors(kind: str, delay: int = 5):
    dates, x, y, model, reference_x, reference_loss = _stream(kind)
    drift = DriftMonitor(pd.DataFrame({"x": reference_x}), ["x"]).rolling(
        pd.DataFrame({"x": x}, index=dates), window=250, step=10
    )
    errors = delayed_error_monitor(y, model, dates, delay, reference_loss)
    return dates, drift, errors


def test_covariate_shift_fires_psi_and_not_the_error_monitor():
    dates, drift, errors = _monitors("covariate")
    after = drift.index >= dates[BREAK + 125]
    assert (drift.loc[after, "x"] > 0.25).all()  # PSI sees the inputs move
    assert not errors["alarm"].any()  # the model is still right: its errors do not move


def test_concept_shift_fires_the_error_monitor_and_not_psi():
    dates, drift, errors = _monitors("concept")
    assert (drift["x"] < 0.25).all()  # the inputs look the same
    alarms = errors.index[errors["alarm"]]
    assert len(alarms) and alarms[0] > dates[BREAK]  # no alarm before the break
    assert alarms[0] <= dates[BREAK + 40]  # and soon after it
    # the alarm is raised on the day a label arrives, `delay` days after its origin
    first = errors.loc[alarms[0]]
    assert errors.index.get_loc(alarms[0]) - errors.index.get_loc(first["origin"]) == 5


def test_the_error_monitor_never_reads_a_label_before_it_arrives():
    dates, _, y, model, _, reference = _stream("concept")
    delay = 5
    base = delayed_error_monitor(y, model, dates, delay, reference)
    for probe in (100, 600, N - delay - 1):
        y_probe = y.copy()
        y_probe[probe] += 50.0  # a huge error at origin `probe`
        probed = delayed_error_monitor(y_probe, model, dates, delay, reference)
        arrival = probe + delay
        pd.testing.assert_frame_equal(probed.iloc[:arrival], base.iloc[:arrival])  # invisible until then
        assert probed["cusum"].iloc[arrival] != base["cusum"].iloc[arrival] or probed["alarm"].iloc[arrival]
    # a label that arrives after the stream's end is never read
    y_probe = y.copy()
    y_probe[-delay:] = np.nan  # unknown yet: a NaN would be refused if it were read
    pd.testing.assert_frame_equal(delayed_error_monitor(y_probe, model, dates, delay, reference), base)
    tail = delayed_error_monitor(y[:-delay], model[:-delay], dates[:-delay], delay, reference)
    pd.testing.assert_frame_equal(tail, base.iloc[:-delay])


def test_error_monitor_cusum_by_hand_and_bad_input():
    monitor = ErrorMonitor([1.0, 3.0], slack=0.5, threshold=2.0)  # mean 2, sd sqrt(2)
    z = (np.array([2.0, 6.0, 2.0, 5.0]) - 2.0) / np.sqrt(2.0)
    expected, s = [], 0.0
    for v in z:
        s = max(0.0, s + v - 0.5)
        expected.append(s)
    got = []
    for loss in (2.0, 6.0, 2.0, 5.0):
        alarm = monitor.update(loss)
        got.append(monitor.statistic)
        assert alarm == (monitor.statistic > 2.0)
    assert got == pytest.approx(expected)
    with pytest.raises(ValueError, match="all equal"):
        ErrorMonitor([1.0, 1.0])
    with pytest.raises(ValueError, match="delay"):
        delayed_error_monitor(
            np.zeros(10), np.zeros(10), pd.bdate_range("2010-01-04", periods=10), 0, [1.0, 2.0]
        )


# ---------------------------------------------------------------------------------------------
# Re-fitting policies
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stream(vol_task):
    t = vol_task.test
    return LogHARFitter(vol_task, horizon=0), t.rows, t.dates, t.y[:, 0]


def test_yearly_policy_equals_the_walk_forward_log_har(vol_task, stream):
    fitter, rows, dates, y = stream
    yearly = simulate_policy("periodic", fitter, rows, dates, y, every=252)
    reference = log_har_forecasts(vol_task, "test", refit_every=252, protocol="walk_forward")[:, 0]
    np.testing.assert_allclose(yearly.forecasts, reference, atol=1e-5)
    assert yearly.refits == (len(rows) - 1) // 252
    never = simulate_policy("never", fitter, rows, dates, y)
    assert never.refits == 0 and not np.allclose(never.forecasts, yearly.forecasts)


@pytest.mark.parametrize("policy", ["error", "coverage"])
def test_triggered_policies_read_no_label_before_it_arrives(stream, policy):
    fitter, rows, dates, y = stream
    base = simulate_policy(policy, fitter, rows, dates, y, min_gap=20)
    probe = len(y) // 2
    y_probe = y.copy()
    y_probe[probe:] += 3.0  # every later label changes (the fitter's own labels do not: they are the task's)
    probed = simulate_policy(policy, fitter, rows, dates, y_probe, min_gap=20)
    arrival = probe + fitter.delay  # the first changed label is read on this day, after its close
    np.testing.assert_array_equal(probed.forecasts[:arrival], base.forecasts[:arrival])
    before = [d for d in base.refit_dates if d < dates[arrival]]
    assert [d for d in probed.refit_dates if d < dates[arrival]] == before
    assert probed.refits > base.refits  # a 3-unit error in log volatility must trigger re-fits
    gaps = np.diff([dates.get_loc(d) for d in probed.refit_dates])
    assert (gaps >= 20).all()


def test_a_refit_uses_only_labels_known_by_its_day(vol_task):
    fitter = LogHARFitter(vol_task)
    day = int(vol_task.test.rows[300])
    forecast, _ = fitter.fit(day)
    later = fitter.rows + fitter.delay > day
    fitter.y = np.where(later, fitter.y + 10.0, fitter.y)  # labels not yet known at `day`
    probed, _ = fitter.fit(day)
    rows = vol_task.test.rows[300:310]
    np.testing.assert_allclose(probed(rows), forecast(rows))
    with pytest.raises(ValueError, match="fewer than 100"):
        fitter.fit(50)


def test_equal_budget_and_bad_policy(stream):
    assert equal_budget_every(1000, 0) == 1000 and equal_budget_every(1000, 3) == 250
    fitter, rows, dates, y = stream
    n = simulate_policy("periodic", fitter, rows, dates, y, every=equal_budget_every(len(rows), 4)).refits
    assert n == 4
    with pytest.raises(ValueError, match="policy"):
        simulate_policy("monthly", fitter, rows, dates, y)
    with pytest.raises(ValueError, match="consecutive"):
        simulate_policy("never", fitter, rows[::2], dates[::2], y[::2])


# ---------------------------------------------------------------------------------------------
# Shadow deployment
# ---------------------------------------------------------------------------------------------


def _shadow(gap: float, n: int = 300, seed: int = 0, path=None) -> ShadowLog:
    """A log whose challenger's log-volatility errors are ``gap`` times smaller than the champion's."""
    rng = np.random.default_rng(seed)
    log = ShadowLog(path)
    truth = rng.normal(size=n)
    for i, date in enumerate(pd.bdate_range("2015-01-02", periods=n)):
        y = truth[i] + 0.2 * rng.normal()
        log.record(date, truth[i] + 0.3 * rng.normal(), truth[i] + 0.3 * (1 - gap) * rng.normal())
        log.label(date, y)
    return log


def test_a_better_challenger_is_promoted_and_an_equal_one_rarely():
    test = PromotionTest(n_days=250)
    better = test.decide(_shadow(0.5))
    assert better.promote and better.statistic < 0 and better.mean_loss_diff < 0 and better.n_days == 250
    promoted = [test.decide(_shadow(0.0, seed=s)).promote for s in range(40)]
    assert np.mean(promoted) <= 0.15  # about 5% under the null; a two-sided or peeking test would exceed it
    worse = test.decide(_shadow(-0.5))
    assert not worse.promote and worse.pvalue > 0.95  # one-sided: a worse challenger is never promoted


def test_the_promotion_test_is_pre_registered(tmp_path):
    log = _shadow(0.5, n=300, path=tmp_path / "shadow.jsonl")
    decision = PromotionTest(n_days=100).decide(log)
    assert decision.last == log.frame().index[99]  # only the first 100 labelled days
    short = ShadowLog()
    short.record("2015-01-02", 0.1, 0.2)
    with pytest.raises(ValueError, match="registered for 250 labelled days"):
        PromotionTest().decide(short)
    # the file replays to the same log
    reloaded = ShadowLog.load(tmp_path / "shadow.jsonl")
    pd.testing.assert_frame_equal(reloaded.frame(), log.frame())
    assert len((tmp_path / "shadow.jsonl").read_text().splitlines()) == 600
    assert json.loads((tmp_path / "shadow.jsonl").read_text().splitlines()[0])["event"] == "forecast"
    with pytest.raises(ValueError, match="already logged"):
        log.record("2015-01-02", 0.0, 0.0)
    with pytest.raises(ValueError, match="no forecasts"):
        log.label("1999-01-01", 0.0)
    with pytest.raises(ValueError, match="n_days"):
        PromotionTest(n_days=5)


# ---------------------------------------------------------------------------------------------
# Latency breakdown
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, vol_task):
    from course_lib import set_seed
    from course_lib.models import FinancialGRU
    from course_lib.production.bundle import ModelDeployment, save_bundle

    set_seed(0)
    model = FinancialGRU(input_size=4, hidden_size=8, output_size=2)
    return ModelDeployment.load(save_bundle(tmp_path_factory.mktemp("bundle") / "gru", model, vol_task))


def test_stage_timings_cover_the_serving_path(deployment, vol_task):
    import asyncio
    import gc

    from course_lib.evaluation.walkforward import raw_windows
    from course_lib.production.latency import STAGES, stage_timings, tail_summary

    windows = raw_windows(vol_task, "test")[:32]
    table = stage_timings(deployment, windows, vol_task.feature_names, repeats=20)
    assert len(table) == 20 and (table[list(STAGES)] > 0).all().all()
    np.testing.assert_allclose(table["total"], table[list(STAGES)].sum(axis=1))
    off = stage_timings(deployment, windows, vol_task.feature_names, repeats=10, collect=False)
    assert (off["gc ms"] == 0).all() and (off["gc generation"] == -1).all() and gc.isenabled()
    summary = tail_summary(table)
    assert (summary["p99"] >= summary["p50"]).all()

    async def inside_a_running_loop():  # as in Jupyter
        return stage_timings(deployment, windows, vol_task.feature_names, repeats=3)

    assert len(asyncio.run(inside_a_running_loop())) == 3
    with pytest.raises(ValueError, match="shape"):
        stage_timings(deployment, windows[0], vol_task.feature_names)


@pytest.mark.parametrize("policy", ["error", "coverage"])
def test_a_policy_stopped_on_any_day_needs_only_the_labels_arrived_by_then(stream, policy):
    fitter, rows, dates, y = stream
    full = simulate_policy(policy, fitter, rows, dates, y, min_gap=20)
    for cut in (300, 700, len(y) - 1):
        unknown = y[: cut + 1].copy()
        unknown[cut - fitter.delay + 1 :] = np.nan  # labels that arrive after day `cut`: not known yet
        partial = simulate_policy(policy, fitter, rows[: cut + 1], dates[: cut + 1], unknown, min_gap=20)
        np.testing.assert_array_equal(partial.forecasts, full.forecasts[: cut + 1])
        assert partial.refit_dates == [d for d in full.refit_dates if d <= dates[cut]]
