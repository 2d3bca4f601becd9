"""Backbones chosen by name, and the architecture record that rebuilds a model from a checkpoint.

An `arch` dict is plain JSON: {"backbone": ModelConfig fields, "in_shape": [...],
"num_classes": n, "moe": null or MoE settings}. It is stored in every checkpoint's attrs, so a
model can be rebuilt without pickle.
"""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

from .blocks import Block, FeedForward
from .cct import CCT
from .mlp import MLP
from .moe import MoE, moe_layers

BACKBONES: dict[str, Callable[..., nn.Module]] = {"cct": CCT, "mlp": MLP}


def make_arch(model_cfg: dict[str, Any], in_shape: tuple[int, ...], num_classes: int,
              moe: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"backbone": dict(model_cfg), "in_shape": list(in_shape), "num_classes": int(num_classes), "moe": moe}


def blocks_of(model: nn.Module) -> list[Block]:
    return [m for m in model.modules() if isinstance(m, Block)]


def attach_moe(model: nn.Module, moe: dict[str, Any]) -> None:
    """Replace every block's FFN by an MoE of the given settings (sparse-upcycled from it)."""
    for block in blocks_of(model):
        if isinstance(block.ffn, FeedForward):
            block.ffn = MoE.from_ffn(block.ffn, **moe)


def build_model(arch: dict[str, Any]) -> nn.Module:
    cfg = dict(arch["backbone"])
    name = cfg.pop("arch")
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    model = BACKBONES[name](tuple(arch["in_shape"]), arch["num_classes"], **cfg)
    if arch.get("moe"):
        attach_moe(model, arch["moe"])
    return model


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = ["BACKBONES", "CCT", "MLP", "MoE", "attach_moe", "blocks_of", "build_model", "count_params",
           "make_arch", "moe_layers"]
