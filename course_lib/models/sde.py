"""A neural stochastic differential equation (chapter 06c): a forecast as a distribution of sample paths.

A neural ODE moves a state deterministically; a neural SDE adds noise whose size the network also
learns (Tzen & Raginsky, 2019; Li, Wong, Chen & Duvenaud, 2020):

    dz = mu_theta(z) dt + sigma_theta(z) dW,     W a standard Brownian motion in R^H

with a drift ``mu_theta`` and a diagonal diffusion ``sigma_theta`` (each coordinate of z gets its own
noise, scaled by a positive function of the whole state). There is no closed form for a learnt SDE;
:func:`euler_maruyama` simulates it on a grid t_k = k dt::

    z_{k+1} = z_k + mu(z_k) dt + sigma(z_k) sqrt(dt) eps_k,     eps_k ~ N(0, I) independent

the Euler step of an ODE plus a Gaussian increment dW_k = sqrt(dt) eps_k. Its strong order is 0.5 (the
paths themselves converge like sqrt(dt)) and its weak order 1 (expectations of smooth functions of the
endpoint converge like dt); with sigma = 0 it is exactly the ODE's Euler method.
"""

import math

import torch
from torch import nn

from .common import check_window, keeps_config, mlp_head

__all__ = ["NeuralSDE", "euler_maruyama"]


def euler_maruyama(drift, diffusion, z0: torch.Tensor, dt: float, noise: torch.Tensor) -> torch.Tensor:
    """Simulate ``dz = drift(z) dt + diffusion(z) dW`` (diagonal noise) by Euler-Maruyama; the whole path.

    ``z0`` (..., H): the start of every path; ``noise`` (K, ..., H): standard normal draws eps_k, one per
    step (broadcast against ``z0``: shared noise has size 1 where ``z0`` has rows); ``drift`` and
    ``diffusion`` map (..., H) -> (..., H) (autonomous fields). Returns (K + 1, ..., H): z_0, ..., z_K with
    ``z_{k+1} = z_k + drift(z_k) dt + diffusion(z_k) sqrt(dt) eps_k``.
    """
    if dt <= 0:
        raise ValueError(f"euler_maruyama: dt must be > 0, got {dt}")
    root = math.sqrt(dt)
    z = z0.expand(torch.broadcast_shapes(z0.shape, noise.shape[1:]))  # every path starts at its z0
    path = [z]
    for eps in noise:  # (..., H) per step
        z = z + drift(z) * dt + diffusion(z) * root * eps
        path.append(z)
    return torch.stack(path)  # (K + 1, ..., H)


class NeuralSDE(nn.Module):
    """A latent neural SDE forecaster: a GRU reads the window, an SDE spreads its state over the horizon.

        h_1..h_L = GRU(x_1..x_L)                                   (B, L, H) causal encoder
        z(0)     = W h_L + b                                       (B, H) the state at the forecast origin
        dz       = mu_theta(z) dt + sigma_theta(z) dW   on [0, horizon]   (Tzen & Raginsky, 2019;
                                                                   Li, Wong, Chen & Duvenaud, 2020)
        y^(p)    = head(z^(p)(horizon)),   p = 1..n_paths          one forecast per simulated path
        forecast = (1 / n_paths) sum_p y^(p)                       the point forecast: the path mean

    ``mu_theta``: Linear -> tanh -> Linear; ``sigma_theta``: Linear -> softplus, positive and diagonal
    (one noise per latent coordinate). The SDE is simulated by :func:`euler_maruyama` with ``n_steps``
    steps of ``dt = horizon / n_steps``, one set of ``n_paths`` paths per window.

    ``forward(x, per_step=False)`` returns ``{"prediction": (B, output_size), "samples": (B, output_size,
    n_paths)}`` (the path mean and the paths' forecasts, batch first like
    :func:`course_lib.evaluation.probabilistic.crps_samples`); with ``per_step=True`` the SDE starts from
    every slot's GRU state and both gain the slot axis: (B, L, output_size[, n_paths]). The samples are
    what a proper scoring rule trains on (``Trainer(model, loss="crps_samples")``, the sample CRPS of
    :class:`course_lib.losses.SampleCRPSLoss`); :meth:`sample` draws any number of paths.

    Noise. In training mode the increments are fresh draws from torch's global generator, independent
    for every path, window and slot (``torch.manual_seed`` fixes them). In evaluation mode they come from
    a generator seeded with ``seed`` (the buffer ``eval_noise``, drawn when the model is built): one
    (n_steps, n_paths, H) block of draws shared by every window of the batch, so a window's forecast does not depend on which other windows share its
    batch, and the same window always gets the same forecast. With ``antithetic=True`` the second half of
    the paths uses the negated draws of the first half (a variance reduction: for a linear SDE the path
    mean is then exactly the mean of the law).
    """

    @keeps_config
    def __init__(
        self,
        input_size: int,
        hidden_size: int = 16,
        output_size: int = 1,
        n_paths: int = 32,
        n_steps: int = 4,
        horizon: float = 1.0,
        antithetic: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        if not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be an integer >= 1, got {n_steps!r}")
        if horizon <= 0:
            raise ValueError(f"horizon must be > 0, got {horizon}")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.n_paths, self.n_steps, self.horizon = n_paths, n_steps, horizon
        self.antithetic, self.seed = antithetic, seed
        self.encoder = nn.GRU(input_size, hidden_size, batch_first=True)
        self.initial = nn.Linear(hidden_size, hidden_size)
        self.drift = nn.Sequential(
            nn.Linear(hidden_size, 2 * hidden_size), nn.Tanh(), nn.Linear(2 * hidden_size, hidden_size)
        )
        self.diffusion = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.Softplus())
        with torch.no_grad():  # start with a small noise, sigma = softplus(-3) = 0.05 per unit of time
            self.diffusion[0].bias.fill_(-3.0)
        self.head = mlp_head(hidden_size, hidden_size, output_size)
        # the evaluation-mode draws: fixed by `seed`, rebuilt with the model (not saved), moved by .to()
        self.register_buffer("eval_noise", self._fixed_draws(n_paths), persistent=False)

    def _check_paths(self, n_paths: int) -> None:
        if not isinstance(n_paths, int) or n_paths < 2 or (self.antithetic and n_paths % 2):
            raise ValueError(
                f"n_paths must be an integer >= 2 (a distribution needs several paths), and even with "
                f"antithetic=True (the paths come in pairs), got {n_paths!r}"
            )

    def _fixed_draws(self, n_paths: int) -> torch.Tensor:
        """(n_steps, n_paths or n_paths / 2 with antithetic, H) standard normal draws from ``seed``."""
        self._check_paths(n_paths)
        gen = torch.Generator().manual_seed(self.seed)
        half = n_paths // 2 if self.antithetic else n_paths
        return torch.randn(self.n_steps, half, self.hidden_size, generator=gen)

    def noise(self, n_paths: int, rows: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """The draws eps: (n_steps, n_paths, *rows, H) in training, (n_steps, n_paths, 1, .., 1, H) in eval."""
        self._check_paths(n_paths)
        if self.training:  # fresh, independent for every row
            half = n_paths // 2 if self.antithetic else n_paths
            eps = torch.randn(
                self.n_steps, half, *rows, self.hidden_size, dtype=like.dtype, device=like.device
            )
        else:  # one block from the model's own seed, broadcast over the rows: batch-independent
            eps = self.eval_noise if n_paths == self.n_paths else self._fixed_draws(n_paths).to(like)
            eps = eps.reshape(*eps.shape[:2], *(1 for _ in rows), self.hidden_size)
        return torch.cat([eps, -eps], dim=1) if self.antithetic else eps

    def origin(self, x: torch.Tensor, per_step: bool = False) -> torch.Tensor:
        """z(0): (B, H) at the forecast origin, or (B, L, H) at every slot with ``per_step=True``."""
        check_window(x, self.input_size, model=type(self).__name__, module=self)
        h, _ = self.encoder(x)  # (B, L, H)
        return self.initial(h if per_step else h[:, -1])

    def latent_paths(
        self, x: torch.Tensor, n_paths: int | None = None, per_step: bool = False
    ) -> torch.Tensor:
        """The simulated latent paths: (n_steps + 1, n_paths, B, H) (with ``per_step``: (.., B, L, H))."""
        z0 = self.origin(x, per_step)  # (B, H) or (B, L, H)
        eps = self.noise(n_paths or self.n_paths, tuple(z0.shape[:-1]), z0)  # (K, P, B[, L], H)
        return euler_maruyama(self.drift, self.diffusion, z0.unsqueeze(0), self.horizon / self.n_steps, eps)

    def sample(self, x: torch.Tensor, n_paths: int | None = None, per_step: bool = False) -> torch.Tensor:
        """The forecast of every path: (B, output_size, n_paths), or (B, L, output_size, n_paths) per step."""
        end = self.latent_paths(x, n_paths, per_step)[-1]  # (P, B[, L], H)
        return self.head(end).movedim(0, -1)  # (B[, L], output_size, P)

    def forward(self, x: torch.Tensor, per_step: bool = False) -> dict[str, torch.Tensor]:
        samples = self.sample(x, per_step=per_step)  # (B[, L], output_size, P)
        return {"prediction": samples.mean(dim=-1), "samples": samples}
