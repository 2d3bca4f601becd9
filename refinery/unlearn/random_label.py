"""Random labelling (RL): Golatkar et al., "Eternal Sunshine of the Spotless Net", CVPR 2020;
the RL baseline of Fan et al. 2024 (SalUn, Eq. 4 without the mask).

    min_theta  E_{(x, y) in D_f, y' ~ U(C \\ {y})} CE(theta; x, y')  +  E_{(x, y) in D_r} CE(theta; x, y)

The forget samples get a wrong label drawn once (seeded), they are mixed with D_r, and the
model is trained with its recipe's CE for a few epochs at a constant LR. `relabelled_data`
builds that mixed set; SalUn reuses it with its saliency mask.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..data.dataset import Arrays
from ..train import Hooks, cross_entropy_loss, fit
from .base import UnlearnContext, register


def relabelled_data(ctx: UnlearnContext) -> Arrays:
    """D_r ∪ D_f, where every forget sample carries a random label other than its own."""
    c = ctx.num_classes
    generator = torch.Generator().manual_seed(ctx.seed)
    shift = torch.randint(1, max(c, 2), (len(ctx.forget),), generator=generator)
    wrong = (ctx.forget.y.cpu() + shift) % c
    return Arrays(torch.cat([ctx.retain.x.cpu(), ctx.forget.x.cpu()]), torch.cat([ctx.retain.y.cpu(), wrong]),
                  torch.cat([ctx.retain.ids.cpu(), ctx.forget.ids.cpu()]))


@register("random_label")
def random_label(ctx: UnlearnContext) -> nn.Module:
    model = copy.deepcopy(ctx.model)
    model.requires_grad_(True)
    cfg = ctx.cfg.random_label
    fit(model, relabelled_data(ctx), ctx.short_recipe(cfg.epochs, cfg.lr), seed=ctx.seed,
        hooks=Hooks(loss=cross_entropy_loss(ctx.train_cfg.label_smoothing), on_epoch=ctx.on_epoch),
        params=model.parameters(), desc="random_label")
    return model
