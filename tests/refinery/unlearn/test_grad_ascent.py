import numpy as np

from refinery.config import GradAscentConfig, UnlearnConfig
from refinery.train import accuracy
from refinery.unlearn import run_method
from refinery.unlearn.selection import select_on_val

from .helpers import class_forget_ids


def test_grad_ascent_trains_only_on_the_forget_set_and_raises_its_loss(make_ctx, digits):
    cfg = UnlearnConfig(grad_ascent=GradAscentConfig(epochs=2, lr=1e-2))
    ctx = make_ctx(class_forget_ids(digits[0]), cfg=cfg)
    out = run_method("grad_ascent", ctx)
    assert accuracy(out, ctx.forget) < accuracy(ctx.model, ctx.forget) - 0.3


def test_selection_uses_val_and_picks_from_the_grid(make_ctx, digits):
    train, test = digits
    val = test.subset(np.arange(len(test)) % 2 == 0)
    ctx = make_ctx(class_forget_ids(train), val=val)
    retrained = run_method("retrain", ctx)
    best, gaps = select_on_val("grad_ascent", "lr", [1e-5, 1e-2], ctx, retrained)
    assert set(gaps) == {1e-5, 1e-2} and best == min(gaps, key=gaps.get)
    assert ctx.cfg.grad_ascent.lr == GradAscentConfig().lr  # the context's config is not modified
