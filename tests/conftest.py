import os
import sys

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
    """Cases of a registry entry whose ``requires`` gives a reason (no C compiler, say) are skipped with it.

    A case belongs to an entry when one of its parameters is the entry or the entry's id. Parameters come
    from the registry only if a test module imported it; each entry's ``requires`` is asked once.
    """
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
