"""Time-series foundation models: a patch transformer (TimesFM / PatchTST style) and Lag-Llama.

Both are *decoder-only*: one causal transformer reads a sequence of tokens and, at every token,
predicts the distribution of what comes next. Pretrained on many series, such a model forecasts a
series it has never seen (zero-shot); a few steps of training on that series fine-tune it.

TimeSeriesFoundationModel (Das et al., 2024, TimesFM; Nie et al., 2023, PatchTST). Each channel is
its own series (channel independence). A window of L = N P steps is cut into N patches of P values::

    p_n = (x_{nP}, ..., x_{nP+P-1})                       # patch n, P values of ONE channel
    mu_n, sigma_n = mean, std of patches 0..n              # causal instance normalisation (RevIN)
    z_n = (p_n - mu_n) / sigma_n
    h_n = CausalTransformer(W_in z_0 + e_0, ..., W_in z_n + e_n)   # token n sees tokens 0..n only
    x_{(n+1)P + j} ~ mu_n + sigma_n StudentT(df_nj, loc_nj, scale_nj),   j = 0..P-1

The last token's statistics are those of the whole context, so the forecast is RevIN's (Kim et al.,
2022) with statistics from the context only; earlier tokens use the prefix they can see, so no
output depends on a later input. The head is a Student-t with ``df = 2 + softplus`` (finite
variance), or non-crossing quantiles ``q_1 = a_1, q_k = q_{k-1} + softplus(a_k)`` (``models.heads``).
The pretraining losses are ``course_lib.losses.student_t_nll`` and ``pinball_loss``.

LagLlamaFinance (Rasul et al., 2023, Lag-Llama). One token per day t, built from the lagged values
that predict x_{t+1}::

    m_t, s_t = median and IQR of x_0..x_t                  # robust scaler, causal (the context's at t = L-1)
    u_{t,l} = (x_{t+1-l} - m_t) / s_t  if t+1-l >= 0, else 0;   mask_{t,l} = [t+1-l >= 0]
    h = CausalTransformer(W [u_t, mask_t, calendar_t])
    x_{t+1} ~ m_t + s_t StudentT(2 + softplus(.), loc, softplus(.))

The source module's versions crash or leak (docs/errata.md: TimeSeriesFoundationModel, LagLlamaFinance):
patches P*C wide fed to a layer built for P, a decoder that cross-attends to an unmasked memory
(patch 0 sees every later patch), a ``generate`` that crashes, lag features that are *differences*
``x_t - x_{t-l}`` (equal to x_t itself while t < l), no scaling, and C > 1 crashes.
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..losses import pinball_loss, student_t_nll
from .common import check_window, keeps_config
from .heads import monotone_quantiles
from .transformer import TransformerBlock

__all__ = [
    "LagLlamaFinance",
    "MeanScaleTokenizer",
    "TimeSeriesFoundationModel",
    "lag_features",
    "robust_prefix_scaler",
]

EPS = 1e-5  # floor of the normalisation scales (a constant series)


def _sample_student_t(loc, scale, df, generator: torch.Generator | None) -> torch.Tensor:
    """One draw per entry, made on the CPU; a fixed ``generator`` gives the same draws on every device,
    and no global random state (CPU or CUDA) is changed."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # the CPU generator only, restored on exit
        draw = torch.distributions.StudentT(df.cpu(), loc.cpu(), scale.cpu()).sample()
    return draw.to(loc.device)


class _StudentTHead(nn.Module):
    """hidden (..., H) -> loc, scale > 0, df > 2, each (..., n_out)."""

    def __init__(self, hidden_size: int, n_out: int):
        super().__init__()
        self.proj = nn.Linear(hidden_size, 3 * n_out)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        loc, raw_scale, raw_df = self.proj(h).chunk(3, dim=-1)
        return loc, F.softplus(raw_scale) + EPS, 2.0 + F.softplus(raw_df)


class _CausalEncoder(nn.Module):
    """Tokens (B, N, D) -> hidden states (B, N, D); token n attends to tokens 0..n only."""

    def __init__(self, hidden_size: int, n_heads: int, n_layers: int, dropout: float):
        super().__init__()
        self.blocks = nn.ModuleList(
            [
                TransformerBlock(hidden_size, n_heads, 4 * hidden_size, dropout, causal=True)
                for _ in range(n_layers)
            ]
        )
        self.ln_final = nn.LayerNorm(hidden_size)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            h, _ = block(h)
        return self.ln_final(h)


class TimeSeriesFoundationModel(nn.Module):
    """Decoder-only patch transformer with causal instance normalisation and a probabilistic head.

    Args:
        input_size: channels C; each is forecast as its own series with shared weights.
        patch_size: P, values per patch and per predicted patch.
        hidden_size, n_heads, n_layers, dropout: the transformer's sizes.
        max_patches: the longest context, in patches (learned positional embeddings); a longer window
            keeps its most recent ``max_patches * P`` steps.
        head: ``"student_t"`` or ``"quantile"``; ``quantiles`` (sorted, with 0.5) for the latter.

    ``forward(x)`` with x (B, L, C), L >= P, returns a dict for the next patch, each (B, P, C):
    ``"prediction"`` (the median), ``"scale"`` and ``"df"`` (Student-t), or ``"quantiles"`` (B, P, C, Q).
    The oldest L mod P steps are dropped so that the last patch ends today. ``per_patch=True``
    returns the forecast made at the end of every patch: (B, N, P, C) and (B, N, P, C, Q).
    """

    @keeps_config
    def __init__(
        self,
        input_size: int = 1,
        patch_size: int = 8,
        hidden_size: int = 32,
        n_heads: int = 2,
        n_layers: int = 2,
        dropout: float = 0.0,
        max_patches: int = 64,
        head: str = "student_t",
        quantiles: list[float] | None = None,
    ):
        super().__init__()
        if patch_size < 1 or max_patches < 1 or input_size < 1:
            raise ValueError(
                f"input_size, patch_size and max_patches must be >= 1, got {input_size}, {patch_size}, {max_patches}"
            )
        if head not in ("student_t", "quantile"):
            raise ValueError(f"head must be 'student_t' or 'quantile', got {head!r}")
        if head == "quantile":
            if not quantiles or sorted(quantiles) != list(quantiles) or 0.5 not in quantiles:
                raise ValueError(f"head='quantile' needs sorted quantiles that include 0.5, got {quantiles}")
            if not all(0 < q < 1 for q in quantiles):
                raise ValueError(f"quantiles must lie in (0, 1), got {quantiles}")
        elif quantiles is not None:
            raise ValueError("quantiles are only used with head='quantile'")
        self.input_size, self.patch_size, self.max_patches, self.head_kind = (
            input_size,
            patch_size,
            max_patches,
            head,
        )
        self.min_length = patch_size
        self.patch_embed = nn.Linear(patch_size, hidden_size)  # one channel's P values per token
        self.pos_embed = nn.Parameter(0.02 * torch.randn(max_patches, hidden_size))
        self.dropout = nn.Dropout(dropout)
        self.encoder = _CausalEncoder(hidden_size, n_heads, n_layers, dropout)
        if head == "student_t":
            self.head = _StudentTHead(hidden_size, patch_size)
        else:
            self.register_buffer("levels", torch.tensor(quantiles), persistent=False)
            self.head = nn.Linear(hidden_size, patch_size * len(quantiles))

    # ---- the pieces, in the order forward uses them
    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, C) -> (B*C, N, P): the last N*P steps of each channel, cut into N patches (N <= max_patches)."""
        B, L, C = x.shape
        n = min(L // self.patch_size, self.max_patches)
        x = x[:, L - n * self.patch_size :]  # drop the oldest steps
        return x.permute(0, 2, 1).reshape(B * C, n, self.patch_size)  # channel independence

    @staticmethod
    def prefix_stats(patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of patches 0..n for every n: (B*C, N, 1) each (causal RevIN)."""
        count = patches.shape[-1] * torch.arange(1, patches.shape[1] + 1, device=patches.device)
        count = count.to(patches.dtype)[None, :, None]
        mean = patches.sum(-1, keepdim=True).cumsum(1) / count
        second = (patches**2).sum(-1, keepdim=True).cumsum(1) / count
        return mean, torch.sqrt((second - mean**2).clamp_min(0.0) + EPS**2)

    def _normalised(self, x: torch.Tensor) -> dict:
        """Forecasts of every next patch in normalised units, with the statistics to undo it."""
        check_window(x, self.input_size, self.min_length, model=type(self).__name__, module=self)
        patches = self.patchify(x)  # (B*C, N, P)
        mean, std = self.prefix_stats(patches)  # (B*C, N, 1)
        z = (patches - mean) / std
        h = self.dropout(self.patch_embed(z) + self.pos_embed[: z.shape[1]])  # (B*C, N, D)
        h = self.encoder(h)  # (B*C, N, D), token n saw patches 0..n
        out = {"patches": patches, "mean": mean, "std": std}
        if self.head_kind == "student_t":
            out["loc"], out["scale"], out["df"] = self.head(h)  # (B*C, N, P) each
        else:
            raw = self.head(h).unflatten(-1, (self.patch_size, len(self.levels)))  # (B*C, N, P, Q)
            out["quantiles"] = monotone_quantiles(raw)  # non-decreasing in q by construction
        return out

    def forward(self, x: torch.Tensor, per_patch: bool = False) -> dict:
        B, C = x.shape[0], x.shape[-1]
        out = self._normalised(x)
        mean, std = out["mean"], out["std"]

        def back(t: torch.Tensor, units: str) -> torch.Tensor:
            """(B*C, N, P, ...) in normalised units -> (B, N, P, C, ...) (or its last patch) in x's units."""
            extra = (None,) * (t.dim() - 3)
            if units == "location":  # loc, quantiles: mu + sigma t
                t = t * std[(..., *extra)] + mean[(..., *extra)]
            elif units == "scale":  # scale: sigma t; df has no units
                t = t * std[(..., *extra)]
            t = t.unflatten(0, (B, C)).movedim(1, 3)
            return t if per_patch else t[:, -1]

        if self.head_kind == "student_t":
            return {
                "prediction": back(out["loc"], "location"),
                "scale": back(out["scale"], "scale"),
                "df": back(out["df"], "none"),
            }
        q = back(out["quantiles"], "location")
        median = q[..., self.config["quantiles"].index(0.5)]
        return {"prediction": median, "quantiles": q}

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Next-patch pretraining loss on windows x (B, L, C), in each prefix's normalised units.

        Every token n < N-1 predicts patch n+1 (Student-t NLL, or the pinball loss of the quantiles).
        """
        out = self._normalised(x)
        if out["patches"].shape[1] < 2:
            raise ValueError(
                f"the pretraining loss needs windows of at least 2 patches (L >= {2 * self.patch_size})"
            )
        target = (out["patches"][:, 1:] - out["mean"][:, :-1]) / out["std"][:, :-1]  # (B*C, N-1, P)
        if self.head_kind == "student_t":
            return student_t_nll(target, out["loc"][:, :-1], out["scale"][:, :-1], out["df"][:, :-1])
        return pinball_loss(out["quantiles"][:, :-1], target, self.levels)  # quantiles (B*C, N-1, P, Q)

    @torch.no_grad()
    def generate(
        self,
        context: torch.Tensor,
        horizon: int,
        n_samples: int = 100,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample paths (n_samples, B, horizon, C) by drawing one patch at a time and appending it.

        A fixed ``generator`` gives the same paths; the global random state is not touched.
        """
        if not isinstance(horizon, int) or horizon < 1 or not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(
                f"horizon and n_samples must be positive integers, got {horizon!r} and {n_samples!r}"
            )
        check_window(
            context, self.input_size, self.min_length, model=type(self).__name__, name="context", module=self
        )
        was_training = self.training
        self.eval()
        try:
            B, L, C = context.shape
            current = context.repeat(n_samples, 1, 1)  # (S*B, L, C), sample s = rows s*B .. s*B+B-1
            keep = self.max_patches * self.patch_size
            drawn = []
            for _ in range(math.ceil(horizon / self.patch_size)):
                out = self(current[:, -keep:])
                if self.head_kind == "student_t":
                    patch = _sample_student_t(out["prediction"], out["scale"], out["df"], generator)
                else:
                    patch = self._sample_quantiles(out["quantiles"], generator)
                drawn.append(patch)  # (S*B, P, C)
                current = torch.cat([current, patch], dim=1)
            paths = torch.cat(drawn, dim=1)[:, :horizon]
            return paths.reshape(n_samples, B, horizon, C)
        finally:
            self.train(was_training)

    def _sample_quantiles(self, q: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Inverse-CDF draws from the piecewise-linear quantile function, clamped to the outer quantiles."""
        u = torch.rand(q.shape[:-1], generator=generator, dtype=q.dtype).to(q.device)  # (..., )
        levels = self.levels.to(q.dtype)
        u = u.clamp(levels[0], levels[-1])
        k = torch.searchsorted(levels, u.contiguous(), right=True).clamp(1, len(levels) - 1)
        lo, hi = levels[k - 1], levels[k]
        q_lo, q_hi = q.gather(-1, (k - 1)[..., None])[..., 0], q.gather(-1, k[..., None])[..., 0]
        return q_lo + (u - lo) / (hi - lo) * (q_hi - q_lo)


def lag_features(x: torch.Tensor, lags: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The lagged values that predict x_{t+1}: ``x_{t+1-l}`` for each lag l >= 1, and their validity mask.

    x (B, L, C) -> values (B, L, C, K) with 0 where the lag reaches before the window, and the mask
    (L, K), True where ``t + 1 - l >= 0``. Lag 1 is today's value. The source module used *differences*
    ``x_t - x_{t-l}`` padded with zeros, which equal x_t while t < l (docs/errata.md: LagLlamaFinance).
    """
    B, L, C = x.shape
    t = torch.arange(L, device=x.device)[:, None]  # (L, 1)
    lag = torch.as_tensor(lags, device=x.device)[None, :]  # (1, K)
    source = t + 1 - lag  # (L, K): the step each feature reads
    mask = source >= 0
    values = x[:, source.clamp_min(0)]  # (B, L, K, C)
    values = values * mask[None, :, :, None].to(x.dtype)
    return values.permute(0, 1, 3, 2), mask  # (B, L, C, K), (L, K)


def robust_prefix_scaler(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Median and interquartile range of x_0..x_t for every t: (B, L, C) each. At t = L-1: the context's.

    Quantiles interpolate linearly between order statistics (NumPy's default). The prefix of step t is
    sorted with the later values set to +inf, so they sort last and are never read (and the whole
    computation exports to ONNX, which has no ``nanquantile``).
    """
    L = x.shape[1]
    future = torch.ones(L, L, dtype=torch.bool, device=x.device).triu(1)  # (t, s): s > t is hidden
    prefix = x.permute(0, 2, 1)[:, :, None, :].expand(-1, -1, L, -1)  # (B, C, L_t, L_s)
    ordered = prefix.masked_fill(future, float("inf")).sort(dim=-1).values  # the t+1 visible values first

    def quantile(q: float) -> torch.Tensor:  # (B, C, L_t)
        position = q * torch.arange(L, device=x.device, dtype=x.dtype)  # (n - 1) q with n = t + 1 values
        lo, hi = position.floor().long(), position.ceil().long()
        frac = position - lo.to(x.dtype)
        index = lambda i: i.view(1, 1, L, 1).expand(*ordered.shape[:3], 1)  # noqa: E731
        a, b = ordered.gather(-1, index(lo))[..., 0], ordered.gather(-1, index(hi))[..., 0]
        return a + frac * (b - a)

    median, iqr = quantile(0.5), (quantile(0.75) - quantile(0.25)).clamp_min(EPS)  # (B, C, L)
    return median.permute(0, 2, 1), iqr.permute(0, 2, 1)


class LagLlamaFinance(nn.Module):
    """Lag-Llama: a causal transformer on robustly scaled lagged values, with a Student-t head.

    Args:
        input_size: channels C (forecast jointly: each token holds every channel's lags).
        hidden_size, n_heads, n_layers, dropout: the transformer's sizes.
        lags: positive lags (days), 1 = today's value.
        n_calendar: number of calendar features per step (0: none); pass them as ``calendar`` (B, L, n).
        max_len: longest window (learned positions).

    ``forward(x, calendar=None, per_step=False)`` returns ``{"prediction": loc, "scale", "df"}`` for
    x_{L} (the next day), each (B, C), or for every next day (B, L, C) with ``per_step``.
    """

    @keeps_config
    def __init__(
        self,
        input_size: int = 1,
        hidden_size: int = 32,
        n_heads: int = 2,
        n_layers: int = 2,
        dropout: float = 0.0,
        lags: list[int] | None = None,
        n_calendar: int = 0,
        max_len: int = 512,
    ):
        super().__init__()
        lags = [1, 2, 3, 5, 10, 22] if lags is None else list(lags)
        if not lags or min(lags) < 1 or len(set(lags)) != len(lags):
            raise ValueError(f"lags must be distinct integers >= 1, got {lags}")
        if n_calendar < 0:
            raise ValueError(f"n_calendar must be >= 0, got {n_calendar}")
        self.input_size, self.lags, self.n_calendar, self.max_len = input_size, lags, n_calendar, max_len
        n_in = input_size * len(lags) + len(lags) + n_calendar  # values, mask, calendar
        self.embed = nn.Linear(n_in, hidden_size)
        self.pos_embed = nn.Parameter(0.02 * torch.randn(max_len, hidden_size))
        self.dropout = nn.Dropout(dropout)
        self.encoder = _CausalEncoder(hidden_size, n_heads, n_layers, dropout)
        self.head = _StudentTHead(hidden_size, input_size)

    def _per_step(
        self, x: torch.Tensor, calendar: torch.Tensor | None
    ) -> tuple[dict, torch.Tensor, torch.Tensor]:
        """The forecast of every next day (B, L, C) in x's units, with the robust scaler (median, iqr) (B, L, C)."""
        name = type(self).__name__
        check_window(x, self.input_size, model=name, module=self)
        B, L, C = x.shape
        if self.max_len < L:
            raise ValueError(
                f"{name} was built for windows of at most max_len={self.max_len} steps, got L={L}"
            )
        if self.n_calendar:
            if calendar is None:
                raise ValueError(
                    f"{name} was built with n_calendar={self.n_calendar}: pass calendar (B, L, {self.n_calendar})"
                )
            check_window(calendar, self.n_calendar, model=name, name="calendar", module=self)
            if calendar.shape[:2] != x.shape[:2]:
                raise ValueError(
                    f"calendar has shape {tuple(calendar.shape)}, x {tuple(x.shape)}: B and L must match"
                )
        elif calendar is not None:
            raise ValueError(f"{name} was built with n_calendar=0 but got calendar features")
        median, iqr = robust_prefix_scaler(x)  # (B, L, C), O(L^2 log L): computed once per call
        values, mask = lag_features(x, self.lags)  # (B, L, C, K), (L, K)
        scaled = (values - median[..., None]) / iqr[..., None] * mask[None, :, None, :].to(x.dtype)
        tokens = [scaled.flatten(2), mask.to(x.dtype).expand(B, -1, -1)]
        if self.n_calendar:
            tokens.append(calendar)
        h = self.embed(torch.cat(tokens, dim=-1)) + self.pos_embed[:L]  # (B, L, D)
        h = self.encoder(self.dropout(h))
        loc, scale, df = self.head(h)  # (B, L, C) each, in scaled units
        return {"prediction": median + iqr * loc, "scale": iqr * scale, "df": df}, median, iqr

    def forward(self, x: torch.Tensor, calendar: torch.Tensor | None = None, per_step: bool = False) -> dict:
        out, _, _ = self._per_step(x, calendar)
        return out if per_step else {k: v[:, -1] for k, v in out.items()}

    def loss(self, x: torch.Tensor, calendar: torch.Tensor | None = None) -> torch.Tensor:
        """Student-t NLL of every next day x_{t+1}, t < L-1, in the scaled units of step t."""
        out, median, iqr = self._per_step(x, calendar)
        target = (x[:, 1:] - median[:, :-1]) / iqr[:, :-1]
        loc = (out["prediction"][:, :-1] - median[:, :-1]) / iqr[:, :-1]
        return student_t_nll(target, loc, out["scale"][:, :-1] / iqr[:, :-1], out["df"][:, :-1])


class MeanScaleTokenizer:
    """Chronos's tokeniser (Ansari et al., 2024): mean scaling, then uniform bins, one token per value.

    For a context x_1..x_L of one series::

        s = mean_t |x_t|                                  # the context's scale (future values reuse it)
        token(x) = clip(floor((x / s - low) / w), 0, n_bins - 1),   w = (high - low) / n_bins
        value(k) = s (low + (k + 1/2) w)                   # the centre of bin k

    A language model then reads the tokens and is trained with the cross-entropy of the next token: a
    categorical forecast over ``n_bins`` values, with no assumption on its shape. Inside
    ``[s low, s high]`` the round trip errs by at most ``s w / 2``; beyond it the edge bins clip.
    Chronos uses 4,094 bins on [-15, 15]; mean scaling assumes a series whose mean absolute value is not
    close to 0 (a series near 0 gets a tiny s and most of its values clip).
    """

    def __init__(self, n_bins: int = 4094, low: float = -15.0, high: float = 15.0):
        if n_bins < 2 or not low < high:
            raise ValueError(
                f"MeanScaleTokenizer needs n_bins >= 2 and low < high, got {n_bins}, {low}, {high}"
            )
        self.n_bins, self.low, self.high = n_bins, low, high
        self.width = (high - low) / n_bins

    def scale(self, context: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, 1): the mean absolute value of each context (1 for an all-zero context)."""
        if context.dim() != 2:
            raise ValueError(
                f"MeanScaleTokenizer expects contexts of shape (B, L), got {tuple(context.shape)}"
            )
        s = context.abs().mean(dim=1, keepdim=True)
        return torch.where(s > 0, s, torch.ones_like(s))

    def encode(self, values: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Values (B, T) in the units of the series, scale (B, 1) -> int64 tokens (B, T) in [0, n_bins)."""
        k = torch.floor((values / scale - self.low) / self.width)
        return k.clamp(0, self.n_bins - 1).long()

    def decode(self, tokens: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Tokens (B, T) -> the centres of their bins, (B, T), in the units of the series."""
        return scale * (self.low + (tokens.to(scale.dtype) + 0.5) * self.width)
