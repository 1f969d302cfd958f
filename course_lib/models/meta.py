"""Model-agnostic meta-learning (MAML) for few-shot forecasting, over any ``nn.Module``.

Finn, Abbeel & Levine (2017), "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks".
A task tau is a short stretch of one stock: a support set S (the recent past we may adapt on) and a
query set Q (the days that follow, on which the adapted model is judged). MAML learns a starting
point theta from which a few gradient steps on S give parameters that do well on Q:

    theta_0 = theta,   theta_{j+1} = theta_j - alpha * grad L_S(theta_j)       (inner loop, k steps)
    min_theta  E_tau [ L_Q(theta_k) ]                                         (outer loop)

The meta-gradient follows from the chain rule through the inner loop. For one inner step,

    d L_Q(theta_1) / d theta = (I - alpha * H_S(theta)) grad L_Q(theta_1),   H_S = Hessian of L_S.

Second-order MAML keeps the Hessian term: the inner gradients are built with ``create_graph=True``
so that the outer backward pass differentiates through them. First-order MAML (FOMAML) treats the
inner gradients as constants and uses grad L_Q(theta_k) alone: cheaper, often as good.

The fast weights theta_j must be USED: both the inner losses and the query loss evaluate the
network at theta_j through ``torch.func.functional_call(model, fast_weights, x)``. Cloning the
parameters and then calling ``model(x)`` (the source module's version, see docs/errata.md) evaluates the
network at theta every time: the inner gradient with respect to the clones fails with "One of the
differentiated Tensors appears to not have been used in the graph", and the outer loop, which
also calls ``model(x)``, is plain multi-task training with no adaptation at all.

cuDNN RNNs (nn.LSTM/nn.GRU on a CUDA device) have no double backward, so second-order MAML through
them fails ("the derivative for '_cudnn_rnn_backward' is not implemented"); they also refuse any
backward in eval mode, which is how one adapts at test time. On CUDA this module disables cuDNN
for the passes that need either (the inner loop when it keeps its graph or the model is in eval
mode, and the query pass in eval mode), so that PyTorch's native, twice differentiable RNN
kernels run there. First-order meta-training in train mode keeps cuDNN.
"""

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from ..losses import mse_loss

__all__ = ["MAML", "Episode", "sample_episodes"]


def _check_finite(loss: torch.Tensor, what: str) -> None:
    """The NaN guard of both loops: a NaN target would otherwise turn every parameter NaN, silently."""
    if not torch.isfinite(loss).all():
        raise FloatingPointError(
            f"MAML: {what} is {loss.detach().float().mean().item()}; check that episode's inputs and "
            "targets for NaN, or lower inner_lr"
        )


@dataclass(frozen=True)
class Episode:
    """One meta-learning task: adapt on (support_x, support_y), evaluate on (query_x, query_y)."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor


def sample_episodes(
    series: Sequence[tuple[torch.Tensor, torch.Tensor]],
    n_episodes: int,
    n_support: int,
    n_query: int,
    gap: int = 0,
    generator: torch.Generator | None = None,
) -> list[Episode]:
    """Episodes cut from chronologically ordered ``(X, y)`` samples of several series (stocks).

    Each episode picks a series at random, then a start ``s``: the support set is samples
    ``s .. s+n_support-1`` and the query set the ``n_query`` samples that follow after ``gap``
    more (use ``gap = horizon - 1`` so that no support target overlaps the query period). The
    query always lies after the support: we adapt on the past and are judged on the future.
    """
    if not series:
        raise ValueError("sample_episodes needs at least one (X, y) series")
    if min(n_episodes, n_support, n_query) < 1 or gap < 0:
        raise ValueError(
            f"need n_episodes, n_support, n_query >= 1 and gap >= 0; got {n_episodes}, {n_support}, {n_query}, {gap}"
        )
    span = n_support + gap + n_query
    for i, (x, y) in enumerate(series):
        if len(x) != len(y):
            raise ValueError(f"series {i}: X has {len(x)} samples but y has {len(y)}")
        if len(x) < span:
            raise ValueError(f"series {i} has {len(x)} samples, fewer than one episode needs ({span})")
    episodes = []
    for _ in range(n_episodes):
        i = int(torch.randint(len(series), (1,), generator=generator))
        x, y = series[i]
        s = int(torch.randint(len(x) - span + 1, (1,), generator=generator))
        q = s + n_support + gap
        episodes.append(
            Episode(x[s : s + n_support], y[s : s + n_support], x[q : q + n_query], y[q : q + n_query])
        )
    return episodes


class MAML(nn.Module):
    """Wraps any network; ``adapt`` runs the inner loop, ``meta_loss``/``meta_step`` the outer loop.

    ``forward(x, params)`` evaluates the wrapped network at the given (fast) weights. Parameters
    with ``requires_grad=False`` are not adapted. ``loss_fn(output, target)`` is used in both loops
    (default: MSE on the prediction).
    """

    def __init__(
        self,
        model: nn.Module,
        inner_lr: float = 0.01,
        inner_steps: int = 1,
        first_order: bool = False,
        loss_fn: Callable = mse_loss,
    ):
        super().__init__()
        if inner_lr <= 0 or inner_steps < 1:
            raise ValueError(f"need inner_lr > 0 and inner_steps >= 1, got {inner_lr} and {inner_steps}")
        self.model = model
        self.inner_lr = inner_lr
        self.inner_steps = inner_steps
        self.first_order = first_order
        self.loss_fn = loss_fn

    def _cudnn_off_if(self, condition: bool):
        """cuDNN RNN kernels have no double backward and no backward at all in eval mode: when the pass
        about to run needs either, on CUDA, select PyTorch's native kernels for it."""
        on_cuda = any(p.is_cuda for p in self.model.parameters())
        return (
            torch.backends.cudnn.flags(enabled=False) if condition and on_cuda else contextlib.nullcontext()
        )

    def forward(self, x: torch.Tensor, params: dict[str, torch.Tensor] | None = None):
        if params is None:
            return self.model(x)
        return functional_call(self.model, params, (x,))

    def adapt(
        self,
        support_x: torch.Tensor,
        support_y: torch.Tensor,
        steps: int | None = None,
        create_graph: bool | None = None,
    ) -> dict[str, torch.Tensor]:
        """Fast weights after ``steps`` gradient steps on the support set (the inner loop).

        ``create_graph`` (default: not ``first_order``) keeps the graph of the inner gradients so
        that the meta-gradient includes the second-order term. At test time pass
        ``create_graph=False`` and evaluate the query under ``torch.no_grad()``.
        """
        steps = self.inner_steps if steps is None else steps
        create_graph = (not self.first_order) if create_graph is None else create_graph
        fast = {name: p for name, p in self.model.named_parameters() if p.requires_grad}
        if not fast:
            raise ValueError("every parameter is frozen: the inner loop has nothing to adapt")
        names = list(fast)
        with torch.enable_grad(), self._cudnn_off_if(create_graph or not self.model.training):
            for step in range(1, steps + 1):
                loss = self.loss_fn(self(support_x, fast), support_y)
                _check_finite(loss, f"the support loss at inner step {step} of {steps}")
                grads = torch.autograd.grad(
                    loss, list(fast.values()), create_graph=create_graph, allow_unused=True
                )
                unused = [n for n, g in zip(names, grads, strict=True) if g is None]
                if unused:
                    raise ValueError(
                        f"the support loss does not depend on {unused}: freeze them (requires_grad=False) "
                        "or use a loss that uses them"
                    )
                bad = [n for n, g in zip(names, grads, strict=True) if not torch.isfinite(g).all()]
                if bad:
                    raise FloatingPointError(
                        f"MAML: the inner gradient at inner step {step} of {steps} is NaN or infinite for "
                        f"{bad}; lower inner_lr (now {self.inner_lr}) or check the support set"
                    )
                fast = {n: w - self.inner_lr * g for (n, w), g in zip(fast.items(), grads, strict=True)}
        return fast

    def task_loss(self, episode: Episode) -> torch.Tensor:
        """Query loss of the network adapted on the episode's support set (differentiable in theta)."""
        fast = self.adapt(episode.support_x, episode.support_y)
        with self._cudnn_off_if(not self.model.training):
            return self.loss_fn(self(episode.query_x, fast), episode.query_y)

    def meta_loss(self, episodes: Sequence[Episode]) -> torch.Tensor:
        """Mean query loss over a batch of episodes."""
        if not episodes:
            raise ValueError("meta_loss needs at least one episode")
        losses = []
        for i, episode in enumerate(episodes):
            loss = self.task_loss(episode)
            _check_finite(loss, f"the query loss of episode {i}")
            losses.append(loss)
        return torch.stack(losses).mean()

    def meta_step(self, episodes: Sequence[Episode], optimizer: torch.optim.Optimizer) -> float:
        """One outer-loop update of the initialisation theta; returns the meta-loss.

        A NaN or infinite loss (support or query) raises a ``FloatingPointError`` that names the step and
        the episode, before the optimizer moves: the weights are left as they were.
        """
        optimizer.zero_grad(set_to_none=True)
        loss = self.meta_loss(episodes)
        loss.backward()
        optimizer.step()
        return loss.item()
