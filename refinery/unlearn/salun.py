"""SalUn: Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency",
ICLR 2024 (arXiv:2310.12508). Reference code: github.com/OPTML-Group/Unlearn-Saliency,
`Classification/generate_mask.py` (`save_gradient_ratio`) for the mask and
`Classification/unlearn/RL.py` (`RL` with `mask`, `_apply_mask_to_grads`,
`_restore_masked_params`) for the unlearning; README command for CIFAR-10:
`--unlearn RL --unlearn_epochs 10 --unlearn_lr 0.013 --mask_path mask/with_0.5.pt`.

Weight saliency (Eq. 6): with g = grad_theta of -CE(theta_o; D_f),

    m_S = 1[ |g| >= gamma ]      gamma = the top-`sparsity` quantile of |g| over ALL weights

As the reference computes it (`save_gradient_ratio`): g is the SUM over D_f's batches (batch
256, the model in eval mode) of the gradient of the batch-mean -CE, so it depends on the batch
size through the last, partial batch (`unlearn.salun.mask_batch_size`, 256 by default); the mask
keeps exactly int(sparsity * n) weights of the n, ranked globally (top |g|, ties broken by the
sort).

Unlearning (Eq. 7) is random labelling (random_label.py: the reference's SGD loop, a pass over
D_f with random labels then a pass over D_r per epoch) on the salient weights only:

    theta_u = m_S ⊙ (Δθ + θ_o) + (1 - m_S) ⊙ θ_o

implemented as the reference does: gradients multiplied by the mask (`Hooks.after_backward`)
and, after every step, masked-out weights restored to θ_o and their momentum zeroed
(`Hooks.after_step`; weight decay would move them otherwise).

Deviations: D_f's batches for the mask are consecutive in sample-id order (the reference
shuffles its forget loader; this changes nothing while |D_f| <= the batch); parameters that
do not require gradients are not ranked, never in the mask and never trained (the reference's
models have none); an empty D_f returns the original weights (there is no saliency to rank).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..data.dataset import Arrays
from .base import UnlearnContext, register
from .random_label import relabel_unlearn


def saliency_gradient(model: nn.Module, forget: Arrays, batch_size: int) -> dict[str, torch.Tensor]:
    """Sum over consecutive batches of D_f of grad of the batch-mean -CE, per trainable
    parameter (eval mode; the model's mode and gradients are left as they were)."""
    live = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in live}
    if not live or len(forget) == 0:
        return grads
    device = live[0][1].device
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            for start in range(0, len(forget), batch_size):
                x = forget.x[start:start + batch_size].to(device)
                y = forget.y[start:start + batch_size].to(device)
                gs = torch.autograd.grad(-F.cross_entropy(model(x), y), [p for _, p in live], allow_unused=True)
                for (n, _), g in zip(live, gs):
                    if g is not None:
                        grads[n] += g.detach().float()
    finally:
        model.train(was_training)
    return grads


def saliency_mask(model: nn.Module, forget: Arrays, batch_size: int, sparsity: float) -> dict[str, torch.Tensor]:
    """Boolean mask per parameter: the int(sparsity * n) trainable weights of largest |g|,
    ranked globally; frozen parameters are all False."""
    grads = saliency_gradient(model, forget, batch_size)
    masks = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in model.named_parameters()}
    if not grads:
        return masks
    flat = torch.cat([g.abs().flatten() for g in grads.values()])
    keep = int(sparsity * flat.numel())
    chosen = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    if keep:
        chosen[torch.topk(flat, keep, sorted=False).indices] = True  # exactly `keep` weights
    offset = 0
    for n, g in grads.items():
        masks[n] = chosen[offset:offset + g.numel()].view_as(g)
        offset += g.numel()
    return masks


@register("salun")
def salun(ctx: UnlearnContext) -> nn.Module:
    cfg = ctx.cfg.salun
    model = copy.deepcopy(ctx.model)
    if len(ctx.forget) == 0:
        return model.eval()
    masks = saliency_mask(model, ctx.forget, cfg.mask_batch_size, cfg.sparsity)
    return relabel_unlearn(ctx, model, cfg, "salun", masks=masks)
