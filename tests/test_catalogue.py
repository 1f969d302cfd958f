"""The model catalogue (course_lib.models.registry): lookups, sizes, requirements, and the capstone's
models built from it. The model contract over every entry is in tests/test_contract.py."""

import pytest
import torch

import course_lib.capstone as cap
from course_lib.models import registry
from course_lib.models.registry import LEADERBOARD, REGISTRY, Family, ModelSpec, build, spec


@pytest.mark.parametrize("name", list(cap.MODELS))
def test_the_catalogue_builds_what_the_capstone_builds(name):
    # (moves to the capstone's tests once capstone.build_model is registry.build)
    ours, theirs = build(name, "small", seed=3, input_size=3), cap.build_model(name, "small", seed=3)
    assert type(ours) is type(theirs) and ours.config == theirs.config
    mine, other = ours.state_dict(), theirs.state_dict()
    assert mine.keys() == other.keys()
    for key, value in mine.items():
        assert torch.equal(value, other[key]), key


def test_the_leaderboard_is_the_capstones_in_its_order():
    assert list(LEADERBOARD) == list(cap.MODELS)
    for name, entry in LEADERBOARD.items():
        assert entry.cls is cap.MODELS[name][1]
        assert {k: entry.sizes[k] for k in ("small", "full")} == cap.MODELS[name][2]


def test_every_name_finds_one_entry():
    ids = [entry.id for entry in REGISTRY]
    assert len(set(ids)) == len(ids), "two registry entries share an id: give one a name="
    for name, entry in LEADERBOARD.items():
        assert spec(name) is entry, f"the leaderboard name {name!r} is also the id of another entry"
    with pytest.raises(KeyError, match="no registry entry 'Nope'.*leaderboard names"):
        spec("Nope")


def test_build_is_seeded_and_checks_its_size():
    a, b = build("GRU", "full", seed=1, input_size=4), build("GRU", "full", seed=1, input_size=4)
    assert a.config["input_size"] == 4 and a.config["output_size"] == 1 and a.config["n_layers"] == 2
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    assert build("FinancialGRU").config == spec("FinancialGRU").sizes["test"] | {"input_size": 3}
    with pytest.raises(KeyError, match="FinancialLSTM-bidirectional has no size 'small'"):
        build("FinancialLSTM-bidirectional", "small", input_size=3)
    with pytest.raises(TypeError, match="give input_size"):
        build("GRU", "small")


def test_an_entry_is_checked_when_written():
    with pytest.raises(TypeError, match="family must be a registry.Family"):
        ModelSpec(torch.nn.Linear, "recurrent", "01", {"test": {}})
    with pytest.raises(ValueError, match="a leaderboard model has 'small' and 'full' too"):
        ModelSpec(torch.nn.Linear, Family.RECURRENT, "01", {"test": {}}, leaderboard="Linear")
    with pytest.raises(ValueError, match=r"sizes must be \['test'\]"):
        ModelSpec(torch.nn.Linear, Family.RECURRENT, "01", {"test": {}, "huge": {}})


def test_requirements_give_a_reason_or_none(monkeypatch):
    fused = spec("FinancialMamba-fused")
    assert [entry.id for entry in REGISTRY if entry.requires] == ["FinancialMamba-fused"]
    monkeypatch.setattr(registry, "fused_scan_available", lambda: False)
    assert "no C compiler" in fused.requires()
    monkeypatch.setattr(registry, "fused_scan_available", lambda: True)
    assert fused.requires() is None
