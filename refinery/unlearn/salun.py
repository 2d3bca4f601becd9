"""SalUn: Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency",
ICLR 2024 (arXiv:2310.12508).

Weight saliency (Eq. 6): with g = grad_theta of -CE(theta_o; D_f), summed over batches,

    m_S = 1[ |g| >= gamma ]      gamma = the top-`sparsity` quantile of |g| over ALL weights

(ranked globally, the paper's hard threshold at 50%). Unlearning (Eq. 7) is random labelling
(RL, random_label.py) on the salient weights only:

    theta_u = m_S ⊙ (Δθ + θ_o) + (1 - m_S) ⊙ θ_o

implemented by multiplying every gradient by the mask (Hooks.after_backward) AND restoring the
masked-out weights after every optimizer step: AdamW's decoupled weight decay moves a weight
even when its gradient is zero, so the gradient mask alone would not keep them at θ_o.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from ..data.dataset import Arrays
from ..train import Hooks, cross_entropy_loss, fit
from .base import UnlearnContext, register
from .random_label import relabelled_data


def saliency_mask(model: nn.Module, forget: Arrays, batch_size: int, sparsity: float) -> dict[str, torch.Tensor]:
    """Boolean mask per parameter: the top `sparsity` share of |grad of -CE over D_f|, globally."""
    named = [(n, p) for n, p in model.named_parameters()]
    grads = {n: torch.zeros_like(p) for n, p in named}
    was_training = model.training
    model.eval()
    with torch.enable_grad():
        for start in range(0, len(forget), batch_size):
            x = forget.x[start:start + batch_size].to(grads[named[0][0]].device)
            y = forget.y[start:start + batch_size].to(x.device)
            gs = torch.autograd.grad(-F.cross_entropy(model(x), y), [p for _, p in named], allow_unused=True)
            for (n, _), g in zip(named, gs):
                if g is not None:
                    grads[n] += g.detach()
    model.train(was_training)
    flat = torch.cat([g.abs().flatten().float() for g in grads.values()])
    keep = int(round(sparsity * flat.numel()))
    chosen = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    if keep:
        chosen[torch.topk(flat, keep, sorted=False).indices] = True  # exactly `keep` weights, ties broken
    masks, offset = {}, 0
    for n, g in grads.items():
        masks[n] = chosen[offset:offset + g.numel()].view_as(g)
        offset += g.numel()
    return masks


@register("salun")
def salun(ctx: UnlearnContext) -> nn.Module:
    cfg = ctx.cfg.salun
    model = copy.deepcopy(ctx.model)
    model.requires_grad_(True)
    masks = saliency_mask(model, ctx.forget, ctx.train_cfg.batch_size, cfg.sparsity)
    params = dict(model.named_parameters())
    frozen = {n: ctx.model.state_dict()[n].detach().clone() for n in params}

    def mask_gradients(m: nn.Module) -> None:
        for n, p in params.items():
            if p.grad is not None:
                p.grad.mul_(masks[n])

    @torch.no_grad()
    def restore_unsalient(optimizer, args, kwargs) -> None:
        if not any(p is q for group in optimizer.param_groups for p in group["params"] for q in params.values()):
            return  # some other optimizer stepped (the hook is process-wide)
        for n, p in params.items():
            p.copy_(torch.where(masks[n], p, frozen[n]))

    handle = register_optimizer_step_post_hook(restore_unsalient)
    try:
        fit(model, relabelled_data(ctx), ctx.short_recipe(cfg.epochs, cfg.lr), seed=ctx.seed,
            hooks=Hooks(loss=cross_entropy_loss(ctx.train_cfg.label_smoothing), after_backward=mask_gradients,
                        on_epoch=ctx.on_epoch), params=model.parameters(), desc="salun")
    finally:
        handle.remove()
    return model
