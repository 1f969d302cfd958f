import os

import pytest

# Tests never touch the network: the packaged data is the reference.
os.environ["COURSE_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def returns_task():
    from course_lib.windows import make_task

    return make_task("returns", horizons=(1, 5), lookback=20)


@pytest.fixture(scope="session")
def vol_task():
    from course_lib.windows import make_task

    return make_task("volatility", horizons=(1, 5), lookback=20)
