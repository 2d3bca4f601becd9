"""MoLA (Gao et al., "Higher Layers Need More LoRA Experts", 2024).

The dense model is frozen; every FFN gets E_l LoRA experts, top-k routed (Sec. 3):
    y = W x + sum_{k in topk} w_k * B_k A_k x * (alpha / r),
on both FFN linears, with B = 0 at the start so the model equals the dense one at step 0.
Only the LoRA experts and routers train (balance coefficient 1e-3 in the reference).

`mola_experts` lists counts per group of layers (the paper's 2,4,6,8 over four groups of
layers: "increasing" beats uniform at an equal total). Layer l of L takes the count of group
floor(l * G / L), so a list longer than the depth is sampled and a shorter one is repeated.

Trainable parameters per layer: E_l * (2 r (d + h) + d), i.e. A1 (d x r), B1 (r x h),
A2 (h x r), B2 (r x d) per expert plus the router's d x E_l.
"""
from __future__ import annotations

import copy

from torch import nn

from ..config import UpcycleConfig
from ..models import attach_moe, blocks_of
from ..models.moe import routed_layers
from . import Upcycled, register
from ..train import cross_entropy_loss


def layer_counts(counts: list[int], depth: int) -> list[int]:
    return [int(counts[layer * len(counts) // depth]) for layer in range(depth)]


def mola_settings(cfg: UpcycleConfig, depth: int) -> dict:
    return {"kind": "mola", "num_experts": layer_counts(cfg.mola_experts, depth), "top_k": cfg.top_k,
            "rank": cfg.lora_rank, "alpha": cfg.lora_alpha, "aux_coef": cfg.mola_aux_coef, "z_coef": 0.0}


def trainable_count(counts: list[int], dim: int, hidden: int, rank: int) -> int:
    return sum(e * (2 * rank * (dim + hidden) + dim) for e in counts)


@register("mola")
def upcycle(dense: nn.Module, dense_arch: dict, cfg: UpcycleConfig, data=None, seed: int = 0) -> Upcycled:
    model = copy.deepcopy(dense)
    settings = mola_settings(cfg, len(blocks_of(model)))
    attach_moe(model, settings)
    for p in model.parameters():
        p.requires_grad_(False)
    params = [p for layer in routed_layers(model) for p in (*layer.lora.parameters(), layer.router.weight)]
    for p in params:
        p.requires_grad_(True)
    return Upcycled(model, dict(dense_arch, moe=settings), params, loss=cross_entropy_loss(cfg.train.label_smoothing))
