"""Selective Synaptic Dampening (SSD): Foster, Schoepf & Brintrup, "Fast Machine Unlearning
Without Retraining Through Selective Synaptic Dampening", AAAI 2024 (arXiv:2308.07707).
Reference code: github.com/if-loops/selective-synaptic-dampening, `src/ssd.py`
(`ParameterPerturber.calc_importance`, `.modify_weight`) driven by `ssd_tuning` in
`src/forget_{full_class,random,subclass}_strategies.py`.

No training. With the diagonal of the Fisher information as importance (paper Eq. 1-2),

    I_D = importance over the full training set D = D_r ∪ D_f
    I_f = importance over the forget set D_f

each parameter is dampened where it is specialised to D_f (paper Eq. 3-4):

    beta  = min(lambda * I_D / I_f, 1)
    theta <- beta * theta   if I_f > alpha * I_D
    theta <- theta          otherwise

with alpha = 10 and lambda = 1 (the reference's `selection_weighting` and `dampening_constant`
for its ResNet runs). Unselected parameters stay bit-identical (index assignment, never a
multiply by 1.0).

Importance, `unlearn.ssd.importance`:
- "reference" (default; the reference code): the mean over the loader's batches of the squared
  gradient of the batch-mean CE, `(d CE(batch) / d theta)^2`, in eval mode. The batches come
  from the reference's loaders, unshuffled: I_D over `ConcatDataset(retain, forget)` (D_r first,
  then D_f) and I_f over D_f, both at the training batch size (`-b`, 64 by default;
  `unlearn.ssd.batch_size`). For a class request the reference builds D_r and D_f class by class
  (`get_classwise_ds` / `build_retain_forget_sets`), so its batches are single-class; we group
  by class (sample-id order within a class) whenever the request removes whole classes.
  Batch composition matters: squared batch-MEAN gradients of mixed-class batches cancel and
  make I_D small, and SSD then dampens far more weights.
- "per_sample" (the paper's Fisher diagonal, Eq. 1): the mean over samples of the squared
  per-sample gradient, computed with `torch.func` (vmap of grad); no batching and no order can
  change it, and I_D no longer depends on the request.

A bound worth knowing: D contains D_f, so (per-sample) I_D >= (|D_f| / |D|) * I_f, and with the
reference's class-grouped batches the same holds with batch counts. Nothing can be selected
once alpha >= |D| / |D_f|: one digit class is about 10% of the digits training split, so at
alpha = 10 SSD dampens next to nothing there (1 weight of the CCT student) and forgets nothing;
alpha = 5 forgets the class (UA 100, RA 100). The reference's alpha = 10 was set for CIFAR-20/100.

Deviations from the reference code:
- For a random (non-class) request, the reference orders D_r and D_f by its `random_split`
  permutation; we keep sample-id order (the prepared split's, which mixes classes as that does).
- Parameters that do not require gradients get importance 0 and are never dampened (the
  reference skips parameters whose `.grad` is None, which for its models never happens; here a
  frozen MoLA FFN must stay frozen).
- CE has no label smoothing and no auxiliary (MoE balance) loss, as in the reference.
"""
from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.dataset import Arrays
from .base import UnlearnContext, register

Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (outputs, labels) -> scalar
Importance = dict[str, torch.Tensor]


def cross_entropy_objective(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y)


# --------------------------------------------------------------------------- data order
def is_class_request(retain: Arrays, forget: Arrays) -> bool:
    """True when D_f holds every training sample of its classes (a class-wise request)."""
    if len(forget) == 0:
        return False
    return not bool(np.isin(forget.y.cpu().numpy(), retain.y.cpu().numpy()).any())


def by_class(data: Arrays) -> Arrays:
    """`data` grouped by class (ascending), sample-id order within a class."""
    order = torch.from_numpy(np.lexsort((data.ids.cpu().numpy(), data.y.cpu().numpy())))
    return Arrays(data.x[order], data.y[order], data.ids[order])


def by_id(data: Arrays) -> Arrays:
    order = torch.argsort(data.ids.cpu())
    return Arrays(data.x[order], data.y[order], data.ids[order])


def reference_order(retain: Arrays, forget: Arrays) -> tuple[Arrays, Arrays]:
    """(D in the reference's loader order, D_f in its loader order): D_r then D_f, each grouped
    by class for a class request, else in sample-id order."""
    grouped = by_class if is_class_request(retain, forget) else by_id
    retain, forget = grouped(retain), grouped(forget)
    full = Arrays(torch.cat([retain.x.cpu(), forget.x.cpu()]), torch.cat([retain.y.cpu(), forget.y.cpu()]),
                  torch.cat([retain.ids.cpu(), forget.ids.cpu()]))
    return full, forget


# --------------------------------------------------------------------------- importance
def importance(model: nn.Module, data: Arrays, batch_size: int) -> Importance:
    """The reference's importance: mean over consecutive batches of `data` (in the given order)
    of the squared gradient of the batch-mean CE (plain CE, no smoothing, no auxiliary losses),
    per named parameter, in eval mode.

    The scale depends on `batch_size` and on which samples share a batch: compare only
    importances computed the same way. An empty `data` gives all zeros. Parameters that do not
    require gradients get zeros. The model is left as it was (mode, requires_grad, .grad)."""
    return gradient_importance(model, data, batch_size, cross_entropy_objective, power=2)


def per_sample_importance(model: nn.Module, data: Arrays, objective: Objective = cross_entropy_objective,
                          power: int = 2, chunk: int = 256) -> Importance:
    """Mean over samples of |d objective(f(x_i), y_i) / d theta| ** power (SSD: CE and 2, the
    paper's Fisher diagonal; LFSSD: ||f||^2 and 1). Independent of order and batching.

    Computed with `torch.func.vmap(grad(...))` over chunks of samples; a model that vmap cannot
    trace (data-dependent routing) falls back to one sample per batch, the same quantity."""
    named = list(model.named_parameters())
    imp = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in named}
    if len(data) == 0 or not any(p.requires_grad for _, p in named):
        return imp
    was_training = model.training
    model.eval()
    try:
        _per_sample_vmap(model, data, objective, power, chunk, imp)
    except Exception:  # noqa: BLE001  vmap cannot run this model: batches of one sample
        return gradient_importance(model, data, 1, objective, power)
    finally:
        model.train(was_training)
    for name in imp:
        imp[name] /= len(data)
    return imp


def _per_sample_vmap(model: nn.Module, data: Arrays, objective: Objective, power: int, chunk: int,
                     imp: Importance) -> None:
    from torch.func import functional_call, grad, vmap

    named = list(model.named_parameters())
    device = named[0][1].device
    trainable = {n: p.detach() for n, p in named if p.requires_grad}
    fixed = {n: p.detach() for n, p in named if not p.requires_grad}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def one(params, x, y):
        out = functional_call(model, (params, fixed, buffers), (x.unsqueeze(0),))
        return objective(out, y.unsqueeze(0))

    per_sample = vmap(grad(one), in_dims=(None, 0, 0))
    sums = {n: torch.zeros_like(imp[n]) for n in trainable}
    for start in range(0, len(data), chunk):
        x = data.x[start:start + chunk].to(device)
        y = data.y[start:start + chunk].to(device)
        grads = per_sample(trainable, x, y)
        for n, g in grads.items():
            g = g.detach().float()
            sums[n] += (g.pow(2) if power == 2 else g.abs().pow(power)).sum(0)
    for n, s in sums.items():
        imp[n].copy_(s)


def gradient_importance(model: nn.Module, data: Arrays, batch_size: int, objective: Objective,
                        power: int) -> Importance:
    """Mean over consecutive batches of |d objective(batch) / d theta| ** power (the reference's
    `calc_importance`; SSD: CE and 2, LFSSD: ||f||^2 and 1). Frozen parameters: zeros."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
    named = list(model.named_parameters())
    imp = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in named}
    live = [(name, p) for name, p in named if p.requires_grad]
    n = len(data)
    if n == 0 or not live:
        return imp
    device = named[0][1].device
    was_training = model.training
    batches = 0
    try:
        model.eval()
        with torch.enable_grad():
            for start in range(0, n, batch_size):
                x = data.x[start:start + batch_size].to(device)
                y = data.y[start:start + batch_size].to(device)
                grads = torch.autograd.grad(objective(model(x), y), [p for _, p in live], allow_unused=True)
                for (name, _), g in zip(live, grads):
                    if g is not None:
                        g = g.detach().float()
                        imp[name] += g.pow(2) if power == 2 else g.abs().pow(power)
                batches += 1
    finally:
        model.train(was_training)
    for name in imp:
        imp[name] /= batches
    return imp


# --------------------------------------------------------------------------- dampening
@torch.no_grad()
def dampen(model: nn.Module, full_importance: Importance, forget_importance: Importance, alpha: float,
           lam: float) -> dict[str, int]:
    """Apply SSD's dampening to `model` in place; return how many weights each tensor changed.
    Parameters that do not require gradients (frozen) are never touched."""
    selected: dict[str, int] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            selected[name] = 0
            continue
        i_d = full_importance[name].to(p.device)
        i_f = forget_importance[name].to(p.device)
        sel = i_f > alpha * i_d           # i_f > 0 wherever selected, since i_d >= 0
        count = int(sel.sum())
        selected[name] = count
        if count:
            beta = (lam * i_d[sel] / i_f[sel]).clamp(max=1.0)
            p[sel] = (p[sel].float() * beta).to(p.dtype)
    return selected


ImportanceFn = Callable[[nn.Module, Arrays, str, int], Importance]  # (model, data, mode, batch) -> importance


def ssd_importance(model: nn.Module, data: Arrays, mode: str, batch_size: int) -> Importance:
    if mode == "per_sample":
        return per_sample_importance(model, data, cross_entropy_objective, power=2)
    return importance(model, data, batch_size)


def importance_inputs(ctx: UnlearnContext, method: str = "ssd") -> tuple[Arrays, Arrays, str, int]:
    """(data for I_D, data for I_f, mode, batch size) for `ctx.cfg.<method>` ("ssd" or "lfssd"):
    the reference's loader order for "reference", id order for "per_sample" (order-free)."""
    cfg = getattr(ctx.cfg, method)
    batch = cfg.batch_size or ctx.train_cfg.batch_size
    if cfg.importance == "per_sample":
        return ctx.full(), ctx.forget, cfg.importance, batch
    full, forget = reference_order(ctx.retain, ctx.forget)
    return full, forget, cfg.importance, batch


# I_D of each dampening method, by method name (lfssd.py adds its own), for callers that cache it.
IMPORTANCE: dict[str, Callable[[nn.Module, Arrays, str, int], Importance]] = {"ssd": ssd_importance}


def full_importance(ctx: UnlearnContext, method: str = "ssd") -> Importance:
    """I_D as `ssd` / `lfssd` compute it for `ctx` (for callers that cache it)."""
    full, _, mode, batch = importance_inputs(ctx, method)
    return IMPORTANCE[method](ctx.model, full, mode, batch)


@register("ssd")
def ssd(ctx: UnlearnContext, full_importance: Importance | None = None) -> nn.Module:
    """SSD on a copy of `ctx.model`. `full_importance` is I_D as `full_importance(ctx)` computes
    it (cached by the caller: with "per_sample" it does not depend on the request, with
    "reference" it depends on the request's D_r / D_f order); None: computed here."""
    return dampened_copy(ctx, ssd_importance, ctx.cfg.ssd.alpha, ctx.cfg.ssd.lam, full_importance, "ssd")


def dampened_copy(ctx: UnlearnContext, importance_fn: ImportanceFn, alpha: float, lam: float,
                  full_imp: Importance | None, name: str) -> nn.Module:
    model = copy.deepcopy(ctx.model)
    model.eval()
    if len(ctx.forget) == 0:
        return model  # nothing to forget: bit-identical copy
    full, forget, mode, batch = importance_inputs(ctx, name)
    if full_imp is None:
        full_imp = importance_fn(model, full, mode, batch)
    missing = {n for n, _ in model.named_parameters()} - set(full_imp)
    if missing:
        raise ValueError(f"{name}: full_importance lacks parameters {sorted(missing)[:5]}; "
                         "was it computed for another architecture?")
    dampen(model, full_imp, importance_fn(model, forget, mode, batch), alpha, lam)
    return model
