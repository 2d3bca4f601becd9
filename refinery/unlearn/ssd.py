"""Selective Synaptic Dampening (SSD): Foster, Schoepf & Brintrup, "Fast Machine Unlearning
Without Retraining Through Selective Synaptic Dampening", AAAI 2024 (arXiv:2308.07707).

No training. With the diagonal of the Fisher information approximated by squared gradients,

    I_D = E_batches[ (d CE(D) / d theta)^2 ]     over the full training set D = D_r ∪ D_f
    I_f = E_batches[ (d CE(D_f) / d theta)^2 ]   over the forget set

each parameter is dampened where it is specialised to D_f (the paper's selection rule and
dampening factor beta):

    beta  = min(lambda * I_D / I_f, 1)
    theta <- beta * theta   if I_f > alpha * I_D
    theta <- theta          otherwise

Unselected parameters are left bit-identical (index assignment, never a multiply by 1.0).
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..data.dataset import Arrays
from .base import UnlearnContext, register


Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (outputs, labels) -> scalar


def cross_entropy_objective(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y)


def importance(model: nn.Module, data: Arrays, batch_size: int) -> dict[str, torch.Tensor]:
    """Mean over consecutive batches of the squared gradient of the batch-mean CE (plain CE,
    no label smoothing, no auxiliary losses), per named parameter, in eval mode.

    The scale depends on `batch_size`: compare only importances computed with the same one.
    An empty `data` gives all zeros. The model is left as it was (mode, requires_grad, .grad).
    """
    return gradient_importance(model, data, batch_size, cross_entropy_objective, power=2)


def gradient_importance(model: nn.Module, data: Arrays, batch_size: int, objective: Objective,
                        power: int) -> dict[str, torch.Tensor]:
    """Mean over batches of |d objective / d theta| ** power (SSD: CE and 2; LFSSD: ||f||^2 and 1)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
    named = list(model.named_parameters())
    imp = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in named}
    n = len(data)
    if n == 0:
        return imp
    device = named[0][1].device
    flags = [p.requires_grad for _, p in named]
    was_training = model.training
    params = [p for _, p in named]
    batches = 0
    try:
        model.eval()
        for p in params:
            p.requires_grad_(True)
        with torch.enable_grad():
            for start in range(0, n, batch_size):
                x = data.x[start:start + batch_size].to(device)
                y = data.y[start:start + batch_size].to(device)
                grads = torch.autograd.grad(objective(model(x), y), params, allow_unused=True)
                for (name, _), g in zip(named, grads):
                    if g is not None:
                        g = g.detach().float()
                        imp[name] += g.pow(2) if power == 2 else g.abs().pow(power)
                batches += 1
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
        model.train(was_training)
    for name in imp:
        imp[name] /= batches
    return imp


@torch.no_grad()
def dampen(model: nn.Module, full_importance: dict[str, torch.Tensor],
           forget_importance: dict[str, torch.Tensor], alpha: float, lam: float) -> dict[str, int]:
    """Apply SSD's dampening to `model` in place; return how many weights each tensor changed."""
    selected: dict[str, int] = {}
    for name, p in model.named_parameters():
        i_d = full_importance[name].to(p.device)
        i_f = forget_importance[name].to(p.device)
        sel = i_f > alpha * i_d           # i_f > 0 wherever selected, since i_d >= 0
        count = int(sel.sum())
        selected[name] = count
        if count:
            beta = (lam * i_d[sel] / i_f[sel]).clamp(max=1.0)
            p[sel] = (p[sel].float() * beta).to(p.dtype)
    return selected


@register("ssd")
def ssd(ctx: UnlearnContext, full_importance: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """SSD on a copy of `ctx.model`. `full_importance` is I_D from `importance(ctx.model,
    train, ctx.train_cfg.batch_size)`, computed once and cached by the caller; if None it is
    computed here over `ctx.full()` (D_r ∪ D_f in id order)."""
    return dampened_copy(ctx, importance, ctx.cfg.ssd.alpha, ctx.cfg.ssd.lam, full_importance, "ssd")


def dampened_copy(ctx: UnlearnContext, importance_fn: Callable[..., dict[str, torch.Tensor]], alpha: float,
                  lam: float, full_importance: dict[str, torch.Tensor] | None, name: str) -> nn.Module:
    model = copy.deepcopy(ctx.model)
    model.eval()
    if len(ctx.forget) == 0:
        return model  # nothing to forget: bit-identical copy
    batch_size = ctx.train_cfg.batch_size
    if full_importance is None:
        full_importance = importance_fn(model, ctx.full(), batch_size)
    missing = {n for n, _ in model.named_parameters()} - set(full_importance)
    if missing:
        raise ValueError(f"{name}: full_importance lacks parameters {sorted(missing)[:5]}; "
                         "was it computed for another architecture?")
    forget_importance = importance_fn(model, ctx.forget, batch_size)
    dampen(model, full_importance, forget_importance, alpha, lam)
    return model
