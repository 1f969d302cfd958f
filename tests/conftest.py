import atexit
import os
import shutil
import sys
import tempfile

import pytest

# Tests never touch the network: the packaged data is the reference.
os.environ["COURSE_OFFLINE"] = "1"

# Nor the user's cache: the fused scan's C kernel (course_lib.models.ops.fused_build) is built into a
# folder of this run, made once by the main process and inherited by pytest-xdist workers and kernels.
if "PYTEST_XDIST_WORKER" not in os.environ:
    os.environ["COURSE_CACHE_DIR"] = tempfile.mkdtemp(prefix="course_lib_test_cache_")
    atexit.register(shutil.rmtree, os.environ["COURSE_CACHE_DIR"], ignore_errors=True)


@pytest.fixture(scope="session")
def returns_task():
    from course_lib.data.windows import make_task

    return make_task("returns", horizons=(1, 5), lookback=20)


@pytest.fixture(scope="session")
def vol_task():
    from course_lib.data.windows import make_task

    return make_task("volatility", horizons=(1, 5), lookback=20)


def pytest_collection_modifyitems(items):
    """Markers that select: ``slow`` (notebooks, building and grading assignments), ``sandbox`` (tests
    that start grading sandboxes), ``gpu`` (CUDA-only tests); ``make test-fast`` deselects all three.

    Cases of a registry entry whose ``requires`` gives a reason (no C compiler, say) are skipped with it.
    A case belongs to an entry when one of its parameters is the entry or the entry's id. Parameters come
    from the registry only if a test module imported it; each entry's ``requires`` is asked once.
    """
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
        if "sandboxes" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.sandbox)
            item.add_marker(pytest.mark.slow)
        if item.path.name == "test_cuda.py":
            item.add_marker(pytest.mark.gpu)
    registry = sys.modules.get("course_lib.models.registry")
    if registry is None:
        return
    needs = {entry.id: entry for entry in registry.REGISTRY if entry.requires is not None}
    reasons: dict[str, str | None] = {}
    for item in items:
        for value in getattr(getattr(item, "callspec", None), "params", {}).values():
            name = value.id if isinstance(value, registry.ModelSpec) else value
            if isinstance(name, str) and name in needs:
                if name not in reasons:
                    reasons[name] = needs[name].requires()
                if reasons[name] is not None:
                    item.add_marker(pytest.mark.skip(reason=reasons[name]))


@pytest.fixture(autouse=True)
def _seeded_global_generators():
    """Every test starts from the same torch and numpy global generator state, so a draw a test does
    not seed itself (``torch.randn`` in a shape test, a simulation) is the same on every run and on
    every pytest-xdist worker, whatever ran before it: a statistical tolerance cannot fail by chance."""
    import numpy as np
    import torch

    torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002 (the legacy global generator is what unseeded code draws from)
