"""Gradient ascent (GA): Thudi et al., "Unrolling SGD: Understanding Factors Influencing Machine
Unlearning", EuroS&P 2022; the GA baseline of Jia et al. 2023 and Fan et al. 2024 (SalUn).

    theta_u = theta_o + eta * sum_t grad CE(theta_t; D_f)

i.e. the training loop minimises -CE on the forget set only, for a few epochs at a constant
LR. GA is very sensitive to eta (the SalUn maintainers grid-searched 1e-5..1e-1): too small
forgets nothing, too large destroys the model. Choose `unlearn.grad_ascent.lr` on the
validation split (bench/unlearn_quality.py does, with `refinery.unlearn.selection`), never on
the test split.
"""
from __future__ import annotations

import copy

import torch.nn.functional as F
from torch import nn

from ..models.moe import routed_aux_loss
from ..train import Hooks, fit
from .base import UnlearnContext, register


def ascent_loss(model, x, y, ids, at=None):
    """-CE on D_f; an MoE's balance loss is still minimised so the routers stay sane."""
    return -F.cross_entropy(model(x), y) + routed_aux_loss(model)


@register("grad_ascent")
def grad_ascent(ctx: UnlearnContext) -> nn.Module:
    model = copy.deepcopy(ctx.model)
    if len(ctx.forget) == 0:
        return model.eval()
    model.requires_grad_(True)
    cfg = ctx.cfg.grad_ascent
    fit(model, ctx.forget, ctx.short_recipe(cfg.epochs, cfg.lr), seed=ctx.seed,
        hooks=Hooks(loss=ascent_loss, on_epoch=ctx.on_epoch), params=model.parameters(), desc="grad_ascent")
    return model
