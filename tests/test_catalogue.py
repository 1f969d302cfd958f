"""The model catalogue (course_lib.models.registry): lookups, sizes, requirements, and the capstone's
models built from it. The model contract over every entry is in tests/test_contract.py."""

import pytest
import torch

import course_lib.capstone as cap
from course_lib.models.ops import fused_build
from course_lib.models.registry import LEADERBOARD, REGISTRY, Family, ModelSpec, build, spec


def test_the_capstone_reads_the_catalogue():
    """No second name -> class table: the leaderboard's models are the catalogue's, in its order."""
    assert cap.MODELS is LEADERBOARD
    assert list(LEADERBOARD) == [e.leaderboard for e in REGISTRY if e.leaderboard]
    ours, theirs = build("TCN", "small", seed=3, input_size=3), cap.build_model("TCN", "small", seed=3)
    assert all(
        torch.equal(a, b)
        for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True)
    )


def test_every_name_finds_one_entry():
    ids = [entry.id for entry in REGISTRY]
    assert len(set(ids)) == len(ids), "two registry entries share an id: give one a name="
    for name, entry in LEADERBOARD.items():
        assert spec(name) is entry, f"the leaderboard name {name!r} is also the id of another entry"
    with pytest.raises(KeyError, match=r"no registry entry 'Nope'.*leaderboard names"):
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
    with pytest.raises(TypeError, match=r"family must be a registry.Family"):
        ModelSpec(torch.nn.Linear, "recurrent", "01", {"test": {}})
    with pytest.raises(ValueError, match="a leaderboard model has 'small' and 'full' too"):
        ModelSpec(torch.nn.Linear, Family.RECURRENT, "01", {"test": {}}, leaderboard="Linear")
    with pytest.raises(ValueError, match=r"sizes must be \['test'\]"):
        ModelSpec(torch.nn.Linear, Family.RECURRENT, "01", {"test": {}, "huge": {}})


def test_requirements_give_a_reason_or_none(monkeypatch):
    fused = spec("FinancialMamba-fused")
    assert [entry.id for entry in REGISTRY if entry.requires] == ["FinancialMamba-fused"]

    def no_compiler(dtype):
        raise RuntimeError("the fused selective scan needs a C compiler: none found")

    monkeypatch.setattr(fused_build, "load_kernel", no_compiler)
    assert "needs a C compiler" in fused.requires()
    monkeypatch.setattr(fused_build, "load_kernel", lambda dtype: None)
    assert fused.requires() is None
