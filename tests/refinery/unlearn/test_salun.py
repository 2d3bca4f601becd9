import copy

import numpy as np
import torch

from refinery.config import RandomLabelConfig, SalUnConfig, UnlearnConfig
from refinery.train import Hooks, accuracy, cross_entropy_loss, fit
from refinery.unlearn import random_label as rl
from refinery.unlearn import run_method
from refinery.unlearn.salun import saliency_mask

from .helpers import assert_same_state, class_forget_ids, random_forget_ids, state_copy


def test_mask_keeps_int_sparsity_n_weights_globally_and_changes_nothing(make_ctx, digits):
    ctx = make_ctx(class_forget_ids(digits[0]))
    before = state_copy(ctx.model)
    for sparsity in (0.5, 0.3333):
        masks = saliency_mask(ctx.model, ctx.forget, 256, sparsity)
        total = sum(m.numel() for m in masks.values())
        assert sum(int(m.sum()) for m in masks.values()) == int(sparsity * total)
    # global ranking: tensors keep different shares (a per-tensor rule would keep 50% of each)
    shares = {n: float(m.float().mean()) for n, m in masks.items() if m.numel() > 16}
    assert max(shares.values()) - min(shares.values()) > 0.2
    assert_same_state(before, state_copy(ctx.model))  # computing the mask changes nothing


def test_mask_depends_on_the_batch_and_salun_uses_256(make_ctx, digits):
    """The mask sums batch-MEAN gradients, so the batch matters; SalUn's default is the
    reference's 256, and only weights of THAT mask may change."""
    assert SalUnConfig().mask_batch_size == 256
    ctx = make_ctx(random_forget_ids(digits[0], n=300), cfg=UnlearnConfig(salun=SalUnConfig(epochs=1)))
    m256 = saliency_mask(ctx.model, ctx.forget, 256, 0.5)
    m64 = saliency_mask(ctx.model, ctx.forget, 64, 0.5)
    assert sum(int((m256[n] != m64[n]).sum()) for n in m256) > 0  # the test can tell them apart
    out = dict(run_method("salun", ctx).named_parameters())
    for name, p in ctx.model.named_parameters():
        moved = out[name] != p
        assert not bool((moved & ~m256[name]).any()), f"{name}: a weight outside the batch-256 mask changed"


def test_salun_changes_only_masked_weights_even_with_weight_decay(make_ctx, digits):
    """SGD's weight decay moves every weight; SalUn must keep the masked-out ones bit-identical."""
    cfg = UnlearnConfig(salun=SalUnConfig(epochs=2, lr=1e-2, weight_decay=0.1))
    ctx = make_ctx(class_forget_ids(digits[0]), cfg=cfg)
    before = state_copy(ctx.model)
    masks = saliency_mask(ctx.model, ctx.forget, cfg.salun.mask_batch_size, cfg.salun.sparsity)
    out = dict(run_method("salun", ctx).named_parameters())
    assert_same_state(before, state_copy(ctx.model))  # the original is untouched
    changed = 0
    for name, p in ctx.model.named_parameters():
        m = masks[name]
        assert torch.equal(out[name][~m], p[~m]), f"{name}: a weight outside the mask changed"
        changed += int((out[name][m] != p[m]).sum())
    assert changed > 0.5 * sum(int(m.sum()) for m in masks.values())


def test_masked_out_weights_have_zero_momentum(make_ctx, digits):
    ctx = make_ctx(class_forget_ids(digits[0]))
    model = ctx.model
    masks = saliency_mask(model, ctx.forget, 256, 0.5)
    sgd = rl.CarriedSGD(model, 0.9, masks)
    recipe = rl.rl_recipe(ctx, RandomLabelConfig(weight_decay=0.1))
    fit(model, ctx.retain, recipe, seed=0, hooks=sgd.hooks(cross_entropy_loss(0.0)), params=list(sgd.params.values()))
    assert sgd.buffers
    for name, buf in sgd.buffers.items():
        assert torch.count_nonzero(buf[~masks[name]]) == 0, f"{name}: momentum of a masked-out weight"
        assert torch.count_nonzero(buf[masks[name]]) > 0


def test_momentum_is_carried_from_one_fit_to_the_next(make_ctx, digits):
    """Two one-epoch fits with the carried momentum = one two-epoch SGD run (full-batch, so the
    order of samples cannot differ)."""
    ctx = make_ctx(class_forget_ids(digits[0]))
    data = ctx.retain
    cfg = RandomLabelConfig(batch_size=len(data), lr=0.05)
    recipe = rl.rl_recipe(ctx, cfg)
    one = ctx.model
    two = copy.deepcopy(one)
    fit(one, data, recipe.model_copy(update={"epochs": 2}), seed=0, hooks=Hooks(loss=cross_entropy_loss(0.0)))
    sgd = rl.CarriedSGD(two, cfg.momentum)
    for _ in range(2):
        sgd.start_pass()
        fit(two, data, recipe, seed=0, hooks=sgd.hooks(cross_entropy_loss(0.0)), params=list(sgd.params.values()))
    for (n, a), (_, b) in zip(one.named_parameters(), two.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=n)


def test_rl_runs_a_forget_pass_then_a_retain_pass_with_the_reference_recipe(make_ctx, digits, monkeypatch):
    calls = []
    real_fit = rl.fit

    def spy(model, data, cfg, **kw):
        calls.append((set(data.ids.tolist()), cfg))
        return real_fit(model, data, cfg, **kw)

    monkeypatch.setattr(rl, "fit", spy)
    ctx = make_ctx(class_forget_ids(digits[0]), cfg=UnlearnConfig(random_label=RandomLabelConfig(epochs=2)))
    run_method("random_label", ctx)
    forget, retain = set(ctx.forget.ids.tolist()), set(ctx.retain.ids.tolist())
    assert [ids for ids, _ in calls] == [forget, retain, forget, retain]
    cfg = calls[0][1]
    assert (cfg.optimizer, cfg.momentum, cfg.weight_decay, cfg.lr, cfg.batch_size) == ("sgd", 0.9, 5e-4, 0.013, 256)
    assert (cfg.label_smoothing, cfg.grad_clip, cfg.schedule, cfg.epochs) == (0.0, 0.0, "constant", 1)


def test_forget_pass_labels_are_redrawn_per_batch_from_all_classes(monkeypatch):
    seen = []
    real = rl.F.cross_entropy
    monkeypatch.setattr(rl.F, "cross_entropy", lambda out, target: (seen.append(target.clone()), real(out, target))[1])
    loss = rl.random_target_loss(10, rl.label_generator(0, 0))
    model, y = torch.nn.Linear(1, 10), torch.full((200,), 3)
    loss(model, torch.zeros(200, 1), y, None)
    loss(model, torch.zeros(200, 1), y, None)
    assert not torch.equal(seen[0], seen[1])  # redrawn per batch
    assert set(torch.cat(seen).tolist()) == set(range(10))  # all C classes, the true one included


def test_mixed_order_labels_are_seeded_per_epoch(make_ctx, digits):
    ctx = make_ctx(class_forget_ids(digits[0]))
    a, b, c = rl.relabelled_data(ctx, 0), rl.relabelled_data(ctx, 0), rl.relabelled_data(ctx, 1)
    assert torch.equal(a.y, b.y) and not torch.equal(a.y, c.y)
    forget = torch.from_numpy(np.isin(a.ids.numpy(), ctx.forget.ids.numpy()))
    assert int(forget.sum()) == len(ctx.forget)
    assert len(set(a.y[forget].tolist())) > 3


def test_salun_forgets_a_class(make_ctx, digits):
    ctx = make_ctx(class_forget_ids(digits[0]), cfg=UnlearnConfig(salun=SalUnConfig(epochs=5, lr=0.05)))
    out = run_method("salun", ctx)
    assert accuracy(out, ctx.forget) < 0.3
    assert accuracy(out, ctx.retain) > 0.8


def test_frozen_parameters_are_never_in_the_mask(make_ctx, digits):
    ctx = make_ctx(class_forget_ids(digits[0]), cfg=UnlearnConfig(salun=SalUnConfig(epochs=1)))
    ctx.model.embed.requires_grad_(False)
    masks = saliency_mask(ctx.model, ctx.forget, 256, 0.5)
    assert not masks["embed.weight"].any()
    out = dict(run_method("salun", ctx).named_parameters())
    assert torch.equal(out["embed.weight"], ctx.model.embed.weight)
