"""Tests of course_lib.models.checkpoint, the one on-disk format: class + config from the catalogue,
safetensors weights with their hash, old formats refused with a way to convert them, no pickle run.
The round trip of every registered model is in tests/test_contract.py."""

import hashlib
import json
import pickle

import pytest
import torch
from torch import nn

from course_lib.models import FinancialGRU
from course_lib.models.checkpoint import (
    META_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    convert_checkpoint,
    load_checkpoint,
    save_checkpoint,
)


def _model():
    torch.manual_seed(0)
    return FinancialGRU(input_size=3, hidden_size=4)


def _same(a, b):
    x = torch.randn(2, 6, 3)
    return type(a) is type(b) and torch.equal(a.eval()(x), b.eval()(x))


def test_round_trip_needs_nothing_restated(tmp_path):
    model = _model()
    path = save_checkpoint(model, tmp_path / "m", metadata={"epoch": 3})
    assert sorted(p.name for p in path.iterdir()) == [META_FILE, WEIGHTS_FILE]
    meta = json.loads((path / META_FILE).read_text())
    sha = hashlib.sha256((path / WEIGHTS_FILE).read_bytes()).hexdigest()
    assert meta == {
        "format": 3,
        "class": "FinancialGRU",
        "config": model.config,
        "weights_sha256": sha,
        "epoch": 3,
    }
    assert _same(model, load_checkpoint(path, map_location="cpu"))


def test_a_model_of_your_own_saves_with_a_config_and_loads_with_build(tmp_path):
    def build(config):
        return nn.Sequential(nn.Linear(config["inputs"], 1))

    model = build({"inputs": 3})
    with pytest.raises(TypeError, match=r"has no .config dict"):
        save_checkpoint(model, tmp_path / "m")
    path = save_checkpoint(model, tmp_path / "m", config={"inputs": 3})
    with pytest.raises(KeyError, match="'Sequential' is not a registered model class"):
        load_checkpoint(path)
    x = torch.randn(4, 3)
    assert torch.equal(load_checkpoint(path, build=build)(x), model(x))


def test_tied_weights_save_and_load(tmp_path):
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    model[1].weight = model[0].weight  # one tensor under two names: safetensors refuses shared memory
    path = save_checkpoint(model, tmp_path / "m", config={})
    loaded = load_checkpoint(path, build=lambda config: nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3)))
    assert torch.equal(loaded[1].weight, model[0].weight)


def test_non_json_config_or_metadata_is_refused_before_writing(tmp_path):
    with pytest.raises(TypeError):
        save_checkpoint(nn.Linear(1, 1), tmp_path / "m", config={"bad": object()})
    with pytest.raises(ValueError, match=r"the format's own keys \['class'\]"):
        save_checkpoint(_model(), tmp_path / "m", metadata={"class": "os.system"})
    assert list(tmp_path.iterdir()) == []


def test_a_foreign_json_is_refused_with_a_clear_message(tmp_path):
    path = save_checkpoint(_model(), tmp_path / "m")
    (path / META_FILE).write_text(json.dumps({"format": 99, "input_size": 3}))
    with pytest.raises(CheckpointError, match="not a course_lib checkpoint of format 3"):
        load_checkpoint(path)
    (path / META_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path)


def test_changed_or_mismatched_weights_are_refused(tmp_path):
    path = save_checkpoint(_model(), tmp_path / "m")
    data = bytearray((path / WEIGHTS_FILE).read_bytes())
    data[-1] ^= 1  # one bit of one weight
    (path / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"does not match checkpoint.json"):
        load_checkpoint(path)
    other = save_checkpoint(FinancialGRU(input_size=3, hidden_size=4), tmp_path / "other")
    (path / WEIGHTS_FILE).write_bytes((other / WEIGHTS_FILE).read_bytes())  # weights of another save
    with pytest.raises(CheckpointError, match="come from different saves"):
        load_checkpoint(path)


class _Payload:
    """Unpickling this would run code: it creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickled_payload_is_refused_not_executed(tmp_path):
    path = save_checkpoint(_model(), tmp_path / "m")
    marker = tmp_path / "pwned"
    (path / WEIGHTS_FILE).write_bytes(pickle.dumps({"gru.weight_ih_l0": _Payload(str(marker))}))
    meta = json.loads((path / META_FILE).read_text())
    meta["weights_sha256"] = hashlib.sha256((path / WEIGHTS_FILE).read_bytes()).hexdigest()
    (path / META_FILE).write_text(json.dumps(meta))  # even with a valid hash (anyone can recompute it)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_checkpoint(path)
    assert not marker.exists()


def _format_2(model, path):
    """A checkpoint as course_lib wrote it before format 3: torch.save file + JSON side file."""
    torch.save(model.state_dict(), path)
    meta = {"format": 2, "class": type(model).__name__, "config": model.config}
    path.with_name(path.name + ".json").write_text(json.dumps(meta))
    return path


def test_an_old_checkpoint_is_refused_by_name_and_converts(tmp_path):
    model = _model()
    old = _format_2(model, tmp_path / "m.pt")
    with pytest.raises(
        CheckpointError, match=r"m\.pt with m\.pt\.json is a course_lib checkpoint of format 2.*"
    ):
        load_checkpoint(old)
    with pytest.raises(CheckpointError, match=r"convert_checkpoint\(old, new_dir\)"):
        load_checkpoint(old)
    assert _same(model, load_checkpoint(convert_checkpoint(old, tmp_path / "new")))


def test_the_trainers_old_bare_state_dict_converts_with_its_model(tmp_path):
    model = _model()
    torch.save(model.state_dict(), tmp_path / "best_model.pth")
    with pytest.raises(
        CheckpointError, match=r"not a checkpoint directory.*bare torch.save state dict.*model=\.\.\."
    ):
        load_checkpoint(tmp_path / "best_model.pth")
    with pytest.raises(ValueError, match="names no model class"):
        convert_checkpoint(tmp_path / "best_model.pth", tmp_path / "new")
    fresh = FinancialGRU(input_size=3, hidden_size=4)
    new = convert_checkpoint(tmp_path / "best_model.pth", tmp_path / "new", model=fresh)
    assert _same(model, load_checkpoint(new))


def test_an_old_ddp_directory_is_refused_and_converts_with_its_history(tmp_path):
    from safetensors.torch import save_file

    model, old = _model(), tmp_path / "ddp"
    old.mkdir()
    save_file(model.state_dict(), old / WEIGHTS_FILE)
    meta = {"class": "FinancialGRU", "config": model.config, "world_size": 2, "history": [{"epoch": 1}]}
    (old / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="no 'format' key: DDP's checkpoint before format 3"):
        load_checkpoint(old)
    new = convert_checkpoint(old, tmp_path / "new")
    assert _same(model, load_checkpoint(new))
    assert json.loads((new / META_FILE).read_text())["history"] == [{"epoch": 1}]


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_converting_a_pickled_payload_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    with open(tmp_path / "m.pt", "wb") as f:
        pickle.dump({"gru.weight_ih_l0": _Payload(str(marker))}, f)
    with pytest.raises(pickle.UnpicklingError):
        convert_checkpoint(tmp_path / "m.pt", tmp_path / "new", model=_model())
    assert not marker.exists()


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="need both"):
        load_checkpoint(tmp_path / "none")
