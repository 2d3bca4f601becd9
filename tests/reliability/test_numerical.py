"""A NaN or inf loss stops training with the epoch and step, and nothing is saved from it."""
import pytest
import torch

from refinery.config import TrainConfig
from refinery.data.dataset import Arrays
from refinery.models import build_model, make_arch
from refinery.train import Hooks, TrainingDiverged, cross_entropy_loss, fit

ARCH = make_arch({"arch": "mlp", "dim": 8, "depth": 1, "mlp_ratio": 2.0}, (1, 4), 2)


def data():
    x = torch.randn(64, 1, 4, generator=torch.Generator().manual_seed(0))
    return Arrays(x, (x[:, 0, 0] > 0).long(), torch.arange(64))


@pytest.mark.parametrize("poison", [float("nan"), float("inf")])
def test_non_finite_loss_names_epoch_and_step(tmp_path, poison):
    ce = cross_entropy_loss(0.0)
    calls = {"n": 0}

    def loss(model, x, y, ids, at=None):
        calls["n"] += 1
        value = ce(model, x, y, ids)
        return value * poison if calls["n"] == 7 else value  # epoch 2 (4 steps per epoch), step 3

    with pytest.raises(TrainingDiverged, match=r"epoch 2, step 3") as info:
        fit(build_model(ARCH), data(), TrainConfig(epochs=3, batch_size=16), seed=0, hooks=Hooks(loss=loss),
            checkpoint=tmp_path / "state.zarr", arch=ARCH)
    assert "\n" not in str(info.value)
    # The last saved state is epoch 1's: the diverged epoch was never written.
    from refinery.store import load_checkpoint

    _, attrs = load_checkpoint(tmp_path / "state.zarr")
    assert attrs["step"] == 1


def test_stage_tasks_do_not_retry_deterministic_failures():
    from tasks.entry import stage_task
    from tasks.stages import STAGE_NAMES

    assert all(stage_task(name).retries == 0 for name in STAGE_NAMES)


def test_cli_reports_divergence_in_one_line():
    from flows.cli import USER_ERRORS

    assert TrainingDiverged in USER_ERRORS
