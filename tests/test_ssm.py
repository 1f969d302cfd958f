"""Tests of course_lib.models.s4d, .mamba and .ops: S4D (kernel = recurrence, FFT = direct
convolution) and Mamba (fast scan = sequential scan in outputs and gradients, step() = forward), plus
the model contract. The cached build of the fused scan is tested in test_fused_build.py."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib import set_seed
from course_lib.models.checkpoint import load_checkpoint, save_checkpoint
from course_lib.models.mamba import FinancialMamba, MambaBlock
from course_lib.models.ops import fused_build
from course_lib.models.ops.convolution import causal_conv_direct, fft_causal_conv
from course_lib.models.ops.fused_build import fused_scan_available
from course_lib.models.ops.selective_scan import selective_scan, selective_scan_step
from course_lib.models.s4d import S4D, FinancialS4D, S4DKernel
from course_lib.outputs import prediction_of
from course_lib.testing import (
    WorkCounter,
    batch_coupling,
    future_gradient,
    parameters_without_gradient,
    source_module_scan,
)

B, L, C = 4, 24, 3
F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _x(length: int = L, batch: int = B, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(batch, length, C, generator=_gen(seed), dtype=dtype)


# ------------------------------------------------------------------------------------------ S4D kernel


@pytest.mark.parametrize(
    ("hidden", "d_state", "dt_min", "dt_max"), [(3, 4, 1e-3, 1e-1), (5, 16, 1e-2, 1.0), (2, 1, 0.5, 0.5)]
)
def test_s4d_kernel_is_the_impulse_response_of_the_recurrence(hidden, d_state, dt_min, dt_max):
    torch.manual_seed(0)
    kernel = S4DKernel(hidden, d_state, dt_min, dt_max).double()
    with torch.no_grad():  # a learnt (non-initial) real part too
        kernel.log_A_real.add_(torch.randn_like(kernel.log_A_real))
    length = 80
    impulse = torch.zeros(1, length, hidden, dtype=F64)
    impulse[0, 0] = 1.0
    response = kernel.recurrence(impulse)[0].T  # (H, L)
    K = kernel(length)
    assert K.abs().max() > 1e-3  # not a trivially zero kernel
    torch.testing.assert_close(K, response, rtol=0, atol=1e-8)


def test_s4d_kernel_closed_form_for_one_real_mode():
    # N = 1, A = -a (imaginary part pi * 0 = 0): K_l = 2 C (1 - exp(-a dt)) / a * exp(-a dt l)
    kernel = S4DKernel(1, 1, dt_min=0.1, dt_max=0.1).double()
    with torch.no_grad():
        kernel.C.copy_(torch.tensor([[[0.7, 0.0]]], dtype=F64))
        kernel.log_dt.fill_(math.log(0.1))  # exactly, in float64
        kernel.log_A_real.fill_(math.log(0.5))
    a, dt = 0.5, 0.1
    steps = torch.arange(10, dtype=F64)
    expected = 2 * 0.7 * (1 - math.exp(-a * dt)) / a * torch.exp(-a * dt * steps)
    torch.testing.assert_close(kernel(10)[0], expected, rtol=1e-12, atol=1e-14)


def test_s4d_kernel_without_the_zoh_factor_is_far_off():
    # the source module's kernel: sum_n C_n B_n exp(dt A_n l) with no (exp(dt A) - 1) / A factor
    torch.manual_seed(0)
    kernel = S4DKernel(8, 16).double()
    dtA, dB, Cc = kernel.discretize()
    vandermonde = torch.exp(dtA.unsqueeze(-1) * torch.arange(64, dtype=F64))
    source = 2 * torch.einsum("hn,hnl->hl", Cc, vandermonde).real
    ratio = source.norm(dim=1) / kernel(64).norm(dim=1)  # per channel
    dt = kernel.log_dt.exp()
    assert (ratio > 5).all(), ratio
    torch.testing.assert_close(ratio, 1 / dt, rtol=0.2, atol=0)  # off by about 1 / dt


@settings(max_examples=20, deadline=None)
@given(length=st.integers(1, 70), seed=st.integers(0, 10_000))
def test_fft_convolution_equals_direct_causal_convolution(length, seed):
    u = torch.randn(2, length, 3, generator=_gen(seed), dtype=F64)
    k = torch.randn(3, length, generator=_gen(seed + 1), dtype=F64)
    direct = causal_conv_direct(u, k)
    torch.testing.assert_close(fft_causal_conv(u, k), direct, rtol=0, atol=1e-10)
    # and the direct sum is y_l = sum_{j <= l} K_j u_{l-j}, written out at the last step
    last = sum(k[:, j] * u[:, length - 1 - j] for j in range(length))
    torch.testing.assert_close(direct[:, -1], last, rtol=0, atol=1e-10)


def test_s4d_convolution_equals_the_recurrence_on_random_input():
    torch.manual_seed(1)
    kernel = S4DKernel(4, 8).double()
    u = torch.randn(3, 200, 4, dtype=F64)
    torch.testing.assert_close(fft_causal_conv(u, kernel(200)), kernel.recurrence(u), rtol=0, atol=1e-8)


def test_s4d_layer_is_gelu_of_convolution_plus_skip_then_glu():
    torch.manual_seed(0)
    layer = S4D(4, 8).double().eval()
    u = torch.randn(2, 30, 4, dtype=F64)
    y = F.gelu(layer.kernel.recurrence(u) + layer.D * u)
    torch.testing.assert_close(layer(u), F.glu(layer.output_linear(y), dim=-1), rtol=0, atol=1e-10)


def test_s4d_kernel_refuses_bad_arguments():
    with pytest.raises(ValueError, match="dt_min"):
        S4DKernel(4, 8, dt_min=0.1, dt_max=0.01)
    with pytest.raises(ValueError, match="d_state"):
        S4DKernel(4, 0)


# ------------------------------------------------------------------------------------- selective scan


def _scan_inputs(batch, length, d_inner, d_state, seed=0, delta_range=(0.0, 1.0), A_range=(-2.0, 0.0)):
    g = _gen(seed)

    def uniform(shape, lo, hi):
        return (lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=F64)).requires_grad_()

    return (
        torch.randn(batch, length, d_inner, generator=g, dtype=F64).requires_grad_(),  # u
        uniform((batch, length, d_inner), *delta_range),  # delta
        uniform((d_inner, d_state), *A_range),  # A
        torch.randn(batch, length, d_state, generator=g, dtype=F64).requires_grad_(),  # B
        torch.randn(batch, length, d_state, generator=g, dtype=F64).requires_grad_(),  # C
        torch.randn(d_inner, generator=g, dtype=F64).requires_grad_(),  # D
    )


def _outputs_and_gradients(args, **kwargs):
    y = selective_scan(*args, **kwargs)
    probe = torch.randn(y.shape, generator=_gen(99), dtype=y.dtype)
    grads = torch.autograd.grad((probe * y).sum(), args)
    return y, grads


needs_compiler = pytest.mark.skipif(
    not fused_scan_available(), reason="scan='fused' compiles a C kernel: no C compiler here"
)
FAST = ["chunked", pytest.param("fused", marks=needs_compiler)]


def _assert_scans_agree(args, chunk_size=None, atol=1e-10, scan="chunked"):
    y_ref, g_ref = _outputs_and_gradients(args, scan="sequential")
    y_fast, g_fast = _outputs_and_gradients(args, scan=scan, chunk_size=chunk_size)
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-10, atol=atol)
    for name, a, b in zip(("u", "delta", "A", "B", "C", "D"), g_fast, g_ref, strict=True):
        assert b.abs().max() > 0, f"the reference gradient on {name} is zero: the check would be blind"
        torch.testing.assert_close(a, b, rtol=1e-9, atol=atol, msg=f"gradient on {name}")


def test_sequential_scan_is_the_recurrence_written_out():
    u, delta, A, Bm, Cm, D = (t.detach() for t in _scan_inputs(2, 7, 3, 4))
    h = torch.zeros(2, 3, 4, dtype=F64)
    for t in range(7):
        h = (
            torch.exp(delta[:, t, :, None] * A) * h
            + delta[:, t, :, None] * Bm[:, t, None, :] * u[:, t, :, None]
        )
        y_t = (h * Cm[:, t, None, :]).sum(-1) + D * u[:, t]
        torch.testing.assert_close(selective_scan(u, delta, A, Bm, Cm, D, scan="sequential")[:, t], y_t)


@pytest.mark.parametrize("scan", FAST)
@settings(max_examples=25, deadline=None)
@given(length=st.integers(2, 70), chunk=st.integers(1, 80), seed=st.integers(0, 10_000))
def test_fast_scans_equal_sequential_in_outputs_and_gradients(scan, length, chunk, seed):
    _assert_scans_agree(_scan_inputs(2, length, 3, 4, seed=seed), chunk_size=chunk, scan=scan)


@pytest.mark.parametrize("scan", FAST)
@pytest.mark.parametrize("chunk", [None, 1, 7, 16, 1000])
def test_fast_scans_with_decay_close_to_one(scan, chunk):
    # exp(delta A) within 1e-6 of 1 over 300 steps: the state integrates, nothing may be lost
    args = _scan_inputs(2, 300, 3, 4, seed=1, delta_range=(1e-7, 1e-5), A_range=(-0.1, -0.01))
    assert torch.exp(args[1].max() * args[2].min()) > 1 - 1e-5
    _assert_scans_agree(args, chunk_size=chunk, scan=scan)


@pytest.mark.parametrize("scan", FAST)
@pytest.mark.parametrize("chunk", [None, 5])
def test_fast_scans_with_decay_that_underflows(scan, chunk):
    # delta * A down to -2,000 per step: exp underflows to 0 and cumulative log-decays reach -1e5
    args = _scan_inputs(2, 100, 3, 4, seed=2, delta_range=(0.5, 100.0), A_range=(-20.0, -0.01))
    _assert_scans_agree(args, chunk_size=chunk, scan=scan)
    assert torch.isfinite(selective_scan(*args, scan=scan)).all()


@pytest.mark.parametrize("scan", FAST)
def test_fast_scans_in_float32_stay_close_to_float64(scan):
    args = _scan_inputs(4, 512, 8, 16, seed=3, delta_range=(1e-4, 0.5))
    y64 = selective_scan(*args, scan="sequential")
    y32 = selective_scan(*(a.float() for a in args), scan=scan)
    assert y32.dtype == torch.float32
    assert (y32.double() - y64).abs().max() < 1e-4 * y64.abs().max()


@pytest.mark.parametrize("scan", FAST)
def test_fast_scans_pass_gradcheck(scan):
    args = tuple(a.detach().requires_grad_() for a in _scan_inputs(2, 11, 2, 3, seed=4))
    assert torch.autograd.gradcheck(lambda *a: selective_scan(*a, chunk_size=3, scan=scan), args)


@needs_compiler
def test_fused_scan_is_the_same_for_any_number_of_threads_and_on_strided_inputs():
    # each thread takes its own batch rows, so the thread count cannot change a single bit
    u, delta, A, Bm, Cm, D = (t.detach() for t in _scan_inputs(5, 40, 3, 4, seed=6))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = selective_scan(u, delta, A, Bm, Cm, D, scan="fused")
        torch.set_num_threads(3)
        three = selective_scan(u, delta, A, Bm, Cm, D, scan="fused")
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, three)
    # a transposed (non-contiguous) u of the same values gives the same numbers
    u_strided = u.transpose(1, 2).contiguous().transpose(1, 2)
    assert not u_strided.is_contiguous()
    assert torch.equal(selective_scan(u_strided, delta, A, Bm, Cm, D, scan="fused"), three)


@needs_compiler
def test_fused_scan_refuses_mixed_dtypes_and_half_precision():
    u, delta, A, Bm, Cm, _ = (t.detach() for t in _scan_inputs(2, 8, 3, 4))
    with pytest.raises(TypeError, match=r"B is torch.float32"):
        selective_scan(u, delta, A, Bm.float(), Cm, scan="fused")
    with pytest.raises(TypeError, match="float32 or float64"):
        selective_scan(*(t.half() for t in (u, delta, A, Bm, Cm)), scan="fused")


@needs_compiler
def test_loading_the_fused_kernel_leaves_subnormal_numbers_alone():
    # compiled with -ffast-math, but linked without it: the process must not switch to flush-to-zero
    selective_scan(*(t.detach().float() for t in _scan_inputs(2, 8, 3, 4)[:5]), scan="fused")
    tiny = torch.tensor([1e-40], dtype=torch.float32)
    assert (tiny * 1.5).item() > 0, "subnormal float32 flushed to zero after the kernel was loaded"


def test_fused_scan_without_a_compiler_says_what_to_do(monkeypatch):
    monkeypatch.setattr(fused_build, "_KERNELS", {})
    monkeypatch.setenv("CC", "no-such-compiler-anywhere")
    u, delta, A, Bm, Cm, _ = (t.detach() for t in _scan_inputs(2, 8, 3, 4))
    with pytest.raises(RuntimeError, match=r"no C compiler.*scan='chunked'"):
        selective_scan(u, delta, A, Bm, Cm, scan="fused")


def test_method_is_the_old_name_of_scan_and_warns():
    args = [t.detach() for t in _scan_inputs(2, 9, 3, 4)]
    with pytest.warns(FutureWarning, match="scan="):
        old = selective_scan(*args, method="sequential")
    assert torch.equal(old, selective_scan(*args, scan="sequential"))


def test_the_old_module_path_still_gives_every_name_and_warns():
    import importlib
    import sys

    sys.modules.pop("course_lib.models.ssm", None)
    with pytest.warns(FutureWarning, match="course_lib.models.ssm was split into"):
        ssm = importlib.import_module("course_lib.models.ssm")
    old_names = ["FinancialMamba", "FinancialS4D", "MambaBlock", "S4D", "S4DKernel", "causal_conv_direct"]
    old_names += ["fft_causal_conv", "fused_scan_available", "selective_scan", "selective_scan_step", "SCANS"]
    assert set(old_names) <= set(ssm.__all__)
    assert ssm.FinancialS4D is FinancialS4D and ssm.selective_scan is selective_scan


def test_scan_step_by_step_equals_the_scan():
    u, delta, A, Bm, Cm, D = (t.detach() for t in _scan_inputs(2, 9, 3, 4, seed=5))
    state, ys = torch.zeros(2, 3, 4, dtype=F64), []
    for t in range(9):
        y_t, state = selective_scan_step(state, u[:, t], delta[:, t], A, Bm[:, t], Cm[:, t], D)
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys, 1), selective_scan(u, delta, A, Bm, Cm, D))


def _work(fn, length):
    args = [t.detach().float().requires_grad_() for t in _scan_inputs(1, length, 2, 2)[:5]]
    with WorkCounter() as count:
        fn(*args).sum().backward()
    return count


def test_scan_work_is_linear_in_length_and_the_source_loop_is_quadratic():
    # elements written by forward + backward, at L and 4L: a machine-independent measure of the cost
    ratio = {}
    for name, fn in [("chunked", selective_scan), ("source", source_module_scan)]:
        short, long = _work(fn, 64), _work(fn, 256)
        ratio[name] = long.elements / short.elements
        if name == "chunked":  # and O(sqrt(L)) Python steps: 4x the length, about 2x the operations
            assert long.ops / short.ops < 2.5
    assert 3.5 < ratio["chunked"] < 4.5, ratio  # linear
    assert ratio["source"] > 12, ratio  # quadratic: every x[:, t] has a full-size backward


@pytest.mark.parametrize(
    ("index", "bad_shape", "name"),
    [(1, (2, 9, 4), "delta"), (2, (4, 4), "A"), (3, (2, 9, 5), "B"), (4, (2, 8, 4), "C"), (5, (2,), "D")],
)
def test_selective_scan_names_the_argument_with_a_bad_shape(index, bad_shape, name):
    args = [t.detach() for t in _scan_inputs(2, 9, 3, 4)]
    args[index] = torch.zeros(bad_shape, dtype=F64)
    with pytest.raises(ValueError, match=f"{name} must have shape"):
        selective_scan(*args)
    with pytest.raises(ValueError, match="unknown scan method"):
        selective_scan(*_scan_inputs(2, 9, 3, 4), scan="parallel")


# --------------------------------------------------------------------------------------------- Mamba


def test_mamba_block_projections_follow_the_paper():
    block = MambaBlock(32, d_state=16, expand=2, dt_min=1e-3, dt_max=1e-1)
    assert block.dt_rank == 2  # ceil(32 / 16)
    assert block.x_proj.out_features == block.dt_rank + 2 * 16
    assert (block.dt_proj.in_features, block.dt_proj.out_features) == (2, 64)
    dt0 = F.softplus(block.dt_proj.bias)
    assert dt0.min() >= 1e-3 * (1 - 1e-5) and dt0.max() <= 1e-1 * (1 + 1e-5)
    assert dt0.max() / dt0.min() > 10  # spread over the log-uniform range, not one value
    torch.testing.assert_close(-torch.exp(block.A_log[0]), -torch.arange(1.0, 17.0))
    assert block.conv1d.groups == 64  # depthwise


@pytest.mark.parametrize("length", [5, 16, 17])  # 16 == d_state: the source module silently mixed time there
def test_mamba_block_runs_for_any_length_and_is_causal(length):
    torch.manual_seed(0)
    block = MambaBlock(8, d_state=16)
    x = torch.randn(2, length, 8)
    assert block(x).shape == (2, length, 8)
    if length > 1:
        assert future_gradient(block, x, t=length // 2 - 1) == 0.0


def test_mamba_step_size_depends_on_the_input():
    # selectivity: dt_t is a function of x_t, so two different days get different step sizes
    torch.manual_seed(0)
    block = MambaBlock(8)
    dt = block.step_sizes(torch.randn(2, 10, 8))
    assert dt.shape == (2, 10, block.d_inner) and (dt > 0).all()
    assert (dt[0] - dt[1]).abs().max() > 1e-3


@pytest.mark.parametrize("scan", ["sequential", *FAST])
def test_financial_mamba_step_equals_forward(scan):
    set_seed(0)
    model = FinancialMamba(C, hidden_size=8, n_layers=2, output_size=2, d_state=4, scan=scan).double().eval()
    x = _x(length=30, dtype=F64)
    state, outs = None, []
    for x_t in x.unbind(1):
        out, state = model.step(x_t, state)
        outs.append(out)
    torch.testing.assert_close(torch.stack(outs, 1), model(x, per_step=True), rtol=0, atol=1e-10)


def test_mamba_scans_give_the_same_model():
    set_seed(0)
    fast = FinancialMamba(C, hidden_size=8, d_state=4, scan="chunked").double()
    slow = FinancialMamba(**(fast.config | {"scan": "sequential"})).double()
    slow.load_state_dict(fast.state_dict())
    x = _x(length=40, dtype=F64)
    torch.testing.assert_close(fast(x, per_step=True), slow(x, per_step=True))


def test_mamba_step_refuses_bad_input():
    model = FinancialMamba(C, hidden_size=8)
    with pytest.raises(ValueError, match="shape"):
        model.step(torch.randn(2, 5, C))
    with pytest.raises(ValueError, match="NaN"):
        model.step(torch.full((2, C), float("nan")))
    with pytest.raises(ValueError, match="unknown scan"):
        FinancialMamba(C, scan="parallel")


# ------------------------------------------------------------------------------------ model contract


def _s4d(**kw) -> FinancialS4D:
    set_seed(0)
    return FinancialS4D(
        C, **({"hidden_size": 8, "n_layers": 2, "output_size": 2, "d_state": 8, "dropout": 0.1} | kw)
    )


def _mamba(**kw) -> FinancialMamba:
    set_seed(0)
    kw = {"hidden_size": 8, "n_layers": 2, "output_size": 2, "d_state": 4, "dropout": 0.1} | kw
    return FinancialMamba(C, **kw)


MODELS = {"s4d": _s4d, "mamba": _mamba}


@pytest.mark.parametrize("name", MODELS)
def test_shapes_and_last_step(name):
    model = MODELS[name]().eval()
    assert model(_x()).shape == (B, 2)
    assert model(_x(), per_step=True).shape == (B, L, 2)
    assert model(_x(length=1)).shape == (B, 2)
    torch.testing.assert_close(model(_x()), model(_x(), per_step=True)[:, -1])


@pytest.mark.parametrize("name", MODELS)
@settings(max_examples=6, deadline=None)
@given(t=st.integers(0, L - 2), seed=st.integers(0, 1000))
def test_no_look_ahead(name, t, seed):
    # float64: the FFT convolution of S4D is causal up to round-off (about 1e-16 here, 1e-9 in float32)
    model = MODELS[name]().double()
    leak = future_gradient(lambda x: model(x, per_step=True), _x(seed=seed, dtype=F64), t)
    assert leak < 1e-12 if name == "s4d" else leak == 0.0


@pytest.mark.parametrize("name", MODELS)
def test_batch_independence(name):
    assert batch_coupling(MODELS[name](), _x()) < 1e-6


@pytest.mark.parametrize("name", MODELS)
def test_every_parameter_gets_a_gradient(name):
    model = MODELS[name]()
    loss = prediction_of(model(_x())).pow(2).mean()
    assert parameters_without_gradient(model, loss) == []


@pytest.mark.parametrize("name", MODELS)
def test_deterministic_for_a_seed(name):
    first, second = MODELS[name](), MODELS[name]()
    set_seed(1)
    a = first(_x())
    set_seed(1)
    assert torch.equal(a, second(_x()))


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (torch.randn(B, L), "shape"),
        (torch.randn(B, L, C + 1), "features"),
        (torch.randn(B, 0, C), "empty"),
        (torch.full((B, L, C), float("nan")), "NaN"),
    ],
)
def test_bad_input_raises(name, bad, message):
    with pytest.raises(ValueError, match=message):
        MODELS[name]()(bad)


@pytest.mark.parametrize("name", MODELS)
def test_config_rebuilds_and_checkpoint_round_trips(name, tmp_path):
    model = MODELS[name]().eval()
    rebuilt = type(model)(**model.config)
    assert rebuilt.config == model.config
    path = save_checkpoint(model, tmp_path / name)
    loaded = load_checkpoint(path).eval()  # the registered class, rebuilt from its stored config
    assert type(loaded) is type(model)
    assert torch.equal(loaded(_x()), model(_x()))


@needs_compiler
def test_financial_mamba_on_the_fused_scan_equals_the_chunked_one_in_outputs_and_every_gradient():
    models = {}
    for scan in ("chunked", "fused"):
        set_seed(0)
        models[scan] = FinancialMamba(C, 8, n_layers=2, d_state=4, scan=scan).double()
    x = _x(length=40, dtype=F64)
    outputs = {scan: m(x, per_step=True) for scan, m in models.items()}
    torch.testing.assert_close(outputs["fused"], outputs["chunked"], rtol=1e-10, atol=1e-12)
    probe = torch.randn(outputs["fused"].shape, generator=_gen(7), dtype=F64)
    grads = {
        scan: torch.autograd.grad((probe * outputs[scan]).sum(), list(m.parameters()))
        for scan, m in models.items()
    }
    names = [name for name, _ in models["fused"].named_parameters()]
    for name, a, b in zip(names, grads["fused"], grads["chunked"], strict=True):
        assert b.abs().max() > 0, f"the chunked model's gradient on {name} is zero: the check would be blind"
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=f"gradient on {name}")
