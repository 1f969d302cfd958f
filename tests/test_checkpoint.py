import pickle

import pytest
import torch
from torch import nn

from course_lib.checkpoint import load_checkpoint, save_checkpoint


def _build(config):
    return nn.Sequential(nn.Linear(config["inputs"], config["hidden"]), nn.Tanh(), nn.Linear(config["hidden"], 1))


def test_round_trip(tmp_path):
    model = _build({"inputs": 3, "hidden": 5})
    path = save_checkpoint(model, {"inputs": 3, "hidden": 5}, tmp_path / "m.pt")
    loaded = load_checkpoint(path, _build)
    x = torch.randn(4, 3)
    assert torch.equal(model(x), loaded(x))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "m.pt.json"]


def test_non_json_config_is_refused_before_writing(tmp_path):
    with pytest.raises(TypeError):
        save_checkpoint(_build({"inputs": 1, "hidden": 1}), {"bad": object()}, tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []


class _Payload:
    """Unpickling this would run code: it creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_pickled_payload_is_refused_not_executed(tmp_path):
    model = _build({"inputs": 2, "hidden": 2})
    path = save_checkpoint(model, {"inputs": 2, "hidden": 2}, tmp_path / "m.pt")
    marker = tmp_path / "pwned"
    with open(path, "wb") as f:
        pickle.dump({"0.weight": _Payload(str(marker))}, f)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(path, _build)
    assert not marker.exists()


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "none.pt", _build)
