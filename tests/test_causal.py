"""Causal tools (chapter 06f): the simulator's known effect, the naive estimator's bias, gradient
reversal, the treatment fixes of the source's CausalLSTM, and Granger causality on a known VAR.
The model contract of CausalLSTM and the CRN runs in tests/test_contract.py."""

import numpy as np
import pandas as pd
import pytest
import torch

from course_lib.causal import (
    adf_table,
    fit_outcome_model,
    granger_matrix,
    naive_effect,
    simulate_treatment,
    simulate_var,
)
from course_lib.models.causal import CausalLSTM, CounterfactualRecurrentNetwork, GradientReversal, crn_loss


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: several threads only contend on a busy machine
    yield
    torch.set_num_threads(threads)


def test_the_oracle_recovers_the_simulated_effect():
    data = simulate_treatment(n=3000, effect=0.7, confounding=2.0, seed=0)
    assert np.allclose(data.y1 - data.y0, 0.7)  # the oracle knows both potential outcomes
    observed = np.where(data.treatment == 1, data.y1, data.y0)
    assert np.array_equal(observed, data.outcome)
    # the structural adjustment (the true outcome equation's covariates) recovers it from observed data
    c = data.x[:, :, 0]
    design = np.c_[np.ones(len(c)), data.treatment, c[:, -1], c[:, -2]]
    coef, *_ = np.linalg.lstsq(design, data.outcome, rcond=None)
    assert abs(coef[1] - 0.7) < 0.05


def test_randomised_treatment_makes_the_naive_estimate_unbiased():
    estimates = [
        naive_effect(d.outcome, d.treatment)
        for d in (simulate_treatment(2000, confounding=0.0, seed=s) for s in range(5))
    ]
    assert abs(np.mean(estimates) - 1.0) < 0.05


@pytest.mark.parametrize("confounding", [1.0, 3.0])
def test_confounding_biases_the_naive_estimate_upwards(confounding):
    # treatment is likelier when the covariate is high, and a high covariate raises the outcome: upward bias
    naive = [
        naive_effect(d.outcome, d.treatment)
        for d in (simulate_treatment(2000, confounding=confounding, seed=s) for s in range(3))
    ]
    assert min(naive) > 1.0 + 0.5, f"naive estimates {naive} should exceed the true effect 1.0 clearly"


def test_the_outcome_models_adjust_for_observed_confounding_but_not_for_a_hidden_one(one_thread):
    results = {}
    for hidden in (0.0, 2.0):
        data = simulate_treatment(n=2000, confounding=2.0, hidden=hidden, seed=1)
        x, a = torch.tensor(data.x), torch.tensor(data.treatment)
        y = torch.tensor(data.outcome, dtype=torch.float32)
        for cls in (CausalLSTM, CounterfactualRecurrentNetwork):
            torch.manual_seed(0)
            model = cls(2, hidden_size=16)
            fit_outcome_model(model, x, a, y, epochs=15, lr=1e-2)
            results[cls.__name__, hidden] = model.effect(x).mean().item()
        results["naive", hidden] = naive_effect(data.outcome, data.treatment)
    for name in ("CausalLSTM", "CounterfactualRecurrentNetwork"):
        assert abs(results[name, 0.0] - 1.0) < 0.15, results
        assert abs(results[name, 0.0] - 1.0) < abs(results["naive", 0.0] - 1.0) / 4, results
        assert results[name, 2.0] > 1.3, f"a hidden confounder must bias every estimator: {results}"


def test_gradient_reversal_flips_the_gradient_sign():
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 3, dtype=torch.float64)
    (plain,) = torch.autograd.grad((w * x).sum(), x)
    (reversed_,) = torch.autograd.grad((w * GradientReversal.apply(x, 0.5)).sum(), x)
    torch.testing.assert_close(reversed_, -0.5 * plain)
    assert torch.equal(GradientReversal.apply(x, 0.5), x)  # identity forward
    # in the CRN: the encoder gets the classifier's gradient reversed, the classifier gets it as is
    torch.manual_seed(0)
    model = CounterfactualRecurrentNetwork(2, hidden_size=4, alpha=1.0).double()
    h = torch.randn(6, 5, 2, dtype=torch.float64)
    a = torch.tensor([0.0, 1, 0, 1, 1, 0], dtype=torch.float64)
    r = model.represent(h)
    r_leaf = r.detach().requires_grad_(True)
    ce = torch.nn.functional.binary_cross_entropy_with_logits(model.treatment_head(r_leaf)[:, 0], a)
    (direct,) = torch.autograd.grad(ce, r_leaf)
    ce_rev = torch.nn.functional.binary_cross_entropy_with_logits(
        model.treatment_head(GradientReversal.apply(r_leaf, model.alpha))[:, 0], a
    )
    (through,) = torch.autograd.grad(ce_rev, r_leaf)
    torch.testing.assert_close(through, -direct)
    loss = crn_loss(model(h, a), torch.zeros(6, 1, dtype=torch.float64), a)
    assert loss.item() > 0


def test_the_source_treatment_shape_is_refused_and_a_per_sample_treatment_works():
    model = CausalLSTM(3, hidden_size=8)
    x = torch.randn(4, 6, 3)
    with pytest.raises(ValueError, match=r"one treatment per sample, shape \(4,\) or \(4, 1\), got \(4, 6\)"):
        model(x, torch.ones(4, 6))  # the source's estimate_treatment_effect passed (B, L)
    torch.testing.assert_close(model(x, torch.ones(4)), model(x, torch.ones(4, 1)))
    effect = model.effect(x)
    assert effect.shape == (4, 1) and model.training  # the mode is restored
    with torch.no_grad():
        torch.testing.assert_close(effect, model(x, torch.ones(4)) - model(x, torch.zeros(4)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_treatment_follows_the_input_device():
    model = CausalLSTM(3, hidden_size=8).cuda()
    x = torch.randn(4, 6, 3, device="cuda")
    assert model.effect(x).device.type == "cuda"
    assert model(x, torch.ones(4)).device.type == "cuda"  # a CPU treatment is moved to x's device


def test_clear_errors():
    with pytest.raises(ValueError, match="NaN"):
        CausalLSTM(2)(torch.randn(3, 4, 2), torch.tensor([0.0, float("nan"), 1.0]))
    with pytest.raises(ValueError, match="same non-zero length"):
        fit_outcome_model(CausalLSTM(2), torch.randn(3, 4, 2), torch.ones(2), torch.ones(3))
    with pytest.raises(ValueError, match="treated and control"):
        naive_effect(np.ones(5), np.ones(5))
    with pytest.raises(ValueError, match="0 or 1"):
        naive_effect(np.ones(3), np.array([0, 2, 1]))
    with pytest.raises(ValueError, match="need n >= 2"):
        simulate_treatment(n=1)
    with pytest.raises(ValueError, match="not stationary"):
        simulate_var(np.array([[[1.1, 0.0], [0.0, 0.5]]]), 100)
    with pytest.raises(ValueError, match=r"shape \(p, k, k\)"):
        simulate_var(np.zeros((2, 3)), 100)
    walk = pd.DataFrame(
        {
            "walk": np.cumsum(np.random.default_rng(0).standard_normal(500)),
            "noise": np.random.default_rng(1).standard_normal(500),
        }
    )
    with pytest.raises(ValueError, match=r"\['walk'\] have a unit root"):
        granger_matrix(walk, lags=2)
    with pytest.raises(ValueError, match="at least two columns"):
        granger_matrix(walk[["noise"]], lags=1)
    with pytest.raises(ValueError, match="NaN"):
        granger_matrix(walk.assign(noise=np.nan), lags=1, check_stationary=False)


# A VAR(2) with a known lag graph: 0 -> 1 (lag 1), 1 -> 2 (lag 2), 2 -> 0 (lag 1); no other edges.
COEFS = np.array(
    [
        [[0.5, 0.0, 0.3], [0.4, 0.3, 0.0], [0.0, 0.0, 0.4]],
        [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.35, 0.0]],
    ]
)
EDGES = {("x0", "x1"), ("x1", "x2"), ("x2", "x0")}


def test_granger_recovers_the_var_edges_in_most_repetitions():
    names = ["x0", "x1", "x2"]
    hits = {(c, e): 0 for c in names for e in names if c != e}
    reps, alpha = 20, 0.05
    for seed in range(reps):
        data = pd.DataFrame(simulate_var(COEFS, 500, seed=seed), columns=names)
        pvalues = granger_matrix(data, lags=2)
        for edge in hits:
            hits[edge] += pvalues.loc[edge] < alpha
    for edge, count in hits.items():
        if edge in EDGES:
            assert count >= 0.9 * reps, f"true edge {edge} found in {count}/{reps} repetitions"
        else:
            assert count <= 0.2 * reps, (
                f"absent edge {edge} found in {count}/{reps} repetitions (size {alpha})"
            )


def test_adf_table_tells_a_walk_from_noise():
    rng = np.random.default_rng(0)
    table = adf_table(
        pd.DataFrame({"walk": np.cumsum(rng.standard_normal(800)), "noise": rng.standard_normal(800)})
    )
    assert table.loc["noise", "stationary at 5%"] and not table.loc["walk", "stationary at 5%"]


def test_granger_on_real_data_finds_the_leverage_effect_and_states_stationarity():
    # S&P 500, 1999-2018: returns help predict volatility (the leverage effect), a classic predictive fact
    from course_lib.data.features import feature_frame
    from course_lib.data.prices import load_prices

    frame = feature_frame(load_prices("^GSPC", offline=True))[["ret", "log_vol_parkinson"]]
    assert adf_table(frame)["stationary at 5%"].astype(bool).all()
    pvalues = granger_matrix(frame, lags=5)
    assert pvalues.loc["ret", "log_vol_parkinson"] < 1e-6
    assert np.isnan(pvalues.loc["ret", "ret"])  # no self-tests on the diagonal
