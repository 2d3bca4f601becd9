import numpy as np
import torch

from refinery.config import SSDConfig, UnlearnConfig
from refinery.data.dataset import Arrays
from refinery.unlearn import importance, run_method
from refinery.unlearn.selection import with_setting
from refinery.unlearn.ssd import (full_importance, gradient_importance, importance_inputs, per_sample_importance,
                                  reference_order, ssd)

from .helpers import assert_same_state, class_forget_ids, random_forget_ids, state_copy


def _selection(ctx):
    """The weights SSD must select, recomputed from its definition."""
    full, forget, _, bs = importance_inputs(ctx)
    i_d, i_f = importance(ctx.model, full, bs), importance(ctx.model, forget, bs)
    return {k: i_f[k] > ctx.cfg.ssd.alpha * i_d[k] for k in i_d}


def _check_only_selected_changed(ctx, out):
    selected = _selection(ctx)
    assert sum(int(s.sum()) for s in selected.values()) > 0, "the request selects nothing: test is vacuous"
    changed = 0
    orig = dict(ctx.model.named_parameters())
    for name, p in out.named_parameters():
        sel = selected[name]
        assert torch.equal(p[~sel], orig[name][~sel]), f"{name}: an unselected weight changed"
        changed += int((p[sel] != orig[name][sel]).sum())
        # dampening only shrinks: |theta'| <= |theta|, same sign (beta in [0, 1])
        assert torch.all(p[sel].abs() <= orig[name][sel].abs())
    assert changed > 0, "no weight changed for a non-empty request on a trained model"


def test_unselected_weights_are_bit_identical_random_forgetting(make_ctx, digits):
    ctx = make_ctx(random_forget_ids(digits[0]))
    _check_only_selected_changed(ctx, run_method("ssd", ctx))


def test_unselected_weights_are_bit_identical_class_forgetting(make_ctx, digits):
    # alpha below |D| / |D_f| (about 10 for one digit class): at 10 nothing is selectable
    ctx = make_ctx(class_forget_ids(digits[0]), cfg=UnlearnConfig(ssd=SSDConfig(alpha=3.0)))
    _check_only_selected_changed(ctx, run_method("ssd", ctx))


def test_original_model_is_untouched(make_ctx, digits):
    ctx = make_ctx(class_forget_ids(digits[0]))
    before = state_copy(ctx.model)
    flags = [p.requires_grad for p in ctx.model.parameters()]
    ctx.model.train()
    out = run_method("ssd", ctx)
    assert out is not ctx.model
    assert_same_state(before, state_copy(ctx.model))
    assert all(p.grad is None for p in ctx.model.parameters())
    assert flags == [p.requires_grad for p in ctx.model.parameters()]
    assert ctx.model.training  # mode restored too


def test_empty_forget_set_changes_nothing(make_ctx, digits):
    ctx = make_ctx(np.array([], dtype=np.int64))
    assert len(ctx.forget) == 0
    out = run_method("ssd", ctx)
    assert_same_state(state_copy(ctx.model), state_copy(out))


def test_empty_data_has_zero_importance(trained, digits):
    empty = digits[0].only(np.array([], dtype=np.int64))
    imp = importance(trained, empty, 64)
    assert all(torch.count_nonzero(v) == 0 for v in imp.values())


def test_huge_alpha_selects_nothing(make_ctx, digits):
    ctx = make_ctx(random_forget_ids(digits[0]), cfg=UnlearnConfig(ssd=SSDConfig(alpha=1e30)))
    assert_same_state(state_copy(ctx.model), state_copy(run_method("ssd", ctx)))


def test_cached_full_importance_gives_the_same_model(make_ctx, digits):
    """The caller computes I_D (`full_importance`) and passes it in."""
    ctx = make_ctx(random_forget_ids(digits[0]))
    cached = full_importance(ctx)
    plain = state_copy(ssd(ctx))
    assert_same_state(plain, state_copy(ssd(ctx, full_importance=cached)))
    assert_same_state(plain, state_copy(run_method("ssd", ctx, full_importance=cached)))


def test_dampening_factor_matches_the_equation(make_ctx, digits):
    ctx = make_ctx(random_forget_ids(digits[0]))
    full, forget, _, bs = importance_inputs(ctx)
    lam = ctx.cfg.ssd.lam
    i_d, i_f = importance(ctx.model, full, bs), importance(ctx.model, forget, bs)
    out = dict(run_method("ssd", ctx).named_parameters())
    for name, p in ctx.model.named_parameters():
        sel = i_f[name] > ctx.cfg.ssd.alpha * i_d[name]
        beta = torch.clamp(lam * i_d[name][sel] / i_f[name][sel], max=1.0)
        torch.testing.assert_close(out[name][sel], p[sel] * beta)


def test_importance_is_mean_of_squared_batch_gradients(trained, digits):
    data = Arrays(digits[0].x[:10], digits[0].y[:10], digits[0].ids[:10])
    imp = importance(trained, data, batch_size=4)  # batches of 4, 4, 2
    expected = {n: torch.zeros_like(p) for n, p in trained.named_parameters()}
    for s in (0, 4, 8):
        trained.zero_grad()
        torch.nn.functional.cross_entropy(trained(data.x[s:s + 4]), data.y[s:s + 4]).backward()
        for n, p in trained.named_parameters():
            expected[n] += p.grad ** 2
    for n in imp:
        torch.testing.assert_close(imp[n], expected[n] / 3)


def test_reference_order_is_retain_then_forget_grouped_by_class(make_ctx, digits):
    ctx = make_ctx(class_forget_ids(digits[0]))
    full, forget = reference_order(ctx.retain, ctx.forget)
    n_r = len(ctx.retain)
    assert torch.equal(full.ids[n_r:], forget.ids) and set(forget.ids.tolist()) == set(ctx.forget.ids.tolist())
    assert set(full.ids[:n_r].tolist()) == set(ctx.retain.ids.tolist())
    y = full.y[:n_r]
    assert torch.all(y[1:] >= y[:-1]), "D_r must come class by class"
    # SSD reads exactly that order: its result is the dampening of these importances
    alpha = 3.0
    ctx = make_ctx(class_forget_ids(digits[0]), cfg=UnlearnConfig(ssd=SSDConfig(alpha=alpha)))
    bs = ctx.train_cfg.batch_size
    i_d, i_f = importance(ctx.model, full, bs), importance(ctx.model, forget, bs)
    out = dict(run_method("ssd", ctx).named_parameters())
    mixed = importance(ctx.model, ctx.full(), bs)  # id order: mixed-class batches
    assert sum(int((i_f[k] > alpha * i_d[k]).sum()) for k in i_d) < sum(int((i_f[k] > alpha * mixed[k]).sum())
                                                                          for k in i_d)
    for name, p in ctx.model.named_parameters():
        sel = i_f[name] > alpha * i_d[name]
        assert torch.equal(out[name][~sel], p[~sel])
        torch.testing.assert_close(out[name][sel], p[sel] * torch.clamp(i_d[name][sel] / i_f[name][sel], max=1.0))


def test_random_request_reads_retain_then_forget_in_id_order(make_ctx, digits):
    ctx = make_ctx(random_forget_ids(digits[0]))
    full, forget = reference_order(ctx.retain, ctx.forget)
    n_r = len(ctx.retain)
    assert torch.all(full.ids[1:n_r] > full.ids[:n_r - 1]) and torch.equal(full.ids[n_r:], forget.ids)
    assert torch.all(forget.ids[1:] > forget.ids[:-1])


def test_per_sample_importance_ignores_order_and_batching(trained, digits):
    data = Arrays(digits[0].x[:96], digits[0].y[:96], digits[0].ids[:96])
    perm = torch.randperm(96, generator=torch.Generator().manual_seed(1))
    shuffled = Arrays(data.x[perm], data.y[perm], data.ids[perm])
    a = per_sample_importance(trained, data, chunk=32)
    b = per_sample_importance(trained, shuffled, chunk=7)
    loop = gradient_importance(trained, data, 1, torch.nn.functional.cross_entropy, power=2)  # batches of one
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=1e-4, atol=1e-9)
        torch.testing.assert_close(a[n], loop[n], rtol=1e-4, atol=1e-9)
    # while the reference importance does depend on the order
    assert any(not torch.allclose(importance(trained, data, 32)[n], importance(trained, shuffled, 32)[n]) for n in a)


def test_per_sample_option_is_used_by_ssd(make_ctx, digits):
    ctx = with_setting(make_ctx(random_forget_ids(digits[0])), "ssd", "importance", "per_sample")
    i_d, i_f = per_sample_importance(ctx.model, ctx.full()), per_sample_importance(ctx.model, ctx.forget)
    out = dict(run_method("ssd", ctx).named_parameters())
    selected = 0
    for name, p in ctx.model.named_parameters():
        sel = i_f[name] > ctx.cfg.ssd.alpha * i_d[name]
        selected += int(sel.sum())
        assert torch.equal(out[name][~sel], p[~sel])
        assert torch.all(out[name][sel] != p[sel])
    assert selected > 0


def test_frozen_parameters_get_no_importance_and_are_never_dampened(make_ctx, digits):
    ctx = make_ctx(class_forget_ids(digits[0]), cfg=UnlearnConfig(ssd=SSDConfig(alpha=1.5)))
    ctx.model.embed.requires_grad_(False)
    full, forget, _, bs = importance_inputs(ctx)
    for imp in (importance(ctx.model, full, bs), per_sample_importance(ctx.model, forget)):
        assert torch.count_nonzero(imp["embed.weight"]) == 0
        assert torch.count_nonzero(imp["head.weight"]) > 0
    out = dict(run_method("ssd", ctx).named_parameters())
    assert torch.equal(out["embed.weight"], ctx.model.embed.weight)
    assert torch.equal(out["embed.bias"], ctx.model.embed.bias)
    assert any(not torch.equal(out[n], p) for n, p in ctx.model.named_parameters())
    assert not out["embed.weight"].requires_grad
