"""Choosing a method's hyperparameter on the validation split, never the test split.

The retrained model (the gold standard) is available to every benchmark, so the criterion is
Avg.Gap to retrain with the validation split standing in for the test split: TA becomes
val accuracy and the MIA's non-members are validation samples. The test split is not read.
"""
from __future__ import annotations

from torch import nn

from ..metrics.unlearning import avg_gap, unlearning_scores
from ..train import TrainingDiverged, predict_logits
from .base import UnlearnContext, run_method


def val_scores(model: nn.Module, ctx: UnlearnContext) -> dict[str, float]:
    if ctx.val is None or len(ctx.val) == 0:
        raise ValueError("selection on val needs ctx.val (the validation split)")
    lf, lr, lv = (predict_logits(model, d.x) for d in (ctx.forget, ctx.retain, ctx.val))
    return unlearning_scores(lf, ctx.forget.y, lr, ctx.retain.y, lv, ctx.val.y, ctx.seed)


def with_setting(ctx: UnlearnContext, method: str, key: str, value) -> UnlearnContext:
    """A context whose `cfg.<method>.<key>` is `value` (the rest shared)."""
    section = getattr(ctx.cfg, method).model_copy(update={key: value})
    cfg = ctx.cfg.model_copy(update={method: section})
    return UnlearnContext(**{**ctx.__dict__, "cfg": cfg})


def select_on_val(method: str, key: str, grid: list, ctx: UnlearnContext, retrained: nn.Module) -> tuple[object, dict]:
    """(best value, {value: val gap}) over `grid` for `cfg.<method>.<key>`."""
    target = val_scores(retrained, ctx)
    gaps = {}
    for value in grid:
        try:
            model = run_method(method, with_setting(ctx, method, key, value))
        except TrainingDiverged:  # too large an LR (GA): not a candidate
            gaps[value] = float("inf")
            continue
        gaps[value] = avg_gap(val_scores(model, ctx), target)
    return min(gaps, key=gaps.get), gaps
