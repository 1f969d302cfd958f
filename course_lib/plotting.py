"""Pictures of what attention models learned: attention over time, variable importances, quantile bands.

An attention matrix is (time x time): row t holds the weights that position t (the query) puts on
positions s <= t (the keys). Its axes are therefore labelled with time offsets relative to the forecast
origin ("t-3", "t", "t+1"), never with feature names (the source module's visualize_attention_weights
did that, and called a ``return_attention`` argument that no model of the module had: docs/errata.md).
The pooling weights of a forecast made at the last step are a vector over the window per sample, (B, L):
those are drawn as bars over the window, never as a matrix.
Variable-selection weights are (time x feature) or (feature,): those carry feature names.
"""

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .outputs import prediction_of


def _numpy(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def time_labels(n_past: int, n_future: int = 0) -> list[str]:
    """Labels of the T = n_past + n_future positions: "t-(n_past-1)", ..., "t", "t+1", ..., "t+n_future"."""
    past = [f"t-{n_past - 1 - i}" if i < n_past - 1 else "t" for i in range(n_past)]
    return past + [f"t+{h}" for h in range(1, n_future + 1)]


def _thin_ticks(ax, labels: Sequence[str], axis: str, max_ticks: int = 12) -> None:
    step = max(1, int(np.ceil(len(labels) / max_ticks)))
    positions = list(range(len(labels) - 1, -1, -step))[::-1]  # always label the last position
    if axis == "x":
        ax.set_xticks(positions, [labels[i] for i in positions], rotation=90)
    else:
        ax.set_yticks(positions, [labels[i] for i in positions])


def plot_attention(
    weights,
    labels: Sequence[str] | None = None,
    ax=None,
    title: str = "Attention weights",
    relative: bool = False,
):
    """Heatmap of one (T, T) attention matrix (average it over samples and heads first).

    ``relative=True`` divides each row by the uniform weight over its visible keys (1 / the number of
    non-zero entries; 1/(t+1) under a causal mask): 1 means "as much as a plain average", >1 "more".
    """
    w = _numpy(weights)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"plot_attention wants a square (T, T) matrix, got shape {w.shape}")
    if relative:
        w = w * (w > 0).sum(axis=1, keepdims=True)
    labels = list(labels) if labels is not None else time_labels(w.shape[0])
    if len(labels) != w.shape[0]:
        raise ValueError(f"{len(labels)} labels for {w.shape[0]} positions")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.5))
    image = ax.imshow(w, cmap="viridis", aspect="auto", vmin=0.0)
    ax.figure.colorbar(image, ax=ax, label="weight / uniform weight" if relative else "attention weight")
    _thin_ticks(ax, labels, "x")
    _thin_ticks(ax, labels, "y")
    ax.set_xlabel("key: position attended to")
    ax.set_ylabel("query: position attending")
    ax.set_title(title)
    return ax


def plot_window_attention(weights, ax=None, title: str = "Attention over the window"):
    """Bar chart of the weights that ONE query (the forecast origin t) puts on the L days of its window.

    ``weights`` is (B, L) (one row per sample: the pooling weights of FinancialLSTM, FinancialGRU and
    AttentionLSTM) or (L,). Bars: the mean over samples; error bars: the standard deviation; the dashed
    line is the uniform weight 1/L. Such weights are a vector per sample, not a (T, T) matrix: drawing
    (B, L) as a heatmap would put the samples on the query axis (docs/errata.md:
    visualize_attention_weights).
    """
    w = _numpy(weights)
    w = w[None] if w.ndim == 1 else w
    if w.ndim != 2:
        raise ValueError(
            f"plot_window_attention wants (B, L) or (L,) weights, got shape {_numpy(weights).shape}"
        )
    mean, std = w.mean(axis=0), w.std(axis=0)
    labels = time_labels(len(mean))
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    ax.bar(np.arange(len(mean)), mean, yerr=std if len(w) > 1 else None, color="tab:blue", alpha=0.8)
    ax.axhline(1.0 / len(mean), color="grey", ls="--", lw=1, label="uniform 1/L")
    _thin_ticks(ax, labels, "x")
    ax.set_xlabel("input day (t = forecast origin)")
    ax.set_ylabel("attention weight (mean over samples)")
    ax.set_title(title)
    ax.legend(loc="upper left")
    return ax


def visualize_attention_weights(
    model,
    inputs,
    ax=None,
    title: str = "Attention weights (mean over samples)",
    relative: bool = False,
    per_step: bool = False,
):
    """Run ``model(*inputs, return_attention=True)`` in eval mode and plot what it returns, on the right axes.

    ``inputs`` is a tensor/array x (B, L, C) or a tuple of them (``(x_past, x_future)`` for the TFT);
    ``per_step=True`` is passed on to the model (then every step is a query). The attention is read by
    its shape:

    * (B, L): one query per sample (the forecast origin) over the L days of its window, e.g. the
      pooling of FinancialLSTM, FinancialGRU, AttentionLSTM: a bar chart over the window
      (:func:`plot_window_attention`); returns (ax, mean weights (L,));
    * (..., T, T) with any leading axes (samples, layers, heads): averaged over them and drawn as a
      query x key heatmap (:func:`plot_attention`, ``relative`` passed on); returns (ax, (T, T)).

    Positions are labelled relative to the forecast origin t = the last of the L input steps.
    """
    inputs = inputs if isinstance(inputs, tuple | list) else (inputs,)
    device = next(model.parameters()).device
    tensors = [None if a is None else torch.as_tensor(a, dtype=torch.float32, device=device) for a in inputs]
    options = {"return_attention": True, **({"per_step": True} if per_step else {})}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(*tensors, **options)
    finally:
        model.train(was_training)
    if not isinstance(out, dict) or "attention" not in out:
        raise TypeError(
            f"{type(model).__name__}(..., return_attention=True) must return a dict with 'attention'"
        )
    prediction_of(out)  # the dict must follow the output convention
    w = _numpy(out["attention"])
    batch, n_past = tensors[0].shape[0], tensors[0].shape[1]
    if w.ndim == 2 and w.shape == (batch, n_past):
        ax = plot_window_attention(w, ax=ax, title=title)
        return ax, w.mean(axis=0)
    if w.ndim < 3 or w.shape[0] != batch or w.shape[-1] != w.shape[-2]:
        raise ValueError(
            f"{type(model).__name__} returned attention of shape {w.shape}: expected (B, L) = ({batch}, {n_past}) "
            "weights of the forecast origin, or (B, ..., T, T) matrices"
        )
    mean = w.reshape(-1, *w.shape[-2:]).mean(axis=0)  # (T, T)
    ax = plot_attention(
        mean, time_labels(n_past, mean.shape[0] - n_past), ax=ax, title=title, relative=relative
    )
    return ax, mean


def plot_variable_importance(
    weights, feature_names: Sequence[str], ax=None, title: str = "Variable importance"
):
    """Bar chart of variable-selection weights (..., C): mean over samples and time, with the spread
    (standard deviation over samples of their time-averaged weights) as error bars."""
    w = _numpy(weights)
    if w.shape[-1] != len(feature_names):
        raise ValueError(f"{len(feature_names)} feature names for {w.shape[-1]} weights per step")
    per_sample = w.reshape(w.shape[0], -1, w.shape[-1]).mean(axis=1) if w.ndim > 1 else w[None]  # (N, C)
    mean, std = per_sample.mean(axis=0), per_sample.std(axis=0)
    order = np.argsort(mean)
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 0.4 * len(feature_names) + 1.2))
    ax.barh(np.arange(len(order)), mean[order], xerr=std[order], color="tab:blue", alpha=0.8)
    ax.set_yticks(np.arange(len(order)), [feature_names[i] for i in order])
    ax.axvline(1.0 / len(feature_names), color="grey", ls="--", lw=1, label="uniform 1/C")
    ax.set_xlabel("selection weight (sums to 1 over variables)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    return ax


def plot_variable_weights_over_dates(
    dates,
    weights,
    feature_names: Sequence[str],
    window: int = 21,
    ax=None,
    title: str = "Selection weights over time",
):
    """Rolling mean (``window`` samples) of the variable-selection weights of each sample's LAST input step,
    against the sample dates: how the importances move through calm and turbulent periods.
    ``weights`` is (N, L, C) (the last step is used) or (N, C)."""
    w = _numpy(weights)
    w = w[:, -1] if w.ndim == 3 else w
    if w.ndim != 2 or w.shape != (len(dates), len(feature_names)):
        raise ValueError(
            f"want weights ({len(dates)}, [L,] {len(feature_names)}), got shape {_numpy(weights).shape}"
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3))
    kernel = np.ones(window) / window
    for j, name in enumerate(feature_names):
        smooth = np.convolve(w[:, j], kernel, mode="valid")  # trailing mean ending at each date
        ax.plot(dates[window - 1 :], smooth, lw=1.2, label=name)
    ax.set_ylabel(f"weight ({window}-sample mean)")
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=min(len(feature_names), 5), loc="upper left")
    return ax


def plot_quantile_bands(
    dates, y_true, quantile_pred, quantiles: Sequence[float], ax=None, title: str = "Quantile forecast"
):
    """Realised values against the predicted quantiles (N, Q): nested bands between symmetric pairs
    of levels, the median (or middle level) as a line."""
    q = _numpy(quantile_pred)
    y = _numpy(y_true).reshape(-1)
    if q.ndim != 2 or q.shape[1] != len(quantiles) or q.shape[0] != len(y):
        raise ValueError(f"want quantile_pred ({len(y)}, {len(quantiles)}), got {q.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3.5))
    n = len(quantiles)
    for i in range(n // 2):
        inside = np.mean((y >= q[:, i]) & (y <= q[:, n - 1 - i]))
        ax.fill_between(
            dates,
            q[:, i],
            q[:, n - 1 - i],
            alpha=0.25 + 0.15 * i,
            color="tab:blue",
            lw=0,
            label=f"{quantiles[i]:.2f}-{quantiles[n - 1 - i]:.2f} band ({inside:.0%} inside)",
        )
    ax.plot(dates, q[:, n // 2], color="tab:blue", lw=1, label=f"q{quantiles[n // 2]:.2f}")
    ax.plot(dates, y, ".", color="black", ms=2, label="realised")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    return ax
