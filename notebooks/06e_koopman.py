# %% [markdown]
# # Chapter 6e: Koopman operators for volatility
#
# Does a nonlinear system become **linear** in the right coordinates? The Koopman operator says it can,
# on a space of functions of the state; dynamic mode decomposition (DMD) and a deep Koopman network
# estimate it, and its eigenvalues read as decay rates and half-lives of volatility shocks. This chapter
# builds the tools, tests them where the answer is known, and then asks the questions a quant would ask
# on real data: does the deep model forecast better than a least-squares solve and HAR? How precise is a
# half-life? Can we compare half-lives across assets?
#
# **Learning objectives.** After this chapter you can
#
# 1. explain the Koopman operator, compute DMD and extended DMD in a few lines of numpy, and say when a
#    dictionary of observables makes a nonlinear system exactly linear;
# 2. train a deep Koopman network (Lusch, Kutz & Brunton 2018) with reconstruction, linearity and
#    multi-step prediction losses over several seeds, and evaluate its volatility forecasts beside
#    Hankel DMD and HAR with Diebold-Mariano tests, corrected QLIKE and the model confidence set;
# 3. show that Hankel DMD on a delay vector is a reduced-rank autoregression and HAR a restricted one,
#    and use that to explain which model wins;
# 4. put bootstrap intervals on eigenvalues and half-lives (a block bootstrap over time), check their
#    stability across seeds, and set them beside GARCH persistence and HAR's impulse response;
# 5. fit DMD with control on a forced system and say what its input matrix means for an intervention;
# 6. run HAVOK on a delay embedding, reproduce a chaotic signal with a linear model and a forcing input,
#    and test whether the forcing's bursts precede switches (Lorenz lobes, volatility regimes) beyond chance;
# 7. estimate the stochastic Koopman operator with EDMD, check it against the Ornstein-Uhlenbeck closed
#    form, and explain why noise in the observations biases DMD eigenvalues towards zero;
# 8. recognise the defects of the source module: an eigenvalue network that never learns and a one-step
#    loss that hides rollout errors.

# %% [markdown]
# ## Parameters
# Every size of the chapter lives here. The defaults run the notebook in about a minute on a laptop
# CPU; raise `EPOCHS`, `N_BOOT` and `SEEDS` for a more careful study.

# %%
N_DELAYS = 22  # days in the delay embedding: the month of HAR
LATENT = 4  # Koopman observables (eigenvalues of K)
HIDDEN = 16  # width of the encoder and the decoder
TRAIN_HORIZON = 5  # steps of the multi-step prediction and linearity losses
HORIZONS = (1, 5, 22)  # forecast horizons of the evaluation (days)
DMD_RANK = 4  # rank of the Hankel DMD baseline
EPOCHS = 30
LR = 3e-3
BATCH_SIZE = 256
SEEDS = (0, 1, 2)
N_BOOT = 200  # block-bootstrap resamples for eigenvalue intervals
BLOCK = 50  # days per bootstrap block (volatility is persistent: long blocks)
KOOPMAN_BOOT = 4  # block-bootstrap retrainings of the deep Koopman network (each costs one training)
ASSETS = ("^GSPC", "^IXIC", "AAPL", "MSFT", "IBM", "GOOG")  # the packaged series
COMMON = ("2005", "2012")  # the years every packaged series covers
LORENZ_X0, LORENZ_T, LORENZ_DT = (-8.0, 8.0, 27.0), 100.0, 0.005  # HAVOK's Lorenz trajectory
LORENZ_SHOW = 25.0  # time units in the HAVOK figure
HAVOK_DELAYS, HAVOK_RANK = 20, 11  # delays (a window of 0.1 time units) and rank of HAVOK on Lorenz
BURST = 2.0  # a forcing burst: |v_r - mean| above this many standard deviations
LEAD = 40  # Lorenz steps (0.2 time units) in which a burst counts as preceding a lobe switch
REGIME_WINDOW = 63  # days in the trailing mean that defines a volatility regime
REGIME_BAND = 0.5  # hysteresis band of a regime, in standard deviations of that mean
VOL_LEAD = 22  # days in which a burst counts as preceding a regime shift
OU_THETA, OU_SIGMA, OU_DT = 1.0, 1.0, 0.05  # Ornstein-Uhlenbeck process of the stochastic Koopman section
OU_STEPS, OU_PATHS = 20_000, 40  # steps per simulated path, paths (the repetition interval)
NOISE_SDS = (0.0, 0.25, 0.5, 1.0)  # observation noise standard deviations (the state's is 0.71)

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from course_lib import get_device, set_seed
from course_lib.causal import simulate_var
from course_lib.data.features import feature_frame
from course_lib.data.prices import load_prices
from course_lib.data.windows import make_task
from course_lib.evaluation import seed_summary, verdicts, volatility_baselines
from course_lib.evaluation.conformal import moving_block_indices
from course_lib.evaluation.persistence import garch_persistence, har_ar_coefficients
from course_lib.models.koopman import (
    DeepKoopmanFinance,
    ar_eigenvalues,
    attenuation,
    bootstrap_dmd,
    burst_precedence,
    discrete_spectrum_flow,
    dmd,
    dmd_control,
    edmd,
    eigenfunctions,
    half_lives,
    hankel_ar_coefficients,
    havok,
    impulse_response,
    koopman_loss,
    linearity_residual,
    logvol_path_to_targets,
    lorenz,
    monomials,
    ou_eigenfunctions,
    ou_koopman_eigenvalues,
    response_half_life,
    simulate_ou,
    switches,
)
from course_lib.testing import parameters_without_gradient
from course_lib.training import fit_koopman

device = get_device()
torch.set_num_threads(1)  # tiny models: extra threads only add synchronisation on a busy CPU
set_seed(0)
print(f"device: {device}")

# %% [markdown]
# ## Intuition: linear in the right coordinates
#
# A nonlinear map $x_{t+1} = F(x_t)$ is hard to analyse: no eigenvalues, no superposition. Koopman's
# idea (1931) is to stop following the state and follow **functions of the state** instead, called
# observables $g(x)$. The Koopman operator $\mathcal K$ maps an observable to its value one step later,
# $(\mathcal K g)(x) = g(F(x))$, and it is *linear* in $g$ even when $F$ is not. The price: it acts
# on a space of functions, usually infinite-dimensional. The practical hope is a few observables
# $g_1, \dots, g_d$ whose span is invariant, so that
# $$ g(x_{t+1}) = K\, g(x_t), \qquad K \in \mathbb R^{d \times d}. $$
# Then everything from linear algebra is back: $h$-step forecasts $g(x_{t+h}) = K^h g(x_t)$, and
# eigenvalues $\lambda_j$ that say how each pattern evolves. A real $0 < \lambda < 1$ decays, with
# half-life $\ln 0.5 / \ln \lambda$ steps; a complex pair $r e^{\pm i\theta}$ oscillates with period
# $2\pi/\theta$ steps while it decays at rate $r$.
#
# ## The maths: DMD, extended DMD, and what they are in time-series terms
#
# Stack snapshots as columns, $X = [x_0, \dots, x_{T-2}]$ and $Y = [x_1, \dots, x_{T-1}]$. **DMD**
# (Schmid 2010; Tu et al. 2014) takes the observables to be the state itself and solves the least
# squares problem $\min_A \lVert Y - AX \rVert_F$ on a rank-$r$ SVD $X \approx U \Sigma V^\top$:
# $$ \tilde A = U^\top Y V \Sigma^{-1}, \qquad \tilde A w = \lambda w, \qquad \phi = Y V \Sigma^{-1} w / \lambda . $$
# **Extended DMD** (Williams, Kevrekidis & Rowley 2015) lifts the state first, through a dictionary
# $\psi(x)$ you choose, and solves $\psi(x_{t+1}) \approx K \psi(x_t)$ the same way. The **deep
# Koopman network** learns the dictionary: an encoder $\varphi$ to observables and a decoder
# $\psi$ back, trained so that
# $$ \mathcal L = \underbrace{\lVert x_t - \psi(\varphi(x_t)) \rVert^2}_{\text{reconstruction}}
#    + \frac1H\sum_{h=1}^{H} \Big( \underbrace{\lVert \varphi(x_{t+h}) - K^h \varphi(x_t) \rVert^2}_{\text{linear dynamics}}
#    + \underbrace{\lVert x_{t+h} - \psi(K^h\varphi(x_t)) \rVert^2}_{\text{prediction}} \Big)
#    + \beta \sum_j \max(|\lambda_j(K)| - 1, 0)^2 . $$
# The horizon $H > 1$ matters: a one-step loss (as in the source module) lets errors compound over the
# rollout unseen. The last term is an optional penalty on unstable eigenvalues.
#
# DMD and EDMD are a dozen lines of numpy in `course_lib.models.koopman` (`dmd`, `edmd`). We do not use
# `pykoopman`: it is not a dependency of the course, and the least-squares solve is the lesson.
#
# **A time-series reading.** Take the state to be a *delay vector* of a scalar series,
# $x_t = (v_{t-D+1}, \dots, v_t)$ (a Hankel matrix of snapshots). One step of any linear map on it
# shifts the window and forecasts the newest entry as $\hat v_{t+1} = \sum_{k=1}^{D} c_k v_{t+1-k}$:
# **Hankel DMD is an AR($D$) model**, of reduced rank $r$ (its operator lives on $r$ directions of the
# window), and at full rank it is exactly the AR($D$) fitted by least squares. HAR,
# $v_{t+1} = b_0 + b_1 v_t + b_5 \bar v^{(5)}_t + b_{22} \bar v^{(22)}_t$, is another AR(22) with only
# three free coefficients. So on volatility the Koopman family competes with HAR on HAR's own ground.
#
# **Relatives you will meet.** *DMD with control* (Proctor, Brunton & Kutz 2016) adds an input,
# $x_{t+1} = A x_t + B u_t$, fitted as $[A\ B] = Y [X; U]^{+}$: the bridge from forecasting to
# intervention (below). *HAVOK* (Brunton et al. 2017) runs DMD on a delay embedding and treats the
# last delay coordinate as a forcing input, for chaotic systems; we run it on the Lorenz system and on
# volatility near the end of the chapter. The *stochastic Koopman operator* (Mezić 2005; Wanner & Mezić
# 2022) acts on expectations, $(\mathcal K g)(x) = E[g(x_{t+1}) \mid x_t = x]$: the right object for
# random data like volatility. Least squares estimates it when the noise is in the dynamics, and is
# biased when the noise is in the observations; the chapter's last section checks both against the
# closed form of the Ornstein-Uhlenbeck process.

# %% [markdown]
# ## DMD on a toy with a known answer
#
# Lusch et al.'s first example has a **discrete spectrum**: $\dot x_1 = \mu x_1$,
# $\dot x_2 = \lambda (x_2 - x_1^2)$ with $\mu = -0.05$, $\lambda = -1$. It is nonlinear, but the three
# observables $(x_1, x_2, x_1^2)$ span an invariant subspace ($\tfrac{d}{dt} x_1^2 = 2\mu x_1^2$), so
# sampled every $\Delta t$ the flow is exactly linear in them with eigenvalues $e^{\mu\Delta t}$,
# $e^{\lambda\Delta t}$ and $e^{2\mu\Delta t}$. Plain DMD only has $(x_1, x_2)$ and cannot be exact;
# EDMD with the right dictionary is.

# %%
MU, LAM, DT = -0.05, -1.0, 0.1
toy = discrete_spectrum_flow(np.array([0.5, -0.4]), 80, MU, LAM, DT)  # (80, 2)
truth = np.sort(np.exp(np.array([MU, LAM, 2 * MU]) * DT))
plain, lifted = dmd(toy), edmd(toy, lambda s: np.c_[s, s[:, 0] ** 2])
one_step = {
    "DMD on (x1, x2)": np.abs(toy[1:] - plain.predict(toy[:-1], 1)[:, 0]).max(),
    "EDMD on (x1, x2, x1^2)": np.abs(
        toy[1:] - lifted.predict(np.c_[toy[:-1], toy[:-1, 0] ** 2], 1)[:, 0, :2]
    ).max(),
}
print("true eigenvalues:  ", np.round(truth, 5))
print("EDMD eigenvalues:  ", np.round(np.sort(lifted.eigenvalues.real), 5))
print("DMD eigenvalues:   ", np.round(np.sort(plain.eigenvalues.real), 5), "(two only: x1^2 is missing)")
print({k: f"{v:.1e}" for k, v in one_step.items()}, "largest one-step error")
assert np.allclose(np.sort(lifted.eigenvalues.real), truth, atol=1e-8)

# %% [markdown]
# The deep Koopman network finds such observables itself. Trained for a few seconds on trajectories of
# the same system, its latent dynamics become linear: the residual $\lVert K z_t - z_{t+1}\rVert$,
# relative to the spread of $z$, falls by an order of magnitude (`tests/test_koopman.py` checks it).

# %%
set_seed(0)
rng = np.random.default_rng(0)
toy_sequences = torch.tensor(
    discrete_spectrum_flow(rng.uniform(-0.5, 0.5, (256, 2)), 30, MU, LAM, DT), dtype=torch.float32
)
toy_model = DeepKoopmanFinance(2, hidden_size=32, latent_size=3)


before = linearity_residual(toy_model, toy_sequences)
toy_history = fit_koopman(toy_model, toy_sequences, horizon=5, epochs=40, lr=3e-3, batch_size=64)
after = linearity_residual(toy_model, toy_sequences)
print(f"relative linearity residual: {before:.3f} at initialisation, {after:.3f} after training")
assert after < before / 5, "training should make the latent dynamics much more linear"
print(
    "learned eigenvalues:", np.round(np.sort(np.abs(toy_model.eigen()[0])), 3), " true:", np.round(truth, 3)
)

# %% [markdown]
# The learned eigenvalues need not equal these three (compare the two printed lines). Products of Koopman
# eigenfunctions are eigenfunctions too ($x_1^k$ has the eigenvalue $e^{k\mu\Delta t}$, and so on), so a
# three-dimensional latent space can settle on another invariant subspace, and over 30 steps modes at
# 0.990 and 0.995 are hard to tell apart. The linearity is what is learnt; which eigenvalues is
# identified only as well as the data and the latent size constrain it.
#
# > **Pitfall (erratum: DeepKoopmanFinance)** The source module builds an `eigenvalue_predictor` layer
# > "for eigenvalue regularization" and never calls it. A layer outside the forward pass gets no gradient
# > and never learns: its weights are whatever the initialisation drew. `course_lib` has no such layer,
# > and the model contract checks that every parameter receives a gradient. Here is the check on a copy
# > of the source's layout:


# %%
class SourceLayoutKoopman(nn.Module):
    """The source's structure in miniature: encoder, K, decoder, and an eigenvalue layer nobody calls."""

    def __init__(self, n=2, d=3):
        super().__init__()
        self.encoder, self.K, self.decoder = nn.Linear(n, d), nn.Linear(d, d, bias=False), nn.Linear(d, n)
        self.eigenvalue_predictor = nn.Linear(d, 2 * d)

    def forward(self, x):
        return self.decoder(self.K(self.encoder(x)))


x_probe = torch.randn(8, 2)
for name, model, run in [
    ("source layout", SourceLayoutKoopman(), lambda m: m(x_probe)),
    (
        "DeepKoopmanFinance",
        DeepKoopmanFinance(2, hidden_size=8, latent_size=3),
        lambda m: m(x_probe[:, None]),
    ),
]:
    out = run(model)
    print(
        f"{name:>20}: parameters without a gradient: {parameters_without_gradient(model, (torch.randn_like(out) * out).sum())}"
    )

# %% [markdown]
# ## DMD with control: the bridge to intervention
#
# A forced linear system $x_{t+1} = A x_t + B u_t$ with a known $A$ (eigenvalues 0.9 and 0.5) and an input
# that enters the second state only. Plain DMD sees the input's effect as part of the dynamics and
# gets the eigenvalues wrong; DMD with control puts the input in the regression and recovers $A$ and
# $B$. $B$ answers an interventional question: *how does $x_{t+1}$ move if I change $u_t$, holding $x_t$
# fixed?* It does so only because here $u$ varies independently of the system's noise (it is
# randomised); an input chosen in response to unobserved shocks would bias $B$ as any confounder does
# (chapter 6f).

# %%
A_true = np.array([[0.9, 0.1], [0.0, 0.5]])
B_true = np.array([[0.0], [1.0]])
rng = np.random.default_rng(0)
u_forced = rng.standard_normal((299, 1))
x_forced = np.zeros((300, 2))
x_forced[0] = [1.0, -1.0]
for t in range(299):
    x_forced[t + 1] = A_true @ x_forced[t] + B_true @ u_forced[t] + 0.01 * rng.standard_normal(2)
controlled, uncontrolled = dmd_control(x_forced, u_forced), dmd(x_forced)
print("true eigenvalues of A:      ", np.sort(np.linalg.eigvals(A_true).real))
print("DMD with control:           ", np.round(np.sort(controlled.eigenvalues.real), 3))
print("plain DMD (input ignored):  ", np.round(np.sort_complex(uncontrolled.eigenvalues), 3))
print("B estimated by DMDc:        ", np.round(controlled.B.ravel(), 3), " true:", B_true.ravel())
assert np.allclose(controlled.A, A_true, atol=0.02) and np.allclose(controlled.B, B_true, atol=0.02)
assert not np.allclose(np.sort(uncontrolled.eigenvalues.real), [0.5, 0.9], atol=0.05)

# %% [markdown]
# ## The deep Koopman network on volatility
#
# The state is today's log Parkinson volatility of the S&P 500, scaled on the training years, and the
# encoder reads a **delay embedding** of the last `N_DELAYS` = 22 days (the month of HAR). The split is
# the course's standard one (train to 2006, validation 2007-2008, test 2009-2018). One model gives every
# horizon: the rollout $\psi(K^h z_t)$ forecasts each of the next 22 days, and the course's target for
# horizon $h$, the log of the mean variance over the next $h$ days, is computed from that path. Beside
# it: a Hankel DMD (the same delay vectors, a rank-`DMD_RANK` operator, a least-squares solve) and the
# standard baselines (EWMA, GARCH, HAR, log-HAR), all fitted on the training years. Three seeds of the
# network: its estimates depend on the initialisation, and we want to see how much.

# %%
task = make_task(
    "volatility", ticker="^GSPC", lookback=N_DELAYS, horizons=HORIZONS, features=["log_vol_parkinson"]
)
baselines = volatility_baselines(task)
print(task)
mean, scale = task.scaler.mean_[0], task.scaler.scale_[0]
scaled = (task.frame["log_vol_parkinson"].to_numpy() - mean) / scale
train_series = scaled[: task.train.rows[-1] + 1]  # inputs the training windows cover, nothing later
sequences = sliding_window_view(train_series, N_DELAYS + TRAIN_HORIZON)[:, :, None].astype(
    np.float32
)  # (N, T, 1)
print(f"{len(sequences)} training sequences of {N_DELAYS + TRAIN_HORIZON} days")


def koopman_targets(model, split):
    """Forecasts of the course's horizons from a model's 22-day rollout, in natural units."""
    with torch.no_grad():
        path = model.rollout(torch.from_numpy(task.split(split).X).to(device), max(HORIZONS))[..., 0]
    return logvol_path_to_targets(path.cpu().numpy() * scale + mean, HORIZONS).astype(np.float32)


start = time.perf_counter()
predictions, val_predictions, models = {"DeepKoopman": []}, {"DeepKoopman": []}, []
for seed in SEEDS:
    set_seed(seed)
    model = DeepKoopmanFinance(1, hidden_size=HIDDEN, latent_size=LATENT, n_delays=N_DELAYS).to(device)
    history = fit_koopman(
        model,
        torch.from_numpy(sequences).to(device),
        TRAIN_HORIZON,
        epochs=EPOCHS,
        lr=LR,
        batch_size=BATCH_SIZE,
        stability=1.0,
        seed=seed,
    )
    predictions["DeepKoopman"].append(koopman_targets(model, "test"))
    val_predictions["DeepKoopman"].append(koopman_targets(model, "val"))
    models.append(model)
print(
    f"trained {len(SEEDS)} deep Koopman models in {time.perf_counter() - start:.1f} s; "
    f"last epoch's loss {history[-1]:.3f} (first {history[0]:.3f})"
)
val_series = scaled[
    task.val.rows[0] - N_DELAYS + 1 : task.val.rows[-1] + 1
]  # validation years, with their delays
val_sequences = torch.from_numpy(
    sliding_window_view(val_series, N_DELAYS + TRAIN_HORIZON)[:, :, None].astype(np.float32)
)
with torch.no_grad():
    parts = koopman_loss(models[0].cpu(), val_sequences, TRAIN_HORIZON, stability=1.0)
models[0].to(device)
print("validation losses of seed 0 (scaled units):", {k: round(v.item(), 4) for k, v in parts.items()})

# Hankel DMD: DMD on the training delay vectors (oldest ... newest day), forecasts from the test windows
hankel = dmd(sliding_window_view(train_series, N_DELAYS), rank=DMD_RANK)


def hankel_targets(split):
    path = hankel.predict(task.split(split).X[..., 0], max(HORIZONS))[..., -1]  # newest day of each step
    return logvol_path_to_targets(path * scale + mean, HORIZONS).astype(np.float32)


predictions["HankelDMD"] = [hankel_targets("test")]
val_predictions["HankelDMD"] = [hankel_targets("val")]
# seed_summary wants the same number of seeds for every model: DMD is deterministic, so repeat it
predictions["HankelDMD"] *= len(SEEDS)
val_predictions["HankelDMD"] *= len(SEEDS)


# %% [markdown]
# ### Multi-step forecasts beside HAR, and the verdict
# One protocol for every row: fitted once on the training years, frozen, scored on 2009-2018. `MSE` is on
# the log volatility, `QLIKE_lc` on the variance after the course's causal level correction (learnt at
# each origin from the errors already known); `ens DM` compares the seed ensemble with the benchmark the
# course's rule picks, the strongest classical baseline on the validation years (named in the table's
# header; Newey-West lags for the overlapping multi-day targets; a positive statistic means a larger
# loss than the benchmark; the benchmark's own row has no test against itself, so its test cells are
# blank), and `in_MCS` marks the 90% model confidence set.

# %%
results = seed_summary(task, predictions, baselines, val_predictions=val_predictions)
bench = results.attrs["benchmark"]
print(results.columns.name)
results.style.format(precision=4, na_rep="")  # blank: the benchmark's row has no test against itself

# %%
print(verdicts(results, models=["DeepKoopman", "HankelDMD"]))
verdict = {}
for h in HORIZONS:
    table = results.xs(h, level="horizon")
    rows = {}
    for name in ("DeepKoopman", "HankelDMD"):
        worse = table.loc[name, "ens DM_QLIKE"] > 0 and table.loc[name, "ens p_QLIKE"] < 0.05
        better = table.loc[name, "ens DM_QLIKE"] < 0 and table.loc[name, "ens p_QLIKE"] < 0.05
        rows[name] = {
            "in MCS": bool(table.loc[name, "in_MCS"]),
            "QLIKE_lc": table.loc[name, "QLIKE_lc"],
            "vs benchmark on QLIKE_lc": "worse"
            if worse
            else "better"
            if better
            else "no significant difference",
        }
    verdict[h] = rows
    print(
        f"h = {h:>2}: deep Koopman {'in' if rows['DeepKoopman']['in MCS'] else 'NOT in'} the MCS, "
        f"{rows['DeepKoopman']['vs benchmark on QLIKE_lc']} (QLIKE_lc {rows['DeepKoopman']['QLIKE_lc']:.4f}); "
        f"Hankel DMD {'in' if rows['HankelDMD']['in MCS'] else 'NOT in'} the MCS, "
        f"{rows['HankelDMD']['vs benchmark on QLIKE_lc']} (QLIKE_lc {rows['HankelDMD']['QLIKE_lc']:.4f}); "
        f"{bench} {table.loc[bench, 'QLIKE_lc']:.4f}; lowest QLIKE_lc: {table['QLIKE_lc'].idxmin()}"
    )
deep_in_mcs = sum(verdict[h]["DeepKoopman"]["in MCS"] for h in HORIZONS)
dmd_in_mcs = sum(verdict[h]["HankelDMD"]["in MCS"] for h in HORIZONS)
print(f"deep Koopman in the MCS at {deep_in_mcs} of {len(HORIZONS)} horizons, Hankel DMD at {dmd_in_mcs}")
outcomes = {}
for name in ("DeepKoopman", "HankelDMD"):
    for outcome in ("worse", "better"):
        outcomes[name, outcome] = [
            h for h in HORIZONS if verdict[h][name]["vs benchmark on QLIKE_lc"] == outcome
        ]
        print(
            f"{name} significantly {outcome} than {bench} on corrected QLIKE at h = {outcomes[name, outcome] or 'none'}"
        )
print(
    f"In words: the least-squares Hankel DMD is in the model confidence set at {dmd_in_mcs} of {len(HORIZONS)} "
    f"horizons, the deep Koopman network at {deep_in_mcs}, so the network "
    + ("does not earn its training here" if dmd_in_mcs >= deep_in_mcs else "earns its training here")
    + f"; against {bench}, deep Koopman is significantly better at h = {outcomes['DeepKoopman', 'better'] or 'none'} "
    f"and worse at h = {outcomes['DeepKoopman', 'worse'] or 'none'}, Hankel DMD better at "
    f"h = {outcomes['HankelDMD', 'better'] or 'none'} and worse at h = {outcomes['HankelDMD', 'worse'] or 'none'}."
)

# %% [markdown]
# ### The same comparison at a full budget
# The verdicts above belong to this notebook's budget. The repository keeps the same comparison (the same
# task, models and table) trained at a full budget: more seeds, each trained until its validation loss
# stopped improving, where this notebook trains a fixed number of epochs (`make reference`; the tables,
# the command, the machine and the date are in `docs/reference/06e.md`). Below, each Koopman model's row
# at each horizon at this budget beside its row at the full budget. The verdict of a row is the
# Diebold-Mariano test of its seed ensemble against the benchmark on corrected QLIKE at 5%, with its
# membership of the 90% model confidence set; where the two budgets disagree, the budget, not the
# architecture, decided this notebook's verdict.

# %%
from course_lib.evaluation.reference import budget_comparison, budget_verdicts, load_reference, provenance

full_reference = load_reference("06e")  # docs/reference/06e.json of this repository, from any directory
print(provenance(full_reference))
comparison = budget_comparison(
    results,
    full_reference,
    models=["DeepKoopman", "HankelDMD"],
    notebook_budget={"epochs": EPOCHS, "seeds": SEEDS},
)
print(comparison.round(4).to_string())
print(budget_verdicts(comparison))

# %% mystnb={"image": {"alt": "Line chart: the realised 5-day log volatility target and the forecasts of the deep Koopman ensemble, Hankel DMD and log-HAR over the last year of the test (forecast origin dates on the x axis, log volatility on the y axis)"}}
fig, ax = plt.subplots(figsize=(10, 3.5))
last = slice(-250, None)
test_dates = task.test.dates[last]
ax.plot(test_dates, task.test.y[last, 1], color="black", lw=1, label="realised (5-day target)")
ax.plot(test_dates, np.mean(predictions["DeepKoopman"], axis=0)[last, 1], label="deep Koopman (ensemble)")
ax.plot(test_dates, predictions["HankelDMD"][0][last, 1], label="Hankel DMD")
ax.plot(test_dates, baselines["log_har"][last, 1], label="log-HAR")
ax.set(
    xlabel="forecast origin",
    ylabel="log volatility (log %)",
    title="5-day volatility forecasts, last year of the test",
)
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# **The verdict** is the sentence printed above, computed from this run: how often each Koopman model is
# in the model confidence set, and where it is significantly better or worse than the benchmark. The
# next section says why a linear Hankel DMD and HAR are hard to beat here: both are autoregressions.
#
# ### Why: Hankel DMD and HAR are both autoregressions
# The one-step map of a Hankel DMD forecasts the newest day from the last 22: a vector of AR(22)
# coefficients, which `hankel_ar_coefficients` reads off the operator. At full rank these are exactly
# the least-squares AR(22); at rank 4 they are a smoothed, reduced-rank version; HAR's three
# coefficients spread over 1, 5 and 22 days are a third, restricted AR(22). All three are fitted on the
# same scaled training series.

# %% mystnb={"image": {"alt": "Line chart: AR coefficient (y axis) at lags 1 to 22 days (x axis) of three AR(22) models of daily log volatility, the OLS AR(22), the rank-4 Hankel DMD and HAR; all put a large weight on lag 1 and a small long tail"}}
train_delays = sliding_window_view(train_series, N_DELAYS)  # (T, 22): oldest ... newest
lagged = sliding_window_view(train_series[:-1], N_DELAYS)[:, ::-1]  # (T - 1, 22): lag 1 first
ols_ar, *_ = np.linalg.lstsq(lagged, train_series[N_DELAYS:], rcond=None)  # AR(22) without intercept
full_hankel_ar = hankel_ar_coefficients(dmd(train_delays))
assert np.allclose(full_hankel_ar, ols_ar, atol=1e-8), "full-rank Hankel DMD is the least-squares AR(22)"
hankel_ar = hankel_ar_coefficients(hankel)
assert np.allclose(hankel.predict(train_delays[:-1], 1)[:, 0, -1], train_delays[:-1, ::-1] @ hankel_ar), (
    "rank-4 Hankel DMD's forecast is an AR(22) with these coefficients"
)
har_ar, har_intercept = har_ar_coefficients(train_series)
print(
    "largest |difference| between the full-rank Hankel DMD and the OLS AR(22): "
    f"{np.abs(full_hankel_ar - ols_ar).max():.1e}"
)
ar_fits = pd.DataFrame(
    {"OLS AR(22) = full-rank Hankel DMD": ols_ar, f"Hankel DMD, rank {DMD_RANK}": hankel_ar, "HAR": har_ar},
    index=pd.RangeIndex(1, N_DELAYS + 1, name="lag (days)"),
)
one_step_mse = {
    name: float(
        np.mean((train_series[N_DELAYS:] - lagged @ coef - (har_intercept if name == "HAR" else 0)) ** 2)
    )
    for name, coef in ar_fits.items()
}
print("in-sample one-step MSE (scaled units):", {k: round(v, 4) for k, v in one_step_mse.items()})
ax = ar_fits.plot(marker=".", figsize=(9, 3.5), title="three AR(22) models of daily log volatility")
ax.set(ylabel="coefficient")
plt.tight_layout()
plt.show()

# %% [markdown]
# The three coefficient profiles tell the story: a large weight on yesterday and a long, small tail.
# HAR imposes the tail's shape with three numbers; rank-4 Hankel DMD estimates it from four directions
# of the window; the deep Koopman network adds a nonlinear encoder and decoder around a 4 x 4 linear
# map and has to *learn* what the least squares solves exactly. With one noisy scalar series there is
# little nonlinear structure for it to find, so the extra flexibility costs variance (three seeds
# disagree, see below) without buying bias. That is the reduced-rank AR reading of the table.

# %% [markdown]
# ## Spectra, with error bars
#
# ### Eigenvalues in the complex plane
# Each eigenvalue of $K$ is a mode of volatility: its distance from the origin is the daily decay
# factor, its angle an oscillation. Half-life in trading days: $\ln 0.5 / \ln|\lambda|$. First the
# deep Koopman models of the three seeds, then the Hankel DMD.

# %% mystnb={"image": {"alt": "Two panels of the complex plane (real part on the x axis, imaginary part on the y axis) with the unit circle: eigenvalues of the deep Koopman operator for three seeds (left) and of the rank-4 Hankel DMD (right), each labelled with its half-life in days"}}
seed_lives = pd.DataFrame(
    {
        f"deep Koopman, seed {s}": np.sort(half_lives(m.eigen()[0]))[::-1]
        for s, m in zip(SEEDS, models, strict=True)
    }
)
hankel_order = np.argsort(-np.abs(hankel.eigenvalues))
seed_lives["Hankel DMD"] = half_lives(hankel.eigenvalues[hankel_order])
seed_lives["Hankel DMD eigenvalue"] = [f"{v:.3f}" for v in hankel.eigenvalues[hankel_order]]
seed_lives.index.name = "mode (slowest first)"
print(seed_lives.round(1).to_string())
slowest_by_seed = seed_lives.iloc[0, : len(SEEDS)].astype(float)
print(
    f"slowest deep Koopman half-life across seeds: {slowest_by_seed.min():.1f} to {slowest_by_seed.max():.1f} days"
)

fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
circle = np.exp(1j * np.linspace(0, 2 * np.pi, 200))
for ax, (name, sets) in zip(
    axes,
    [
        ("deep Koopman, three seeds", [m.eigen()[0] for m in models]),
        (f"Hankel DMD (rank {DMD_RANK})", [hankel.eigenvalues]),
    ],
    strict=True,
):
    ax.plot(circle.real, circle.imag, color="grey", lw=0.8, label="|lambda| = 1")
    for k, values in enumerate(sets):
        ax.scatter(values.real, values.imag, color=f"C{k + 1}", zorder=3, label=f"set {k}")
        for value, life in zip(values, half_lives(values), strict=True):
            ax.annotate(
                f"{life:.1f} d",
                (value.real, value.imag),
                textcoords="offset points",
                xytext=(5, 5),
                fontsize=7,
            )
    ax.set(
        xlabel="real part", ylabel="imaginary part", title=f"{name}: eigenvalues, half-lives", aspect="equal"
    )
    ax.legend(loc="lower left", fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# Two warnings before reading these. The deep model's eigenvalues change from seed to seed: even the
# slowest mode's half-life moves over the printed range, and the fast modes are whatever the encoder
# found convenient. And a
# Hankel DMD eigenvalue on the **negative** real axis flips sign every day (a period of 2 days): in daily
# volatility that is noise the least squares fitted, not a cycle, and its "half-life" describes nothing
# economic, however neatly it prints.
#
# ### A block bootstrap for the Hankel DMD spectrum
# How precise is the slowest half-life? `bootstrap_dmd` resamples blocks of `BLOCK` consecutive
# snapshot pairs (keeping the serial dependence within a block), refits the DMD and sorts each refit's
# eigenvalues by modulus, so that column $j$ is "the $j$-th slowest mode".

# %%
start = time.perf_counter()
boot = bootstrap_dmd(train_delays, rank=DMD_RANK, n_boot=N_BOOT, block=BLOCK, seed=0)  # (N_BOOT, 4)
boot_lives = half_lives(boot)
interval = pd.DataFrame(
    {
        "estimate": half_lives(hankel.eigenvalues[hankel_order]),
        "5%": np.quantile(boot_lives, 0.05, axis=0),
        "95%": np.quantile(boot_lives, 0.95, axis=0),
        "share of resamples with a negative real eigenvalue": (
            (np.abs(boot.imag) < 1e-12) & (boot.real < 0)
        ).mean(axis=0),
    },
    index=pd.RangeIndex(1, DMD_RANK + 1, name="mode (slowest first)"),
)
print(f"{N_BOOT} bootstrap refits in {time.perf_counter() - start:.1f} s")
print(interval.round(2).to_string())
inside = (interval["5%"] <= interval["estimate"]) & (interval["estimate"] <= interval["95%"])
print(
    f"modes whose estimate lies outside their own bootstrap interval: {list(interval.index[~inside]) or 'none'}"
)

# %% [markdown]
# Read the table column by column. The slowest mode is the only one that is well identified, and even its
# 90% interval spans a factor of several. Matching modes by their modulus has a cost: the sign-flipping
# noise mode trades places with the oscillating pair from one resample to the next (the last column
# counts how often a negative real eigenvalue lands in each rank), so the intervals of the faster
# modes mix different modes, and an estimate can fall outside its own interval (the printed line).

# %% [markdown]
# ### A block bootstrap for the deep Koopman spectrum
# The seeds show how much the *initialisation* moves the deep model's eigenvalues; a bootstrap asks how
# much the *data* move them. Each of `KOOPMAN_BOOT` resamples of the training sequences is built from
# blocks of `BLOCK` consecutive sequences (`moving_block_indices`, the moving-block bootstrap of the
# conformal chapter), and the network is retrained on it with seed 0 and the same epochs, so that only
# the data change. Each retraining costs a full training, so the resamples are few: their spread is a
# rough range, not a precise interval.

# %%
start = time.perf_counter()
boot_rng = np.random.default_rng(0)
koopman_boot = []
for _ in range(KOOPMAN_BOOT):
    rows = moving_block_indices(len(sequences), BLOCK, boot_rng)  # (N,) sequence indices, in blocks
    set_seed(0)
    boot_model = DeepKoopmanFinance(1, hidden_size=HIDDEN, latent_size=LATENT, n_delays=N_DELAYS).to(device)
    fit_koopman(
        boot_model,
        torch.from_numpy(sequences[rows]).to(device),
        TRAIN_HORIZON,
        epochs=EPOCHS,
        lr=LR,
        batch_size=BATCH_SIZE,
        stability=1.0,
        seed=0,
    )
    koopman_boot.append(np.sort(half_lives(boot_model.eigen()[0]))[::-1])
koopman_boot = np.array(koopman_boot)  # (KOOPMAN_BOOT, LATENT) half-lives, slowest first
seeds_only = seed_lives.iloc[:, : len(SEEDS)].to_numpy(dtype=float)  # (LATENT, seeds)
deep_spread = pd.DataFrame(
    {
        "seed 0": seeds_only[:, 0],
        "seeds: min": seeds_only.min(axis=1),
        "seeds: max": seeds_only.max(axis=1),
        "bootstrap: min": koopman_boot.min(axis=0),
        "bootstrap: max": koopman_boot.max(axis=0),
    },
    index=pd.RangeIndex(1, LATENT + 1, name="mode (slowest first)"),
)
print(f"{KOOPMAN_BOOT} bootstrap retrainings in {time.perf_counter() - start:.1f} s")
print(deep_spread.round(1).to_string())
seed_width = deep_spread.loc[1, "seeds: max"] / deep_spread.loc[1, "seeds: min"]
boot_width = deep_spread.loc[1, "bootstrap: max"] / deep_spread.loc[1, "bootstrap: min"]
print(
    f"slowest deep Koopman half-life: {deep_spread.loc[1, 'seeds: min']:.1f}-{deep_spread.loc[1, 'seeds: max']:.1f} "
    f"days over {len(SEEDS)} seeds (max/min {seed_width:.1f}), {deep_spread.loc[1, 'bootstrap: min']:.1f}-"
    f"{deep_spread.loc[1, 'bootstrap: max']:.1f} days over {KOOPMAN_BOOT} resamples of the data (max/min "
    f"{boot_width:.1f}): the {'data move it more than the seeds do' if boot_width > seed_width else 'seeds move it at least as much as the data do'}; "
    f"the Hankel DMD's 90% bootstrap interval is {interval.loc[1, '5%']:.1f}-{interval.loc[1, '95%']:.1f} days"
)

# %% [markdown]
# The lines above put the deep model's slowest half-life under other seeds beside the same quantity
# under resampled data, and say which moves it more. With so few resamples the bootstrap range is rough,
# but it answers the question that matters: whether the half-life of one training run can be reported
# as a property of the market. The Hankel DMD's interval, from `N_BOOT` refits that cost a fraction of
# a second each, is the one with a stated level.

# %% [markdown]
# ### Beside GARCH and HAR
# GARCH(1,1) says a variance shock decays like $(\alpha + \beta)^h$: half-life $\ln 0.5 / \ln(\alpha+\beta)$.
# HAR, read as an AR(22), has a companion matrix whose largest eigenvalue is its slowest mode, and an
# **impulse response** to a one-day shock. The two answers differ, and both are right: a one-day spike
# in volatility mostly vanishes the next day (the impulse response halves almost at once), while the
# persistent component decays over months (the slowest mode).

# %% mystnb={"image": {"alt": "Line chart: response (y axis) of HAR, rank-4 Hankel DMD and the OLS AR(22) to a one-day unit shock over the following 60 days (x axis), with a dotted line at one half; all three fall below half within a few days and then decay slowly"}}
garch = garch_persistence(task.frame["ret"].to_numpy()[: task.train.rows[-1] + 1])
har_slowest = ar_eigenvalues(har_ar)[0]
irf = {
    "HAR": impulse_response(har_ar, 250),
    f"Hankel DMD, rank {DMD_RANK}": impulse_response(hankel_ar, 250),
    "OLS AR(22)": impulse_response(ols_ar, 250),
}
persistence = pd.DataFrame(
    {
        "slowest-mode half-life (days)": [
            float(half_lives(hankel.eigenvalues[hankel_order][0])),
            float(half_lives(har_slowest)),
            float(half_lives(ar_eigenvalues(ols_ar)[0])),
            garch["half-life"],
            float(slowest_by_seed.median()),
        ],
        "impulse response halves after (days)": [
            response_half_life(irf[f"Hankel DMD, rank {DMD_RANK}"]),
            response_half_life(irf["HAR"]),
            response_half_life(irf["OLS AR(22)"]),
            garch["half-life"],
            np.nan,
        ],
    },
    index=[
        f"Hankel DMD, rank {DMD_RANK}",
        "HAR",
        "OLS AR(22)",
        "GARCH(1,1) on returns",
        "deep Koopman (median seed)",
    ],
)
print(
    f"GARCH(1,1): alpha {garch['alpha']:.3f}, beta {garch['beta']:.3f}, persistence {garch['persistence']:.4f}"
)
print(persistence.round(1).to_string(na_rep=""))
print(
    "(the deep Koopman row has no impulse response: its encoder is nonlinear, so the response to a shock "
    "depends on the state the shock hits and no single path describes it)"
)
lo, hi = interval.loc[1, "5%"], interval.loc[1, "95%"]
print(
    f"Hankel DMD's slowest half-life {interval.loc[1, 'estimate']:.1f} days, 90% bootstrap interval "
    f"[{lo:.1f}, {hi:.1f}]; GARCH's {garch['half-life']:.1f} days is "
    f"{'inside' if lo <= garch['half-life'] <= hi else 'outside'} it, HAR's slowest mode "
    f"{float(half_lives(har_slowest)):.1f} days is {'inside' if lo <= half_lives(har_slowest) <= hi else 'outside'}."
)
fig, ax = plt.subplots(figsize=(9, 3.2))
for name, path in irf.items():
    ax.plot(path[:60], label=name)
ax.axhline(0.5, color="grey", ls=":", label="half")
ax.set(
    xlabel="days after a one-day shock", ylabel="response", title="impulse responses of three AR(22) models"
)
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Across assets: can we compare half-lives?
#
# A spectrum invites comparison: is the Nasdaq's volatility more persistent than IBM's? The packaged
# data hold two indices and four stocks; over the years they all cover, each gets a rank-4 Hankel DMD
# on its own standardised log volatility and a block-bootstrap interval for its slowest half-life.

# %% mystnb={"image": {"alt": "Dot plot with error bars: slowest Hankel DMD half-life in days (y axis) for each of the six packaged assets (x axis), 2005-2012, with 90% block-bootstrap intervals; the intervals overlap"}}
start = time.perf_counter()
rows = {}
for ticker in ASSETS:
    frame = feature_frame(load_prices(ticker)).loc[COMMON[0] : COMMON[1]]
    v = frame["log_vol_parkinson"].to_numpy()
    delays = sliding_window_view((v - v.mean()) / v.std(), N_DELAYS)
    fit = dmd(delays, rank=DMD_RANK)
    lives = half_lives(bootstrap_dmd(delays, rank=DMD_RANK, n_boot=N_BOOT, block=BLOCK, seed=0)[:, 0])
    rows[ticker] = {
        "days": len(v),
        "slowest half-life": float(half_lives(fit.eigenvalues[np.argmax(np.abs(fit.eigenvalues))])),
        "5%": np.quantile(lives, 0.05),
        "95%": np.quantile(lives, 0.95),
    }
assets = pd.DataFrame(rows).T
print(f"{len(ASSETS)} assets in {time.perf_counter() - start:.1f} s")
disjoint = [
    (a, b)
    for i, a in enumerate(ASSETS)
    for b in ASSETS[i + 1 :]
    if assets.loc[a, "95%"] < assets.loc[b, "5%"] or assets.loc[b, "95%"] < assets.loc[a, "5%"]
]
print(assets.round(1).to_string())
print(f"pairs of assets whose 90% intervals do not overlap: {disjoint if disjoint else 'none'}")
assert not disjoint, "on these years every pair of intervals overlaps"
fig, ax = plt.subplots(figsize=(8, 3))
ax.errorbar(
    assets.index,
    assets["slowest half-life"],
    yerr=[assets["slowest half-life"] - assets["5%"], assets["95%"] - assets["slowest half-life"]],
    fmt="o",
    capsize=4,
)
ax.set(
    xlabel="asset",
    ylabel="half-life (days)",
    title=f"slowest Hankel DMD mode, {COMMON[0]}-{COMMON[1]}, 90% bootstrap intervals",
)
plt.tight_layout()
plt.show()

# %% [markdown]
# **What this says about comparing assets.** The intervals are wide (the slowest mode of a long-memory
# series is estimated from few independent stretches of data) and the printed line counts the pairs
# that are distinguishable at all. With eight years of daily data, a ranking of assets by half-life is
# mostly noise: the spectrum *can* be compared across assets and periods, but only with intervals, and
# on this sample no pair is distinguishable (the assertion). Longer histories or intraday realised
# variance are what such a claim needs.

# %% [markdown]
# ## HAVOK: chaos as an intermittently forced linear system
#
# Brunton, Brunton, Proctor, Kaiser & Kutz (2017) ask what Hankel DMD does on a *chaotic* signal, where
# no finite linear model can be exact (a linear system has no strange attractor). Their answer, HAVOK
# (Hankel alternative view of Koopman), keeps the linear model and moves the chaos into an input:
#
# 1. stack the delay windows of a scalar series $x$ as the rows of a Hankel matrix $H$ (the Hankel DMD
#    snapshots above) and take its SVD, $H = V \Sigma U^\top$; the columns $v_1, v_2, \dots$ of $V$ are
#    the *eigen-time-delay coordinates*, the delay windows' coordinates on the principal delay shapes
#    $U$;
# 2. keep $r$ of them and fit a linear model for the first $r - 1$, driven by the last:
#    $$ \frac{d}{dt} \begin{pmatrix} v_1 \\ \vdots \\ v_{r-1} \end{pmatrix} = A_c \begin{pmatrix} v_1 \\ \vdots \\ v_{r-1} \end{pmatrix} + B_c\, v_r . $$
#
# The paper regresses a finite-difference derivative on $v$; `course_lib.models.koopman.havok` fits the
# same model in discrete time, $v_{t+1} = A v_t + B\, v_r(t)$, which is **DMD with control** (the section
# above) with $v_r$ as the input: no numerical derivative of noisy data, and $A = e^{A_c \Delta t}$
# (`HAVOKResult.generator` converts). The reconstruction runs the fitted model from $v(0)$ under the
# measured forcing and is never corrected by the data. Their finding, on the Lorenz system: the linear
# part reproduces $v_1$, and $v_r$ is quiet most of the time with **bursts before the trajectory
# switches lobes**. What is proved and what is observed: on a linear system (a sum of damped sinusoids,
# `tests/test_havok_stochastic_koopman.py`) the reconstruction is exact and the forcing does nothing, a
# property of the algebra; on Lorenz, the statements below are measured on one trajectory.
#
# The Lorenz system, $\dot x = 10(y - x)$, $\dot y = x(28 - z) - y$, $\dot z = xy - \tfrac83 z$, sampled every
# `LORENZ_DT` from a fixed initial condition (`scipy.integrate.solve_ivp` inside `lorenz`); HAVOK reads
# the $x$ coordinate only. A lobe switch is a change of the sign of $x$ (`switches`); a forcing burst is
# a step where $|v_r - \bar v_r|$ exceeds `BURST` standard deviations. Dating: row $t$ of the Hankel
# matrix ends at step $t + D - 1$, and an event is dated at that newest step, so a burst "before" a switch
# uses only data up to the step before it.

# %%
start = time.perf_counter()
xyz = lorenz(LORENZ_X0, t_end=LORENZ_T, dt=LORENZ_DT)  # (T, 3)
lorenz_fit = havok(xyz[:, 0], HAVOK_DELAYS, HAVOK_RANK, dt=LORENZ_DT)
v1, v1_model = lorenz_fit.coordinates[:, 0], lorenz_fit.reconstruction[:, 0]  # (T', ) measured, modelled
shown = round(LORENZ_SHOW / LORENZ_DT)  # steps in the figure
fit_quality = pd.DataFrame(
    {
        "correlation": [np.corrcoef(v1[:shown], v1_model[:shown])[0, 1], np.corrcoef(v1, v1_model)[0, 1]],
        "RMS error / std of v1": [
            np.sqrt(np.mean((v1[:shown] - v1_model[:shown]) ** 2)) / v1[:shown].std(),
            np.sqrt(np.mean((v1 - v1_model) ** 2)) / v1.std(),
        ],
    },
    index=pd.Index(
        [f"first {LORENZ_SHOW:g} time units", f"all {LORENZ_T:g} time units"], name="v1 model vs v1"
    ),
)
unforced = lorenz_fit.simulate(np.zeros(len(v1) - 1))[:, 0]  # (T',) the linear part without its input
unforced_corr = np.corrcoef(v1, unforced)[0, 1]
x_newest = xyz[HAVOK_DELAYS - 1 :, 0]  # (T',) x at the newest step of each delay window
lobe_switch = switches(x_newest)  # (T',) True where x changes sign
forcing = lorenz_fit.forcing
lorenz_bursts = np.abs(forcing - forcing.mean()) > BURST * forcing.std()  # (T',)
lorenz_stats = burst_precedence(lobe_switch, lorenz_bursts, LEAD)
print(
    f"{len(xyz)} Lorenz steps, HAVOK with {HAVOK_DELAYS} delays and rank {HAVOK_RANK} in {time.perf_counter() - start:.1f} s"
)
print(fit_quality.round(3).to_string())
print(
    f"the linear model, run {len(v1)} steps under the measured forcing and never reset, follows v1 with a "
    f"correlation of {fit_quality.iloc[0, 0]:.2f} over the first {LORENZ_SHOW:g} time units and "
    f"{fit_quality.iloc[1, 0]:.2f} over all {LORENZ_T:g}; the same linear model without the forcing, run from "
    f"the same start, has a correlation of {unforced_corr:.2f} with v1 over all {LORENZ_T:g}: the input carries "
    + (
        "what the linear part cannot do alone"
        if abs(unforced_corr) < fit_quality.iloc[1, 0] - 0.2
        else "little"
    )
)
print(pd.Series(lorenz_stats).round(4).to_string())
print(
    f"{lorenz_stats['hits']} of {lorenz_stats['events']} lobe switches ({lorenz_stats['hit_rate']:.0%}) follow a "
    f"forcing burst within {LEAD} steps ({LEAD * LORENZ_DT:.2f} time units); a random step is so preceded "
    f"{lorenz_stats['base_rate']:.0%} of the time, a lift of {lorenz_stats['lift']:.1f} (one-sided binomial "
    f"p = {lorenz_stats['p_value']:.2g}): on this trajectory bursts "
    + (
        "precede lobe switches more often than chance"
        if lorenz_stats["p_value"] < 0.05 and lorenz_stats["lift"] > 1
        else "do not precede lobe switches more often than chance"
    )
    + f", but {1 - lorenz_stats['hit_rate']:.0%} of the switches have no burst above {BURST:g} standard "
    "deviations before them: the forcing marks some switches, not all."
)

# %% mystnb={"image": {"alt": "Three stacked panels sharing a time axis over the first time units of the Lorenz trajectory: the first eigen-time-delay coordinate v1 with the HAVOK linear model's reconstruction on top of it; the x coordinate with its lobe switches marked by vertical lines; and the forcing v_r with its burst threshold, bursts marked in red, several just before lobe switches"}}
t_axis = (HAVOK_DELAYS - 1 + np.arange(shown)) * LORENZ_DT  # time of each window's newest step
fig, axes = plt.subplots(3, 1, figsize=(10, 6.5), sharex=True)
axes[0].plot(t_axis, v1[:shown], color="black", lw=1.2, label="v1 (measured)")
axes[0].plot(t_axis, v1_model[:shown], color="C1", lw=1, ls="--", label="linear model under the forcing")
axes[0].set(ylabel="v1", title=f"HAVOK on the Lorenz x coordinate ({HAVOK_DELAYS} delays, rank {HAVOK_RANK})")
axes[0].legend(loc="upper right", fontsize=8)
axes[1].plot(t_axis, x_newest[:shown], color="C0", lw=1)
for k, t in enumerate(t_axis[lobe_switch[:shown]]):
    axes[1].axvline(t, color="grey", lw=0.6, ls=":", label="lobe switch" if k == 0 else None)
axes[1].set(ylabel="x")
axes[1].legend(loc="upper right", fontsize=8)
axes[2].plot(t_axis, forcing[:shown], color="C2", lw=1, label="forcing v_r")
axes[2].scatter(
    t_axis[lorenz_bursts[:shown]], forcing[:shown][lorenz_bursts[:shown]], s=6, color="C3", label="burst"
)
for sign in (-1, 1):
    axes[2].axhline(forcing.mean() + sign * BURST * forcing.std(), color="C3", lw=0.6, ls="--")
for t in t_axis[lobe_switch[:shown]]:
    axes[2].axvline(t, color="grey", lw=0.6, ls=":")
axes[2].set(xlabel="time (Lorenz time units)", ylabel="v_r")
axes[2].legend(loc="upper right", fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ### HAVOK on volatility: do forcing bursts line up with regime shifts?
#
# The same tool on the chapter's series: the S&P 500's daily log Parkinson volatility, standardised on the
# training years, all of 1999-2018, with the chapter's `N_DELAYS` = 22 delays and rank `DMD_RANK` + 1 (four
# linear coordinates and the forcing, the Hankel DMD above plus an input). A volatility *regime* is the side
# of the series' median on which its trailing `REGIME_WINDOW`-day mean lies, with a hysteresis band of
# `REGIME_BAND` standard deviations of that mean so that it does not chatter; a regime shift is a change
# of side. The shift is dated when the trailing mean crosses, which lags the change in volatility itself;
# a burst "before" a dated shift may be the very spike that moved the mean. The question is the one asked
# of Lorenz: are shifts preceded by a burst within `VOL_LEAD` days more often than a random day is?
#
# One setting could be lucky, and the settings were not fixed before looking at the data, so the cell also
# reruns the count over a grid of delays, ranks, regime windows and leads and says how many settings pass
# at 5% against the number chance alone would give.


# %%
def volatility_regime_test(series, n_delays, rank, regime_window, lead):
    """HAVOK on a volatility series; burst_precedence of its forcing bursts before its regime shifts."""
    fit = havok(series, n_delays, rank)
    # the trailing mean on the newest day of each delay window (the day a shift is dated)
    slow = pd.Series(series).rolling(regime_window).mean().to_numpy()[n_delays - 1 :]
    valid = ~np.isnan(slow)
    centred = slow[valid] - np.median(slow[valid])
    shifts = np.zeros(len(slow), dtype=bool)
    shifts[valid] = switches(centred, band=REGIME_BAND * centred.std())
    f = fit.forcing
    bursts = np.abs(f - f.mean()) > BURST * f.std()
    return fit, slow, shifts, bursts, burst_precedence(shifts, bursts, lead)


vol_fit, vol_slow, vol_shifts, vol_bursts, vol_stats = volatility_regime_test(
    scaled, N_DELAYS, DMD_RANK + 1, REGIME_WINDOW, VOL_LEAD
)
vol_corr = np.corrcoef(vol_fit.coordinates[:, 0], vol_fit.reconstruction[:, 0])[0, 1]
print(
    f"log volatility, {len(scaled)} days: HAVOK's linear model follows v1 with a correlation of {vol_corr:.2f} "
    f"over the whole sample ({fit_quality.iloc[1, 0]:.2f} on Lorenz)"
)
print(pd.Series(vol_stats).round(4).to_string())
grid = pd.DataFrame(
    [
        {"delays": d, "rank": r, "regime window": w, "lead": k}
        | volatility_regime_test(scaled, d, r, w, k)[-1]
        for d in (N_DELAYS, 2 * N_DELAYS)
        for r in (DMD_RANK + 1, 2 * DMD_RANK, 3 * DMD_RANK - 1)
        for w in (N_DELAYS, REGIME_WINDOW)
        for k in (5, VOL_LEAD)
    ]
).set_index(["delays", "rank", "regime window", "lead"])
print(grid.round(3).to_string())
n_pass, expected = int((grid["p_value"] < 0.05).sum()), 0.05 * len(grid)
passing = ", ".join(
    f"(delays {d}, rank {r}, window {w}, lead {k})" for d, r, w, k in grid.index[grid["p_value"] < 0.05]
)
main_pass = vol_stats["p_value"] < 0.05 and vol_stats["lift"] > 1
print(
    f"chapter's setting: {vol_stats['hits']} of {vol_stats['events']} regime shifts ({vol_stats['hit_rate']:.0%}) follow "
    f"a burst within {VOL_LEAD} days against a base rate of {vol_stats['base_rate']:.0%} (lift {vol_stats['lift']:.2f}, "
    f"p = {vol_stats['p_value']:.2f}); over the grid, {n_pass} of {len(grid)} settings pass at 5% where chance "
    f"alone gives about {expected:.1f} (the settings share one series, so these are not independent tests; "
    f"passing: {passing or 'none'}), with lifts from {grid['lift'].min():.2f} to {grid['lift'].max():.2f}. "
    + (
        "The forcing's bursts line up with volatility regime shifts beyond chance."
        if main_pass and n_pass > 2 * expected
        else "On this series the forcing's bursts do not line up with volatility regime shifts beyond what chance "
        "gives: with this few shifts the count cannot tell a lift from noise, and the HAVOK picture of Lorenz "
        "is not evidence for volatility."
    )
)

# %% mystnb={"image": {"alt": "Two stacked panels on a date axis from 1999 to 2018: the S&P 500's standardised daily log volatility with its trailing regime mean and the dated regime shifts as vertical lines; below, HAVOK's forcing with its bursts marked, scattered over the whole sample, denser in some years, with no consistent lead on the regime shifts"}}
vol_dates = task.frame.index[N_DELAYS - 1 :]  # newest day of each delay window
fig, axes = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True)
axes[0].plot(task.frame.index, scaled, color="grey", lw=0.4, label="log volatility (standardised)")
axes[0].plot(vol_dates, vol_slow, color="black", lw=1.2, label=f"{REGIME_WINDOW}-day trailing mean")
for k, d in enumerate(vol_dates[vol_shifts]):
    axes[0].axvline(d, color="C1", lw=0.8, ls=":", label="regime shift" if k == 0 else None)
axes[0].set(ylabel="log volatility (std units)", title="HAVOK on the S&P 500's log volatility")
axes[0].legend(loc="upper right", fontsize=8)
axes[1].plot(vol_dates, vol_fit.forcing, color="C2", lw=0.6, label="forcing v_r")
axes[1].scatter(vol_dates[vol_bursts], vol_fit.forcing[vol_bursts], s=4, color="C3", label="burst")
for d in vol_dates[vol_shifts]:
    axes[1].axvline(d, color="C1", lw=0.8, ls=":")
axes[1].set(xlabel="date", ylabel="v_r")
axes[1].legend(loc="upper right", fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The stochastic Koopman operator
#
# Volatility is not a deterministic map plus nothing: it is a random process. For a Markov process the
# Koopman operator acts on expectations (Mezić 2005; Črnjarić-Žic, Maćešić & Mezić 2020; Wanner & Mezić
# 2022),
# $$ (\mathcal K^{\Delta t} f)(x) = E[f(X_{t+\Delta t}) \mid X_t = x], $$
# still linear in $f$. EDMD on one stochastic path estimates its projection on the dictionary: write
# $\psi(X_{t+1}) = E[\psi(X_{t+1}) \mid X_t] + \varepsilon_{t+1}$ with $E[\varepsilon_{t+1} \mid X_t] = 0$; the
# least squares of $\psi(X_{t+1})$ on $\psi(X_t)$ averages the *process* noise out, exactly as OLS does for
# an AR model.
#
# **A closed form to check against.** The Ornstein-Uhlenbeck process $dX = -\theta X\,dt + s\,dW$ (the
# continuous-time AR(1), and a standard model of log volatility) has Koopman eigenfunctions the Hermite
# polynomials $\mathrm{He}_k(x / \sigma_\infty)$, $\sigma_\infty^2 = s^2 / 2\theta$, with eigenvalues
# $e^{-k\theta\Delta t}$, $k = 0, 1, 2, \dots$: the polynomials of degree at most $n$ are an invariant
# subspace, so EDMD with the monomials $1, x, \dots, x^3$ should find the first four. `simulate_ou` draws
# `OU_PATHS` exact paths of `OU_STEPS` steps; the interval is the 5%-95% range over the paths (repetition,
# not bootstrap: we can simulate as many paths as we like).

# %%
start = time.perf_counter()
ou_paths = simulate_ou(OU_STEPS, OU_THETA, OU_SIGMA, OU_DT, n_paths=OU_PATHS, seed=0)  # (paths, steps)
ou_fits = [edmd(path[:, None], monomials(3)) for path in ou_paths]
ou_eig = np.array([np.sort(f.eigenvalues.real)[::-1] for f in ou_fits])  # (paths, 4), slowest first
closed_form = ou_koopman_eigenvalues(OU_THETA, OU_DT, 3)
ou_table = pd.DataFrame(
    {
        "closed form exp(-k theta dt)": closed_form,
        "EDMD median": np.median(ou_eig, axis=0),
        "5%": np.quantile(ou_eig, 0.05, axis=0),
        "95%": np.quantile(ou_eig, 0.95, axis=0),
    },
    index=pd.RangeIndex(0, 4, name="k (Hermite degree)"),
)
ou_table["inside"] = (ou_table["5%"] - 1e-9 <= ou_table.iloc[:, 0]) & (
    ou_table.iloc[:, 0] <= ou_table["95%"] + 1e-9
)  # k = 0 to rounding: the constant function maps to itself exactly
print(f"EDMD on {OU_PATHS} OU paths of {OU_STEPS} steps in {time.perf_counter() - start:.1f} s")
print(ou_table.round(4).to_string())
largest_imag = max(np.abs(f.eigenvalues.imag).max() for f in ou_fits)
_, W = eigenfunctions(ou_fits[0])  # columns: monomial coefficients of each eigenfunction, slowest first
hermite = ou_eigenfunctions(OU_THETA, OU_SIGMA, 3)
print(
    pd.DataFrame(
        np.c_[W.real, hermite] + 0.0,  # + 0.0: no "-0.000" in the table
        index=pd.Index(["1", "x", "x^2", "x^3"], name="coefficient of"),
        columns=[f"EDMD phi_{k}" for k in range(4)] + [f"He_{k}" for k in range(4)],
    )
    .round(3)
    .to_string()
)
print(
    f"the closed-form eigenvalue lies inside the 90% range over paths for {int(ou_table['inside'].sum())} of "
    f"{len(ou_table)} Hermite degrees (k = 0 is exact: the constant maps to itself); the largest imaginary part of any EDMD eigenvalue is {largest_imag:.1e}, "
    f"and the first path's eigenfunctions differ from the Hermite polynomials' coefficients by at most "
    f"{np.abs(W.real - hermite).max():.3f}: EDMD with a dictionary that spans an invariant subspace recovers the "
    "stochastic Koopman operator's spectrum from a single noisy path. "
    + (
        "The 90% range widens with k: higher powers of a noisy path are noisier, so the fast modes are the least precise."
        if np.all(np.diff(ou_table["95%"] - ou_table["5%"]) > 0)
        else "The 90% range does not widen steadily with k on these paths."
    )
)

# %% [markdown]
# ### What goes wrong: noise in the observation, not in the dynamics
#
# The argument above needs the *regressor* $\psi(X_t)$ to be observed exactly. Observe instead
# $y_t = x_t + \eta_t$ with independent noise of variance $\sigma_\eta^2$ (a volatility *estimate* such as
# Parkinson's is the latent volatility plus measurement error), and run plain DMD on $y$. For an AR(1),
# $x_{t+1} = \phi x_t + e_{t+1}$, the least-squares slope converges to
# $$ \frac{\operatorname{cov}(y_{t+1}, y_t)}{\operatorname{var}(y_t)} = \phi \cdot \frac{\operatorname{var}(x)}{\operatorname{var}(x) + \sigma_\eta^2}, $$
# the errors-in-variables **attenuation** (`attenuation`): the eigenvalue is pulled towards zero and
# every half-life looks shorter than it is. More data do not help; the bias is in the limit. Below, the
# OU paths (an AR(1) with $\phi = e^{-\theta\Delta t}$) observed with noise of standard deviation `NOISE_SDS`.

# %% mystnb={"image": {"alt": "Line chart: the DMD eigenvalue (y axis) against the ratio of the observation noise variance to the state variance (x axis): the closed-form curve phi var(x) / (var(x) + var(noise)) falling from the true eigenvalue, the medians and 90% ranges of DMD over simulated OU paths on the curve, and a dotted line at the true eigenvalue"}}
phi = np.exp(-OU_THETA * OU_DT)
var_x = OU_SIGMA**2 / (2 * OU_THETA)  # stationary variance of the OU process
noise_rng = np.random.default_rng(1)
rows = {}
for sd in NOISE_SDS:
    noisy = ou_paths + sd * noise_rng.standard_normal(ou_paths.shape)  # (paths, steps)
    estimates = np.array([dmd(path[:, None]).eigenvalues[0].real for path in noisy])
    rows[sd] = {
        "var(noise) / var(x)": sd**2 / var_x,
        "attenuation factor": attenuation(var_x, sd**2),
        "closed form phi * factor": phi * attenuation(var_x, sd**2),
        "DMD median": np.median(estimates),
        "5%": np.quantile(estimates, 0.05),
        "95%": np.quantile(estimates, 0.95),
        "half-life (DMD median, time units)": float(half_lives(np.median(estimates), dt=OU_DT)),
    }
noise_table = pd.DataFrame(rows).T
noise_table.index.name = "noise sd"
print(noise_table.round(4).to_string())
covered = (noise_table["5%"] <= noise_table["closed form phi * factor"]) & (
    noise_table["closed form phi * factor"] <= noise_table["95%"]
)
print(
    f"true phi = exp(-theta dt) = {phi:.4f}, half-life {float(half_lives(phi, dt=OU_DT)):.2f} time units. "
    f"The closed form phi * var(x) / (var(x) + var(noise)) lies inside the 90% range over paths at "
    f"{int(covered.sum())} of {len(covered)} noise levels; at noise sd {NOISE_SDS[-1]:g} DMD reports "
    f"{noise_table['DMD median'].iloc[-1]:.3f} for a true {phi:.3f}, a half-life of "
    f"{noise_table.iloc[-1, -1]:.2f} instead of {float(half_lives(phi, dt=OU_DT)):.2f} time units."
)
fig, ax = plt.subplots(figsize=(7, 3.5))
grid_ratio = np.linspace(0, noise_table["var(noise) / var(x)"].max(), 100)
ax.plot(
    grid_ratio, phi / (1 + grid_ratio), color="black", label="closed form phi var(x) / (var(x) + var(noise))"
)
ax.errorbar(
    noise_table["var(noise) / var(x)"],
    noise_table["DMD median"],
    yerr=[noise_table["DMD median"] - noise_table["5%"], noise_table["95%"] - noise_table["DMD median"]],
    fmt="o",
    color="C1",
    capsize=4,
    label=f"DMD on noisy observations ({OU_PATHS} paths, 90% range)",
)
ax.axhline(phi, color="grey", ls=":", label="true eigenvalue phi")
ax.set(
    xlabel="var(noise) / var(x)",
    ylabel="DMD eigenvalue",
    title="observation noise attenuates the DMD eigenvalue",
)
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# The same bias acts on every least-squares fit of this chapter that reads a noisy volatility estimate as
# the state: the Hankel DMD and the AR(22) fits see the Parkinson estimate, not the latent volatility, so
# their half-lives are biased short by an amount that depends on the estimator's noise variance, which
# these data do not reveal. The AR(1) factor gives the direction; its size for an AR(22) is not this
# simple formula. Remedies estimate the noise or avoid regressing on it: instruments (an older lag as the
# regressor), total-least-squares and forward-backward DMD (Dawson et al. 2016; Hemati et al. 2017), or a
# state-space model with an explicit measurement equation.

# %% [markdown]
# ## Exercises
#
# ### Exercise 1 (1 point): half-life of a mode
# Write `half_life(lam)`: the number of steps after which a mode with eigenvalue `lam` (a complex
# number with $|\lambda| < 1$) has lost half of its size.


# %%
# SOLUTION
def half_life(lam):
    return np.log(0.5) / np.log(abs(lam))


# %%
# SELF-CHECK
for lam in (0.5, 0.9, 0.99 * np.exp(0.3j), 0.2 - 0.1j):
    assert np.isclose(abs(lam) ** half_life(lam), 0.5), (
        f"after half_life({lam}) steps the mode should be half its size"
    )
print("Exercise 1 passed")

# %% [markdown]
# ### Exercise 2 (2 points): DMD by least squares
# For the two-dimensional trajectory `traj` below, compute the full-rank DMD operator
# $A = Y X^{+}$ (a 2 x 2 array, $X$ and $Y$ holding the snapshots $x_0..x_{T-2}$ and $x_1..x_{T-1}$ as
# columns) in `A_dmd`, and its eigenvalues in `eig_dmd`.

# %%
traj = simulate_var(np.array([[[0.8, -0.3], [0.3, 0.8]]]), 300, noise=0.1, seed=3)

# %%
# SOLUTION
A_dmd = traj[1:].T @ np.linalg.pinv(traj[:-1].T)
eig_dmd = np.linalg.eigvals(A_dmd)

# %%
# SELF-CHECK
assert np.shape(A_dmd) == (2, 2), "A is 2 x 2"
reference = dmd(traj)
assert np.allclose(np.sort_complex(eig_dmd), np.sort_complex(reference.eigenvalues)), (
    "eigenvalues differ from course_lib's dmd"
)
assert np.allclose(
    A_dmd @ traj[:-1].T, reference.basis @ reference.operator @ reference.basis.T @ traj[:-1].T
), "A does not map x_t to the DMD fit"
print("Exercise 2 passed")

# %% [markdown]
# ### Exercise 3 (2 points): HAR as an AR(22)
# Write `har_to_ar(b1, b5, b22)`: the 22 AR coefficients (lag 1 first, a numpy array) of the HAR model
# $v_{t+1} = b_0 + b_1 v_t + b_5 \bar v^{(5)}_t + b_{22} \bar v^{(22)}_t$, where $\bar v^{(k)}_t$ is the
# mean of the last $k$ days.


# %%
# SOLUTION
def har_to_ar(b1, b5, b22):
    ar = np.full(22, b22 / 22)
    ar[:5] += b5 / 5
    ar[0] += b1
    return ar


# %%
# SELF-CHECK
window = np.random.default_rng(0).standard_normal(22)  # lag 1 first
assert np.shape(har_to_ar(0.4, 0.3, 0.2)) == (22,), "22 coefficients"
assert np.isclose(
    window @ har_to_ar(0.4, 0.3, 0.2), 0.4 * window[0] + 0.3 * window[:5].mean() + 0.2 * window.mean()
), "the AR forecast must equal HAR's"
print("Exercise 3 passed")

# %% [markdown]
# ### Exercise 4 (2 points): spot the bug in a GARCH half-life
# A colleague reports the half-life of volatility shocks in a GARCH(1,1) with this function. It runs and
# gives a plausible number, but the wrong one. Write `garch_half_life_fixed(alpha, beta)`.
#
# ```python
# def garch_half_life(alpha, beta):
#     return np.log(0.5) / np.log(beta)
# ```


# %%
# SOLUTION
def garch_half_life_fixed(alpha, beta):
    return np.log(0.5) / np.log(alpha + beta)


# %%
# SELF-CHECK
for _alpha, _beta in [(0.05, 0.9), (0.1, 0.85), (0.08, 0.91)]:
    expected = np.log(0.5) / np.log(_alpha + _beta)  # E[sigma2_{t+h}] - sigma2 decays like (alpha + beta)^h
    assert np.isclose(garch_half_life_fixed(_alpha, _beta), expected), "a shock decays at alpha + beta"
assert np.isclose(garch_half_life_fixed(garch["alpha"], garch["beta"]), garch["half-life"])
print("Exercise 4 passed")

# %% [markdown]
# ### Exercise 5 (3 points): DMD with control by hand
# For the forced system of the chapter (`x_forced` (300, 2), `u_forced` (299, 1)), compute `A_hat`
# (2 x 2) and `B_hat` (2 x 1) by one least-squares solve of $x_{t+1} = A x_t + B u_t$.

# %%
# SOLUTION
G = np.linalg.lstsq(np.column_stack([x_forced[:-1], u_forced]), x_forced[1:], rcond=None)[0].T
A_hat, B_hat = G[:, :2], G[:, 2:]

# %%
# SELF-CHECK
assert np.shape(A_hat) == (2, 2) and np.shape(B_hat) == (2, 1), "A is 2 x 2 and B is 2 x 1"
assert np.allclose(A_hat, controlled.A) and np.allclose(B_hat, controlled.B), "differs from dmd_control"
print("Exercise 5 passed")

# %% [markdown]
# ### Exercise 6 (2 points): undo the attenuation
# If the variance of the observation noise is known (for a volatility estimator it can be derived from
# the estimator's sampling theory), the AR(1) attenuation can be undone. Write
# `deattenuated(estimate, var_y, noise_var)`: the corrected AR(1) coefficient, given the least-squares
# estimate on the noisy series, the variance of the noisy series and the variance of the noise.


# %%
# SOLUTION
def deattenuated(estimate, var_y, noise_var):
    return estimate * var_y / (var_y - noise_var)


# %%
# SELF-CHECK
_noisy = ou_paths[0] + 0.5 * np.random.default_rng(7).standard_normal(OU_STEPS)  # noise variance 0.25
_naive = dmd(_noisy[:, None]).eigenvalues[0].real
assert np.isclose(deattenuated(_naive, _noisy.var(), 0.0), _naive), "no noise, no correction"
assert deattenuated(_naive, _noisy.var(), 0.3) > deattenuated(_naive, _noisy.var(), 0.1) > _naive, (
    "more noise means more attenuation to undo"
)
assert abs(deattenuated(_naive, _noisy.var(), 0.25) - phi) < abs(_naive - phi) / 5, (
    "with the true noise variance the correction should land close to exp(-theta dt)"
)
print("Exercise 6 passed")

# %% [markdown]
# ## Summary
#
# * The Koopman operator trades a nonlinear state map for a linear map on observables. DMD fits it on
#   the state, EDMD on a dictionary you choose (exact when the dictionary spans an invariant subspace, as
#   in Lusch's example), the deep Koopman network learns the dictionary with reconstruction, linearity
#   and multi-step prediction losses.
# * On a delay vector, Hankel DMD is a reduced-rank AR($D$) (full rank: the least-squares AR), and HAR a
#   restricted AR(22). Whether the deep Koopman network beats the least-squares Hankel DMD and the
#   benchmark the course's rule picks is the computed verdict above (MCS membership and DM per horizon),
#   at this chapter's budget; `docs/reference/` holds the same comparison at a full budget.
# * A half-life needs an interval: a block bootstrap over time gives one, the deep model's spectrum moves
#   with the seed and with the data (its block bootstrap retrains the network), negative eigenvalues are noise, and "a shock's half-life" depends on the shock (a
#   one-day spike fades in a day, the slow mode over months; GARCH's persistence is a third answer).
# * Across the packaged assets the slowest half-lives are not distinguishable with eight years of data.
# * DMD with control separates the dynamics $A$ from the input's effect $B$: an interventional quantity
#   only when the input is not chosen in response to unobserved shocks (chapter 6f).
# * HAVOK is DMD with control on the delay coordinates, the last one as the input. On the Lorenz system
#   the linear part driven by the forcing follows the first delay coordinate, and forcing bursts precede
#   lobe switches more often than chance (the printed lift); on daily volatility the bursts' alignment with
#   regime shifts is the printed verdict, checked over a grid of settings against the count chance gives.
# * EDMD estimates the stochastic Koopman operator when the noise is in the dynamics: on the OU process
#   it recovers the eigenvalues $e^{-k\theta\Delta t}$ and the Hermite eigenfunctions. Noise in the
#   observations attenuates the DMD eigenvalue by var(x) / (var(x) + var(noise)) in an AR(1), and
#   shortens every half-life read from a noisy volatility estimate.
# * Source defects: an eigenvalue network outside the forward pass never learns; a one-step loss hides
#   the compounding errors of a rollout.
