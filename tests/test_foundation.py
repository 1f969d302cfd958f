"""Chapter 06b: what is specific to the foundation models (the contract runs in tests/test_contract.py).

Causality of every per-patch output, normalisation equivariance, the Student-t likelihood against
torch.distributions, non-crossing quantiles, the lag features against a hand-built reference, the
sampler, and the pretraining corpus (held-out series and years).
"""

import numpy as np
import pandas as pd
import pytest
import torch

from course_lib.data.corpus import (
    Corpus,
    Series,
    contexts,
    merge,
    pretrain,
    real_series,
    sample_windows,
    synthetic_series,
)
from course_lib.losses import StudentTNLLLoss, student_t_nll
from course_lib.models.foundation import (
    LagLlamaFinance,
    MeanScaleTokenizer,
    TimeSeriesFoundationModel,
    lag_features,
    robust_prefix_scaler,
)

P = 4
HEADS = {
    "student_t": dict(head="student_t"),
    "quantile": dict(head="quantile", quantiles=[0.05, 0.25, 0.5, 0.75, 0.95]),
}


def patch_model(head: str = "student_t", channels: int = 2, seed: int = 0) -> TimeSeriesFoundationModel:
    torch.manual_seed(seed)
    return TimeSeriesFoundationModel(
        channels, patch_size=P, hidden_size=8, max_patches=8, **HEADS[head]
    ).double()


def outputs(out: dict) -> list[torch.Tensor]:
    return [v for v in out.values() if v.is_floating_point()]


def patch_leak(model, x: torch.Tensor) -> tuple[float, float]:
    """Largest gradient of the forecast made at the end of each patch n on inputs after patch n, and the
    smallest largest gradient on inputs inside patch n (which must be > 0, or the probe proves nothing)."""
    n_patches = x.shape[1] // P
    future, own = 0.0, float("inf")
    for n in range(n_patches - 1):
        z = x.clone().requires_grad_(True)
        out = model(z, per_patch=True)
        gen = torch.Generator().manual_seed(n)
        probe = sum(
            (torch.randn(t[:, n].shape, generator=gen, dtype=t.dtype) * t[:, n]).sum() for t in outputs(out)
        )
        (grad,) = torch.autograd.grad(probe, z)
        future = max(future, grad[:, (n + 1) * P :].abs().max().item())
        own = min(own, grad[:, n * P : (n + 1) * P].abs().max().item())
    return future, own


# ---------------------------------------------------------------- causality


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("train_mode", [False, True])
def test_every_per_patch_output_is_causal(head, train_mode):
    model = patch_model(head).train(train_mode)
    model.dropout.p = 0.0 if train_mode else model.dropout.p
    x = torch.randn(3, 6 * P, 2, dtype=torch.float64)
    future, own = patch_leak(model, x)
    assert future == 0.0, "a per-patch forecast depends on a later patch"
    assert own > 0.0, "a per-patch forecast ignores its own patch"


def test_the_causality_probe_catches_whole_window_normalisation(monkeypatch):
    # RevIN with the statistics of the whole window (what a naive port does) leaks the future scale
    model = patch_model()

    def whole_window(patches):
        mean = patches.mean(dim=(1, 2), keepdim=True).expand(-1, patches.shape[1], 1)
        std = patches.std(dim=(1, 2), keepdim=True).expand(-1, patches.shape[1], 1)
        return mean, std

    monkeypatch.setattr(model, "prefix_stats", whole_window)
    future, _ = patch_leak(model, torch.randn(3, 6 * P, 2, dtype=torch.float64))
    assert future > 1e-6


def test_a_window_that_is_not_a_multiple_of_the_patch_drops_its_oldest_steps():
    model = patch_model().eval()
    x = torch.randn(2, 5 * P + 3, 2, dtype=torch.float64)
    z = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(z)["prediction"].sum(), z)
    assert grad[:, :3].abs().max() == 0 and grad[:, 3:].abs().sum(dim=(0, 2)).min() > 0
    torch.testing.assert_close(model(x)["prediction"], model(x[:, 3:])["prediction"])


def test_channels_are_independent_and_c_greater_than_one_works():
    # the source fed P*C values to a layer built for P: it crashed for C > 1
    model = patch_model(channels=3).eval()
    x = torch.randn(2, 4 * P, 3, dtype=torch.float64)
    out = model(x)["prediction"]
    assert out.shape == (2, P, 3)
    x2 = x.clone()
    x2[..., 1] = 5 * torch.randn_like(x2[..., 1])
    out2 = model(x2)["prediction"]
    torch.testing.assert_close(out2[..., [0, 2]], out[..., [0, 2]])
    assert not torch.allclose(out2[..., 1], out[..., 1])
    # channel c of a C-channel model is the single-channel model applied to channel c
    single = TimeSeriesFoundationModel(1, patch_size=P, hidden_size=8, max_patches=8).double().eval()
    single.load_state_dict(model.state_dict())
    torch.testing.assert_close(single(x[..., 2:])["prediction"][..., 0], out[..., 2])


# ---------------------------------------------------------------- equivariance


@pytest.mark.parametrize("head", HEADS)
def test_patch_model_forecast_is_equivariant_to_affine_maps(head):
    model = patch_model(head).eval()
    x = torch.randn(3, 5 * P, 2, dtype=torch.float64)
    a, b = 3.7, -2.2
    with torch.no_grad():
        out, moved = model(x), model(a * x + b)
    torch.testing.assert_close(moved["prediction"], a * out["prediction"] + b, rtol=1e-6, atol=1e-6)
    if head == "student_t":
        torch.testing.assert_close(moved["scale"], a * out["scale"], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(moved["df"], out["df"], rtol=1e-6, atol=1e-6)
    else:
        torch.testing.assert_close(moved["quantiles"], a * out["quantiles"] + b, rtol=1e-6, atol=1e-6)


def test_lag_llama_forecast_is_equivariant_to_affine_maps():
    torch.manual_seed(0)
    model = LagLlamaFinance(2, hidden_size=8, lags=[1, 2, 4], max_len=32).double().eval()
    x = torch.randn(3, 20, 2, dtype=torch.float64)
    a, b = 0.3, 5.0
    with torch.no_grad():
        out, moved = model(x), model(a * x + b)
    torch.testing.assert_close(moved["prediction"], a * out["prediction"] + b, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(moved["scale"], a * out["scale"], rtol=1e-6, atol=1e-6)


def test_an_unnormalised_model_is_not_equivariant():
    # the check can fail: the same weights without the normalisation do not commute with a x + b
    model = patch_model().eval()
    x = torch.randn(3, 5 * P, 2, dtype=torch.float64)
    ones = lambda patches: (torch.zeros_like(patches[..., :1]), torch.ones_like(patches[..., :1]))  # noqa: E731
    model.prefix_stats = ones
    with torch.no_grad():
        gap = (model(3.7 * x - 2.2)["prediction"] - (3.7 * model(x)["prediction"] - 2.2)).abs().max()
    assert gap > 1e-3


# ---------------------------------------------------------------- likelihood and quantiles


def test_student_t_nll_equals_torch_log_prob():
    gen = torch.Generator().manual_seed(0)
    y, loc = (
        torch.randn(50, 3, generator=gen, dtype=torch.float64),
        torch.randn(50, 3, generator=gen, dtype=torch.float64),
    )
    scale = 0.1 + torch.rand(50, 3, generator=gen, dtype=torch.float64) * 3
    df = 2 + torch.rand(50, 3, generator=gen, dtype=torch.float64) * 30
    expected = -torch.distributions.StudentT(df, loc, scale).log_prob(y).mean()
    torch.testing.assert_close(student_t_nll(y, loc, scale, df), expected, rtol=1e-12, atol=1e-12)
    output = {"prediction": loc, "scale": scale, "df": df}
    torch.testing.assert_close(StudentTNLLLoss()(output, y), expected, rtol=1e-12, atol=1e-12)


def test_the_pretraining_loss_is_the_nll_of_the_next_patch_in_prefix_units():
    model = patch_model(channels=1).eval()
    x = torch.randn(2, 4 * P, 1, dtype=torch.float64)
    with torch.no_grad():
        out = model(x, per_patch=True)  # (B, N, P, 1), in the units of x
        patches = x[..., 0].reshape(2, 4, P)
        mean, std = model.prefix_stats(patches)
        dist = torch.distributions.StudentT(
            out["df"][:, :-1, :, 0], out["prediction"][:, :-1, :, 0], out["scale"][:, :-1, :, 0]
        )
        # the same likelihood, moved to each prefix's normalised units (log |Jacobian| = log std)
        expected = -(dist.log_prob(patches[:, 1:]) + torch.log(std[:, :-1])).mean()
        torch.testing.assert_close(model.loss(x), expected)


def test_heads_keep_df_above_two_and_scales_positive():
    model = patch_model()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(20.0)  # extreme weights push the raw outputs far out
        out = model(torch.randn(8, 4 * P, 2, dtype=torch.float64))
    assert (out["df"] >= 2).all() and (out["scale"] > 0).all() and torch.isfinite(out["df"]).all()


def test_quantiles_never_cross():
    model = patch_model("quantile")
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(10.0)
        q = model(10 * torch.randn(64, 6 * P, 2, dtype=torch.float64), per_patch=True)["quantiles"]
        raw = model.head(torch.randn(64, 8, dtype=torch.float64)).unflatten(-1, (P, 5))
    assert (q.diff(dim=-1) >= 0).all()
    assert (raw.diff(dim=-1) < 0).any(), (
        "the unconstrained head crosses: the cumulative softplus is what prevents it"
    )


def test_quantile_configuration_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"0.5"):
        TimeSeriesFoundationModel(1, head="quantile", quantiles=[0.1, 0.9])
    with pytest.raises(ValueError, match="sorted"):
        TimeSeriesFoundationModel(1, head="quantile", quantiles=[0.9, 0.5, 0.1])
    with pytest.raises(ValueError, match="head"):
        TimeSeriesFoundationModel(1, head="gaussian")


# ---------------------------------------------------------------- lag features and the robust scaler


def test_lag_features_equal_a_hand_built_reference_with_the_mask():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 9, 3, generator=gen, dtype=torch.float64)
    lags = [1, 2, 5, 12]
    values, mask = lag_features(x, lags)
    for t in range(9):
        for k, lag in enumerate(lags):
            s = t + 1 - lag  # the step the feature for x_{t+1} reads
            assert mask[t, k] == (s >= 0)
            expected = x[:, s] if s >= 0 else torch.zeros(2, 3, dtype=torch.float64)
            torch.testing.assert_close(values[:, t, :, k], expected)
    assert not mask[:, 3].any(), "a lag longer than the window is never valid"


def test_lag_features_are_values_not_differences():
    # the source's x_t - x_{t-l} (zero padded) equals x_t itself while t < l: a value posing as a lag
    x = torch.arange(1.0, 11.0).reshape(1, 10, 1)
    values, mask = lag_features(x, [3])
    assert values[0, :, 0, 0].tolist() == [0, 0, 1, 2, 3, 4, 5, 6, 7, 8]
    assert mask[:, 0].tolist() == [False, False] + [True] * 8


def test_robust_scaler_is_the_prefix_median_and_iqr():
    x = torch.randn(2, 15, 2, dtype=torch.float64)
    median, iqr = robust_prefix_scaler(x)
    for t in (1, 7, 14):
        q = np.quantile(x[:, : t + 1].numpy(), [0.25, 0.5, 0.75], axis=1)
        np.testing.assert_allclose(median[:, t].numpy(), q[1])
        np.testing.assert_allclose(iqr[:, t].numpy(), q[2] - q[0])


def test_lag_llama_calendar_features_are_used_and_checked():
    torch.manual_seed(0)
    model = LagLlamaFinance(1, hidden_size=8, lags=[1, 2], n_calendar=2, max_len=16).eval()
    x, cal = torch.randn(2, 10, 1), torch.randn(2, 10, 2)
    with pytest.raises(ValueError, match="calendar"):
        model(x)
    with pytest.raises(ValueError, match="must match"):
        model(x, torch.randn(2, 9, 2))
    assert not torch.allclose(model(x, cal)["prediction"], model(x, cal + 1)["prediction"])
    with pytest.raises(ValueError, match="max_len"):
        model(torch.randn(1, 17, 1), torch.randn(1, 17, 2))


# ---------------------------------------------------------------- generate


@pytest.mark.parametrize("head", HEADS)
def test_generate_shapes_determinism_and_finite(head):
    model = patch_model(head).float()
    context = torch.randn(3, 5 * P, 2)
    state = torch.get_rng_state()
    paths = model.generate(
        context, horizon=2 * P + 1, n_samples=7, generator=torch.Generator().manual_seed(1)
    )
    assert torch.equal(state, torch.get_rng_state()), "generate must not touch the global random state"
    assert paths.shape == (7, 3, 2 * P + 1, 2) and torch.isfinite(paths).all()
    again = model.generate(
        context, horizon=2 * P + 1, n_samples=7, generator=torch.Generator().manual_seed(1)
    )
    other = model.generate(
        context, horizon=2 * P + 1, n_samples=7, generator=torch.Generator().manual_seed(2)
    )
    assert torch.equal(paths, again) and not torch.equal(paths, other)
    assert paths.std(dim=0).min() > 0, "samples must differ from one another"
    assert model.training, "generate restores the training mode it found"


def test_generate_samples_follow_the_predicted_distribution():
    model = patch_model(channels=1).float().eval()
    context = torch.randn(1, 5 * P, 1)
    paths = model.generate(context, horizon=1, n_samples=4000, generator=torch.Generator().manual_seed(0))
    out = model(context)
    median = out["prediction"][0, 0, 0].item()
    assert abs(paths[:, 0, 0, 0].median().item() - median) < 0.1 * out["scale"][0, 0, 0].item()


def test_generate_refuses_bad_arguments():
    model = patch_model()
    with pytest.raises(ValueError, match="horizon"):
        model.generate(torch.randn(1, 4 * P, 2, dtype=torch.float64), horizon=0)
    with pytest.raises(ValueError, match="NaN"):
        model.generate(torch.full((1, 4 * P, 2), float("nan"), dtype=torch.float64), horizon=2)


# ---------------------------------------------------------------- corpus


def test_real_series_hold_out_series_and_years():
    corpus = real_series(end="2006-12-31", exclude=("^IXIC",))
    names = [s.name for s in corpus.series]
    assert "^IXIC" not in names and {"^GSPC", "AAPL", "WTI"} <= set(names)
    assert all(s.dates.max() <= pd.Timestamp("2006-12-31") for s in corpus.series)
    assert any(d.startswith("VIX") for d in corpus.dropped), "the VIX starts in 2014: no pretraining data"
    assert all(np.isfinite(s.values).all() and len(s.values) == len(s.dates) for s in corpus.series)
    with pytest.raises(ValueError, match="unknown series"):
        real_series(exclude=("NOPE",))


def test_synthetic_series_are_reproducible_and_varied():
    a, b, c = (
        synthetic_series(2, 300, seed=0),
        synthetic_series(2, 300, seed=0),
        synthetic_series(2, 300, seed=1),
    )
    assert [s.name for s in a.series] == [
        "GARCH-0",
        "GJR-0",
        "AR-0",
        "regime-0",
        "GARCH-1",
        "GJR-1",
        "AR-1",
        "regime-1",
    ]
    assert all(np.array_equal(s.values, t.values) for s, t in zip(a.series, b.series, strict=True))
    assert not np.array_equal(a.series[0].values, c.series[0].values)
    assert all(len(s) == 300 and np.isfinite(s.values).all() for s in a.series)
    assert np.std([s.values.mean() for s in a.series]) > 0.05, "paths at different levels"


def test_contexts_end_at_the_origin_and_windows_come_from_the_corpus():
    values = np.arange(100, dtype=np.float32)
    ctx = contexts(values, np.array([9, 50, 99]), 10)
    assert ctx.shape == (3, 10, 1) and ctx[:, -1, 0].tolist() == [9, 50, 99] and ctx[0, 0, 0] == 0
    with pytest.raises(ValueError, match="origin rows"):
        contexts(values, np.array([8]), 10)
    corpus = Corpus([Series("a", values, "test"), Series("b", values + 1000, "test")])
    w = sample_windows(corpus, 50, 20, np.random.default_rng(0))
    assert w.shape == (50, 20, 1) and (np.diff(w[..., 0], axis=1) == 1).all()
    assert (w[:, 0, 0] >= 1000).any() and (w[:, 0, 0] < 1000).any()
    with pytest.raises(ValueError, match="no series"):
        sample_windows(corpus, 5, 200, np.random.default_rng(0))


def test_pretraining_lowers_the_loss_on_held_out_windows():
    corpus = merge(synthetic_series(1, 600, seed=0))
    torch.manual_seed(0)
    model = TimeSeriesFoundationModel(1, patch_size=P, hidden_size=16, max_patches=8)
    held_out = torch.from_numpy(
        sample_windows(synthetic_series(1, 600, seed=5), 64, 8 * P, np.random.default_rng(1))
    )
    with torch.no_grad():
        before = model.loss(held_out).item()
    losses = pretrain(model, corpus, steps=80, length=8 * P, batch_size=32, seed=0)
    with torch.no_grad():
        after = model.loss(held_out).item()
    assert len(losses) == 80 and after < before - 0.05


def test_mean_scale_tokenizer_round_trip_is_within_half_a_bin_and_clips_outside():
    tok = MeanScaleTokenizer(n_bins=64, low=-4.0, high=4.0)
    context = torch.randn(3, 50, dtype=torch.float64) + 2.0
    s = tok.scale(context)
    torch.testing.assert_close(s[:, 0], context.abs().mean(dim=1))
    inside = s * (torch.rand(3, 200, dtype=torch.float64) * 7.9 - 3.95)  # values inside [s low, s high]
    tokens = tok.encode(inside, s)
    assert tokens.dtype == torch.int64 and tokens.min() >= 0 and tokens.max() < 64
    assert ((tok.decode(tokens, s) - inside).abs() <= s * tok.width / 2 + 1e-12).all()
    assert len(tokens.unique()) > 0.9 * 64, "uniform values must use (nearly) every bin"
    far = torch.tensor([[-1e6, 1e6]], dtype=torch.float64)
    assert tok.encode(far, torch.ones(1, 1, dtype=torch.float64)).tolist() == [[0, 63]]


def test_mean_scale_tokenizer_is_scale_free_and_rejects_bad_shapes():
    tok = MeanScaleTokenizer(n_bins=32, low=-3.0, high=3.0)
    x = torch.randn(2, 40, dtype=torch.float64)
    assert torch.equal(tok.encode(x, tok.scale(x)), tok.encode(7.5 * x, tok.scale(7.5 * x)))
    with pytest.raises(ValueError, match="shape"):
        tok.scale(x[..., None])
    with pytest.raises(ValueError, match="n_bins"):
        MeanScaleTokenizer(n_bins=1)


def test_a_linear_probe_trains_the_head_only():
    """The chapter's linear probe: freeze the model, unfreeze ``head``, and ``pretrain`` must move the head
    and leave every other weight bit for bit (no weight decay or update on frozen weights)."""
    torch.manual_seed(0)
    model = TimeSeriesFoundationModel(1, patch_size=P, hidden_size=16, max_patches=8)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.requires_grad_(False)
    model.head.requires_grad_(True)
    pretrain(model, merge(synthetic_series(1, 400, seed=0)), steps=5, length=8 * P, batch_size=16, seed=0)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved == {n for n, _ in model.named_parameters() if n.startswith("head.")}


def test_fracast_metadata_names_the_pretraining_corpora_the_chapter_cites():
    """Chapter 06b reads fracast's pretraining corpora from its package metadata and warns that they may
    hold equity and index series over the test years; the warning must follow the installed version."""
    import importlib.metadata
    import re

    card = importlib.metadata.metadata("fracast").get_payload()
    corpora = set(re.findall(r"^\| `\w+` \| `([\w/-]+)` \| [\d.]+ GiB \|$", card, flags=re.M))
    assert {"Salesforce/GiftEvalPretrain", "Salesforce/lotsa_data", "autogluon/chronos_datasets"} <= corpora
