"""Sparse upcycling (Komatsuzaki et al., "Sparse Upcycling: Training Mixture-of-Experts from
Dense Checkpoints", 2023).

Every FFN becomes an MoE whose E experts are exact copies of it; every other weight is copied
and only the routers are new. With renormalised top-k weights (sum_k w_k = 1) the MoE output at
step 0 is therefore sum_k w_k * FFN(x) = FFN(x): the upcycled model starts exactly where the
dense one ended, for any router weights.
"""
from __future__ import annotations

import copy

from torch import nn

from ..config import UpcycleConfig
from ..models import attach_moe
from . import Upcycled, register


def moe_settings(cfg: UpcycleConfig) -> dict:
    return {"num_experts": cfg.num_experts, "top_k": cfg.top_k, "aux_coef": cfg.aux_coef,
            "z_coef": cfg.z_coef, "capacity_factor": cfg.capacity_factor}


def upcycle_model(dense: nn.Module, dense_arch: dict, cfg: UpcycleConfig) -> tuple[nn.Module, dict]:
    """Return (moe_model, moe_arch); the dense model is left untouched."""
    model = copy.deepcopy(dense)
    settings = moe_settings(cfg)
    attach_moe(model, settings)
    return model, dict(dense_arch, moe=settings)


@register("sparse")
def upcycle(dense: nn.Module, dense_arch: dict, cfg: UpcycleConfig, data=None, seed: int = 0) -> Upcycled:
    model, arch = upcycle_model(dense, dense_arch, cfg)
    return Upcycled(model, arch, trainable_parameters(model, cfg.train_scope))


def trainable_parameters(model: nn.Module, scope: str) -> list[nn.Parameter]:
    """`all` trains every weight; `router` trains only the routers (experts stay copies)."""
    if scope == "router":
        return [p for name, p in model.named_parameters() if ".router." in name]
    return list(model.parameters())
