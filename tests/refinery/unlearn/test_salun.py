import numpy as np
import torch

from refinery.config import SalUnConfig, TrainConfig, UnlearnConfig
from refinery.unlearn import run_method
from refinery.unlearn.salun import saliency_mask

from .helpers import assert_same_state, class_forget_ids, state_copy


def test_mask_keeps_the_top_half_of_gradient_magnitudes_globally(make_ctx, digits):
    ctx = make_ctx(class_forget_ids(digits[0]))
    masks = saliency_mask(ctx.model, ctx.forget, 64, 0.5)
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    assert kept == round(0.5 * total)
    # global ranking: tensors keep different shares (a per-tensor rule would keep 50% of each)
    shares = {n: float(m.float().mean()) for n, m in masks.items() if m.numel() > 16}
    assert max(shares.values()) - min(shares.values()) > 0.2
    assert_same_state(state_copy(ctx.model), state_copy(ctx.model))  # computing the mask changes nothing


def test_salun_changes_only_masked_weights_even_with_weight_decay(make_ctx, digits, train_cfg):
    """AdamW's decoupled decay would move weights whose gradient is masked to zero; SalUn must
    keep them bit-identical to the original."""
    recipe = TrainConfig.model_validate(dict(train_cfg.model_dump(), weight_decay=0.1))
    cfg = UnlearnConfig(salun=SalUnConfig(epochs=2, lr=1e-2))
    ctx = make_ctx(class_forget_ids(digits[0]), train_cfg=recipe, cfg=cfg)
    before = state_copy(ctx.model)
    masks = saliency_mask(ctx.model, ctx.forget, recipe.batch_size, 0.5)
    out = dict(run_method("salun", ctx).named_parameters())
    assert_same_state(before, state_copy(ctx.model))
    changed = 0
    for name, p in ctx.model.named_parameters():
        m = masks[name]
        assert torch.equal(out[name][~m], p[~m]), f"{name}: a weight outside the mask changed"
        changed += int((out[name][m] != p[m]).sum())
    assert changed > 0.5 * sum(int(m.sum()) for m in masks.values())


def test_salun_forgets_a_class(make_ctx, digits):
    ctx = make_ctx(class_forget_ids(digits[0]), cfg=UnlearnConfig(salun=SalUnConfig(epochs=3, lr=3e-3)))
    from refinery.train import accuracy
    out = run_method("salun", ctx)
    assert accuracy(out, ctx.forget) < 0.2
    assert accuracy(out, ctx.retain) > 0.8


def test_random_labels_are_wrong_and_seeded(make_ctx, digits):
    from refinery.unlearn.random_label import relabelled_data
    ctx = make_ctx(class_forget_ids(digits[0]))
    a, b = relabelled_data(ctx), relabelled_data(ctx)
    assert torch.equal(a.y, b.y)
    forget = np.isin(a.ids.numpy(), ctx.forget.ids.numpy())
    assert forget.sum() == len(ctx.forget)
    assert (a.y[torch.from_numpy(forget)] != 3).all()
    assert len(set(a.y[torch.from_numpy(forget)].tolist())) > 3
