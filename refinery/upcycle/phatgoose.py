"""PHATGOOSE (Muqeeth et al., "Learning to Route Among Specialized Experts for Zero-Shot
Generalization", 2024, Sec. 3). Reference code: github.com/r-three/phatgoose,
src/models/addons/moe.py (`Router._forward`, `FFNExperts._forward` and `pre_forward`),
colm/models/t5xl/moe_lora_rank16.gin and colm/experiments/bash_scripts/{train_gate,
eval_multitask}.sh (the settings used).

1. Split the classes into E groups; train one LoRA expert per group, independently: expert i
   trains alone (gate 1, other experts off, everything else frozen) on group i's samples.
2. Freeze expert i and train its gate vector v_i, one per adapted linear: the expert's output
   is scaled by sigmoid(v_i . u) for each token u, again on group i only (reference:
   `learn_input_gate="only_sigmoid"`, v_i zero-initialised; it scales the expert's input,
   which for a LoRA expert is the same).
3. Inference (Eq. 2-3 with the reference's `score_type="original"`, `scaling_scores=True`):
   s_i(u) = LN(u) . LN(v_i) * sqrt(1/d), LN a LayerNorm without affine parameters (biased
   variance, eps 1e-5), d the linear's input width; p = softmax(s); top-k (k = 2) of p,
   weights w / (sum w + 1e-6) (`topk_value=2`, `normalize_topk=True`).
Each adapted linear has its own gate vectors and routes on its own input (the reference's
per-module routers, `d_router` = the module's input width): fc1 on the block input, fc2 on
gelu(fc1(x)). LoRA as the reference's `FFNExperts`: A ~ N(0, 0.01^2), B = 0, output / r
(`divide_by_d_bottleneck`), i.e. alpha = 1 (`phatgoose_lora_alpha`). No balance or z-loss.

Only what trains is handed to the optimizer: expert i's A and B of every adapted linear,
then its gate vectors; every other tensor is untouched. No joint training follows (params is
empty). The baseline is uniform averaging: every expert with weight 1/E. Both accuracies are
reported; the paper's claim is routing > averaging.

Deviations from the reference:
- only the FFN's two linears are adapted (the reference adapts every linear of T5: attention
  and FFN); a scope choice, not a key;
- the data groups are class groups of one data set (the reference: one expert per task);
- experts and gates each train `expert_epochs` epochs (the reference: gates 100 steps);
- rank `lora_rank` (default 8; the reference's d_bottleneck is 16).
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ..config import UpcycleConfig
from ..data.dataset import Arrays, Prepared
from ..models import attach_moe
from ..models.lora import GateVectorLoRALinear
from ..train import FitResult, Hooks, LossFn, accuracy, fit
from . import Upcycled, register
from .common import expert_train_config

LORA_A_STD = 0.01  # the reference's init_scale


def class_groups(num_classes: int, groups: int) -> list[np.ndarray]:
    return [g for g in np.array_split(np.arange(num_classes), groups) if len(g)]


def gated_layers(model: nn.Module) -> list[GateVectorLoRALinear]:
    return [m for m in model.modules() if isinstance(m, GateVectorLoRALinear)]


def set_mode(model: nn.Module, mode: str, active: int = 0) -> None:
    for layer in gated_layers(model):
        layer.mode, layer.active = mode, active


def phatgoose_settings(cfg: UpcycleConfig, num_experts: int) -> dict:
    return {"kind": "phatgoose", "num_experts": num_experts, "top_k": min(cfg.top_k, num_experts),
            "rank": cfg.lora_rank, "scale": cfg.phatgoose_lora_alpha / cfg.lora_rank, "a_std": LORA_A_STD}


def train_experts(model: nn.Module, subsets: list[Arrays], cfg: UpcycleConfig, seed: int = 0,
                  loss: LossFn | None = None) -> dict[str, FitResult]:
    """Steps 1-2 for every expert i on subsets[i]: its LoRA tensors, then its gate vectors.
    Everything else is frozen; the model is left in "route" mode."""
    layers = gated_layers(model)
    model.requires_grad_(False)
    history = {}
    for i, members in enumerate(subsets):
        stages = (("expert", [p for layer in layers for p in layer.expert_parameters(i)]),
                  ("gate", [layer.router[i] for layer in layers]))
        for stage, params in stages:
            set_mode(model, stage, i)
            for p in params:
                p.requires_grad_(True)
            history[f"{stage}_{i}"] = fit(model, members, expert_train_config(cfg), seed=seed + i, params=params,
                                          hooks=Hooks(loss=loss), desc=f"phatgoose {stage} {i}")
            for p in params:
                p.requires_grad_(False)
    set_mode(model, "route")
    return history


@register("phatgoose")
def upcycle(dense: nn.Module, dense_arch: dict, cfg: UpcycleConfig, data: Prepared, seed: int = 0) -> Upcycled:
    groups = class_groups(data.num_classes, cfg.num_experts)
    model = copy.deepcopy(dense)
    settings = phatgoose_settings(cfg, len(groups))
    attach_moe(model, settings)
    subsets = [data.train.subset(torch.from_numpy(np.isin(data.train.y.numpy(), classes))) for classes in groups]
    history = train_experts(model, subsets, cfg, seed)
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
