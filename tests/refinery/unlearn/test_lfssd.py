import numpy as np
import torch

from refinery.config import LFSSDConfig, UnlearnConfig
from refinery.data.dataset import Arrays
from refinery.unlearn import run_method
from refinery.unlearn.lfssd import lf_importance
from refinery.unlearn.ssd import importance_inputs

from .helpers import assert_same_state, class_forget_ids, state_copy


def test_lfssd_leaves_unselected_weights_bit_identical(make_ctx, digits):
    # alpha below |D| / |D_f| (about 10 for one class): at 10 nothing is selectable
    ctx = make_ctx(class_forget_ids(digits[0]), cfg=UnlearnConfig(lfssd=LFSSDConfig(alpha=3.0)))
    full, forget, _, bs = importance_inputs(ctx, "lfssd")
    cfg = ctx.cfg.lfssd
    i_d, i_f = lf_importance(ctx.model, full, bs), lf_importance(ctx.model, forget, bs)
    out = dict(run_method("lfssd", ctx).named_parameters())
    changed = 0
    for name, p in ctx.model.named_parameters():
        sel = i_f[name] > cfg.alpha * i_d[name]
        assert torch.equal(out[name][~sel], p[~sel]), f"{name}: an unselected weight changed"
        beta = torch.clamp(cfg.lam * i_d[name][sel] / i_f[name][sel], max=1.0)
        torch.testing.assert_close(out[name][sel], p[sel] * beta)
        changed += int((out[name][sel] != p[sel]).sum())
    assert changed > 0


def test_lfssd_importance_ignores_labels_and_is_mean_abs_gradient(trained, digits):
    data = Arrays(digits[0].x[:8], digits[0].y[:8], digits[0].ids[:8])
    shuffled = Arrays(data.x, torch.roll(data.y, 3), data.ids)
    a, b = lf_importance(trained, data, 4), lf_importance(trained, shuffled, 4)
    expected = {n: torch.zeros_like(p) for n, p in trained.named_parameters()}
    for s in (0, 4):
        trained.zero_grad()
        trained(data.x[s:s + 4]).pow(2).sum(1).mean().backward()
        for n, p in trained.named_parameters():
            expected[n] += p.grad.abs()
    for n in a:
        assert torch.equal(a[n], b[n])
        torch.testing.assert_close(a[n], expected[n] / 2)


def test_lfssd_empty_forget_set_changes_nothing(make_ctx):
    ctx = make_ctx(np.array([], dtype=np.int64))
    assert_same_state(state_copy(ctx.model), state_copy(run_method("lfssd", ctx)))
