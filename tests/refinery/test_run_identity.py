"""A resume checkpoint is picked up only by the very run that wrote it: a crashed run rerun with
another architecture, loss or teacher starts afresh; an unchanged rerun resumes."""
import pytest
import torch

from refinery.config import TrainConfig
from refinery.models import build_model, make_arch
from refinery.train import Hooks, fit

from .test_train import ARCH, toy_data

CFG = TrainConfig(epochs=4, batch_size=16, lr=1e-2)


class Crash(Exception):
    pass


def crash_after_two(record):
    if record["epoch"] == 2:
        raise Crash


def crashed_run(path, arch=ARCH, identity=None, init_seed=0):
    torch.manual_seed(init_seed)
    with pytest.raises(Crash):
        fit(build_model(arch), toy_data(), CFG, seed=3, arch=arch, identity=identity, checkpoint=path,
            hooks=Hooks(on_epoch=crash_after_two))


def rerun(path, arch=ARCH, identity=None, init_seed=0) -> int:
    torch.manual_seed(init_seed)
    return fit(build_model(arch), toy_data(), CFG, seed=3, arch=arch, identity=identity,
               checkpoint=path).resumed_from


def test_unchanged_rerun_resumes(tmp_path):
    crashed_run(tmp_path / "state.zarr", identity={"loss": "kd"})
    assert rerun(tmp_path / "state.zarr", identity={"loss": "kd"}) == 2


def test_changed_architecture_starts_afresh(tmp_path):
    """Dropout changes no parameter shape, so only the architecture record tells the runs apart."""
    crashed_run(tmp_path / "state.zarr")
    other = make_arch({**ARCH["backbone"], "dropout": 0.5}, tuple(ARCH["in_shape"]), ARCH["num_classes"])
    assert rerun(tmp_path / "state.zarr", arch=other) == 0


def test_changed_loss_starts_afresh(tmp_path):
    crashed_run(tmp_path / "state.zarr", identity={"params": {"distill": {"loss": "kd"}}})
    assert rerun(tmp_path / "state.zarr", identity={"params": {"distill": {"loss": "dkd"}}}) == 0


def test_changed_teacher_starts_afresh(tmp_path):
    """An upcycled model starts from its teacher's weights: other starting weights, other run."""
    crashed_run(tmp_path / "state.zarr", init_seed=0)
    assert rerun(tmp_path / "state.zarr", init_seed=1) == 0


def test_changed_inputs_start_afresh(tmp_path):
    """A distilled student's initial weights do not show its teacher: the stage's input hashes do."""
    crashed_run(tmp_path / "state.zarr", identity={"inputs": {"data/teacher/model.zarr": "aaa"}})
    assert rerun(tmp_path / "state.zarr", identity={"inputs": {"data/teacher/model.zarr": "bbb"}}) == 0


def test_a_write_error_does_not_hide_the_training_error(tmp_path, monkeypatch):
    """When training fails while a checkpoint write also fails, the training error is raised."""
    import refinery.train as T

    real, calls = T._snapshot_state, []

    def failing_second_write(*args, **kwargs):
        calls.append(1)
        write = real(*args, **kwargs)
        if len(calls) < 2:
            return write

        def fail():
            raise OSError("disk full")
        return fail

    monkeypatch.setattr(T, "_snapshot_state", failing_second_write)
    crashed_run(tmp_path / "state.zarr")  # raises Crash (the training error), not OSError
