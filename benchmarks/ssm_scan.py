"""Benchmark: Mamba's selective scan (forward + backward) and S4D's FFT convolution, on 2 CPU threads.

Rows (targets from the chapter's issue):

* the fused C scan and the chunked scan of ``course_lib.models.ops.selective_scan.selective_scan`` at B=8,
  d_inner=64, d_state=16 and L = 256, 1024, 4096 (target at L=1024: <= 0.15 s, and linear growth
  in L);
* the sequential reference of the same function (one autograd step per day, with ``unbind``);
* a re-creation of the source module's loop (``for t: h = dA[:, t] * h + dB[:, t] * x[:, t] ...``):
  every ``tensor[:, t]`` in the loop has a backward that writes a zero-filled tensor of the full
  (B, L, ...) size, so its backward is O(L^2) (target: the fast scan >= 300x faster at L=1024);
* S4D: kernel + FFT convolution against the unrolled recurrence at L=4096 (>= 50x, error <= 1e-5).

Times are the best of a few repetitions (the source loop at L=1024, seconds to minutes, runs once;
``--skip-slow`` leaves it out). Run with ``make bench`` or ``python benchmarks/ssm_scan.py``.
"""

import argparse
import os
import platform
import time

import torch

from course_lib.models.ops.convolution import _cexp, fft_causal_conv
from course_lib.models.ops.fused_build import fused_scan_available
from course_lib.models.ops.selective_scan import selective_scan
from course_lib.models.s4d import S4DKernel
from course_lib.testing import WorkCounter, source_module_scan

BATCH, D_INNER, D_STATE = 8, 64, 16


def scan_inputs(length: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(BATCH, length, D_INNER, generator=g).requires_grad_(),  # u
        (0.001 + 0.1 * torch.rand(BATCH, length, D_INNER, generator=g)).requires_grad_(),  # delta
        (-torch.arange(1.0, D_STATE + 1).repeat(D_INNER, 1)).requires_grad_(),  # A (S4D-Real)
        torch.randn(BATCH, length, D_STATE, generator=g).requires_grad_(),  # B
        torch.randn(BATCH, length, D_STATE, generator=g).requires_grad_(),  # C
    ]


def fwd_bwd_seconds(fn, args, repeats: int) -> tuple[float, float]:
    """Best wall-clock and best CPU (process) seconds of forward + backward over ``repeats`` runs."""
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        for a in args:
            a.grad = None
        start, start_cpu = time.perf_counter(), time.process_time()
        fn(*args).sum().backward()
        best, best_cpu = (
            min(best, time.perf_counter() - start),
            min(best_cpu, time.process_time() - start_cpu),
        )
    return best, best_cpu


def elements_written(fn, length: int) -> int:
    with WorkCounter() as count:
        fn(*scan_inputs(length)).sum().backward()
    return count.elements


def best_seconds(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return f"{model}; {os.cpu_count()} cores; load average {load}; torch {torch.__version__}, {torch.get_num_threads()} threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--skip-slow", action="store_true", help="skip the source loop at L=1024 (seconds to minutes)"
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}")
    print(f"selective scan, forward + backward, B={BATCH}, d_inner={D_INNER}, d_state={D_STATE}\n")

    # S4D first (before the scans' large tensors churn the allocator): kernel + FFT convolution
    # against the recurrence, L = 4096, no gradients; best of several runs for both
    torch.manual_seed(0)
    length = 4096
    kernel = S4DKernel(D_INNER, 32)
    u = torch.randn(BATCH, length, D_INNER)
    with torch.no_grad():
        fft_s = best_seconds(lambda: fft_causal_conv(u, kernel(length)), repeats=20)
        kernel_s = best_seconds(lambda: kernel(length), repeats=20)
        exponent = kernel.discretize()[0].unsqueeze(-1) * torch.arange(64.0)  # (H, N, 64) complex
        cexp_s = best_seconds(lambda: torch.exp(exponent), repeats=20)
        polar_s = best_seconds(lambda: _cexp(exponent), repeats=20)
        rec_s = best_seconds(lambda: kernel.recurrence(u), repeats=3)
        y_fft = fft_causal_conv(u, kernel(length))  # float32, as timed
        y_ref = kernel.double().recurrence(u.double())  # the recurrence in float64: the reference
    s4d_error = ((y_fft.double() - y_ref).abs().max() / y_ref.abs().max()).item()

    has_fused = fused_scan_available()  # builds (or loads from the cache) the C kernel before any timing
    chunked, chunked_cpu, fused, sequential, source = {}, {}, {}, {}, {}
    for length in (256, 1024, 4096):
        inputs = scan_inputs(length)
        chunked[length], chunked_cpu[length] = fwd_bwd_seconds(
            lambda *a: selective_scan(*a, scan="chunked"), inputs, repeats=5
        )
        sequential[length] = fwd_bwd_seconds(lambda *a: selective_scan(*a, scan="sequential"), inputs, 2)[0]
    for length in (256, 1024, 4096, 16384) if has_fused else ():
        seconds = fwd_bwd_seconds(lambda *a: selective_scan(*a, scan="fused"), scan_inputs(length), 10)
        fused[length] = seconds[0]
    source[256] = fwd_bwd_seconds(source_module_scan, scan_inputs(256), repeats=1)[0]
    if not args.skip_slow:
        source[1024] = fwd_bwd_seconds(source_module_scan, scan_inputs(1024), repeats=1)[0]

    work = {n: elements_written(selective_scan, n) for n in (256, 1024, 4096)}
    source_work = {n: elements_written(source_module_scan, n) for n in (128, 256)}

    # the chunked scan must compute the same numbers as the reference (here in float32)
    inputs = scan_inputs(1024)
    y_ref = selective_scan(*inputs, scan="sequential")
    scan_error = {
        scan: ((selective_scan(*inputs, scan=scan) - y_ref).abs().max() / y_ref.abs().max()).item()
        for scan in ("chunked", "fused")
        if scan != "fused" or has_fused
    }

    rows = []
    if has_fused:
        rows += [
            (
                "fused C scan, L=256 / 1024 / 4096 / 16384",
                " / ".join(f"{fused[n] * 1e3:.1f}" for n in fused) + " ms",
                "<= 0.15 s at L=1024",
            ),
            (
                "fused C scan, growth per 4x L: 256->1024 / ->4096 / ->16384",
                " / ".join(f"{fused[4 * n] / fused[n]:.1f}x" for n in (256, 1024, 4096)),
                "linear: 4x once fixed costs are small",
            ),
        ]
    else:
        rows.append(("fused C scan", "not run: no C compiler found", "<= 0.15 s at L=1024"))
    rows += [
        ("chunked scan, L=256", f"{chunked[256]:.3f} s", "printed"),
        ("chunked scan, L=1024", f"{chunked[1024]:.3f} s", "<= 0.15 s"),
        (
            "chunked scan, CPU seconds (all threads), L=256 / 1024 / 4096",
            " / ".join(f"{chunked_cpu[n]:.3f}" for n in (256, 1024, 4096)),
            "printed (robust to a busy machine)",
        ),
        (
            "chunked scan, L=4096",
            f"{chunked[4096]:.3f} s ({chunked[4096] / chunked[1024]:.1f}x of L=1024)",
            "linear: about 4x of L=1024",
        ),
        ("chunked scan, L=1024 / L=256", f"{chunked[1024] / chunked[256]:.1f}x", "linear: about 4x"),
        (
            "elements written fwd+bwd, chunked, L=1024/256 and 4096/1024",
            f"{work[1024] / work[256]:.2f}x and {work[4096] / work[1024]:.2f}x",
            "linear: 4x (load-proof)",
        ),
        (
            "elements written fwd+bwd, source loop, L=256 / L=128",
            f"{source_work[256] / source_work[128]:.2f}x",
            "quadratic: 4x per doubling",
        ),
        (
            "sequential reference (unbind), L=256 / 1024 / 4096",
            " / ".join(f"{sequential[n]:.2f} s" for n in (256, 1024, 4096)),
            "printed",
        ),
        (
            "speed-up of the chunked scan over the unbind reference, L=1024",
            f"{sequential[1024] / chunked[1024]:.1f}x",
            "printed",
        ),
        ("source-module loop re-created, L=256", f"{source[256]:.2f} s", "printed"),
    ]
    if 1024 in source:
        rows += [
            ("source-module loop re-created, L=1024", f"{source[1024]:.1f} s", "about 54 s in the errata"),
            (
                "speed-up of the fused scan over it, L=1024",
                f"{source[1024] / fused[1024]:.0f}x" if has_fused else "not run",
                ">= 300x",
            ),
            (
                "speed-up of the chunked scan over it, L=1024",
                f"{source[1024] / chunked[1024]:.0f}x",
                "printed (pure PyTorch, any device)",
            ),
            (
                "source loop / unbind reference, L=1024",
                f"{source[1024] / sequential[1024]:.0f}x",
                "about 200x in the errata (54 s / 0.27 s): the loop, not the scans, varies by machine",
            ),
        ]
    else:
        rows.append(
            (
                "speed-up over the source loop, L=256, chunked / fused",
                f"{source[256] / chunked[256]:.0f}x / "
                + (f"{source[256] / fused[256]:.0f}x" if has_fused else "-"),
                "(--skip-slow)",
            )
        )
    rows += [
        (
            "chunked / fused vs sequential, max relative error",
            " / ".join(f"{e:.1e}" for e in scan_error.values()),
            "float32 round-off",
        ),
        (f"S4D kernel + FFT conv, L=4096, B={BATCH}, H={D_INNER}, N=32", f"{fft_s * 1e3:.1f} ms", "printed"),
        ("of which the kernel K (H, L)", f"{kernel_s * 1e3:.1f} ms", "printed"),
        (
            "complex exp of (H, N, 64): torch.exp / polar form",
            f"{cexp_s * 1e3:.2f} / {polar_s * 1e3:.2f} ms ({cexp_s / polar_s:.1f}x)",
            "printed (why the kernel uses the polar form)",
        ),
        ("S4D unrolled recurrence, same", f"{rec_s:.2f} s", "printed"),
        ("S4D speed-up of the FFT convolution", f"{rec_s / fft_s:.0f}x", ">= 50x"),
        ("S4D FFT (float32) vs recurrence (float64), max error / max |y|", f"{s4d_error:.1e}", "<= 1e-5"),
    ]
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    print(f"| {'figure':<{width}} | {'measured':<{value_width}} | target |")
    print(f"|{'-' * (width + 2)}|{'-' * (value_width + 2)}|---|")
    for name, value, target in rows:
        print(f"| {name:<{width}} | {value:<{value_width}} | {target} |")
    print(f"\nload average after the run: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
