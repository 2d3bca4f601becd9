import math

import numpy as np

from refinery.config import FinetuneConfig, UnlearnConfig
from refinery.unlearn import run_method
from refinery.unlearn.finetune import finetune_config

from .helpers import IdRecorder, assert_same_state, random_forget_ids, state_copy


def test_finetune_trains_only_on_retain_and_leaves_the_original(make_ctx, digits, train_cfg):
    recorder = IdRecorder(train_cfg.label_smoothing)
    records = []
    cfg = UnlearnConfig(finetune=FinetuneConfig(epochs=2, lr=5e-3))
    ctx = make_ctx(random_forget_ids(digits[0]), model_loss=lambda: recorder, cfg=cfg, on_epoch=records.append)
    before = state_copy(ctx.model)
    out = run_method("finetune", ctx)

    seen = np.array(recorder.seen)
    assert not np.isin(seen, ctx.forget.ids.numpy()).any()
    assert len(seen) == 2 * len(ctx.retain)
    assert recorder.calls == 2 * math.ceil(len(ctx.retain) / train_cfg.batch_size)
    assert [r["lr"] for r in records] == [5e-3, 5e-3]  # constant schedule at cfg.finetune.lr

    assert out is not ctx.model
    assert_same_state(before, state_copy(ctx.model))
    changed = state_copy(out)
    assert any(not (changed[k] == before[k]).all() for k in before), "fine-tuning changed nothing"


def test_finetune_config_keeps_the_recipe_but_its_own_epochs_lr_schedule(make_ctx, digits, train_cfg):
    ctx = make_ctx(random_forget_ids(digits[0]), cfg=UnlearnConfig(finetune=FinetuneConfig(epochs=3, lr=1e-4)))
    ft = finetune_config(ctx)
    assert (ft.epochs, ft.lr, ft.schedule) == (3, 1e-4, "constant")
    assert (ft.batch_size, ft.weight_decay, ft.label_smoothing, ft.grad_clip) == (
        train_cfg.batch_size, train_cfg.weight_decay, train_cfg.label_smoothing, train_cfg.grad_clip)
