"""What only a CUDA device can show: work lands on the GPU, never silently on the CPU, and agrees with it.

Skipped, with the reason, where PyTorch sees no CUDA device; ``scripts/gpu_check.sh`` runs them on a GPU.
(MAML's second order through cuDNN RNNs is in tests/test_meta.py.)
"""

import numpy as np
import pytest
import torch
from torch import nn

from course_lib import get_device
from course_lib.models.registry import REGISTRY
from course_lib.outputs import prediction_of
from course_lib.training import Trainer

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device (scripts/gpu_check.sh)"
)


class _DeviceRecorder(nn.Module):
    """A tiny forecaster that records the device of every batch it sees."""

    def __init__(self, lookback: int, n_features: int):
        super().__init__()
        self.head = nn.Linear(lookback * n_features, 1)
        self.seen: set[str] = set()

    def forward(self, x):
        self.seen.add(x.device.type)
        return self.head(x.flatten(1))  # (B, 1)


def test_course_device_cuda_gives_cuda(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cuda")
    assert get_device().type == "cuda"
    monkeypatch.delenv("COURSE_DEVICE")
    assert get_device().type == "cuda", "with a GPU present the default is CUDA"


def test_trainer_trains_and_predicts_on_cuda(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cuda")
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 10, 3)).astype(np.float32), rng.normal(size=(64, 1)).astype(np.float32)
    model = _DeviceRecorder(10, 3)
    trainer = Trainer(model, max_epochs=2, batch_size=16, progress=False)
    trainer.fit(X[:48], y[:48], X[48:], y[48:])
    assert trainer.device.type == "cuda"
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    assert model.seen == {"cuda"}, f"batches reached the model on {model.seen}"
    pred = trainer.predict(X)
    assert isinstance(pred, np.ndarray) and pred.shape == (64, 1)
    with torch.no_grad():
        reference = model.cpu().eval()(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(pred, reference, rtol=1e-4, atol=1e-5)


def _window_length(model) -> int:
    return max(16, getattr(model, "min_length", 1), getattr(model, "receptive_field", 1))


@pytest.mark.parametrize("entry", REGISTRY, ids=lambda e: e.id)
def test_every_registered_model_agrees_on_cuda_and_cpu_to_round_off(entry):
    if entry.sizes["test"].get("scan") == "fused":
        pytest.skip("the fused scan is a CPU kernel; on CUDA the entry FinancialMamba (scan='chunked') runs")
    model = entry.build(seed=0).eval()
    inputs = entry.inputs(model, batch=4, length=_window_length(model), seed=1)
    with torch.no_grad():
        cpu = prediction_of(model(*inputs))
        if not torch.equal(cpu, prediction_of(model(*inputs))):
            pytest.skip(f"{entry.id} samples in eval mode: CPU and CUDA draw different random numbers")
        gpu = prediction_of(model.cuda()(*(t.cuda() for t in inputs)))
    assert gpu.device.type == "cuda"
    # cuDNN and cuBLAS sum in another order (and may use TF32): equal up to round-off, not bit for bit
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=1e-4)
