import os

import pytest

# Tests never touch the network: the packaged data is the reference.
os.environ["COURSE_OFFLINE"] = "1"


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
        from course_lib.models.ssm import fused_scan_available

        if not fused_scan_available():
            skip = pytest.mark.skip(reason="FinancialMamba-fused compiles a C kernel: no C compiler here")
            for item in fused:
                item.add_marker(skip)
