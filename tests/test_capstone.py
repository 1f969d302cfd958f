"""Chapter 08: the fixed capstone task, the leaderboard and the economic tests."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from course_lib import capstone as cap
from course_lib.capstone import entries
from course_lib.data.prices import load_prices
from course_lib.evaluation import loss_series, standard_baselines


@pytest.fixture(scope="module")
def task():
    return cap.capstone_task()


@pytest.fixture(scope="module")
def prices():
    return load_prices("^GSPC", end=cap.TEST_END, offline=True)


def test_the_task_is_the_one_outside_libraries_were_measured_on(task):
    assert len(task.test) == cap.N_TEST == 2516
    test_targets = cap.target_dates(task, "test")
    assert test_targets[0] == pd.Timestamp("2009-01-02") and test_targets[-1] == pd.Timestamp("2018-12-31")
    assert task.lookback == 60 and task.feature_names == ["ret", "log_vol_parkinson", "volume_change"]
    assert task.train.X.shape[1:] == (60, 3)
    # the target is tomorrow's log Parkinson volatility (log percent: log Parkinson volatility + log 100)
    f = task.frame
    v = 0.5 * np.log(f["var_parkinson"].to_numpy())
    np.testing.assert_allclose(task.test.y[:, 0], v[task.test.rows + 1], rtol=1e-5)
    # the window ends at the origin and holds [r, v, log volume change], z-scored
    raw = f[task.feature_names].to_numpy()[task.test.rows[5] - 59 : task.test.rows[5] + 1]
    np.testing.assert_allclose(task.scaler.transform(raw), task.test.X[5], rtol=1e-4, atol=1e-4)


def test_split_by_target_date(task):
    train, val, test = (cap.target_dates(task, s) for s in ("train", "val", "test"))
    assert train.max() <= pd.Timestamp("2006-12-31") < val.min()
    assert val.max() <= pd.Timestamp("2008-12-31") < test.min()
    # every target day of 2007-2008 is a validation target (no gap days are dropped)
    days = task.frame.index
    assert len(val) == ((days >= "2007-01-01") & (days <= "2008-12-31")).sum()
    assert len(test) == ((days >= "2009-01-01") & (days <= "2018-12-31")).sum()


def test_scaler_fitted_on_training_rows_only(task, prices):
    last = task.train.rows.max()
    expected = task.frame[task.feature_names].to_numpy()[: last + 1]
    np.testing.assert_allclose(task.scaler.mean_, expected.mean(axis=0))
    np.testing.assert_allclose(task.scaler.scale_, expected.std(axis=0))
    # prices changed from the day after the last training origin on: same scaler, same training windows
    shocked = prices.copy()
    after = shocked.index > task.frame.index[last]
    shocked.loc[after, ["High", "Volume"]] *= 1.5
    other = cap.capstone_task(shocked)
    np.testing.assert_array_equal(other.scaler.mean_, task.scaler.mean_)
    np.testing.assert_array_equal(other.train.X, task.train.X)


def test_a_change_after_a_date_leaves_earlier_windows_unchanged(task, prices):
    cut = pd.Timestamp("2012-06-01")
    shocked = prices.copy()
    late = shocked.index >= cut
    rng = np.random.default_rng(0)
    shocked.loc[late, "High"] *= 1 + rng.uniform(0.001, 0.05, late.sum())
    shocked.loc[late, "Volume"] *= rng.uniform(0.5, 2.0, late.sum())
    other = cap.capstone_task(shocked)
    dates = task.test.dates
    before = dates < cut  # windows whose inputs end before the change
    np.testing.assert_array_equal(other.test.X[before], task.test.X[before])
    target_before = cap.target_dates(task, "test") < cut
    np.testing.assert_array_equal(other.test.y[target_before], task.test.y[target_before])
    assert not np.array_equal(other.test.X[~before], task.test.X[~before])  # the change does arrive


def test_outside_baseline_numbers_are_reproduced(task):
    """EWMA, GARCH and the random walk measured outside the course, on raw QLIKE (no debias: the libraries' forecasts)."""
    from course_lib.evaluation import volatility_baselines

    y = task.test.y[:, 0]
    raw = volatility_baselines(task, "test", debias=False)
    assert loss_series(y, raw["ewma"][:, 0], "qlike").mean() == pytest.approx(cap.OUTSIDE["EWMA"], abs=0.002)
    assert loss_series(y, raw["garch"][:, 0], "qlike").mean() == pytest.approx(
        cap.OUTSIDE["GARCH(1,1)"], abs=0.002
    )
    rw = cap.random_walk(task, "test")[:, 0]
    assert loss_series(y, rw, "qlike").mean() == pytest.approx(cap.OUTSIDE["random walk"], abs=0.002)


def test_leaderboard_entry_checks_its_forecasts(task):
    good = np.zeros(len(task.test)), np.zeros(len(task.val))
    entry = cap.leaderboard_entry("mine", *good, task)
    assert entry.test[0].shape == (2516, 1)
    with pytest.raises(ValueError, match=r"shape \(2515,\).*2516 targets"):
        cap.leaderboard_entry("mine", np.zeros(2515), good[1], task)
    with pytest.raises(ValueError, match="NaN"):
        cap.leaderboard_entry("mine", np.full(2516, np.nan), good[1], task)
    with pytest.raises(ValueError, match="seeds"):
        cap.leaderboard_entry("mine", [good[0], good[0]], [good[1]], task)


def test_the_table_has_every_column_and_refuses_a_shifted_copy(task):
    base_t, base_v = standard_baselines(task, "test", "frozen"), standard_baselines(task, "val", "frozen")
    noise = np.random.default_rng(3).normal(0, 0.05, base_t["har"].shape)
    table = cap.evaluate_submission(
        {"test": base_t["har"] + noise, "val": base_v["har"]}, task, name="noisy_har"
    )
    for col in (
        "family",
        "params",
        "seconds",
        "QLIKE",
        "QLIKE sd",
        "QLIKE_lc",
        "MSE",
        "ens DM_QLIKE",
        "ens p_QLIKE",
    ):
        assert col in table.columns
    assert {"better QLIKE (p<0.05)", "in_MCS", "ens QLIKE", "ens QLIKE_lc"} <= set(table.columns)
    assert {"noisy_har", "ewma", "garch", "har", "log_har", "random_walk"} <= set(table.index)
    assert table["QLIKE_lc"].is_monotonic_increasing
    y = task.test.y[:, 0]
    assert table.loc["noisy_har", "QLIKE"] == pytest.approx(
        loss_series(y, base_t["har"][:, 0] + noise[:, 0], "qlike").mean()
    )
    assert table.loc["noisy_har", "QLIKE"] > table.loc["har", "QLIKE"]  # noise costs QLIKE
    # a constant shift is exactly what the level correction (learnt on validation) removes: refused as a twin
    with pytest.raises(ValueError, match="same forecast after the level correction"):
        cap.evaluate_submission(
            {"test": base_t["har"] + 0.1, "val": base_v["har"] + 0.1}, task, name="shifted"
        )
    with pytest.raises(ValueError, match="differ from the baselines"):
        cap.evaluate_submission({"test": base_t["har"], "val": base_v["har"]}, task, name="har")


def test_train_entry_trains_a_registry_model_and_a_learners_model(task):
    torch.set_num_threads(1)
    entry = cap.train_entry("GRU", task, seeds=(0,), max_epochs=1, batch_size=512)
    assert entry.family == "recurrent" and entry.params > 0 and entry.seconds > 0
    assert entry.test[0].shape == (2516, 1) and np.isfinite(entry.test[0]).all()
    again = cap.train_entry(
        lambda seed: cap.build_model("GRU", seed=seed), task, seeds=(0,), max_epochs=1, batch_size=512
    )
    np.testing.assert_allclose(again.test[0], entry.test[0], rtol=1e-5, atol=1e-6)  # seeded: reproducible
    with pytest.raises(KeyError, match="unknown leaderboard model"):
        cap.train_entry("NoSuchNet", task)


def test_combination_weights_use_validation_only(task):
    rng = np.random.default_rng(1)
    y = task.val.y[:, 0].astype(np.float64)
    good = y + rng.normal(0, 0.2, len(y))
    bad = y.mean() + rng.normal(0, 0.2, len(y))
    w = cap.combination_weights({"good": good, "bad": bad}, y)
    assert w.sum() == pytest.approx(1.0) and (w >= 0).all()
    assert w["good"] > 0.8
    # the leaderboard's weights do not move when the test forecasts do
    base_t, base_v = standard_baselines(task, "test", "frozen"), standard_baselines(task, "val", "frozen")
    val_a = base_v["har"] + rng.normal(0, 0.1, base_v["har"].shape)
    val_noise_t = rng.normal(0, 0.1, base_t["har"].shape)

    def board(test_noise):
        a = cap.leaderboard_entry(
            "noisy_har", base_t["har"] + 0.3 * val_noise_t[::-1] + test_noise, val_a, task
        )
        b = cap.leaderboard_entry(
            "noisy_log_har", base_t["log_har"] + 0.3 * val_noise_t, base_v["log_har"], task
        )
        return cap.leaderboard(task, [a, b])

    first, second = board(0.0), board(rng.normal(0, 0.5, base_t["har"].shape))
    assert first.attrs["weights"] is not None and "combination" in first.index
    pd.testing.assert_series_equal(first.attrs["weights"], second.attrs["weights"])
    assert first.loc["combination", "QLIKE"] != pytest.approx(second.loc["combination", "QLIKE"])


def test_kupiec_matches_the_binomial_likelihood_ratio():
    for n, x, alpha in [(2516, 25, 0.01), (2516, 40, 0.01), (500, 0, 0.01), (1000, 60, 0.05)]:
        hits = np.zeros(n, dtype=bool)
        hits[:x] = True
        lr, p = cap.kupiec_test(hits, alpha)
        expected = 2 * (stats.binom.logpmf(x, n, x / n) - stats.binom.logpmf(x, n, alpha))
        assert lr == pytest.approx(expected, rel=1e-9, abs=1e-9)
        assert p == pytest.approx(stats.chi2.sf(expected, 1))


def test_christoffersen_matches_the_markov_likelihood_and_catches_clusters():
    rng = np.random.default_rng(2)
    hits = rng.random(3000) < 0.02
    res = cap.christoffersen_test(hits, 0.01)
    prev, cur = hits[:-1].astype(int), hits[1:].astype(int)
    table = pd.crosstab(prev, cur)
    ll_markov = sum(
        stats.binom.logpmf(table.loc[i, 1], table.loc[i].sum(), table.loc[i, 1] / table.loc[i].sum())
        for i in (0, 1)
    )
    ll_iid = sum(stats.binom.logpmf(table.loc[i, 1], table.loc[i].sum(), cur.mean()) for i in (0, 1))
    assert res["LR_ind"] == pytest.approx(2 * (ll_markov - ll_iid), rel=1e-8)
    assert res["LR_cc"] == pytest.approx(res["LR_ind"] + cap.kupiec_test(hits, 0.01)[0])
    # violations in runs (the same 1% rate) are rejected; independent ones mostly are not
    clustered = np.zeros(3000, dtype=bool)
    for start in rng.choice(2990, 10, replace=False):
        clustered[start : start + 3] = True
    assert cap.christoffersen_test(clustered, 0.01)["p_ind"] < 0.001
    rejections = np.mean(
        [cap.christoffersen_test(rng.random(2500) < 0.01, 0.01)["p_cc"] < 0.05 for _ in range(200)]
    )
    assert rejections < 0.12


def test_the_backtests_live_in_evaluation_and_the_capstone_re_exports_them():
    """Chapter 06d tests interval misses without importing the capstone: the tests live in
    course_lib.evaluation.backtests, and the capstone's names are the same functions."""
    import ast
    import inspect

    from course_lib.evaluation import backtests

    assert cap.kupiec_test is backtests.kupiec_test
    assert cap.christoffersen_test is backtests.christoffersen_test
    tree = ast.parse(inspect.getsource(backtests))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "." for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"numpy", "scipy"}, f"backtests imports {sorted(imported)}: numpy and scipy only"


def test_economic_readings_are_scale_free_and_react_to_a_bad_forecast(task):
    base_t, base_v = standard_baselines(task, "test", "frozen"), standard_baselines(task, "val", "frozen")
    a = cap.vol_targeting(task, base_t["har"], base_v["har"])
    b = cap.vol_targeting(
        task, base_t["har"] - 0.7, base_v["har"] - 0.7
    )  # Parkinson vs returns: k absorbs it
    assert a == pytest.approx(b)
    assert 0.5 < a["ratio"] < 1.5 and a["turnover"] > 0
    # a constant forecast, scaled on the crisis years of validation: far too few violations afterwards
    flat_t, flat_v = (
        np.full_like(base_t["har"], base_v["har"].mean()),
        np.full_like(base_v["har"], base_v["har"].mean()),
    )
    va, vf = cap.var_backtest(task, base_t["har"], base_v["har"]), cap.var_backtest(task, flat_t, flat_v)
    assert vf["rate"] < 0.005 and vf["p_kupiec"] < 0.001 and vf["p_cc"] < va["p_cc"]
    vt_flat = cap.vol_targeting(task, flat_t, flat_v)
    assert vt_flat["turnover"] == 0 and vt_flat["rolling RMSE"] > a["rolling RMSE"]


def test_qlike_loss_is_the_course_qlike_and_its_minimiser_is_the_log_mean_variance():
    rng = np.random.default_rng(4)
    y = torch.tensor(rng.normal(0, 0.6, (400, 1)))
    p = torch.tensor(rng.normal(0, 0.6, (400, 1)))
    assert cap.qlike_loss(p, y).item() == pytest.approx(
        loss_series(y.numpy()[:, 0], p.numpy()[:, 0], "qlike").mean()
    )
    # the best constant forecast is 0.5 log mean(exp(2 y)) (= log sqrt(E s^2)), not mean(y) as under MSE
    best = 0.5 * torch.log(torch.mean(torch.exp(2 * y)))
    c = best.clone().requires_grad_(True)
    cap.qlike_loss(c.expand_as(y), y).backward()
    assert abs(c.grad.item()) < 1e-10
    assert cap.qlike_loss(torch.full_like(y, best.item()), y) < cap.qlike_loss(
        torch.full_like(y, y.mean().item()), y
    )
    assert cap.qlike_loss({"prediction": p}, y) == cap.qlike_loss(p, y)
    with pytest.raises(ValueError, match="shape"):
        cap.qlike_loss(p[:, 0], y)


@pytest.mark.parametrize("name", list(cap.MODELS))
def test_every_leaderboard_model_is_a_registry_model_and_builds_at_every_size(name):
    from course_lib.models.registry import REGISTRY

    entry = cap.MODELS[name]
    assert entry in REGISTRY, f"{name} must be a registry entry, so the contract covers it"
    for size in ("small", "full"):
        model = cap.build_model(name, size, seed=0).eval()
        with torch.no_grad():
            out = model(torch.randn(2, cap.LOOKBACK, len(cap.FEATURES)))
        out = entries._point(model, (out["prediction"] if isinstance(out, dict) else out).numpy())
        assert out.shape == (2, 1), f"{name} ({size}) forecasts {tuple(out.shape)}, not one value per window"


def test_the_tft_trains_on_its_pinball_loss_and_is_scored_on_its_median(task):
    torch.set_num_threads(1)
    built = []

    def factory(seed):
        built.append(cap.build_model("TFT", "small", seed))
        return built[-1]

    assert cap.QUANTILE_MODELS == ["TFT"]  # the leaderboard script trains these on their own loss
    # two seeds: the second must train on its pinball loss as the first did (not be refused for it)
    entry = cap.train_entry(factory, task, seeds=(0, 1), max_epochs=1, batch_size=512)
    with torch.no_grad():
        quantiles = built[0].eval()(torch.from_numpy(task.test.X)).numpy()  # (N, 1, 3)
    assert quantiles.shape == (2516, 1, 3) and (np.diff(quantiles, axis=-1) > -1e-6).mean() > 0.99
    np.testing.assert_allclose(entry.test[0], quantiles[..., 1], rtol=1e-5, atol=1e-5)  # the 0.5 level
    with pytest.raises(ValueError, match="pinball"):
        cap.train_entry("TFT", task, seeds=(0,), max_epochs=1, loss="qlike")


def test_the_foundation_model_never_sees_the_sp500_in_pretraining_nor_a_day_after_training(task, monkeypatch):
    import course_lib.data.corpus as corpus_module

    seen, real_pretrain = [], corpus_module.pretrain

    def spy(model, corpus, steps, *args, **kwargs):
        seen.append(corpus)
        return real_pretrain(model, corpus, steps, *args, **kwargs)

    monkeypatch.setattr(corpus_module, "pretrain", spy)
    entries = cap.foundation_entries(
        task, seeds=(0,), pretrain_steps=2, finetune_steps=2, n_synthetic=1, size=dict(hidden_size=8)
    )
    assert [e.name for e in entries] == ["Foundation zero-shot", "Foundation fine-tuned"]
    assert all(e.family == "foundation" and e.test[0].shape == (2516, 1) for e in entries)
    assert not np.allclose(entries[0].test[0], entries[1].test[0])  # fine-tuning changed the model
    pretraining, finetuning = seen
    names = [s.name for s in pretraining.series]
    assert "^GSPC" not in names and "^IXIC" in names  # zero-shot: the target series is held out
    last = max(s.dates[-1] for s in pretraining.series if s.dates is not None)
    assert last <= pd.Timestamp(cap.TRAIN_END)  # held-out years: nothing after the training years
    (own,) = finetuning.series
    series = task.frame["log_vol_parkinson"].to_numpy(np.float32)
    assert own.name == "^GSPC" and len(own.values) == task.fit_end_row + 1
    np.testing.assert_array_equal(own.values, series[: task.fit_end_row + 1])
    assert task.frame.index[task.fit_end_row] <= pd.Timestamp(cap.TRAIN_END)


def test_deep_koopman_trains_on_training_sequences_of_v_only(task, monkeypatch):
    seen, real_fit = [], entries.fit_koopman

    def spy(model, sequences, horizon, **kwargs):
        seen.append((sequences.clone(), horizon))
        return real_fit(model, sequences, horizon, **kwargs)

    monkeypatch.setattr(entries, "fit_koopman", spy)
    entry = cap.koopman_entry(task, seeds=(0, 1), epochs=1)
    assert entry.family == "Koopman" and entry.test[0].shape == (2516, 1) and len(entry.test) == 2
    assert not np.allclose(entry.test[0], entry.test[1])  # two seeds, two models
    sequences, horizon = seen[0]
    col = cap.FEATURES.index("log_vol_parkinson")
    last_train_row = task.train.rows[-1]
    assert sequences.shape == (last_train_row + 1 - (22 + horizon) + 1, 22 + horizon, 1)
    # the last sequence ends on the last training origin, in the scaler's units: nothing later
    np.testing.assert_allclose(sequences[-1, -1, 0].item(), task.train.X[-1, -1, col], rtol=1e-5, atol=1e-5)
    # a task whose targets are not the next day's v is refused, not silently mis-aligned
    broken = copy.deepcopy(task)
    broken.test.y[:5] += 1.0
    with pytest.raises(ValueError, match="not the next day"):
        cap.koopman_entry(broken, seeds=(0,), epochs=1)


def test_stored_predictions_round_trip_and_the_choice_is_made_on_validation(task, tmp_path):
    base_t, base_v = standard_baselines(task, "test", "frozen"), standard_baselines(task, "val", "frozen")
    rng = np.random.default_rng(4)
    # "good_on_test" is the truth plus noise on test but poor on validation; "good_on_val" the reverse
    good_on_test = cap.leaderboard_entry(
        "good_on_test",
        [task.test.y + rng.normal(0, 0.2, task.test.y.shape) for _ in range(2)],
        [base_v["har"] + rng.normal(0, 0.6, base_v["har"].shape) for _ in range(2)],
        task,
        family="learner",
        params=12,
    )
    good_on_val = cap.leaderboard_entry(
        "good_on_val",
        [base_t["har"] + rng.normal(0, 0.6, base_t["har"].shape) for _ in range(2)],
        [task.val.y + rng.normal(0, 0.2, task.val.y.shape) for _ in range(2)],
        task,
    )
    chosen, scores = cap.validation_choice(task, [good_on_test, good_on_val])
    assert chosen == "good_on_val" and scores.index[0] == chosen and scores.is_monotonic_increasing
    path = cap.save_predictions([good_on_test, good_on_val], tmp_path / "board.npz")
    back = cap.load_entries(path, task)
    assert [e.name for e in back] == ["good_on_test", "good_on_val"] and back[0].params == 12
    for a, b in zip([good_on_test, good_on_val], back, strict=True):
        assert len(a.test) == len(b.test) == 2 and b.family == a.family
        assert np.allclose(np.stack(a.test), np.stack(b.test), atol=1e-6)  # float32 on disk
    first, again = cap.leaderboard(task, [good_on_test, good_on_val]), cap.leaderboard(task, back)
    assert np.allclose(first["ens DM_QLIKE"], again["ens DM_QLIKE"], atol=1e-3, equal_nan=True)
    np.savez_compressed(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not a leaderboard predictions file"):
        cap.load_entries(tmp_path / "other.npz", task)


def test_the_committed_leaderboard_is_re_derived_from_its_stored_forecasts(task):
    """docs/leaderboard.csv holds the board, docs/leaderboard_predictions.npz its forecasts: re-scoring
    them gives the committed DM statistics, p-values and model confidence set."""
    from pathlib import Path

    docs = Path(__file__).resolve().parent.parent / "docs"
    committed = pd.read_csv(docs / "leaderboard.csv", index_col=0)
    board = cap.leaderboard(task, cap.load_entries(docs / "leaderboard_predictions.npz", task))
    assert set(board.index) == set(committed.index)
    board = board.loc[committed.index]
    for column in ("QLIKE_lc", "ens QLIKE_lc", "ens DM_QLIKE", "ens p_QLIKE"):
        assert np.allclose(board[column], committed[column], atol=1e-4, equal_nan=True), column
    assert (board["in_MCS"].astype(bool) == committed["in_MCS"].astype(bool)).all()


def _row(family, where, dm, p, **settings):
    base = dict(
        window=60,
        features=3,
        size="full",
        epochs=20,
        seeds=5,
        loss="mse",
        correction="causal",
        benchmark="har",
    )
    return dict(base | settings, family=family, where=where, QLIKE_lc=0.4, DM=dm, p=p, in_MCS=True)


def test_reconciliation_names_the_settings_behind_a_flipped_verdict():
    rows = [
        _row("TCN", "chapter 08 notebook", 4.5, 0.001, epochs=8, seeds=2),
        _row("TCN", "board", -9.1, 0.0001),
        _row("GRU", "chapter 08 notebook", 0.3, 0.7, epochs=8),
        _row("GRU", "board", -1.0, 0.3),
    ]
    table = cap.reconciliation(rows)
    assert table.loc[("TCN", "board"), "verdict"] == "better"
    assert table.loc[("TCN", "chapter 08 notebook"), "verdict"] == "worse"
    assert table.loc[("GRU", "board"), "verdict"] == "no significant difference"
    text = cap.flips(table)
    assert text.count("the verdict changes") == 1 and "TCN: the verdict changes" in text
    assert "settings that differ: epochs, seeds." in text  # and not the window, the loss...
    assert "holds in every setting shown for: GRU" in text
    rows = cap.chapter_rows("06a", {"Mamba": "Mamba"})
    assert (
        rows[0]["window"] == 256 and rows[0]["seeds"] >= 5 and rows[0]["where"] == "chapter 06a, full budget"
    )
    with pytest.raises(KeyError, match="has no rows"):
        cap.chapter_rows("06a", {"GRU": "GRU"})
    with pytest.raises(KeyError, match="lacks"):
        cap.reconciliation([{"family": "x", "where": "y"}])
    with pytest.raises(KeyError, match="not in the leaderboard"):
        cap.board_rows(pd.DataFrame(index=["har"]), "board", {"TCN": "TCN"})
