"""RS2 sampling, Multi-Sample Dropout and augmentation: the recipe options of the one loop."""
import math

import torch
import torch.nn.functional as F

from refinery.config import TrainConfig
from refinery.models import build_model, count_params, make_arch
from refinery.recipe import multi_sample_dropout_loss, random_crop_flip
from refinery.train import Hooks, epoch_indices, epoch_seed, fit, lr_factor

torch.set_num_threads(1)
ARCH = make_arch({"arch": "mlp", "dim": 16, "depth": 1, "mlp_ratio": 2.0, "dropout": 0.1}, (1, 8), 3)


def toy_data(n=96):
    from refinery.data.dataset import Arrays
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 8, generator=g)
    return Arrays(x, (x.sum(dim=(1, 2)) > 0).long() + (x[:, 0, 0] > 1).long(), torch.arange(n))


def run(cfg, hooks=None):
    torch.manual_seed(0)
    model = build_model(ARCH)
    result = fit(model, toy_data(), cfg, seed=3, hooks=hooks)
    return model, result


def recorder():
    seen = []

    def loss(model, x, y, ids, at=None):
        seen.append(ids.tolist())
        return F.cross_entropy(model(x), y, label_smoothing=0.1)
    return seen, Hooks(loss=loss)


def plain_loop(cfg: TrainConfig, seed: int = 3):
    """Full-data training written out by hand (what the loop did before RS2): a fresh shuffle per
    epoch, the scheduled LR per step, label-smoothed CE, clipping, torch's own AdamW."""
    torch.manual_seed(0)
    model, data = build_model(ARCH), toy_data()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = math.ceil(len(data) / cfg.batch_size)
    for epoch in range(cfg.epochs):
        model.train()
        torch.manual_seed(epoch_seed(seed, epoch))
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))
        for step in range(steps):
            for group in opt.param_groups:
                group["lr"] = cfg.lr * lr_factor(cfg.schedule, (epoch * steps + step) / (cfg.epochs * steps))
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            loss = F.cross_entropy(model(data.x[idx]), data.y[idx], label_smoothing=cfg.label_smoothing)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
    return model


def test_fraction_one_reproduces_plain_full_data_training():
    for epoch in range(3):  # the shuffle the loop used before RS2 existed
        before = torch.randperm(96, generator=torch.Generator().manual_seed(epoch_seed(3, epoch)))
        assert torch.equal(epoch_indices(96, 1.0, 3, epoch), before)
    cfg = TrainConfig(epochs=3, batch_size=16, lr=1e-2, subset_fraction=1.0)
    rs2, _ = run(cfg)
    plain = plain_loop(cfg)
    # the fused AdamW kernel and torch's per-tensor loop round differently in the last bits
    for name, value in plain.state_dict().items():
        assert torch.allclose(rs2.state_dict()[name], value, atol=1e-5), name


def test_subsets_cover_the_data_without_replacement_and_are_seed_exact():
    epochs = [epoch_indices(96, 0.25, 3, e) for e in range(8)]
    assert all(len(e) == 24 for e in epochs)
    for first in (0, 4):  # each pass of 4 epochs sees every sample exactly once
        assert sorted(torch.cat(epochs[first:first + 4]).tolist()) == list(range(96))
    assert torch.equal(epochs[5], epoch_indices(96, 0.25, 3, 5))
    assert not torch.equal(epochs[0], epoch_indices(96, 0.25, 4, 0))
    uneven = torch.cat([epoch_indices(10, 0.3, 0, e) for e in range(3)])  # 9 of 10, no repeats
    assert len(set(uneven.tolist())) == 9


def test_schedule_spans_the_reduced_steps():
    seen, hooks = recorder()
    _, result = run(TrainConfig(epochs=4, batch_size=16, lr=1e-2, subset_fraction=0.25), hooks)
    assert len(seen) == 4 * 2  # ceil(24 / 16) steps per epoch
    assert sorted(i for batch in seen for i in batch) == list(range(96))
    assert result.history[-1]["lr"] == 1e-2 * lr_factor("onecycle", 7 / 8)  # the last of 8 steps, not of 24


def test_msd_with_one_sample_is_ordinary_dropout_and_adds_no_parameters():
    torch.manual_seed(0)
    model = build_model(ARCH).train()
    data = toy_data(32)
    before = count_params(model)
    torch.manual_seed(7)
    msd = multi_sample_dropout_loss(1, 0.5, 0.1)(model, data.x, data.y, data.ids)
    torch.manual_seed(7)
    plain = F.cross_entropy(model.head(F.dropout(model.features(data.x), 0.5)), data.y, label_smoothing=0.1)
    assert torch.allclose(msd, plain, atol=1e-6) and count_params(model) == before
    model.eval()  # no dropout: every mask is the identity, so M copies give the plain loss
    many = multi_sample_dropout_loss(4, 0.5, 0.1)(model, data.x, data.y, data.ids)
    assert torch.allclose(many, F.cross_entropy(model(data.x), data.y, label_smoothing=0.1), atol=1e-6)


def test_msd_trains_through_the_loop_with_unchanged_state():
    model, result = run(TrainConfig(epochs=2, batch_size=16, msd_samples=4, msd_dropout=0.3))
    assert set(model.state_dict()) == set(build_model(ARCH).state_dict())
    assert result.history[-1]["loss"] > 0


def test_crop_flip_shifts_within_padding_and_is_seeded():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6) + 1
    torch.manual_seed(0)
    a = random_crop_flip(x, 2, True)
    torch.manual_seed(0)
    assert torch.equal(a, random_crop_flip(x, 2, True)) and a.shape == x.shape
    padded = F.pad(x, [2] * 4)
    for i in range(2):  # each output is a window of the padded input, maybe mirrored
        windows = [padded[i, :, r:r + 6, c:c + 6] for r in range(5) for c in range(5)]
        assert any(torch.equal(a[i], w) or torch.equal(a[i], w.flip(-1)) for w in windows)
    signal = torch.randn(4, 1, 10)
    shifted = random_crop_flip(signal, 3, True)
    assert shifted.shape == signal.shape
    assert torch.equal(random_crop_flip(x, 0, False), x)


def test_augmentation_runs_through_the_loop():
    _, result = run(TrainConfig(epochs=1, batch_size=16, augment_crop=2))
    assert result.history[-1]["loss"] > 0
