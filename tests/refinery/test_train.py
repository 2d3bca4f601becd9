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
    def poisoned(model, x, y, ids, at=None):
        out = model(x).sum()
        return out * float("nan") if int(ids[0]) >= 0 else out

    with pytest.raises(TrainingDiverged, match=r"epoch 1, step 1"):
        trained(hooks=Hooks(loss=poisoned))


def test_loss_hook_sees_only_training_ids():
    seen = []

    def recording(model, x, y, ids, at=None):
        seen.extend(ids.tolist())
        return torch.nn.functional.cross_entropy(model(x), y)

    data = toy_data().subset(torch.arange(96) % 2 == 0)
    fit(build_model(ARCH), data, TrainConfig(epochs=1, batch_size=16), seed=0, hooks=Hooks(loss=recording))
    assert sorted(seen) == list(range(0, 96, 2))


@pytest.mark.parametrize("max_norm", [0.05, 1e6])  # clipping on every step; never clipping
def test_clip_through_the_fused_step_equals_torchs_clip_grad_norm(max_norm):
    from refinery.train import clip_grad_norm

    torch.manual_seed(0)
    ours, theirs = torch.nn.Linear(8, 4), torch.nn.Linear(8, 4)
    theirs.load_state_dict(ours.state_dict())
    opt_ours = torch.optim.AdamW(ours.parameters(), lr=0.1, fused=True)
    opt_theirs = torch.optim.AdamW(theirs.parameters(), lr=0.1, fused=True)
    for _ in range(3):
        x = torch.randn(16, 8) * 10
        for model, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
        assert torch.nn.utils.get_total_norm([p.grad for p in ours.parameters()]) > 0.05
        clip_grad_norm(opt_ours, list(ours.parameters()), max_norm)
        torch.nn.utils.clip_grad_norm_(theirs.parameters(), max_norm)
        opt_ours.step()
        opt_theirs.step()
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6)  # the kernel leaves clipped grads
