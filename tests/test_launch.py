"""The DDP launcher's judgement of a run (course_lib.production.distributed.launch): by its final checkpoint,
not by torchrun's exit code or messages. torchrun is replaced here by a fake that writes what a run would
have written; the real two-rank run is tested in tests/test_pipeline.py."""

import numpy as np
import pytest

import course_lib.production.distributed as distributed
from course_lib.models import TemporalConvNet
from course_lib.models.checkpoint import save_checkpoint

TCN_CONFIG = {"input_size": 4, "num_channels": [8, 8], "kernel_size": 3, "dropout": 0.0, "output_size": 2}
TEARDOWN = "terminate called without an active exception"


def _flag(command, name):
    return command[command.index(name) + 1]


@pytest.fixture
def fake_torchrun(monkeypatch):
    """Replace torchrun by ``runs``: one (epochs written, exit code, stderr) per call; records the calls."""
    calls = []

    def install(*runs):
        calls.clear()

        def fake(command, env, timeout):
            epochs_written, returncode, stderr = runs[len(calls)]
            calls.append(command)
            if epochs_written:
                history = [{"epoch": e + 1, "train_loss": 1.0} for e in range(epochs_written)]
                meta = {"world_size": 2, "history": history, "run_id": _flag(command, "--run-id")}
                save_checkpoint(TemporalConvNet(**TCN_CONFIG), _flag(command, "--out"), metadata=meta)
            return returncode, stderr

        monkeypatch.setattr(distributed, "_run_torchrun", fake)
        return calls

    return install


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", X=rng.normal(size=(8, 20, 4)), y=rng.normal(size=(8, 2)))
    return tmp_path / "data.npz"


def _launch(data, out):
    return distributed.launch(data, "TemporalConvNet", TCN_CONFIG, out, epochs=2)


@pytest.mark.parametrize("stderr", [TEARDOWN, "Fatal Python error: Segmentation fault"])
def test_a_failure_after_the_complete_final_checkpoint_is_not_rerun(fake_torchrun, data, tmp_path, stderr):
    calls = fake_torchrun((2, -6, stderr))
    with pytest.warns(UserWarning, match=r"exited with code -6 after writing the complete final checkpoint"):
        meta = _launch(data, tmp_path / "out")
    assert len(calls) == 1 and len(meta["history"]) == 2


def test_an_incomplete_final_checkpoint_is_rerun_whatever_the_message(fake_torchrun, data, tmp_path):
    calls = fake_torchrun((1, 1, "RuntimeError: Connection reset by peer"), (2, 0, ""))
    with pytest.warns(UserWarning, match=r"incomplete \(.* holds 1 of 2 epochs\); running it once more"):
        meta = _launch(data, tmp_path / "out")
    assert len(calls) == 2 and len(meta["history"]) == 2


def test_a_checkpoint_left_by_another_run_does_not_count(fake_torchrun, data, tmp_path):
    fake_torchrun((2, 0, ""))
    _launch(data, tmp_path / "out")  # an earlier, complete run into the same directory
    calls = fake_torchrun((0, 1, TEARDOWN), (0, 1, TEARDOWN))
    with (
        pytest.warns(UserWarning, match="running it once more"),
        pytest.raises(RuntimeError, match="written by another run"),
    ):
        _launch(data, tmp_path / "out")
    assert len(calls) == 2


def test_an_unknown_option_fails_before_any_process(fake_torchrun, data, tmp_path):
    calls = fake_torchrun()
    with pytest.raises(ValueError, match=r"not flags of course_lib\.production\.distributed"):
        distributed.launch(data, "TemporalConvNet", TCN_CONFIG, tmp_path / "out", learning_rate=0.1)
    assert calls == []
