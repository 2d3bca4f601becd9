"""Loss-Free Selective Synaptic Dampening (LFSSD): Foster, Schoepf & Brintrup, "Loss-Free
Machine Unlearning", ICLR 2024 Tiny Papers (arXiv:2402.19308).

SSD without labels. The Fisher diagonal (squared CE gradients) is replaced by the sensitivity
of the output's squared l2 norm, as in Memory Aware Synapses (Aljundi et al. 2018):

    I_D = E_batches[ | d mean_b ||f(x)||_2^2 / d theta | ]   over the full training set
    I_f = the same over the forget set

and SSD's rule applies unchanged: where I_f > alpha * I_D, theta <- theta * min(1, lambda * I_D / I_f).
Unselected parameters are left bit-identical. Like SSD's, I_D does not depend on the request,
so callers cache it (`lf_importance(model, train, batch_size)`) and pass `full_importance`.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.dataset import Arrays
from .base import UnlearnContext, register
from .ssd import dampened_copy, gradient_importance


def squared_output_norm(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """mean over the batch of ||f(x)||_2^2; the labels are ignored (that is the point)."""
    return out.float().pow(2).sum(dim=1).mean()


def lf_importance(model: nn.Module, data: Arrays, batch_size: int) -> dict[str, torch.Tensor]:
    """LFSSD's importance: mean over batches of |grad of mean ||f(x)||^2|."""
    return gradient_importance(model, data, batch_size, squared_output_norm, power=1)


@register("lfssd")
def lfssd(ctx: UnlearnContext, full_importance: dict[str, torch.Tensor] | None = None) -> nn.Module:
    cfg = ctx.cfg.lfssd
    return dampened_copy(ctx, lf_importance, cfg.alpha, cfg.lam, full_importance, "lfssd")
