"""Fine-tuning (FT): continue training the original model on D_r only.

theta_u = theta_o - eta * sum_t grad L(theta_t; D_r), for a few epochs at a constant LR
(Warnecke et al. 2023, "Machine Unlearning of Features and Labels"; the FT baseline of
Jia et al. 2023 and Fan et al. 2024, SalUn). Forgetting relies on catastrophic forgetting of
D_f; no sample of D_f is fed to the loop.
"""
from __future__ import annotations

import copy

from torch import nn

from ..config import TrainConfig
from .base import UnlearnContext, register


def finetune_config(ctx: UnlearnContext) -> TrainConfig:
    """The model's recipe (batch size, weight decay, smoothing, clipping) with FT's epochs and
    LR and a constant schedule."""
    ft = ctx.cfg.finetune
    return TrainConfig.model_validate(
        {**ctx.train_cfg.model_dump(), "epochs": ft.epochs, "lr": ft.lr, "schedule": "constant"})


@register("finetune")
def finetune(ctx: UnlearnContext) -> nn.Module:
    if len(ctx.retain) == 0:
        raise ValueError("finetune: the retain set D_r is empty; there is nothing to train on")
    model = copy.deepcopy(ctx.model)
    model.requires_grad_(True)
    ctx.fit_own_loss(model, ctx.retain, finetune_config(ctx), desc="finetune")
    return model
