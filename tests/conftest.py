import atexit
import os
import shutil
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

    The registry's fused-scan entry needs a C compiler: where none is found, its cases are skipped.
    """
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
        if "sandboxes" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.sandbox)
            item.add_marker(pytest.mark.slow)
        if item.path.name == "test_cuda.py":
            item.add_marker(pytest.mark.gpu)
    fused = [item for item in items if "FinancialMamba-fused" in item.nodeid]
    if fused:
        from course_lib.models.ops.fused_build import fused_scan_unavailable_reason

        reason = fused_scan_unavailable_reason()
        if reason is not None:
            skip = pytest.mark.skip(reason=f"FinancialMamba-fused needs the fused scan's C kernel: {reason}")
            for item in fused:
                item.add_marker(skip)
