"""Relearning from the retain set ("From Dormant to Deleted", 2025) on the tiny digits MLP."""
import math

import numpy as np
import pytest

from refinery.config import GradAscentConfig, UnlearnConfig
from refinery.train import accuracy
from refinery.unlearn import run_method
from refinery.unlearn.relearn import relearn_check, relearn_on_retain, relearn_recipe, relearn_subset

from .helpers import IdRecorder, SEED, assert_same_state, class_forget_ids, random_forget_ids, state_copy


def test_relearning_feeds_only_retain_and_leaves_the_model(make_ctx, digits, train_cfg):
    ctx = make_ctx(random_forget_ids(digits[0]))
    recorder = IdRecorder(train_cfg.label_smoothing)
    before = state_copy(ctx.model)
    out = relearn_on_retain(ctx.model, ctx.retain, ctx.forget, train_cfg, SEED, epochs=2, loss=recorder)
    seen = np.array(recorder.seen)
    assert not np.isin(seen, ctx.forget.ids.numpy()).any()
    assert len(seen) == 2 * len(ctx.retain)
    assert out["steps"] == recorder.calls == 2 * math.ceil(len(ctx.retain) / train_cfg.batch_size)
    assert len(out["curve"]) == 3 and out["curve"][0] == pytest.approx(accuracy(ctx.model, ctx.forget))
    assert out["returned"] == pytest.approx(out["forget_acc_after"] - out["forget_acc_before"])
    assert_same_state(before, state_copy(ctx.model))


def test_recipe_and_subset(digits, train_cfg):
    cfg = relearn_recipe(train_cfg, epochs=4, lr=1e-5, weight_decay=0.0)
    assert (cfg.epochs, cfg.lr, cfg.weight_decay, cfg.schedule) == (4, 1e-5, 0.0, "constant")
    assert (cfg.batch_size, cfg.label_smoothing, cfg.optimizer) == (
        train_cfg.batch_size, train_cfg.label_smoothing, train_cfg.optimizer)
    assert relearn_recipe(train_cfg, epochs=1).lr == train_cfg.lr
    a, b = relearn_subset(digits[0], 100, seed=3), relearn_subset(digits[0], 100, seed=3)
    assert len(a) == 100 and a.ids.tolist() == b.ids.tolist() == sorted(a.ids.tolist())
    assert relearn_subset(digits[0], None, seed=3) is digits[0]


def test_retrain_cannot_relearn_a_forgotten_class_from_retain(make_ctx, digits, train_cfg):
    """D_r holds no sample of the class, so nothing can bring it back to a model that never saw it."""
    ctx = make_ctx(class_forget_ids(digits[0]))
    retrained = run_method("retrain", ctx)
    out = relearn_on_retain(retrained, ctx.retain, ctx.forget, train_cfg, SEED, epochs=2)
    assert out["forget_acc_before"] <= 0.01 and out["forget_acc_after"] <= 0.01


def test_suppressed_forgetting_returns_while_retrain_does_not(make_ctx, digits, train_cfg):
    """Gradient ascent (lr 1e-2) pushes acc(D_f) of 40 random samples from 0.97 to 0.25 by damaging
    the model near its weights; three epochs on D_r bring it back to the original's 0.97. Retrain
    already sits at its own level (measured: 0.97 -> 0.93)."""
    ctx = make_ctx(random_forget_ids(digits[0]), cfg=UnlearnConfig(grad_ascent=GradAscentConfig(epochs=2, lr=1e-2)))
    unlearned, retrained = run_method("grad_ascent", ctx), run_method("retrain", ctx)
    original = accuracy(ctx.model, ctx.forget)
    out = relearn_check(unlearned, retrained, ctx.retain, ctx.forget, train_cfg, SEED,
                        original_forget_acc=original, epochs=3)
    assert out["unlearned"]["forget_acc_before"] < 0.5
    assert out["unlearned"]["returned"] > 0.4 and out["recovered_share"] > 0.7
    assert abs(out["retrain"]["returned"]) < 0.15
    assert out["excess_returned"] > 0.4
