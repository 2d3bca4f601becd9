"""MoE++ upcycling (Jin et al., "MoE++: Accelerating Mixture-of-Experts Methods with
Zero-Computation Experts", 2024).

Every FFN becomes a MoE++ layer (refinery/models/moepp.py): FFN experts that start as copies
of the dense FFN (as in sparse upcycling), plus zero, copy and constant experts, gating
residuals logits_l += W_g logits_(l-1) with W_g = 0 at the start, and the heterogeneous
balance loss L_b = R * sum_i eta_i f_i P_i, eta = 1 for FFN experts and tau (`moepp_tau`,
paper default 0.75) for zero-computation ones. Every weight then trains with the task loss.
Reported: the mean number of FFN experts a token runs (below top_k when tokens skip).
"""
from __future__ import annotations

import copy

from torch import nn

from ..config import UpcycleConfig
from ..models import attach_moe
from . import Upcycled, register
from ..train import cross_entropy_loss
from .sparse import trainable_parameters


def moepp_settings(cfg: UpcycleConfig) -> dict:
    return {"kind": "moepp", "num_experts": cfg.num_experts, "top_k": cfg.top_k, "num_zero": cfg.moepp_zero,
            "num_copy": cfg.moepp_copy, "num_constant": cfg.moepp_constant, "tau": cfg.moepp_tau,
            "aux_coef": cfg.aux_coef, "z_coef": cfg.z_coef}


@register("moepp")
def upcycle(dense: nn.Module, dense_arch: dict, cfg: UpcycleConfig, data=None, seed: int = 0) -> Upcycled:
    model = copy.deepcopy(dense)
    settings = moepp_settings(cfg)
    attach_moe(model, settings)
    return Upcycled(model, dict(dense_arch, moe=settings), trainable_parameters(model, cfg.train_scope),
                    loss=cross_entropy_loss(cfg.train.label_smoothing))
