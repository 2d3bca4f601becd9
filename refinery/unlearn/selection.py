"""The declared rule for an unlearning method's learning rate (`unlearn.select_lr`).

As the field does (the SalUn / Unlearn-Sparse maintainers grid-search each method's LR and keep
the one closest to retraining): over the method's small grid `unlearn.<method>.lr_grid`, choose
the LR with the smallest Avg.Gap to retrain, measured on a VALIDATION request:

- the validation request is drawn from the training split and never is the reported one: for a
  class-wise request, as many other classes (drawn with the seed from D_r's classes); otherwise a
  random subset of D_r as large as D_f. Its retain set is the rest of the training split (the
  original model was trained on all of it), and retrain for it is the model's own recipe on that;
- the scores use the validation split where the report uses the test split (TA = validation
  accuracy, MIA non-members = validation samples). The reported forget set and the test split
  are never read;
- ties go to the first LR of the grid; a grid point whose training diverges is no candidate.

`select_lrs` returns the chosen LRs and a record per method (grid, chosen value, the gaps, the
validation request) that tasks/unlearn.py writes to data/unlearn/metrics.json under "selection".
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from torch import nn

from ..metrics.unlearning import avg_gap, unlearning_scores
from ..train import TrainingDiverged, predict_logits
from .base import UnlearnContext, run_method
from .ssd import is_class_request

LR_METHODS = ("finetune", "grad_ascent", "random_label", "salun")  # the methods that train with an LR


def validation_request(ctx: UnlearnContext) -> tuple[UnlearnContext, dict]:
    """(a context for the stand-in request, a description of it); see the module docstring."""
    if ctx.val is None or len(ctx.val) == 0:
        raise ValueError("selection needs ctx.val (the validation split)")
    full = ctx.full()
    rng = np.random.default_rng([ctx.seed, 0x5E1EC7])
    if is_class_request(ctx.retain, ctx.forget):
        asked = np.unique(ctx.forget.y.cpu().numpy())
        classes = np.sort(rng.choice(np.unique(ctx.retain.y.cpu().numpy()), size=len(asked), replace=False))
        ids = full.ids[np.isin(full.y.cpu().numpy(), classes)].numpy()
        about = {"kind": "classes", "classes": [int(c) for c in classes], "size": int(len(ids))}
    else:
        size = min(len(ctx.forget), len(ctx.retain) - 1)
        ids = np.sort(rng.choice(ctx.retain.ids.cpu().numpy(), size=size, replace=False))
        about = {"kind": "random", "size": int(size)}
    return replace(ctx, retain=full.without(ids), forget=full.only(ids)), about


def val_scores(model: nn.Module, vctx: UnlearnContext) -> dict[str, float]:
    """UA, RA, TA and MIA of `model` on the validation request, the val split standing in for test."""
    lf, lr, lv = (predict_logits(model, d.x) for d in (vctx.forget, vctx.retain, vctx.val))
    return unlearning_scores(lf, vctx.forget.y, lr, vctx.retain.y, lv, vctx.val.y, vctx.seed)


def with_setting(ctx: UnlearnContext, method: str, key: str, value) -> UnlearnContext:
    """A context whose `cfg.<method>.<key>` is `value` (the rest shared)."""
    section = getattr(ctx.cfg, method).model_copy(update={key: value})
    return replace(ctx, cfg=ctx.cfg.model_copy(update={method: section}))


def select_on_val(method: str, key: str, grid: list, vctx: UnlearnContext, retrained: nn.Module,
                  **options) -> tuple[object, dict]:
    """(best value, {value: Avg.Gap or None if diverged}) over `grid` for `cfg.<method>.<key>`,
    on the validation request `vctx` against `retrained` (retrain for `vctx`)."""
    target = val_scores(retrained, vctx)
    gaps: dict = {}
    for value in grid:
        try:
            model = run_method(method, with_setting(vctx, method, key, value), **options)
        except TrainingDiverged:  # too large an LR (GA): not a candidate
            gaps[value] = None
            continue
        gaps[value] = avg_gap(val_scores(model, vctx), target)
    finite = [v for v in grid if gaps[v] is not None]
    if not finite:
        raise TrainingDiverged(f"{method}: every {key} of the grid {grid} diverged")
    return min(finite, key=lambda v: gaps[v]), gaps


def select_lrs(ctx: UnlearnContext, methods: list[str]) -> tuple[dict[str, float], list[dict]]:
    """({method: chosen LR}, records) for the methods of `methods` that train with an LR."""
    todo = [m for m in methods if m in LR_METHODS]
    if not todo:
        return {}, []
    vctx, about = validation_request(vctx_base(ctx))
    retrained = run_method("retrain", vctx)
    chosen, records = {}, []
    for method in todo:
        grid = list(getattr(ctx.cfg, method).lr_grid)
        chosen[method], gaps = select_on_val(method, "lr", grid, vctx, retrained)
        records.append({"method": method, "key": "lr", "grid": grid, "chosen": chosen[method],
                        "val_gaps": [gaps[v] for v in grid], "validation_request": about,
                        "rule": "smallest Avg.Gap to retrain on a validation request from the training split, "
                                "validation split as test"})
    return chosen, records


def vctx_base(ctx: UnlearnContext) -> UnlearnContext:
    """The context the validation runs use: no progress reporting (they are not the reported runs)."""
    return replace(ctx, on_epoch=None)
