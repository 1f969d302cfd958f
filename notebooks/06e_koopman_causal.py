# %% [markdown]
# # Chapter 6e: Koopman operators and causal inference
#
# Two ideas that go beyond "fit a network to the next value". The first half asks whether a nonlinear
# system becomes **linear** in the right coordinates: the Koopman operator, estimated by dynamic mode
# decomposition (DMD) and by a deep Koopman network, whose eigenvalues you can read as decay rates
# and half-lives of volatility shocks. The second half asks what happens **if we intervene**, a
# different question from what comes next: effects of a treatment under confounding, a balanced
# recurrent network, and Granger causality, which despite its name is about prediction.
#
# **Learning objectives.** After this chapter you can
#
# 1. explain the Koopman operator, compute DMD and extended DMD in a few lines of numpy, and say when
#    a dictionary of observables makes a nonlinear system exactly linear;
# 2. train a deep Koopman network (Lusch, Kutz & Brunton 2018) with reconstruction, linearity and
#    multi-step prediction losses, read its eigenvalues as half-lives in days, and evaluate its
#    multi-step volatility forecasts beside HAR with Diebold-Mariano tests and QLIKE;
# 3. tell prediction from intervention, state the assumptions an effect estimate needs and draw them
#    as a graph;
# 4. score a naive difference, an outcome model (`CausalLSTM`) and a balanced one (a small
#    Counterfactual Recurrent Network with gradient reversal) against a known effect, and show that
#    no method fixes a hidden confounder;
# 5. run Granger tests with the right null and the stationarity they need, on a VAR with a known
#    graph and on real S&P 500 data, and list what they cannot tell you;
# 6. recognise three defects of the source module: an eigenvalue network that never learns, a
#    treatment of the wrong shape on the wrong device, and an effect that is not identified.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from course_lib import get_device, set_seed
from course_lib.causal import (
    adf_table,
    fit_outcome_model,
    granger_matrix,
    naive_effect,
    simulate_treatment,
    simulate_var,
)
from course_lib.data.windows import make_task
from course_lib.evaluation import seed_summary, verdicts, volatility_baselines
from course_lib.models.causal import CausalLSTM, CounterfactualRecurrentNetwork
from course_lib.models.koopman import (
    DeepKoopmanFinance,
    discrete_spectrum_flow,
    dmd,
    edmd,
    half_lives,
    koopman_loss,
    linearity_residual,
    logvol_path_to_targets,
)
from course_lib.testing import parameters_without_gradient
from course_lib.training import fit_koopman

# %% [markdown]
# ## Parameters
# Every size of the chapter lives here. The defaults run the notebook in about a minute on a laptop
# CPU; raise `EPOCHS`, the widths and `SEEDS` for a more careful study.

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
SEEDS = (0, 1)
CONFOUNDING = (0.0, 0.5, 1.0, 2.0, 3.0)  # strengths of the simulated confounding
N_UNITS = 2000  # simulated samples per confounding strength
CAUSAL_EPOCHS = 30
GRANGER_LAGS = 5

device = get_device()
torch.set_num_threads(1)  # tiny models: extra threads only add synchronisation on a busy CPU
set_seed(0)
print(f"device: {device}")

# %% [markdown]
# # Part 1: Koopman operators
#
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
# ## The maths: DMD and extended DMD
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
# ## The deep Koopman network on volatility
#
# The state is today's log Parkinson volatility of the S&P 500, scaled on the training years, and the
# encoder reads a **delay embedding** of the last `N_DELAYS` = 22 days (the month of HAR): a scalar
# series is not a Markov state, its recent past is a better one. The split is the course's standard
# one (train to 2006, validation 2007-2008, test 2009-2018). One model gives every horizon: the
# rollout $\psi(K^h z_t)$ forecasts each of the next 22 days, and the course's target for horizon $h$,
# the log of the mean variance over the next $h$ days, is computed from that path. Beside it: a Hankel
# DMD (the same delay vectors, a rank-`DMD_RANK` linear operator, nothing learnt but a least-squares
# solve) and the standard baselines (EWMA, GARCH, HAR, log-HAR), all fitted on the training years.

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
# ### Eigenvalues in the complex plane, and their half-lives
# Each eigenvalue of $K$ is a mode of volatility: its distance from the origin is the daily decay
# factor, its angle an oscillation. The labels give the half-life in trading days,
# $\ln 0.5 / \ln|\lambda|$: how long a shock in that mode takes to lose half its size.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
circle = np.exp(1j * np.linspace(0, 2 * np.pi, 200))
for ax, (name, values) in zip(
    axes,
    [("deep Koopman (seed 0)", models[0].eigen()[0]), (f"Hankel DMD (rank {DMD_RANK})", hankel.eigenvalues)],
    strict=True,
):
    ax.plot(circle.real, circle.imag, color="grey", lw=0.8, label="|lambda| = 1")
    ax.scatter(values.real, values.imag, color="C3", zorder=3, label="eigenvalues")
    for value, life in zip(values, half_lives(values), strict=True):
        ax.annotate(
            f"{life:.1f} d" if np.isfinite(life) else "no decay",
            (value.real, value.imag),
            textcoords="offset points",
            xytext=(5, 5),
        )
    ax.set(
        xlabel="real part",
        ylabel="imaginary part",
        title=f"{name}: eigenvalues and half-lives",
        aspect="equal",
    )
    ax.legend(loc="lower left")
plt.tight_layout()
plt.show()
spectra = pd.DataFrame(
    {
        name: pd.Series(np.sort(half_lives(v))[::-1])
        for name, v in [("deep Koopman, seed 0", models[0].eigen()[0]), ("Hankel DMD", hankel.eigenvalues)]
    }
)
spectra.index.name = "mode (slowest first)"
spectra.round(1)

# %% [markdown]
# The **modes** say what each eigenvalue moves. In Hankel DMD the state is the delay vector of the last 22
# days, so a mode is a profile over those days; its real part is drawn below (each scaled to a largest
# entry of 1). The deep Koopman model's modes live in its latent space, which has no such reading: that
# is the price of learnt observables.

# %%
fig, ax = plt.subplots(figsize=(9, 3.2))
lags = np.arange(N_DELAYS)[::-1]  # the delay vector runs from the oldest day to today
for value, mode in zip(hankel.eigenvalues, hankel.modes.T, strict=True):
    profile = mode.real / np.abs(mode.real).max()
    ax.plot(lags, profile, marker=".", label=f"lambda = {value.real:.3f}{value.imag:+.3f}i")
ax.set(
    xlabel="lag (days before today)",
    ylabel="mode (real part, scaled)",
    title="Hankel DMD modes over the delay window",
)
ax.invert_xaxis()
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# Two readings of such a picture. A real eigenvalue near 1 is a slow mode: the long memory of volatility.
# An eigenvalue on the *negative* real axis flips sign every day (a period of 2 days); in daily volatility
# that is noise that the least squares fitted, not a cycle, and its "half-life" describes nothing
# economic.

# %%
slowest = {name: float(spectra[name].max()) for name in spectra}
print(
    f"The slowest mode halves in {slowest['deep Koopman, seed 0']:.1f} trading days in the deep Koopman model "
    f"and in {slowest['Hankel DMD']:.1f} days in Hankel DMD (HAR's monthly average spans 22 days)."
)

# %% [markdown]
# ### Multi-step forecasts beside HAR
# One protocol for every row: fitted once on the training years, frozen, scored on 2009-2018. `MSE` is on
# the log volatility, `QLIKE_lc` on the variance after a level correction learnt on the validation
# years; `ens DM` compares the seed ensemble with **log-HAR** (Newey-West lags for the overlapping
# multi-day targets), and `in_MCS` marks the 90% model confidence set.

# %%
results = seed_summary(task, predictions, baselines, val_predictions=val_predictions)
results.round(4)

# %%
print(verdicts(results, models=["DeepKoopman", "HankelDMD"]))
for h in HORIZONS:
    table = results.xs(h, level="horizon")
    print(
        f"h = {h}: deep Koopman MSE {table.loc['DeepKoopman', 'MSE']:.4f} vs HAR {table.loc['har', 'MSE']:.4f} "
        f"and log-HAR {table.loc['log_har', 'MSE']:.4f}; best of all: {table['MSE'].idxmin()}."
    )

# %%
fig, ax = plt.subplots(figsize=(10, 3.5))
last = slice(-250, None)
test_dates = task.test.dates[last]
ax.plot(test_dates, task.test.y[last, 1], color="black", lw=1, label="realised (5-day target)")
ax.plot(test_dates, np.mean(predictions["DeepKoopman"], axis=0)[last, 1], label="deep Koopman (ensemble)")
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
# **Reading the table.** The printed lines are the verdicts of this run. A deep Koopman model is a
# *linear* forecaster in learnt coordinates, so it competes with HAR on HAR's own ground: a linear
# recursion on recent volatility. Expect it to be close to the linear baselines rather than far
# ahead; if it loses, that is a result (HAR's three averages are a well-chosen dictionary already). What
# the Koopman view adds is the spectrum: decay rates in days that you can compare across assets and
# periods. Raise `EPOCHS` and `SEEDS` before you trust a small difference.

# %% [markdown]
# # Part 2: causal inference in time series
#
# ## Prediction is not intervention
#
# A forecaster estimates $E[y \mid \text{history}]$. A decision-maker asks: *what would $y$ be if I
# did $a$?* Written with Pearl's do-operator, the average effect of a binary treatment is
# $$ \tau = E[y \mid do(a{=}1)] - E[y \mid do(a{=}0)] = E\big[y(1) - y(0)\big], $$
# with $y(1), y(0)$ the potential outcomes, only one of which is ever seen. Think of a trading desk
# that hedges ($a = 1$) when volatility is high: hedged days have worse outcomes because volatility was
# high, not because of the hedge. The naive difference $E[y \mid a=1] - E[y \mid a=0]$ mixes the
# effect with that selection.
#
# The effect is **identified** from observed data when (i) every common cause of $a$ and $y$ is in the
# observed history $h$ (*no hidden confounding*, or sequential ignorability with time-varying
# covariates), (ii) every history has both treatments with positive probability (*overlap*), and (iii)
# one unit's treatment does not change another's outcome. Then
# $$ \tau = E_h\big[ E[y \mid h, a{=}1] - E[y \mid h, a{=}0] \big], $$
# which an outcome model $\hat y(h, a)$ estimates. Time adds a twist: past treatments change future
# covariates, which change future treatments (**time-varying confounding**). The Counterfactual
# Recurrent Network (Bica et al. 2020) learns a representation $r(h)$ that predicts the outcome but,
# through a gradient-reversal layer, cannot predict the treatment, so treated and control histories
# look alike to the outcome head.

# %% [markdown]
# ### The assumptions, drawn
# The simulator of `course_lib.causal.simulate_treatment` follows this graph. The covariate $c$ (a
# volatility-like state) drives both the decision $a_t$ and the outcome $y$; past treatments feed back
# into $c$. The dashed node $v$ is a **hidden** confounder, switched off by default: when it is on, no
# estimator that sees only $(c, a, y)$ can recover $\tau$.

# %%
nodes = {
    "$c_{t-1}$": (0, 1),
    "$a_{t-1}$": (0, 0),
    "$c_t$": (1.5, 1),
    "$a_t$": (1.5, 0),
    "$y$": (3, 0.5),
    "$v$\n(hidden)": (2.25, -0.9),
}
edges = [
    ("$c_{t-1}$", "$c_t$"),
    ("$a_{t-1}$", "$c_t$"),
    ("$c_{t-1}$", "$a_{t-1}$"),
    ("$c_t$", "$a_t$"),
    ("$c_t$", "$y$"),
    ("$c_{t-1}$", "$y$"),
    ("$a_t$", "$y$"),
]
fig, ax = plt.subplots(figsize=(7, 3.6))
for (src, dst), style in [(e, "-") for e in edges] + [
    ((("$v$\n(hidden)", "$a_t$")), "--"),
    (("$v$\n(hidden)", "$y$"), "--"),
]:
    ax.annotate(
        "",
        xy=nodes[dst],
        xytext=nodes[src],
        arrowprops=dict(
            arrowstyle="-|>",
            color="C3" if (src, dst) == ("$a_t$", "$y$") else "grey",
            ls=style,
            lw=2 if (src, dst) == ("$a_t$", "$y$") else 1.2,
            shrinkA=14,
            shrinkB=14,
        ),
    )
for name, (px, py) in nodes.items():
    ax.text(
        px,
        py,
        name,
        ha="center",
        va="center",
        fontsize=12,
        bbox=dict(boxstyle="circle", fc="white", ec="grey", ls="--" if "hidden" in name else "-"),
    )
ax.set(
    xlim=(-0.5, 3.5),
    ylim=(-1.4, 1.5),
    title="the simulator's causal graph: the effect is the red arrow $a_t \\to y$",
)
ax.axis("off")
plt.show()

# %% [markdown]
# ## The simulator, and naive vs adjusted vs balanced against the truth
#
# For each confounding strength $\gamma$ (0 is a randomised trial), we simulate `N_UNITS` histories of
# 10 days, with $P(a_t = 1) = \sigma(\gamma\, c_t)$ and a true effect $\tau = 1$, and estimate $\tau$
# three ways: the naive difference of means, a `CausalLSTM` (an LSTM over the history plus the
# treatment: regression adjustment) and a `CounterfactualRecurrentNetwork` (the same with a balanced
# representation). The last row turns on the hidden confounder.

# %%
set_seed(0)
start = time.perf_counter()
rows = []
settings = [(g, 0.0) for g in CONFOUNDING] + [(2.0, 2.0)]
for gamma, hidden in settings:
    data = simulate_treatment(n=N_UNITS, confounding=gamma, hidden=hidden, seed=int(10 * gamma))
    x, a = torch.tensor(data.x, device=device), torch.tensor(data.treatment, device=device)
    y = torch.tensor(data.outcome, dtype=torch.float32, device=device)
    row = {
        "confounding": gamma,
        "hidden": hidden,
        "treated share": data.treatment.mean(),
        "truth": data.effect,
        "naive": naive_effect(data.outcome, data.treatment),
    }
    for name, cls in [("CausalLSTM", CausalLSTM), ("CRN (balanced)", CounterfactualRecurrentNetwork)]:
        set_seed(0)
        net = cls(2, hidden_size=16).to(device)
        fit_outcome_model(net, x, a, y, epochs=CAUSAL_EPOCHS, lr=1e-2)
        row[name] = net.effect(x).mean().item()
    rows.append(row)
effects = pd.DataFrame(rows)
print(f"fitted {2 * len(settings)} outcome models in {time.perf_counter() - start:.1f} s")
effects.round(3)

# %%
observed = effects[effects["hidden"] == 0]
fig, ax = plt.subplots(figsize=(8, 4))
for name, marker in [("naive", "o"), ("CausalLSTM", "s"), ("CRN (balanced)", "^")]:
    ax.plot(observed["confounding"], observed[name], marker=marker, label=name)
ax.axhline(1.0, color="black", ls="--", label="true effect")
hid = effects[effects["hidden"] > 0].iloc[0]
ax.scatter(
    [hid["confounding"]] * 3,
    hid[["naive", "CausalLSTM", "CRN (balanced)"]],
    marker="x",
    s=80,
    color="C3",
    label="with a hidden confounder",
    zorder=4,
)
ax.set(
    xlabel="confounding strength gamma (0 = randomised)",
    ylabel="estimated effect tau (outcome units)",
    title="naive vs adjusted vs balanced estimates against the truth",
)
ax.legend()
plt.tight_layout()
plt.show()

# %%
bias = (observed[["naive", "CausalLSTM", "CRN (balanced)"]] - 1.0).abs()
print(
    f"Largest |bias| with observed confounding: naive {bias['naive'].max():.2f}, CausalLSTM "
    f"{bias['CausalLSTM'].max():.2f}, CRN {bias['CRN (balanced)'].max():.2f}."
)
print(f"At gamma = 0 (randomised) the naive estimate is {observed['naive'].iloc[0]:.2f}: no bias to remove.")
print(
    f"With the hidden confounder every estimate is off: naive {hid['naive']:.2f}, CausalLSTM {hid['CausalLSTM']:.2f}, "
    f"CRN {hid['CRN (balanced)']:.2f}, truth 1.00."
)
assert (observed["naive"].iloc[1:] > 1.2).all(), "confounding should bias the naive estimate upwards"
assert bias[["CausalLSTM", "CRN (balanced)"]].max().max() < 0.2, (
    "the outcome models should adjust for observed confounding"
)
assert (hid[["naive", "CausalLSTM", "CRN (balanced)"]] > 1.3).all(), (
    "a hidden confounder should bias every estimate"
)

# %% [markdown]
# What the lines say. The naive estimate is unbiased only in the randomised trial and grows with the
# confounding: treatment is chosen when $c$ is high, and high $c$ raises the outcome, so the bias is
# upwards. Both networks adjust for the *observed* history and come close to the truth. Balancing is
# not a free win: in this simulator regression adjustment already works, and the CRN's advantage in
# the literature appears with strong imbalance, many time steps of treatment and outcome models that
# extrapolate badly. With a hidden confounder, every estimate is biased, and no amount of data or
# architecture fixes it: the effect is not identified.
#
# > **Pitfall (erratum: CausalLSTM, the unidentified effect)** The source module calls `y1 - y0` of its
# > outcome model "the treatment effect". It is one only under no hidden confounding and overlap, two
# > assumptions that the data cannot confirm. The red crosses above are that failure, measured.
#
# > **Pitfall (erratum: CausalLSTM, the treatment's shape and device)** The source's
# > `estimate_treatment_effect` builds `torch.zeros(x.size(0), x.size(1))`: a (B, L) treatment for a
# > layer that takes one value per sample (a crash), created on the CPU whatever device the model is on.
# > `course_lib` takes one treatment per sample, (B,) or (B, 1), moves it to `x`'s device, and says what
# > is wrong otherwise:

# %%
model = CausalLSTM(2, hidden_size=8).to(device)
x_small = torch.randn(4, 10, 2, device=device)
source_treatment = torch.zeros(x_small.size(0), x_small.size(1))  # the source's line
print(
    "the source's treatment lives on",
    source_treatment.device,
    "with shape",
    tuple(source_treatment.shape),
    "; the model on",
    next(model.parameters()).device,
)
try:
    model(x_small, source_treatment)
except ValueError as err:
    print("ValueError:", err)
print("per-sample effects:", model.effect(x_small)[:, 0].cpu().numpy().round(3))

# %% [markdown]
# ## Granger causality
#
# Granger's idea: $x$ *Granger-causes* $y$ if the past of $x$ improves the forecast of $y$ beyond the
# past of $y$ (and of every other variable in the model). In a VAR($p$)
# $$ y_t = c + \sum_{i=1}^p a_i y_{t-i} + \sum_{i=1}^p b_i x_{t-i} + \dots + e_t , $$
# the **null hypothesis** is $H_0: b_1 = \dots = b_p = 0$, "x does not Granger-cause y", tested with an
# F test (`statsmodels`' `VAR.test_causality`). It needs **stationary** series (otherwise the F test's
# distribution is wrong and spurious regressions appear), a lag length that captures the dynamics, and
# it says nothing about intervention: a common driver missing from the VAR makes $x$ "cause" $y$. First
# a VAR with a known graph, where the answer is known:

# %%
coefs = np.zeros((2, 3, 3))
coefs[0] = [[0.5, 0.0, 0.3], [0.4, 0.3, 0.0], [0.0, 0.0, 0.4]]  # x0 -> x1 and x2 -> x0 at lag 1
coefs[1, 2, 1] = 0.35  # x1 -> x2 at lag 2
var_data = pd.DataFrame(simulate_var(coefs, 1000, seed=0), columns=["x0", "x1", "x2"])
p_toy = granger_matrix(var_data, lags=2)
true_graph = pd.DataFrame(
    (np.abs(coefs).sum(0).T > 0) & ~np.eye(3, dtype=bool), index=p_toy.index, columns=p_toy.columns
)
print("p-values (row: cause, column: effect); true edges: x0 -> x1, x1 -> x2, x2 -> x0")
print(p_toy.round(4))
found = p_toy < 0.05  # the diagonal is NaN: never an edge
print("edges found at 5%:", [f"{c} -> {e}" for c in p_toy.index for e in p_toy.columns if found.loc[c, e]])
print("the found graph equals the true one:", bool((found == true_graph).all().all()))

# %% [markdown]
# ### On real data: S&P 500 returns, volatility and volume
# Three daily series of the packaged S&P 500 data (1999-2018): the percent log return, the log
# Parkinson volatility and the log change of volume. The ADF test (null: a unit root) comes first;
# `granger_matrix` refuses a column it cannot call stationary.

# %%
real = task.frame[["ret", "log_vol_parkinson", "volume_change"]]
print(adf_table(real).round(4))
p_real = granger_matrix(real, lags=GRANGER_LAGS)
print(f"\nGranger p-values with {GRANGER_LAGS} lags (row: cause, column: effect):")
print(p_real.round(4))
for cause in p_real.index:
    for effect in p_real.columns:
        if cause != effect:
            verdict = "rejects" if p_real.loc[cause, effect] < 0.05 else "does not reject"
            print(
                f"  {cause} -> {effect}: p = {p_real.loc[cause, effect]:.2g}, the test {verdict} 'no Granger causality' at 5%"
            )

# %% [markdown]
# **Caveats, before reading an arrow into these numbers.** (1) A rejection means *the past of one series
# helps predict another*, nothing about what an intervention would do: news moves returns, volatility and
# volume together, and a common driver outside the VAR shows up as Granger causality. (2) Log
# volatility is stationary by the ADF test but close to a unit root (long memory): five lags of a VAR
# are a short approximation of it, and the residual dependence inflates the F tests. (3) Daily data
# aggregate within-day reactions into same-day correlation, which a lagged test cannot see. (4) With
# nearly 5,000 days even tiny predictive gains are "significant"; the effect size is what matters for a
# forecaster, and the return equation's gains are economically negligible (chapter 00). (5) The
# classic leverage effect, falling prices followed by higher volatility, is the kind of
# prediction this test finds; calling it causal needs a model of why.

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
# ### Exercise 3 (2 points): spot the bug in `estimate_treatment_effect`
# The source module's function is below. It crashes for the model it was written for, and on a GPU it
# would put the treatment on the wrong device. Write `effect_fixed(model, x)` that returns the
# per-sample effect $\hat y(h, 1) - \hat y(h, 0)$ of a `CausalLSTM` with one treatment per sample on
# `x`'s device, without building a graph for gradients.
#
# ```python
# def estimate_treatment_effect(model, x):
#     treatment_0 = torch.zeros(x.size(0), x.size(1))
#     treatment_1 = torch.ones(x.size(0), x.size(1))
#     return model(x, treatment_1) - model(x, treatment_0)
# ```


# %%
# SOLUTION
def effect_fixed(model, x):
    with torch.no_grad():
        ones = torch.ones(x.size(0), device=x.device)
        return model(x, ones) - model(x, torch.zeros_like(ones))


# %%
# SELF-CHECK
set_seed(5)
check_model = CausalLSTM(2, hidden_size=8).to(device).eval()
x_check = torch.randn(6, 7, 2, device=device)
mine = effect_fixed(check_model, x_check)
assert mine.shape == (6, 1) and not mine.requires_grad, "one effect per sample, without a gradient graph"
assert mine.device == x_check.device, "the effect must live on x's device"
assert torch.allclose(mine, check_model.effect(x_check)), "differs from CausalLSTM.effect"
print("Exercise 3 passed")

# %% [markdown]
# ## Summary
#
# * The Koopman operator trades a nonlinear state map for a linear map on observables. DMD fits it on
#   the state, EDMD on a dictionary you choose (exact when the dictionary spans an invariant subspace, as
#   in Lusch's example), the deep Koopman network learns the dictionary with reconstruction, linearity
#   and multi-step prediction losses. Eigenvalues become decay rates and half-lives in days.
# * On S&P 500 volatility the Koopman models are linear forecasters in learnt or delay coordinates:
#   judge them against HAR and log-HAR with DM tests on MSE and corrected QLIKE and the model
#   confidence set (the printed verdicts), not by the elegance of the spectrum.
# * Intervention needs assumptions that prediction does not: no hidden confounding, overlap, no
#   interference. Under observed time-varying confounding an outcome model (`CausalLSTM`) or a balanced
#   one (the CRN, gradient reversal) recovers a known effect that the naive difference overstates; with
#   a hidden confounder nothing does.
# * Granger causality tests predictability (null: the cause's lags have zero coefficients), needs
#   stationary series and a good lag length, and is no proof of intervention effects.
# * Source defects: an eigenvalue network outside the forward pass never learns; a (B, L) treatment on
#   the CPU crashes; `y1 - y0` is an effect only when the effect is identified.
