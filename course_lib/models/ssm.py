r"""State space models: the diagonal S4 (S4D) and Mamba's selective scan.

A continuous linear state space model maps an input signal :math:`u(t)` to an output :math:`y(t)`
through a hidden state :math:`h(t) \in \mathbb{C}^N`:

.. math::  h'(t) = A h(t) + B u(t), \qquad y(t) = C h(t) + D u(t).

Sampled with a step :math:`\Delta` and the input held constant between samples (zero-order hold,
ZOH), it becomes the linear recurrence

.. math::  h_l = \bar A h_{l-1} + \bar B u_l, \qquad y_l = C h_l + D u_l, \qquad
           \bar A = e^{\Delta A}, \quad \bar B = (\Delta A)^{-1} (e^{\Delta A} - I)\, \Delta B .

Unrolled from :math:`h_{-1} = 0` the recurrence *is* a causal convolution
:math:`y_l = \sum_{j \le l} K_j u_{l-j} + D u_l` with the kernel :math:`K_j = C \bar A^j \bar B`.

* **S4D** (Gu, Gupta, Goel & Re 2022, "On the Parameterization and Initialization of Diagonal State
  Space Models", arXiv:2206.11893): one SSM per channel with a diagonal :math:`A`,
  :math:`A_n = -\tfrac12 + i \pi n` (S4D-Lin), whose kernel is a Vandermonde product
  :math:`K_l = 2\,\mathrm{Re} \sum_n C_n \bar B_n e^{\Delta A_n l}` (the factor 2 and the real part
  account for the complex-conjugate modes) and whose convolution is an FFT of length :math:`2L`.
* **Mamba** (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces",
  arXiv:2312.00752): :math:`\Delta_t, B_t, C_t` are computed from the input at each step (selectivity),
  so the model is no longer a convolution; it is computed by a *scan* of
  :math:`h_t = e^{\Delta_t A} h_{t-1} + \Delta_t B_t u_t`, :math:`y_t = C_t h_t + D u_t`.

Three scans sit behind :func:`selective_scan`: ``"sequential"``, the recurrence written step by step
(the reference); ``"chunked"``, a linear-time scan with a hand-written backward pass (a reverse
scan) that does a few Python steps per chunk instead of one per time step; and ``"fused"``, the same
scan as one C kernel (``selective_scan.c``) that keeps the state in cache instead of writing it to
memory, the CPU analogue of Mamba's hardware-aware scan. The tests check that all three agree in
outputs and gradients, also when the decay :math:`e^{\Delta A}` is within 1e-4 of 1.

Defects of the source module fixed here (see docs/errata.md): its S4D kernel dropped the ZOH input
factor :math:`(e^{\Delta A} - 1)/A` (off by one to three orders of magnitude); its Mamba produced a
width-1 :math:`\Delta` that its ``dt_proj`` (built for ``d_state`` inputs) cannot read (a crash, or time
steps mixed as features when ``L == d_state``); its scan indexed ``x[:, t]`` in a loop, whose backward
pass is quadratic in ``L``.
"""

import ctypes
import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .common import check_window, keeps_config

__all__ = [
    "FinancialMamba",
    "FinancialS4D",
    "MambaBlock",
    "S4D",
    "S4DKernel",
    "causal_conv_direct",
    "fft_causal_conv",
    "fused_scan_available",
    "selective_scan",
    "selective_scan_step",
]

SCANS = ("sequential", "chunked", "fused")


# ----------------------------------------------------------------------------------------------- S4D


def fft_causal_conv(u: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``y_l = sum_{j <= l} K_j u_{l-j}`` per channel, with FFTs of length 2L (no wrap-around).

    ``u`` (B, L, H), ``kernel`` (H, L) -> (B, L, H). O(L log L) instead of O(L^2).
    """
    length = u.shape[1]
    n = 2 * length  # zero padding to 2L turns the FFT's circular convolution into a linear one
    u_f = torch.fft.rfft(u.transpose(1, 2), n=n)  # (B, H, n/2+1): time on the last, contiguous axis
    u_f.mul_(torch.fft.rfft(kernel, n=n))  # times the kernel's (H, n/2+1), in place: no third buffer
    return torch.fft.irfft(u_f, n=n)[..., :length].transpose(1, 2)  # (B, L, H)


def causal_conv_direct(u: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """The same convolution as :func:`fft_causal_conv`, summed directly in O(L^2) (a reference)."""
    length = u.shape[1]
    weight = kernel.flip(-1).unsqueeze(1)  # (H, 1, L): conv1d correlates, so flip the kernel
    y = F.conv1d(F.pad(u.transpose(1, 2), (length - 1, 0)), weight, groups=u.shape[-1])  # (B, H, L)
    return y.transpose(1, 2)


def _cexp(z: torch.Tensor) -> torch.Tensor:
    """``exp(z)`` of a complex tensor as ``e^{Re z} (cos Im z + i sin Im z)``: the same numbers, and on
    CPU several times faster than the complex ``torch.exp`` (benchmarks/ssm_scan.py times both)."""
    return torch.polar(torch.exp(z.real), z.imag)


class S4DKernel(nn.Module):
    r"""The S4D convolution kernel of ``hidden_size`` independent diagonal SSMs (one per channel).

    Per channel :math:`h` and mode :math:`n = 0, \dots, N-1` (``N = d_state``):
    :math:`A_n = -e^{a_n} + i \pi n` (learnable real part, initialised at :math:`-\tfrac12`),
    :math:`\Delta = e^{\log\Delta}` (learnable, initialised log-uniform in ``[dt_min, dt_max]``),
    :math:`B_n = 1` (absorbed into the learnable complex :math:`C_n`), and the ZOH discretisation

    .. math::  \bar A_n = e^{\Delta A_n}, \quad \bar B_n = (e^{\Delta A_n} - 1)/A_n, \quad
               K_l = 2\,\mathrm{Re} \sum_n C_n \bar B_n e^{\Delta A_n l}.

    ``forward(L)`` returns ``K`` (H, L); :meth:`recurrence` runs the same SSM step by step.
    Gu et al. (2022), arXiv:2206.11893; cf. state-spaces/s4 ``models/s4/s4d.py``.
    """

    def __init__(self, hidden_size: int, d_state: int = 32, dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        if hidden_size < 1 or d_state < 1:
            raise ValueError(f"need hidden_size >= 1 and d_state >= 1, got {hidden_size}, {d_state}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        log_dt = torch.rand(hidden_size) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)  # (H,)
        self.log_A_real = nn.Parameter(torch.full((hidden_size, d_state), math.log(0.5)))  # (H, N)
        self.register_buffer(
            "A_imag", math.pi * torch.arange(d_state).float().repeat(hidden_size, 1)
        )  # (H, N)
        # C is complex; stored as (H, N, 2) real so that .double() and every optimiser handle it
        self.C = nn.Parameter(torch.randn(hidden_size, d_state, 2) * 0.5**0.5)

    def discretize(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(dtA, dB, C)``, each (H, N) complex: the exponent of A-bar, the ZOH B-bar and C."""
        A = torch.complex(-torch.exp(self.log_A_real), self.A_imag)  # (H, N)
        dtA = torch.exp(self.log_dt).unsqueeze(-1) * A  # (H, N)
        dB = (torch.exp(dtA) - 1) / A  # ZOH input factor with B = 1 (the source module left it out)
        return dtA, dB, torch.view_as_complex(self.C)

    def forward(self, length: int) -> torch.Tensor:  # -> (H, L)
        """``K_l = 2 Re sum_n C_n B-bar_n z_n^l`` with ``z_n = exp(dt A_n)``, for ``l = 0, ..., L-1``.

        The Vandermonde matrix ``z_n^l`` is factored with ``l = T i + j`` (``T`` about sqrt(L)):
        ``z_n^l = z_n^{T i} z_n^j``, so the sum over ``n`` is one batched (L/T x N) @ (N x T)
        complex matrix product, and only 2 sqrt(L) exponentials per mode are taken instead of L.
        """
        dtA, dB, C = self.discretize()  # (H, N) each
        T = math.isqrt(max(length - 1, 0)) + 1
        n_blocks = -(-length // T)
        j = torch.arange(T, device=dtA.device, dtype=self.log_dt.dtype)  # (T,)
        i = torch.arange(n_blocks, device=dtA.device, dtype=self.log_dt.dtype) * T  # (L/T,)
        inner = _cexp(dtA.unsqueeze(-1) * j)  # (H, N, T): z^j
        outer = (C * dB).unsqueeze(1) * _cexp(dtA.unsqueeze(1) * i.unsqueeze(-1))  # (H, L/T, N): C B z^{Ti}
        # Re(outer @ inner) = Re(outer) @ Re(inner) - Im(outer) @ Im(inner): one real matmul
        K = (
            2 * torch.cat([outer.real, -outer.imag], -1) @ torch.cat([inner.real, inner.imag], -2)
        )  # (H, L/T, T)
        return K.reshape(K.shape[0], -1)[:, :length]

    def recurrence(self, u: torch.Tensor) -> torch.Tensor:
        """The convolution ``K * u`` computed as the recurrence ``h_l = A-bar h_{l-1} + B-bar u_l``.

        ``u`` (B, L, H) -> (B, L, H), ``y_l = 2 Re(C h_l)``. O(L) Python steps: a reference, and the
        way a trained S4D would run online, one new day at a time.
        """
        dtA, dB, C = self.discretize()
        dA = torch.exp(dtA)  # (H, N)
        h = torch.zeros(u.shape[0], *dA.shape, dtype=dA.dtype, device=u.device)  # (B, H, N)
        ys = []
        for u_t in u.unbind(1):  # u_t: (B, H)
            h = dA * h + dB * u_t.unsqueeze(-1)
            ys.append(2 * (C * h).sum(-1).real)
        return torch.stack(ys, dim=1)


class S4D(nn.Module):
    r"""One S4D layer on (B, L, H): ``y = GELU(K * u + D u)``, then a position-wise ``Linear(H, 2H)`` + GLU.

    The SSM mixes time (one kernel per channel); the GLU mixes channels. Both are causal.
    """

    def __init__(
        self,
        hidden_size: int,
        d_state: int = 32,
        dropout: float = 0.0,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
    ):
        super().__init__()
        self.kernel = S4DKernel(hidden_size, d_state, dt_min, dt_max)
        self.D = nn.Parameter(torch.randn(hidden_size))
        self.dropout = nn.Dropout(dropout)
        self.output_linear = nn.Linear(hidden_size, 2 * hidden_size)

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # (B, L, H) -> (B, L, H)
        k = self.kernel(u.shape[1])  # (H, L)
        y = fft_causal_conv(u, k) + self.D * u  # (B, L, H)
        y = self.dropout(F.gelu(y))
        return F.glu(self.output_linear(y), dim=-1)  # (B, L, 2H) -> (B, L, H)


class FinancialS4D(nn.Module):
    """S4D forecaster: linear encoder, ``n_layers`` pre-norm residual S4D layers, a norm and a linear head.

    ``x <- x + Dropout(S4D(LayerNorm(x)))`` per layer. ``forward(x)`` -> (B, output_size);
    ``per_step=True`` -> (B, L, output_size). The FFT convolution is causal up to round-off
    (about 1e-7 of the signal in float32, 1e-16 in float64).
    """

    @keeps_config
    def __init__(
        self,
        input_size: int,
        hidden_size: int = 32,
        n_layers: int = 2,
        output_size: int = 1,
        d_state: int = 32,
        dropout: float = 0.0,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
    ):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"need n_layers >= 1, got {n_layers}")
        self.input_size = input_size
        self.encoder = nn.Linear(input_size, hidden_size)
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_size) for _ in range(n_layers))
        self.layers = nn.ModuleList(
            S4D(hidden_size, d_state, dropout, dt_min, dt_max) for _ in range(n_layers)
        )
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden_size)
        self.head = nn.Linear(hidden_size, output_size)

    def forward(self, x: torch.Tensor, per_step: bool = False) -> torch.Tensor:
        check_window(x, self.input_size, model="FinancialS4D")
        h = self.encoder(x)  # (B, L, H)
        for norm, layer in zip(self.norms, self.layers, strict=True):
            h = h + self.dropout(layer(norm(h)))
        h = self.norm(h)
        return self.head(h if per_step else h[:, -1])  # (B, L, n_out) or (B, n_out)


# ------------------------------------------------------------------------------------ selective scan


def _scan_(a: torch.Tensor, x: torch.Tensor, chunk: int, reverse: bool = False) -> torch.Tensor:
    """A linear recurrence along dim 1 of (B, L, ...) tensors, in place in ``x``, without autograd.

    Forward: ``h_t = x_t + a_t h_{t-1}`` from ``h_{-1} = 0``. Reverse (for the backward pass):
    ``g_t = x_t + a_{t+1} g_{t+1}`` from ``g_L = 0``. In chunks of ``T`` steps, two sweeps:
    (1) every chunk's own end state from a zero start, and its total decay (the product of its
    ``a``), kept only for the chunk ends: (B, L/T, ...) tensors, T Python steps; then the state
    entering each chunk, carried chunk after chunk (L/T small steps); (2) the scan inside every chunk,
    all chunks at once, started from the state that enters it (T Python steps). Nothing of the full
    (B, L, ...) size is made besides ``x`` itself; only products and sums of decays, so nothing
    overflows, and a decay within 1e-6 of 1 or an underflow to 0 is as exact as in the sequential loop.
    """
    batch, length, rest = a.shape[0], a.shape[1], a.shape[2:]
    T = max(1, min(chunk, length))
    n_chunks = -(-length // T)
    pad = n_chunks * T - length
    if pad:  # padded steps (a = 1, x = 0) come after the data: they change nothing before it
        a = torch.cat([a, a.new_ones(batch, pad, *rest)], dim=1)
        x = torch.cat([x, x.new_zeros(batch, pad, *rest)], dim=1)
    a = a.view(batch, n_chunks, T, *rest)
    h = x.view(batch, n_chunks, T, *rest)
    if n_chunks > 1:  # (1) chunk ends, then the carry across chunks
        end, decay = torch.zeros_like(h[:, :, 0]), torch.ones_like(h[:, :, 0])  # (B, L/T, ...)
        for t in range(T - 1, -1, -1) if reverse else range(T):
            if not reverse or t < T - 1:  # the decay that multiplies what came before step t
                a_t = a[:, :, t + 1] if reverse else a[:, :, t]
                end.mul_(a_t)
                decay.mul_(a_t)
            end.add_(h[:, :, t])
        carry = torch.zeros_like(end)  # carry[:, c]: what enters chunk c from the chunk before it
        if not reverse:  # h_{end of c} = end_c + decay_c * carry_c, and a_0 of chunk c multiplies it
            for c in range(1, n_chunks):
                torch.addcmul(end[:, c - 1], decay[:, c - 1], carry[:, c - 1], out=carry[:, c])
            h[:, :, 0].addcmul_(a[:, :, 0], carry)
        else:  # g_{start of c+1} = end_{c+1} + decay_{c+1} carry_{c+1}, sent back times a_{start of c+1}
            for c in range(n_chunks - 2, -1, -1):
                torch.addcmul(end[:, c + 1], decay[:, c + 1], carry[:, c + 1], out=carry[:, c])
                carry[:, c].mul_(a[:, c + 1, 0])
            h[:, :, -1].add_(carry)
    if not reverse:  # (2) the scan inside every chunk, all chunks at once
        for t in range(1, T):
            h[:, :, t].addcmul_(a[:, :, t], h[:, :, t - 1])
    else:
        for t in range(T - 2, -1, -1):
            h[:, :, t].addcmul_(a[:, :, t + 1], h[:, :, t + 1])
    return h.view(batch, n_chunks * T, *rest)[:, :length]


class _ChunkedSelectiveScan(torch.autograd.Function):
    """``y = C_t h_t`` with ``h`` from the chunked scan, and its backward pass written out.

    With ``a_t = exp(delta_t A)``, ``b_t = delta_t u_t B_t`` and ``g_t = dLoss/db_t``:
    ``g_t = C_t dLoss/dy_t + a_{t+1} g_{t+1}`` (the same recurrence, backwards in time), and the
    gradient on ``log a_t = delta_t A`` is ``g_t h_{t-1} a_t``; the rest is the chain rule through
    products, done with einsums and in place, so that the backward pass makes one (B, L, d_inner, d_state)
    tensor (``g``).
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, chunk: int):
        a = (delta.unsqueeze(-1) * A).exp_()  # (batch, L, d_inner, d_state), exp in place
        h = _scan_(a, (delta * u).unsqueeze(-1) * B.unsqueeze(2), chunk)  # b_t, scanned in place
        ctx.save_for_backward(u, delta, A, B, C, a, h)
        ctx.chunk = chunk
        return torch.einsum("bldn,bln->bld", h, C)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        u, delta, A, B, C, a, h = ctx.saved_tensors
        grad_C = torch.einsum("bld,bldn->bln", grad_y, h)
        g = _scan_(a, grad_y.unsqueeze(-1) * C.unsqueeze(2), ctx.chunk, reverse=True)  # dLoss/db_t
        du = delta * u
        grad_du = torch.einsum("bldn,bln->bld", g, B)
        grad_B = torch.einsum("bldn,bld->bln", g, du)
        g[:, 1:].mul_(h[:, :-1])  # g now holds dLoss/d(log a_t) = g_t h_{t-1} a_t (h_{-1} = 0)
        g[:, 0] = 0
        g.mul_(a)
        grad_delta = torch.einsum("bldn,dn->bld", g, A) + grad_du * u
        grad_A = torch.einsum("bldn,bld->dn", g, delta)
        return grad_du * delta, grad_delta, grad_A, grad_B, grad_C, None


_KERNEL_SOURCE = Path(__file__).with_name("selective_scan.c")
_KERNELS: dict[torch.dtype, ctypes.CDLL] = {}
# Tried in order until one builds: vectorised for this CPU (512-bit vectors where it has them) and
# threaded with OpenMP, then for any CPU, then one thread without OpenMP (e.g. Apple's clang).
_BUILDS = (
    ["-march=native", "-mprefer-vector-width=512", "-fopenmp"],
    ["-march=native", "-fopenmp"],
    ["-fopenmp"],
    [],
)


def _fused_kernel(dtype: torch.dtype) -> ctypes.CDLL:
    """The C kernel of ``selective_scan.c`` for ``dtype``, compiled on first use into a temporary folder.

    Compiled with ``-ffast-math`` (so that ``exp`` is vectorised) but linked without it, so that the
    flush-to-zero start-up code of fast-math is not loaded into the process. Linked with ``-fopenmp``,
    it uses the OpenMP runtime (``libgomp.so.1``) that PyTorch has already loaded, and its threads.
    """
    if dtype not in _KERNELS:
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"selective_scan(method='fused') takes float32 or float64 tensors, got {dtype}")
        requested = os.environ.get("CC")
        compiler = shutil.which(requested) if requested else shutil.which("cc") or shutil.which("clang")
        if compiler is None:
            where = f"CC={requested} is not on PATH" if requested else "no cc or clang on PATH"
            raise RuntimeError(
                f"selective_scan(method='fused') compiles a small C kernel on first use and found no C "
                f"compiler ({where}); install gcc or clang, or use method='chunked', which needs none"
            )
        real, exp = ("float", "expf") if dtype == torch.float32 else ("double", "exp")
        flags = ["-O3", "-ffast-math", "-fPIC", f"-DREAL={real}", f"-DEXP={exp}"]
        with tempfile.TemporaryDirectory(prefix="course_lib_scan_", ignore_cleanup_errors=True) as folder:
            obj, lib = os.path.join(folder, "scan.o"), os.path.join(folder, "scan.so")
            errors = []
            for build_flags in _BUILDS:
                compile_ = [compiler, *build_flags, *flags, "-c", str(_KERNEL_SOURCE), "-o", obj]
                build = subprocess.run(compile_, capture_output=True, text=True)
                if build.returncode == 0:
                    threads = ["-fopenmp"] if "-fopenmp" in build_flags else []
                    link = [compiler, "-shared", *threads, obj, "-o", lib, "-lm"]
                    build = subprocess.run(link, capture_output=True, text=True)
                if build.returncode != 0:
                    errors.append(build.stderr.strip())
                    continue
                try:
                    kernel = ctypes.CDLL(lib)  # loaded: the file can go with the folder
                    break
                except OSError as error:  # e.g. an OpenMP runtime without a symbol that the build needs
                    errors.append(str(error))
            else:
                raise RuntimeError(
                    f"could not build {_KERNEL_SOURCE.name} with {compiler} (method='chunked' needs no "
                    "compiler):\n" + "\n".join(errors)
                )
        size, pointer = ctypes.c_int64, ctypes.c_void_p
        kernel.scan_forward.argtypes = [size] * 6 + [pointer] * 7
        kernel.scan_backward.argtypes = [size] * 6 + [pointer] * 12
        kernel.scan_forward.restype = kernel.scan_backward.restype = ctypes.c_int
        _KERNELS[dtype] = kernel
    return _KERNELS[dtype]


def fused_scan_available() -> bool:
    """Whether ``selective_scan(method="fused")`` can run here (its C kernel compiles and loads)."""
    try:
        _fused_kernel(torch.float32)
    except RuntimeError:
        return False
    return True


def _run_kernel(function, shape: tuple[int, ...], tensors: list[torch.Tensor]) -> None:
    """Call a kernel of ``selective_scan.c`` on ``torch.get_num_threads()`` threads, or raise."""
    if function(torch.get_num_threads(), *shape, *(t.data_ptr() for t in tensors)):
        raise MemoryError("selective_scan(method='fused'): the kernel could not allocate its work buffers")


class _FusedSelectiveScan(torch.autograd.Function):
    """``y = C_t h_t`` from the fused C kernel (``selective_scan.c``): same equations as the chunked
    scan, but the state stays in cache. Saves only the state entering each chunk (1/chunk of the
    (B, L, d_inner, d_state) size) and recomputes the rest in the backward pass."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, chunk: int):
        if u.device.type != "cpu":
            raise ValueError(
                f"selective_scan(method='fused') runs on the CPU; got {u.device} (use 'chunked')"
            )
        for name, t in zip(("delta", "A", "B", "C"), (delta, A, B, C), strict=True):
            if t.dtype != u.dtype or t.device != u.device:
                raise TypeError(
                    f"selective_scan(method='fused'): {name} is {t.dtype} on {t.device}, u is {u.dtype} "
                    f"on {u.device}; pass all five in one dtype on one device"
                )
        kernel = _fused_kernel(u.dtype)
        u, delta, A, B, C = (t.detach().contiguous() for t in (u, delta, A, B, C))
        batch, length, d_inner = u.shape
        chunk = max(1, min(chunk, length))
        y = u.new_empty(batch, length, d_inner)
        checkpoints = u.new_empty(batch, -(-length // chunk), d_inner, A.shape[1])  # (B, L/T, D, N)
        shape = (batch, length, d_inner, A.shape[1], chunk)
        _run_kernel(kernel.scan_forward, shape, [u, delta, A, B, C, y, checkpoints])
        ctx.save_for_backward(u, delta, A, B, C, checkpoints)
        ctx.shape = shape
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        u, delta, A, B, C, checkpoints = ctx.saved_tensors
        grads = [torch.empty_like(t) for t in (u, delta)] + [u.new_empty(u.shape[0], *A.shape)]
        grads += [torch.empty_like(B), torch.empty_like(C)]
        tensors = [u, delta, A, B, C, checkpoints, grad_y.contiguous(), *grads]
        _run_kernel(_fused_kernel(u.dtype).scan_backward, ctx.shape, tensors)
        grad_u, grad_delta, grad_A_rows, grad_B, grad_C = grads
        return grad_u, grad_delta, grad_A_rows.sum(0), grad_B, grad_C, None


def _check_scan_inputs(u, delta, A, B, C, D) -> None:
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be (batch, L, d_inner), got shape {tuple(u.shape)}")
    batch, length, d_inner = u.shape
    d_state = A.shape[-1] if A.dim() == 2 else -1
    expected = {
        "delta": (delta, (batch, length, d_inner)),
        "A": (A, (d_inner, d_state)),
        "B": (B, (batch, length, d_state)),
        "C": (C, (batch, length, d_state)),
    }
    if D is not None:
        expected["D"] = (D, (d_inner,))
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(
                f"selective_scan: {name} must have shape {shape} for u of shape {tuple(u.shape)} "
                f"(A: (d_inner, d_state)), got {tuple(tensor.shape)}"
            )


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    method: str = "chunked",
    chunk_size: int | None = None,
) -> torch.Tensor:
    r"""Mamba's selective SSM: :math:`h_t = e^{\Delta_t A} h_{t-1} + \Delta_t B_t u_t`, :math:`y_t = C_t h_t + D u_t`.

    Shapes: ``u``, ``delta`` (batch, L, d_inner); ``A`` (d_inner, d_state); ``B``, ``C``
    (batch, L, d_state); ``D`` (d_inner,) or None. Returns ``y`` (batch, L, d_inner).

    ``method="sequential"``: one autograd step per time step (the reference). ``method="chunked"``:
    the same numbers from a chunked linear-time scan with a reverse-scan backward; ``chunk_size``
    (default about sqrt(L)) trades Python steps inside chunks against steps across them. Both run on
    any device. ``method="fused"`` (CPU, float32 or float64): the same scan as one C kernel
    (``selective_scan.c``, compiled on first use; needs a C compiler) that keeps the state in cache
    and stores only one state per chunk of ``chunk_size`` days for the backward pass.
    """
    if method not in SCANS:
        raise ValueError(f"unknown scan method {method!r}; choose from {SCANS}")
    _check_scan_inputs(u, delta, A, B, C, D)
    if method == "sequential":
        dA = torch.exp(delta.unsqueeze(-1) * A)  # (batch, L, d_inner, d_state)
        dBu = (delta * u).unsqueeze(-1) * B.unsqueeze(2)  # (batch, L, d_inner, d_state)
        h, states = torch.zeros_like(dBu[:, 0]), []
        for a_t, b_t in zip(dA.unbind(1), dBu.unbind(1), strict=True):  # unbind, never x[:, t] in a loop
            h = a_t * h + b_t
            states.append(h)
        y = torch.einsum("bldn,bln->bld", torch.stack(states, dim=1), C)  # C_t h_t
    else:
        chunk = chunk_size or max(1, math.isqrt(u.shape[1]))
        scan = _ChunkedSelectiveScan if method == "chunked" else _FusedSelectiveScan
        y = scan.apply(u, delta, A, B, C, chunk)
    return y if D is None else y + D * u


def selective_scan_step(
    state: torch.Tensor,
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of :func:`selective_scan`: ``state`` (batch, d_inner, d_state), ``u``, ``delta``
    (batch, d_inner), ``B``, ``C`` (batch, d_state) -> ``(y (batch, d_inner), new state)``."""
    state = torch.exp(delta.unsqueeze(-1) * A) * state + (delta * u).unsqueeze(-1) * B.unsqueeze(1)
    y = torch.einsum("bdn,bn->bd", state, C)
    return (y if D is None else y + D * u), state


# --------------------------------------------------------------------------------------------- Mamba


class MambaBlock(nn.Module):
    r"""The Mamba block (Gu & Dao 2023, arXiv:2312.00752; cf. state-spaces/mamba ``mamba_simple.py``).

    On (B, L, H) with ``d_inner = expand * H``::

        x, z  = in_proj(u)                               (B, L, d_inner) each
        x     = silu(causal depthwise conv1d(x))          kernel d_conv, left padding only
        dt_r, B_t, C_t = x_proj(x)                        widths dt_rank, d_state, d_state
        dt    = softplus(dt_proj(dt_r))                   (B, L, d_inner): a step size per channel and day
        y     = selective_scan(x, dt, A = -exp(A_log), B_t, C_t, D)
        out   = out_proj(y * silu(z))

    ``dt_proj``'s bias is the inverse softplus of a log-uniform draw in ``[dt_min, dt_max]``, so
    :math:`\Delta` starts in that range; :math:`A_n = -(n+1)` (S4D-Real). :meth:`step` runs one day
    with a carried state ``(conv_state (B, d_inner, d_conv-1), ssm_state (B, d_inner, d_state))``.
    """

    def __init__(
        self,
        hidden_size: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        scan: str = "chunked",
    ):
        super().__init__()
        if min(hidden_size, d_state, d_conv, expand) < 1:
            raise ValueError(
                f"need hidden_size, d_state, d_conv, expand >= 1, got {hidden_size}, {d_state}, {d_conv}, {expand}"
            )
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        if scan not in SCANS:
            raise ValueError(f"unknown scan {scan!r}; choose from {SCANS}")
        self.d_inner, self.d_state, self.d_conv, self.scan = expand * hidden_size, d_state, d_conv, scan
        self.dt_rank = dt_rank or math.ceil(hidden_size / 16)
        d_inner = self.d_inner
        self.in_proj = nn.Linear(hidden_size, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)  # dt, B, C
        self.dt_proj = nn.Linear(self.dt_rank, d_inner, bias=True)
        nn.init.uniform_(self.dt_proj.weight, -(self.dt_rank**-0.5), self.dt_rank**-0.5)
        dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        with torch.no_grad():  # softplus(bias) = dt: bias = dt + log(1 - exp(-dt))
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(
            torch.log(torch.arange(1, d_state + 1).float()).repeat(d_inner, 1)
        )  # (D, N)
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, hidden_size, bias=False)

    def _ssm_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.softplus(self.dt_proj(dt)), B, C  # dt: (..., d_inner), B and C: (..., d_state)

    def _conv_branch(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, z = self.in_proj(u).chunk(2, dim=-1)  # (B, L, d_inner) each
        x = self.conv1d(x.transpose(1, 2))[..., : u.shape[1]].transpose(1, 2)  # causal: keep the first L
        return F.silu(x), z

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # (B, L, H) -> (B, L, H)
        x, z = self._conv_branch(u)
        dt, B, C = self._ssm_inputs(x)
        y = selective_scan(x, dt, -torch.exp(self.A_log), B, C, self.D, method=self.scan)
        return self.out_proj(y * F.silu(z))

    def step_sizes(self, u: torch.Tensor) -> torch.Tensor:
        """The selective step sizes ``dt`` (B, L, d_inner) that the block uses on ``u`` (B, L, H)."""
        return self._ssm_inputs(self._conv_branch(u)[0])[0]

    def initial_state(self, batch: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero ``(conv_state, ssm_state)`` with the dtype and device of ``like``."""
        conv = like.new_zeros(batch, self.d_inner, self.d_conv - 1)
        return conv, like.new_zeros(batch, self.d_inner, self.d_state)

    def step(self, u: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        """One day: ``u`` (B, H) -> ``(out (B, H), new state)``; equals ``forward`` on the whole window."""
        conv_state, ssm_state = state
        x, z = self.in_proj(u).chunk(2, dim=-1)  # (B, d_inner) each
        window = torch.cat(
            [conv_state, x.unsqueeze(-1)], dim=-1
        )  # (B, d_inner, d_conv): the last d_conv days
        x = F.silu((window * self.conv1d.weight.squeeze(1)).sum(-1) + self.conv1d.bias)
        dt, B, C = self._ssm_inputs(x)
        y, ssm_state = selective_scan_step(ssm_state, x, dt, -torch.exp(self.A_log), B, C, self.D)
        return self.out_proj(y * F.silu(z)), (window[..., 1:], ssm_state)


class FinancialMamba(nn.Module):
    """Mamba forecaster: linear embedding, ``n_layers`` pre-norm residual Mamba blocks, a norm, a head.

    ``x <- x + Dropout(MambaBlock(RMSNorm(x)))``. ``forward(x)`` -> (B, output_size);
    ``per_step=True`` -> (B, L, output_size). :meth:`step` forecasts day by day with a carried state,
    the way the model runs online (constant cost per new day, whatever the history length).
    ``scan`` picks the scan of :func:`selective_scan`: ``"chunked"`` (the default, any device),
    ``"fused"`` (the C kernel, CPU only, needs a C compiler) or ``"sequential"`` (the reference).
    """

    @keeps_config
    def __init__(
        self,
        input_size: int,
        hidden_size: int = 32,
        n_layers: int = 2,
        output_size: int = 1,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dropout: float = 0.0,
        scan: str = "chunked",
    ):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"need n_layers >= 1, got {n_layers}")
        self.input_size = input_size
        self.embedding = nn.Linear(input_size, hidden_size)
        self.norms = nn.ModuleList(nn.RMSNorm(hidden_size) for _ in range(n_layers))
        self.layers = nn.ModuleList(
            MambaBlock(hidden_size, d_state, d_conv, expand, scan=scan) for _ in range(n_layers)
        )
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.RMSNorm(hidden_size)
        self.head = nn.Linear(hidden_size, output_size)

    def forward(self, x: torch.Tensor, per_step: bool = False) -> torch.Tensor:
        check_window(x, self.input_size, model="FinancialMamba")
        h = self.embedding(x)  # (B, L, H)
        for norm, layer in zip(self.norms, self.layers, strict=True):
            h = h + self.dropout(layer(norm(h)))
        h = self.norm(h)
        return self.head(h if per_step else h[:, -1])

    def step(self, x: torch.Tensor, state: list | None = None) -> tuple[torch.Tensor, list]:
        """One day ``x`` (B, C) -> ``(forecast (B, output_size), state)``; ``state=None`` starts from zeros."""
        if x.dim() != 2 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"FinancialMamba.step expects x of shape (B, {self.input_size}), got {tuple(x.shape)}"
            )
        if not torch.isfinite(x).all():
            raise ValueError("FinancialMamba.step got an input with NaN or inf values")
        h = self.embedding(x)  # (B, H)
        if state is None:
            state = [layer.initial_state(x.shape[0], h) for layer in self.layers]
        new_state = []
        for norm, layer, layer_state in zip(self.norms, self.layers, state, strict=True):
            out, layer_state = layer.step(norm(h), layer_state)
            h = h + self.dropout(out)
            new_state.append(layer_state)
        return self.head(self.norm(h)), new_state
