import pytest
import torch
from torch import nn

from course_lib import get_device, set_seed
from course_lib.outputs import prediction_of
from course_lib.testing import batch_coupling, future_gradient, input_support, parameters_without_gradient


def test_course_device_override(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_course_device_unavailable_cuda_raises(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        get_device()


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "tpu"])
def test_course_device_unknown_names_the_accepted_values(monkeypatch, bad):
    monkeypatch.setenv("COURSE_DEVICE", bad)
    with pytest.raises(ValueError, match=r"COURSE_DEVICE='[^']+' is not a device: use one of cpu, cuda, mps"):
        get_device()


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA: checks that an absent device index raises"
)
def test_course_device_missing_cuda_index_raises(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", f"cuda:{torch.cuda.device_count()}")
    with pytest.raises(RuntimeError, match="CUDA device"):
        get_device()


def test_set_seed_makes_results_repeatable():
    set_seed(3)
    a = nn.Linear(4, 2)(torch.randn(5, 4))
    set_seed(3)
    b = nn.Linear(4, 2)(torch.randn(5, 4))
    set_seed(4)
    c = nn.Linear(4, 2)(torch.randn(5, 4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("bad", [-1, 1.5, "1"])
def test_set_seed_rejects_bad_seeds(bad):
    with pytest.raises(ValueError, match="seed"):
        set_seed(bad)


def test_prediction_of_convention():
    t = torch.zeros(2, 1)
    assert prediction_of(t) is t
    assert prediction_of({"prediction": t, "attention": None}) is t
    with pytest.raises(KeyError, match="prediction"):
        prediction_of({"mean": t})
    with pytest.raises(TypeError, match="tuple"):
        prediction_of((t, t))


class _BatchMean(nn.Module):
    """Mixes samples: each output sees the batch mean (like attention over the wrong axis)."""

    def forward(self, x):
        return x[:, -1] + x.mean(dim=0, keepdim=True)[:, -1]


class _Reverse(nn.Module):
    """Per-step output that sees the future: a reversed cumulative sum."""

    def forward(self, x):
        return torch.flip(torch.cumsum(torch.flip(x, [1]), 1), [1])


class _Causal(nn.Module):
    def forward(self, x):
        return torch.cumsum(x, 1)


def test_checks_detect_defects_and_pass_correct_models():
    x = torch.randn(4, 10, 3)
    assert batch_coupling(_BatchMean(), x) > 1e-3
    assert batch_coupling(nn.Sequential(nn.Flatten(), nn.Linear(30, 2)), x) == 0.0
    assert future_gradient(_Reverse(), x, t=4) > 0
    assert future_gradient(_Causal(), x, t=4) == 0.0


def test_future_gradient_sees_through_layernorm():
    # A plain .sum() of a LayerNorm output has zero gradient everywhere; the random probe does not.
    model = nn.Sequential(_Reverse(), nn.LayerNorm(3))
    assert future_gradient(model, torch.randn(2, 8, 3), t=2) > 0


def test_input_support_of_a_window_sum():
    conv = nn.Conv1d(1, 1, kernel_size=3, bias=False)

    def fn(x):  # (B, L, 1) -> (B, L-2, 1)
        return conv(x.transpose(1, 2)).transpose(1, 2)

    support = input_support(fn, torch.randn(2, 10, 1))
    assert support.tolist() == [False] * 7 + [True] * 3


def test_parameters_without_gradient_names_unused_parameters():
    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.used = nn.Linear(3, 1)
            self.unused = nn.Linear(3, 1)

        def forward(self, x):
            return self.used(x)

    m = Unused()
    assert parameters_without_gradient(m, m(torch.randn(4, 3)).pow(2).sum()) == [
        "unused.weight",
        "unused.bias",
    ]
