"""The declared LR rule: smallest Avg.Gap to retrain on a validation request, never the reported one."""
import numpy as np

from refinery.config import FinetuneConfig, UnlearnConfig
from refinery.unlearn.audit import relearn_steps
from refinery.unlearn.selection import select_lrs, validation_request

from .helpers import class_forget_ids, random_forget_ids


def _val(digits):
    test = digits[1]
    return test.subset(np.arange(len(test)) % 2 == 0)


def test_validation_request_is_another_class_of_the_training_split(make_ctx, digits):
    ctx = make_ctx(class_forget_ids(digits[0]), val=_val(digits))
    vctx, about = validation_request(ctx)
    assert about["kind"] == "classes" and about["classes"] != [3] and len(about["classes"]) == 1
    assert not set(vctx.forget.ids.tolist()) & set(ctx.forget.ids.tolist())
    assert set(vctx.forget.y.tolist()) == set(about["classes"])
    assert len(vctx.forget) + len(vctx.retain) == len(ctx.full())  # D minus the stand-in request
    assert not set(vctx.retain.y.tolist()) & set(about["classes"])  # all of that class


def test_validation_request_for_random_forgetting_is_a_retain_subset(make_ctx, digits):
    ctx = make_ctx(random_forget_ids(digits[0]), val=_val(digits))
    vctx, about = validation_request(ctx)
    assert about == {"kind": "random", "size": len(ctx.forget)}
    assert set(vctx.forget.ids.tolist()) <= set(ctx.retain.ids.tolist())


def test_select_lrs_records_grid_choice_and_gaps(make_ctx, digits):
    cfg = UnlearnConfig(finetune=FinetuneConfig(epochs=1, lr_grid=[1e-4, 3e-2]))
    ctx = make_ctx(class_forget_ids(digits[0]), val=_val(digits), cfg=cfg)
    chosen, records = select_lrs(ctx, ["retrain", "finetune", "ssd"])
    assert list(chosen) == ["finetune"] and len(records) == 1
    rec = records[0]
    assert rec["grid"] == [1e-4, 3e-2] and len(rec["val_gaps"]) == 2
    assert rec["chosen"] == rec["grid"][int(np.argmin(rec["val_gaps"]))] == chosen["finetune"]


def test_relearn_stops_once_recovered(trained, digits, monkeypatch):
    """on_epoch returning True ends the fit at the epoch the forget accuracy came back."""
    import torch

    from refinery.unlearn import audit

    results = []
    real_fit = audit.fit
    monkeypatch.setattr(audit, "fit", lambda *a, **kw: results.append(real_fit(*a, **kw)) or results[-1])
    from refinery.config import TrainConfig
    from refinery.models import build_model, make_arch

    forget = digits[0].only(class_forget_ids(digits[0]))
    torch.manual_seed(0)
    fresh = build_model(make_arch({"arch": "mlp", "dim": 16, "depth": 1, "mlp_ratio": 2.0, "dropout": 0.0},
                                  (1, 8, 8), 10))
    steps, recovered = relearn_steps(fresh, forget, 0.9, TrainConfig(lr=1e-2, weight_decay=0.0), seed=0,
                                     max_epochs=30)
    per_epoch = -(-len(forget) // 32)
    assert recovered and 0 < steps < 30 * per_epoch and steps % per_epoch == 0
    assert results[0].stopped_early and len(results[0].history) == steps // per_epoch  # no epoch after
