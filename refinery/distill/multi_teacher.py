"""Distilling the experts of an upcycled MoE as several teachers, mixed per sample by a router
trained jointly with the student (after MST-Distill, "Mixture of Specialized Teachers for
Cross-Modal Knowledge Distillation", 2025, and "Knowledge Concentration" for MoE-to-dense
distillation; this is our design, described here).

Teachers. Expert path e of the MoE teacher is the dense network obtained by routing every
token of every MoE layer to expert e alone (weight 1). `expert_logits` computes the logits of
all E paths; the distill stage caches them beside the full teacher's logits, keyed by sample
id, so training never runs the teacher.

Mixing. A small router r (Linear-GELU-Linear on the student's features, detached) gives
per-sample weights w = softmax(r(f)) over the E teachers. With q_e = softmax(t_e / T):
- student: L_s = (1 - alpha) * CE(s, y) + alpha * T^2 * KL(sum_e w_e q_e || softmax(s / T)),
  with w held constant (detached), so the student cannot steer its own targets;
- router:  L_r = -log sum_e w_e softmax(t_e)_y, the mixture's likelihood of the true label,
  so the router learns which expert to trust on which sample, not which is easiest to match.
- L = L_s + L_r; the router only receives gradients from L_r.
The router is part of this loss module, trained with the student through `attached`, and
dropped at inference like dual_head's auxiliary head.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..config import DistillConfig
from ..models.moe import moe_layers
from . import DistillLoss, TeacherLookup, register, student_head


@contextlib.contextmanager
def forced_expert(model: nn.Module, expert: int) -> Iterator[None]:
    """Route every token of every MoE layer to `expert` only (weight 1, no capacity drop).

    Each layer's `route` is shadowed on the instance: it returns k identical assignments of
    weight 1/k, so the dispatch code runs unchanged and the output is exactly E_e(x).
    """
    layers = moe_layers(model)
    saved = [(m.capacity_factor, m.tracking) for m in layers]

    def route(m):
        def forced(x):
            m.aux_loss = torch.zeros((), device=x.device)
            shape = (x.shape[0], m.top_k)
            return (torch.full(shape, 1.0 / m.top_k, device=x.device),
                    torch.full(shape, expert, device=x.device, dtype=torch.long))
        return forced

    for m in layers:
        m.capacity_factor, m._tracking = None, False
        m.route = route(m)
    try:
        yield
    finally:
        for m, (cap, track) in zip(layers, saved):
            del m.route
            m.capacity_factor, m._tracking = cap, track


@torch.no_grad()
def expert_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor | None:
    """(N, E, C) logits of each expert path, or None for a dense model."""
    from ..train import predict_logits  # the one inference helper

    layers = moe_layers(model)
    if not layers:
        return None
    outs = []
    for e in range(layers[0].num_experts):
        with forced_expert(model, e):
            outs.append(predict_logits(model, x, batch_size))
    return torch.stack(outs, dim=1)


def mixture_targets(experts: torch.Tensor, weights: torch.Tensor, temperature: float) -> torch.Tensor:
    """sum_e w_e softmax(t_e / T): (B, E, C), (B, E) -> (B, C)."""
    return (weights.unsqueeze(-1) * F.softmax(experts / temperature, dim=-1)).sum(1)


class MultiTeacherLoss(DistillLoss):
    def __init__(self, cfg: DistillConfig, teacher: TeacherLookup, hidden: int = 32):
        super().__init__()
        if not getattr(teacher, "has_experts", False):
            raise ValueError("distill.loss 'multi_teacher' needs per-expert teacher logits: "
                             "distil from the upcycled MoE (distill.teacher: upcycle)")
        self.cfg, self.teacher, self.hidden = cfg, teacher, hidden
        self.router: nn.Module | None = None

    def bind(self, model: nn.Module) -> None:
        if self.router is None:
            head = student_head(model)
            experts = self.teacher.num_experts
            self.router = nn.Sequential(nn.Linear(head.in_features, self.hidden), nn.GELU(),
                                        nn.Linear(self.hidden, experts)).to(head.weight.device)

    def forward(self, model, x, y, ids, at=None):
        self.bind(model)
        c = self.cfg
        features = model.features(x)
        s = model.head(features)
        experts = self.teacher.experts(x, ids)
        weights = F.softmax(self.router(features.detach()), dim=1)
        target = mixture_targets(experts, weights.detach(), c.temperature)
        t = c.temperature
        kd = F.kl_div(F.log_softmax(s / t, dim=1), target.clamp_min(1e-12), reduction="batchmean") * t * t
        ce = F.cross_entropy(s, y, label_smoothing=c.train.label_smoothing)
        label_prob = mixture_targets(experts, weights, 1.0).gather(1, y.unsqueeze(1)).squeeze(1)
        router_loss = -label_prob.clamp_min(1e-12).log().mean()
        return (1 - c.alpha) * ce + c.alpha * kd + router_loss


@register("multi_teacher")
def make(cfg: DistillConfig, teacher: TeacherLookup):
    return MultiTeacherLoss(cfg, teacher)
