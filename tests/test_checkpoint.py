"""Tests of course_lib.production.checkpoint: class + config from the registry, weights_only loading, no pickles run.
The round trip of every registered model is in tests/test_contract.py."""

import json
import pickle

import pytest
import torch
from torch import nn

from course_lib.models import FinancialGRU
from course_lib.production.checkpoint import load_checkpoint, save_checkpoint


def _model():
    torch.manual_seed(0)
    return FinancialGRU(input_size=3, hidden_size=4)


def test_round_trip_needs_nothing_restated(tmp_path):
    model = _model()
    path = save_checkpoint(model, tmp_path / "m.pt")
    meta = json.loads((tmp_path / "m.pt.json").read_text())
    assert meta == {"format": 2, "class": "FinancialGRU", "config": model.config}
    loaded = load_checkpoint(path, map_location="cpu")
    x = torch.randn(2, 6, 3)
    assert isinstance(loaded, FinancialGRU) and torch.equal(model.eval()(x), loaded.eval()(x))


def test_a_model_of_your_own_saves_with_a_config_and_loads_with_build(tmp_path):
    def build(config):
        return nn.Sequential(nn.Linear(config["inputs"], 1))

    model = build({"inputs": 3})
    with pytest.raises(TypeError, match="has no .config dict"):
        save_checkpoint(model, tmp_path / "m.pt")
    path = save_checkpoint(model, tmp_path / "m.pt", config={"inputs": 3})
    with pytest.raises(KeyError, match="'Sequential' is not a registered model class"):
        load_checkpoint(path)
    x = torch.randn(4, 3)
    assert torch.equal(load_checkpoint(path, build=build)(x), model(x))


def test_non_json_config_is_refused_before_writing(tmp_path):
    with pytest.raises(TypeError):
        save_checkpoint(nn.Linear(1, 1), tmp_path / "m.pt", config={"bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_an_old_or_foreign_json_is_refused_with_a_clear_message(tmp_path):
    path = save_checkpoint(_model(), tmp_path / "m.pt")
    (tmp_path / "m.pt.json").write_text(json.dumps({"input_size": 3}))  # format 1: the bare config
    with pytest.raises(ValueError, match="not a course_lib checkpoint of format 2"):
        load_checkpoint(path)


class _Payload:
    """Unpickling this would run code: it creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_pickled_payload_is_refused_not_executed(tmp_path):
    path = save_checkpoint(_model(), tmp_path / "m.pt")
    marker = tmp_path / "pwned"
    with open(path, "wb") as f:
        pickle.dump({"gru.weight_ih_l0": _Payload(str(marker))}, f)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(path)
    assert not marker.exists()


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "none.pt")
