"""A data-only codec for answers that cross from a student's process to the grader.

Nothing here ever unpickles or evaluates: a submission can only hand the grader JSON made of numbers,
strings, lists and base64 array buffers, which are rebuilt as NumPy arrays, PyTorch tensors, pandas
objects, tuples, dicts and records. Any other object becomes an :class:`Unsupported` placeholder that
fails loudly when a test touches it.

This file is copied next to the sandbox runner and must import nothing outside the standard library
at module level (NumPy, pandas and torch are imported only when such a value is met).
"""

import base64
import collections
import dataclasses
import math
import types

MAX_DEPTH = 24
MAX_ITEMS = 200_000  # elements of one list, tuple or dict
ARRAY_KINDS = "biufcmMU"  # bool, int, uint, float, complex, timedelta, datetime, unicode: never objects


class Unsupported:
    """Stands for an answer the grader cannot transfer; any use of it raises a clear error."""

    def __init__(self, type_name: str):
        object.__setattr__(self, "_type_name", type_name)

    def _fail(self, *args, **kwargs):
        raise TypeError(
            f"the answer is a {self._type_name}, which the grader cannot transfer: "
            "answers must be numbers, strings, arrays, tensors, pandas objects, lists/dicts of those, or functions"
        )

    __call__ = __getattr__ = __getitem__ = __len__ = __iter__ = __float__ = __bool__ = _fail

    def __repr__(self):
        return f"<unsupported answer of type {self._type_name}>"


class Missing:
    """Stands for an answer variable the submission never defined."""


def _type_name(x) -> str:
    t = type(x)
    if t.__module__ in ("__main__", "builtins") or t.__module__.startswith("__"):
        return t.__qualname__  # a class defined in a notebook has a different module when graded
    return f"{t.__module__}.{t.__qualname__}"


def _is(x, module_prefix: str, name: str) -> bool:
    t = type(x)
    return any(c.__module__.split(".")[0] == module_prefix and c.__name__ == name for c in t.__mro__)


def _array(a) -> dict:
    if a.dtype.kind not in ARRAY_KINDS:
        if a.dtype.kind == "O" and a.size <= MAX_ITEMS:
            return {"__objarray__": [encode(v) for v in a.ravel().tolist()], "shape": list(a.shape)}
        return {"__unsupported__": f"numpy array of dtype {a.dtype}"}
    if not a.flags.c_contiguous:
        a = a.copy(order="C")  # (np.ascontiguousarray would turn a 0-d array into a 1-d one)
    return {
        "__ndarray__": base64.b64encode(a.tobytes()).decode(),
        "dtype": a.dtype.str,
        "shape": list(a.shape),
    }


def encode(x, _depth: int = 0):
    """Turn ``x`` into JSON-ready data. Never raises: unknown objects become ``__unsupported__``."""
    if _depth > MAX_DEPTH:
        return {"__unsupported__": "structure nested too deeply"}
    d = _depth + 1
    try:
        if x is None or isinstance(x, bool | str):
            return x
        if x is Ellipsis:  # an unanswered `name = ...` stays exactly that
            return {"__ellipsis__": True}
        if isinstance(x, int) and type(x) is int:
            return x
        if isinstance(x, float) and type(x) is float:
            return x if math.isfinite(x) else {"__float__": repr(x)}
        if type(x).__module__ == "numpy":
            import numpy as np

            if isinstance(x, np.ndarray):
                return _array(x)
            if isinstance(x, np.generic):
                return {"__npscalar__": _array(np.asarray(x))}
        if _is(x, "torch", "Tensor"):
            t = x.detach().cpu()
            dtype = str(t.dtype)
            if dtype == "torch.bfloat16":
                t = t.float()
            return {"__tensor__": _array(t.numpy()), "dtype": dtype}
        if _is(x, "torch", "Module"):  # only ever used as a call argument: identify it by class and weights
            return {"__unsupported__": _type_name(x), "state": encode(dict(x.state_dict()), d)}
        if _is(x, "pandas", "Series"):
            return {
                "__series__": encode(x.to_numpy(), d),
                "index": encode(x.index, d),
                "name": encode(x.name, d),
            }
        if _is(x, "pandas", "DataFrame"):
            return {
                "__frame__": [encode(x.iloc[:, j].to_numpy(), d) for j in range(x.shape[1])],
                "columns": encode(x.columns, d),
                "index": encode(x.index, d),
            }
        if _is(x, "pandas", "DatetimeIndex"):
            return {
                "__dtindex__": _array(x.asi8),
                "tz": None if x.tz is None else str(x.tz),
                "name": encode(x.name, d),
            }
        if _is(x, "pandas", "Index"):
            return {"__index__": encode(x.to_numpy(), d), "name": encode(x.name, d)}
        if _is(x, "pandas", "Timestamp"):
            return {"__timestamp__": x.value, "tz": None if x.tz is None else str(x.tz)}
        if isinstance(x, tuple) and hasattr(x, "_fields"):
            return {
                "__record__": type(x).__name__,
                "fields": {f: encode(getattr(x, f), d) for f in x._fields},
            }
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            fields = {f.name: encode(getattr(x, f.name), d) for f in dataclasses.fields(x)}
            return {"__record__": type(x).__name__, "fields": fields}
        if isinstance(x, types.SimpleNamespace):
            return {"__record__": "namespace", "fields": {k: encode(v, d) for k, v in vars(x).items()}}
        if isinstance(x, list | tuple | set | frozenset) and len(x) <= MAX_ITEMS:
            items = [encode(v, d) for v in (sorted(x, key=repr) if isinstance(x, set | frozenset) else x)]
            if type(x) is list:
                return items
            return {"__tuple__" if isinstance(x, tuple) else "__set__": items}
        if isinstance(x, dict) and len(x) <= MAX_ITEMS:
            return {"__dict__": [[encode(k, d), encode(v, d)] for k, v in x.items()]}
        if isinstance(x, int | float):  # subclasses (e.g. IntEnum) travel as plain numbers
            return encode(int(x) if isinstance(x, int) else float(x), d)
    except Exception as err:  # a hostile __len__ or __iter__ must not break the export
        return {"__unsupported__": f"{_type_name(x)} ({type(err).__name__} while encoding)"}
    return {"__unsupported__": _type_name(x)}


def _decode_array(spec: dict):
    import numpy as np

    dtype = np.dtype(spec["dtype"])
    if dtype.kind not in ARRAY_KINDS or dtype.hasobject:
        raise ValueError(f"refused array dtype {dtype}")
    shape = tuple(int(s) for s in spec["shape"])
    raw = base64.b64decode(spec["__ndarray__"], validate=True)
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def decode(x, _depth: int = 0):
    """Rebuild a value made by :func:`encode`. Raises ``ValueError`` on anything malformed."""
    if _depth > MAX_DEPTH + 2:
        raise ValueError("structure nested too deeply")
    d = _depth + 1
    if x is None or isinstance(x, bool | int | float | str):
        return x
    if isinstance(x, list):
        return [decode(v, d) for v in x]
    if not isinstance(x, dict) or len(x) == 0:
        raise ValueError(f"malformed value: {type(x).__name__}")
    tag = next((k for k in x if k.startswith("__")), None)
    if tag == "__ellipsis__":
        return Ellipsis
    if tag == "__float__":
        if x[tag] not in ("nan", "inf", "-inf"):
            raise ValueError("malformed float")
        return float(x[tag])
    if tag == "__ndarray__":
        return _decode_array(x)
    if tag == "__objarray__":
        import numpy as np

        items = [decode(v, d) for v in x[tag]]
        out = np.empty(len(items), dtype=object)
        out[:] = items
        return out.reshape(tuple(int(s) for s in x["shape"]))
    if tag == "__npscalar__":
        return decode(x[tag], d)[()]
    if tag == "__tensor__":
        import torch

        t = torch.from_numpy(decode(x[tag], d))
        return t.to(torch.bfloat16) if x.get("dtype") == "torch.bfloat16" else t
    if tag == "__series__":
        import pandas as pd

        return pd.Series(decode(x[tag], d), index=decode(x["index"], d), name=decode(x["name"], d))
    if tag == "__frame__":
        import pandas as pd

        columns = decode(x["columns"], d)
        data = {j: decode(col, d) for j, col in enumerate(x[tag])}
        frame = pd.DataFrame(data, index=decode(x["index"], d))
        frame.columns = columns
        return frame
    if tag == "__dtindex__":
        import pandas as pd

        idx = pd.DatetimeIndex(_decode_array(x[tag]).astype("datetime64[ns]"), name=decode(x["name"], d))
        return idx.tz_localize("UTC").tz_convert(x["tz"]) if x["tz"] else idx
    if tag == "__index__":
        import pandas as pd

        return pd.Index(decode(x[tag], d), name=decode(x["name"], d))
    if tag == "__timestamp__":
        import pandas as pd

        ts = pd.Timestamp(int(x[tag]))
        return ts.tz_localize("UTC").tz_convert(x["tz"]) if x["tz"] else ts
    if tag == "__record__":
        fields = {str(k): decode(v, d) for k, v in x["fields"].items()}
        if all(k.isidentifier() and not k.startswith("_") for k in fields):
            name = str(x[tag]) if str(x[tag]).isidentifier() else "Record"
            return collections.namedtuple(name, list(fields))(**fields)
        return types.SimpleNamespace(**fields)
    if tag == "__tuple__":
        return tuple(decode(v, d) for v in x[tag])
    if tag == "__set__":
        return {decode(v, d) for v in x[tag]}
    if tag == "__dict__":
        return {decode(k, d): decode(v, d) for k, v in x[tag]}
    if tag == "__unsupported__":
        return Unsupported(str(x[tag]))
    raise ValueError(f"unknown tag {tag}")
