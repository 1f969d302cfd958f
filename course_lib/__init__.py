"""course_lib: the verified models and utilities of *Deep Learning for Financial Time Series*.

Notebooks import from here; nothing in a notebook re-implements library code.
"""

import os
import random

import numpy as np
import torch

__version__ = "0.3.0"
__all__ = ["__version__", "get_device", "set_seed"]


DEVICE_TYPES = ("cpu", "cuda", "mps")  # what COURSE_DEVICE accepts, optionally with an index: cuda:1


def get_device() -> torch.device:
    """The device the notebooks train on: CUDA, then Apple MPS, then CPU.

    Set the environment variable ``COURSE_DEVICE`` (``cpu``, ``cuda``, ``cuda:1`` or ``mps``) to choose.
    A requested device that this machine lacks raises: nothing falls back to the CPU silently.
    """
    requested = os.environ.get("COURSE_DEVICE", "").strip()
    if requested:
        kind, _, index = requested.lower().partition(":")
        if kind not in DEVICE_TYPES or (index and not index.isdigit()):
            raise ValueError(
                f"COURSE_DEVICE={requested!r} is not a device: use one of {', '.join(DEVICE_TYPES)} "
                "(optionally with an index, e.g. cuda:1), or unset it to choose automatically"
            )
        device = torch.device(requested.lower())
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise RuntimeError(
                    f"COURSE_DEVICE={requested!r} but CUDA is not available on this machine "
                    f"(PyTorch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); "
                    "unset COURSE_DEVICE or set it to cpu"
                )
            if device.index is not None and device.index >= torch.cuda.device_count():
                raise RuntimeError(
                    f"COURSE_DEVICE={requested!r} but this machine has {torch.cuda.device_count()} CUDA device(s)"
                )
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError(f"COURSE_DEVICE={requested!r} but MPS is not available on this machine")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices) so that equal seeds give equal CPU results."""
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (learners and libraries still use the legacy global RNG)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
