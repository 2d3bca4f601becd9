import numpy as np
import torch

from refinery.config import SSDConfig, UnlearnConfig
from refinery.data.dataset import Arrays
from refinery.unlearn import importance, run_method
from refinery.unlearn.ssd import ssd

from .helpers import assert_same_state, class_forget_ids, random_forget_ids, state_copy


def _selection(ctx):
    """The weights SSD must select, recomputed from its definition."""
    bs = ctx.train_cfg.batch_size
    i_d, i_f = importance(ctx.model, ctx.full(), bs), importance(ctx.model, ctx.forget, bs)
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
    ctx = make_ctx(class_forget_ids(digits[0]))
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
    """The caller computes I_D once over the training split (id order) and passes it in."""
    ctx = make_ctx(random_forget_ids(digits[0]))
    cached = importance(ctx.model, digits[0], ctx.train_cfg.batch_size)
    plain = state_copy(ssd(ctx))
    assert_same_state(plain, state_copy(ssd(ctx, full_importance=cached)))
    assert_same_state(plain, state_copy(run_method("ssd", ctx, full_importance=cached)))


def test_dampening_factor_matches_the_equation(make_ctx, digits):
    ctx = make_ctx(random_forget_ids(digits[0]))
    bs, lam = ctx.train_cfg.batch_size, ctx.cfg.ssd.lam
    i_d, i_f = importance(ctx.model, ctx.full(), bs), importance(ctx.model, ctx.forget, bs)
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
