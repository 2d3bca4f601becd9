"""The one training loop: seed-exact, resumable bit for bit, and loud about divergence."""
import pytest
import torch

from refinery.config import TrainConfig
from refinery.data.dataset import Arrays
from refinery.models import build_model, make_arch
from refinery.train import Hooks, TrainingDiverged, fit

ARCH = make_arch({"arch": "mlp", "dim": 16, "depth": 1, "mlp_ratio": 2.0, "dropout": 0.1}, (1, 8), 3)


def toy_data(n=96):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 8, generator=g)
    return Arrays(x, (x.sum(dim=(1, 2)) > 0).long() + (x[:, 0, 0] > 1).long(), torch.arange(n))


def trained(epochs=4, **kwargs):
    torch.manual_seed(0)
    model = build_model(ARCH)
    fit(model, toy_data(), TrainConfig(epochs=epochs, batch_size=16, lr=1e-2), seed=3, arch=ARCH, **kwargs)
    return model


def same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_same_seed_same_weights():
    assert same_weights(trained(), trained())


def test_resume_after_interruption_equals_uninterrupted(tmp_path):
    class Crash(Exception):
        pass

    def crash_after_two(record):
        if record["epoch"] == 2:
            raise Crash

    with pytest.raises(Crash):
        trained(checkpoint=tmp_path / "state.zarr", hooks=Hooks(on_epoch=crash_after_two))
    torch.manual_seed(0)
    resumed_model = build_model(ARCH)
    result = fit(resumed_model, toy_data(), TrainConfig(epochs=4, batch_size=16, lr=1e-2), seed=3, arch=ARCH,
                 checkpoint=tmp_path / "state.zarr")
    assert result.resumed_from == 2 and [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert same_weights(resumed_model, trained())


def test_checkpoint_of_another_run_is_not_resumed(tmp_path):
    trained(epochs=2, checkpoint=tmp_path / "state.zarr")
    torch.manual_seed(0)
    model = build_model(ARCH)
    result = fit(model, toy_data(), TrainConfig(epochs=2, batch_size=16, lr=5e-3), seed=3, arch=ARCH,
                 checkpoint=tmp_path / "state.zarr")
    assert result.resumed_from == 0


def test_nan_loss_stops_with_epoch_and_step():
    def poisoned(model, x, y, ids):
        out = model(x).sum()
        return out * float("nan") if int(ids[0]) >= 0 else out

    with pytest.raises(TrainingDiverged, match=r"epoch 1, step 1"):
        trained(hooks=Hooks(loss=poisoned))


def test_loss_hook_sees_only_training_ids():
    seen = []

    def recording(model, x, y, ids):
        seen.extend(ids.tolist())
        return torch.nn.functional.cross_entropy(model(x), y)

    data = toy_data().subset(torch.arange(96) % 2 == 0)
    fit(build_model(ARCH), data, TrainConfig(epochs=1, batch_size=16), seed=0, hooks=Hooks(loss=recording))
    assert sorted(seen) == list(range(0, 96, 2))
