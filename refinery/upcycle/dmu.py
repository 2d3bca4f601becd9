"""Diversified Multiplet Upcycling, DMU (Zhang et al., "CLIP-MoE: Towards Building Mixture of
Experts for CLIP with Diversified Multiplet Upcycling", 2024, Sec. 3).

1. Cluster the dense model's features into E groups (k-means; the paper's Multistage
   Contrastive Learning clusters features into pseudo-labels stage by stage).
2. Fine-tune E variants of the dense model that differ only in their FFNs: variant i trains
   its FFN weights only (everything else frozen) on group i. Adaptation: our models are
   classifiers, so each variant fits the task labels of its cluster instead of a contrastive
   loss on pseudo-labels; the clusters still make the variants diverge.
3. Expert i of every MoE layer is variant i's FFN; the routers are then trained alone with
   the task loss + 0.01 * L_aux (Eq. 6; reference setup 4 experts, top-2).

Diversity is reported as the mean linear CKA between the experts' outputs (< 1: they differ).
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import nn

from ..config import UpcycleConfig
from ..data.dataset import Prepared
from ..models import blocks_of
from ..models.moe import MoE
from ..train import cross_entropy_loss, fit
from . import Upcycled, register
from .common import expert_train_config, ffn_parameters, mean_expert_cka, router_parameters
from .sparse import moe_settings


@torch.no_grad()
def feature_clusters(model: nn.Module, x: torch.Tensor, groups: int, seed: int) -> np.ndarray:
    model.eval()
    device = next(model.parameters()).device
    feats = torch.cat([model.features(x[i:i + 512].to(device)).float().cpu() for i in range(0, len(x), 512)])
    return KMeans(n_clusters=groups, n_init=4, random_state=seed).fit_predict(feats.numpy())


@register("dmu")
def upcycle(dense: nn.Module, dense_arch: dict, cfg: UpcycleConfig, data: Prepared, seed: int = 0) -> Upcycled:
    groups = feature_clusters(dense, data.train.x, cfg.num_experts, seed)
    variants, history = [], {}
    for i in range(cfg.num_experts):
        variant = copy.deepcopy(dense)
        members = data.train.subset(torch.from_numpy(groups == i))
        history[f"variant_{i}"] = fit(variant, members, expert_train_config(cfg), seed=seed + i,
                                      params=ffn_parameters(variant), desc=f"dmu variant {i}")
        variants.append(variant)
    model = copy.deepcopy(dense)
    settings = dict(moe_settings(cfg), aux_coef=cfg.dmu_aux_coef)
    layer_kwargs = {k: v for k, v in settings.items() if k not in ("num_experts", "top_k")}
    for depth, block in enumerate(blocks_of(model)):
        ffns = [blocks_of(v)[depth].ffn for v in variants]
        block.ffn = MoE.from_ffns(ffns, cfg.top_k, **layer_kwargs)
    return Upcycled(model, dict(dense_arch, moe=settings), router_parameters(model),
                    loss=cross_entropy_loss(cfg.train.label_smoothing), history=history,
                    evaluate=lambda m, d: {"cka": mean_expert_cka(m, d.test.x),
                                           "cluster_sizes": np.bincount(groups, minlength=cfg.num_experts).tolist()})
