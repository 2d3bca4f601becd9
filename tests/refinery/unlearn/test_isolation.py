"""A method's result does not depend on which methods ran before it: each gets a fresh copy of
the model's loss, including the parts a distillation loss trains with (Dual-Head's head)."""
from __future__ import annotations

from refinery.config import DistillConfig, UnlearnConfig
from refinery.distill import make_loss
from refinery.unlearn import run_method

from ..distill.helpers import table
from .helpers import assert_same_state, random_forget_ids, state_copy


def test_finetune_is_the_same_after_retrain(make_ctx, digits):
    lookup = table(n=len(digits[0]) + len(digits[1]), c=10)
    cfg = UnlearnConfig(finetune={"epochs": 1, "lr": 1e-2})
    ctx = make_ctx(random_forget_ids(digits[0]), cfg=cfg,
                   model_loss=lambda: make_loss(DistillConfig(loss="dual_head"), lookup))
    alone = state_copy(run_method("finetune", ctx))
    run_method("retrain", ctx)  # trains a Dual-Head auxiliary head of its own
    after = state_copy(run_method("finetune", ctx))
    assert_same_state(alone, after)
    assert ctx.loss() is not ctx.loss()
