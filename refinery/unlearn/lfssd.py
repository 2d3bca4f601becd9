"""Loss-Free Selective Synaptic Dampening (LFSSD): Foster, Schoepf & Brintrup, "Loss-Free
Machine Unlearning", ICLR 2024 Tiny Papers (arXiv:2402.19308).

SSD without labels. The Fisher diagonal (squared CE gradients) is replaced by the sensitivity
of the output's squared l2 norm, as in Memory Aware Synapses (Aljundi et al. 2018):

    I_D = E[ | d ||f(x)||_2^2 / d theta | ]   over the full training set D = D_r ∪ D_f
    I_f = the same over the forget set

and SSD's rule applies unchanged (ssd.py): where I_f > alpha * I_D,
theta <- theta * min(1, lambda * I_D / I_f). Unselected and frozen parameters stay bit-identical.

Reference code: the SSD repository (github.com/if-loops/selective-synaptic-dampening) holds SSD
only; LFSSD takes its importance structure from there (`ParameterPerturber.calc_importance`,
same loaders) with the paper's objective. `unlearn.lfssd.importance`:
- "reference" (default): mean over the reference's batches (D_r then D_f, class-grouped for a
  class request; see ssd.py) of |grad of the batch mean of ||f(x)||^2|;
- "per_sample": mean over samples of |grad of ||f(x_i)||^2|, order- and batch-free.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.dataset import Arrays
from .base import UnlearnContext, register
from .ssd import IMPORTANCE, Importance, dampened_copy, gradient_importance, per_sample_importance


def squared_output_norm(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """mean over the batch of ||f(x)||_2^2; the labels are ignored (that is the point)."""
    return out.float().pow(2).sum(dim=1).mean()


def lf_importance(model: nn.Module, data: Arrays, batch_size: int) -> Importance:
    """LFSSD's reference importance: mean over batches of |grad of mean ||f(x)||^2|."""
    return gradient_importance(model, data, batch_size, squared_output_norm, power=1)


def lfssd_importance(model: nn.Module, data: Arrays, mode: str, batch_size: int) -> Importance:
    if mode == "per_sample":
        return per_sample_importance(model, data, squared_output_norm, power=1)
    return lf_importance(model, data, batch_size)


IMPORTANCE["lfssd"] = lfssd_importance


@register("lfssd")
def lfssd(ctx: UnlearnContext, full_importance: Importance | None = None) -> nn.Module:
    cfg = ctx.cfg.lfssd
    return dampened_copy(ctx, lfssd_importance, cfg.alpha, cfg.lam, full_importance, "lfssd")
