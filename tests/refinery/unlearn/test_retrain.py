import numpy as np
import pytest

from refinery.config import SSDConfig, UnlearnConfig
from refinery.train import accuracy
from refinery.unlearn import run_method

from .helpers import IdRecorder, assert_same_state, class_forget_ids, random_forget_ids, state_copy


def test_retrain_never_sees_the_forget_set(make_ctx, digits, train_cfg):
    recorder = IdRecorder(train_cfg.label_smoothing)
    ctx = make_ctx(random_forget_ids(digits[0]), model_loss=lambda: recorder)
    run_method("retrain", ctx)
    seen = np.array(recorder.seen)
    assert len(seen) == train_cfg.epochs * len(ctx.retain)  # the full recipe ran, every epoch
    assert not np.isin(seen, ctx.forget.ids.numpy()).any()
    assert set(seen.tolist()) == set(ctx.retain.ids.tolist())


def test_retrain_is_deterministic_and_leaves_the_original(make_ctx, digits):
    ctx = make_ctx(random_forget_ids(digits[0]))
    before = state_copy(ctx.model)
    a, b = run_method("retrain", ctx), run_method("retrain", ctx)
    assert a is not ctx.model
    assert_same_state(state_copy(a), state_copy(b))
    assert_same_state(before, state_copy(ctx.model))


def test_retrain_depends_on_the_seed(make_ctx, digits):
    ids = random_forget_ids(digits[0])
    a = run_method("retrain", make_ctx(ids, seed=0))
    b = run_method("retrain", make_ctx(ids, seed=1))
    with pytest.raises(AssertionError):
        assert_same_state(state_copy(a), state_copy(b))


def test_classwise_forgetting_behaviour(make_ctx, digits):
    """Forget class 3 on the tiny digits MLP: the original knows it; retrain, which never saw
    it, gets UA = 100 - acc(D_f) near 100 while keeping RA and TA; SSD also forgets it."""
    train, test = digits
    ctx = make_ctx(class_forget_ids(train))
    assert accuracy(ctx.model, ctx.forget) > 0.8
    retrained = run_method("retrain", ctx)
    ua = 100 * (1 - accuracy(retrained, ctx.forget))
    assert ua > 90
    assert accuracy(retrained, ctx.retain) > 0.8
    assert accuracy(retrained, test.without(ctx.forget.ids.numpy()).subset(test.y != 3)) > 0.8
    # SSD at an alpha below |D| / |D_f| (about 10 here; at 10 it can select next to nothing)
    dampened = run_method("ssd", make_ctx(class_forget_ids(train), cfg=UnlearnConfig(ssd=SSDConfig(alpha=3.0))))
    assert accuracy(dampened, ctx.forget) < accuracy(ctx.model, ctx.forget) - 0.3


def test_retrain_refuses_an_empty_retain_set(make_ctx, digits):
    with pytest.raises(ValueError, match="empty"):
        run_method("retrain", make_ctx(digits[0].ids.numpy()))


def test_retrain_with_nothing_to_forget_reproduces_the_original(make_ctx):
    """Same recipe, same seed, same data: the original model is rebuilt bit for bit (the
    fixture trained it as torch.manual_seed(seed); build_model(arch); fit(train, cfg, seed))."""
    ctx = make_ctx(np.array([], dtype=np.int64))
    assert_same_state(state_copy(ctx.model), state_copy(run_method("retrain", ctx)))
