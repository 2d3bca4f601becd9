"""Retrain from scratch on D_r: exact unlearning, the gold standard.

theta_r = A(D \\ D_f): the model's own training algorithm A (same recipe, same epochs, same
seed, same loss) applied to the retain set only. Every unlearning benchmark measures the other
methods' gap to it (Jia et al. 2023, "Model Sparsity Can Simplify Machine Unlearning",
Avg.Gap; Fan et al. 2024, SalUn). By construction no sample of D_f is ever fed to the loop.
"""
from __future__ import annotations

import torch
from torch import nn

from ..models import build_model
from .base import UnlearnContext, register


@register("retrain")
def retrain(ctx: UnlearnContext) -> nn.Module:
    if len(ctx.retain) == 0:
        raise ValueError("retrain: the retain set D_r is empty; there is nothing to train on")
    torch.manual_seed(ctx.seed)  # the fresh initialisation is a function of the seed
    model = build_model(ctx.arch).to(ctx.device)
    ctx.fit_own_loss(model, ctx.retain, ctx.train_cfg, desc="retrain")
    return model
