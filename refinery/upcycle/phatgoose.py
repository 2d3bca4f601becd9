"""PHATGOOSE (Muqeeth et al., "Learning to Route Among Specialized Experts for Zero-Shot
Generalization", 2024, Sec. 3).

1. Split the classes into E groups; train one LoRA expert per group, independently: expert i
   trains alone (gate 1, other experts off, everything else frozen) on group i's samples.
2. Freeze expert i and train its gate vector v_i per layer: the expert's output is scaled by
   sigmoid(v_i . u) for each token u, again on group i only.
3. Inference: route each token top-k (k=2) by the dot products of the standardised token u
   and the standardised gates v_i, with softmax weights over the chosen k.

No joint training follows (params is empty). The baseline is uniform averaging: every expert
with weight 1/E. Both accuracies are reported; the paper's claim is routing > averaging.
Training one expert's slice leaves the other slices as they were (they are restored, since
AdamW's weight decay would otherwise shrink them).
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ..config import UpcycleConfig
from ..data.dataset import Prepared
from ..models import attach_moe
from ..models.lora import Phatgoose
from ..train import accuracy, fit
from . import Upcycled, register
from .common import expert_train_config


def class_groups(num_classes: int, groups: int) -> list[np.ndarray]:
    return [g for g in np.array_split(np.arange(num_classes), groups) if len(g)]


def _layers(model: nn.Module) -> list[Phatgoose]:
    return [m for m in model.modules() if isinstance(m, Phatgoose)]


def _train_slice(model: nn.Module, params: list[nn.Parameter], expert: int, members, cfg: UpcycleConfig,
                 seed: int, desc: str):
    """Fit `params`, then put back every slice but `expert` (dim 0 indexes experts)."""
    before = [p.detach().clone() for p in params]
    result = fit(model, members, expert_train_config(cfg), seed=seed, params=params, desc=desc)
    with torch.no_grad():
        for p, old in zip(params, before):
            keep = torch.ones(p.shape[0], dtype=torch.bool)
            keep[expert] = False
            p[keep] = old[keep]
    return result


def set_mode(model: nn.Module, mode: str, active: int = 0) -> None:
    for layer in _layers(model):
        layer.mode, layer.active = mode, active


@register("phatgoose")
def upcycle(dense: nn.Module, dense_arch: dict, cfg: UpcycleConfig, data: Prepared, seed: int = 0) -> Upcycled:
    groups = class_groups(data.num_classes, cfg.num_experts)
    model = copy.deepcopy(dense)
    settings = {"kind": "phatgoose", "num_experts": len(groups), "top_k": min(cfg.top_k, len(groups)),
                "rank": cfg.lora_rank, "alpha": cfg.lora_alpha}
    attach_moe(model, settings)
    for p in model.parameters():
        p.requires_grad_(False)
    layers = _layers(model)
    experts = [p for layer in layers for p in layer.lora.parameters()]
    gates = [layer.router.weight for layer in layers]
    history = {}
    for i, classes in enumerate(groups):
        members = data.train.subset(torch.from_numpy(np.isin(data.train.y.numpy(), classes)))
        for stage, params in (("expert", experts), ("gate", gates)):
            set_mode(model, stage, i)
            for p in params:
                p.requires_grad_(True)
            history[f"{stage}_{i}"] = _train_slice(model, params, i, members, cfg, seed + i, f"phatgoose {stage} {i}")
            for p in params:
                p.requires_grad_(False)
    set_mode(model, "route")
    return Upcycled(model, dict(dense_arch, moe=settings), [], history=history, evaluate=compare_uniform)


def compare_uniform(model: nn.Module, data: Prepared) -> dict:
    """Test accuracy with uniform averaging of the experts (the baseline routing must beat)."""
    device = next(model.parameters()).device
    set_mode(model, "uniform")
    try:
        uniform = accuracy(model, data.test.to(device))
    finally:
        set_mode(model, "route")
    return {"uniform_test_acc": uniform, "routed_test_acc": accuracy(model, data.test.to(device))}
