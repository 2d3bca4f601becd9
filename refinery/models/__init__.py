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
from .resnet import resnet8x4, resnet32x4
from .moe import MoE, Routed, moe_layers, routed_aux_loss, routed_layers

BACKBONES: dict[str, Callable[..., nn.Module]] = {"cct": CCT, "mlp": MLP, "resnet8x4": resnet8x4,
                                                  "resnet32x4": resnet32x4}


def make_arch(model_cfg: dict[str, Any], in_shape: tuple[int, ...], num_classes: int,
              moe: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"backbone": dict(model_cfg), "in_shape": list(in_shape), "num_classes": int(num_classes), "moe": moe}


def blocks_of(model: nn.Module) -> list[Block]:
    return [m for m in model.modules() if isinstance(m, Block)]


def _layer_kinds() -> dict[str, Callable[..., nn.Module]]:
    from .lora import GateVectorLoRAFFN, LoRAFFN
    from .moepp import MoEPlusPlus
    return {"moe": MoE.from_ffn, "moepp": MoEPlusPlus.from_ffn, "mola": LoRAFFN.from_ffn,
            "phatgoose": GateVectorLoRAFFN.from_ffn}


def attach_moe(model: nn.Module, moe: dict[str, Any]) -> None:
    """Replace every block's FFN by a routed layer described by `moe` (built from that FFN).

    `moe["kind"]` picks the layer: "moe" (the default, so older records without a kind still
    load), "moepp", "mola" or "phatgoose"; the other keys are its constructor arguments. A
    list for `num_experts` gives one count per block (MoLA's per-layer counts).
    """
    settings = dict(moe)
    kind = settings.pop("kind", "moe")
    kinds = _layer_kinds()
    if kind not in kinds:
        raise ValueError(f"unknown MoE kind {kind!r}; known: {', '.join(kinds)}")
    blocks = [b for b in blocks_of(model) if isinstance(b.ffn, FeedForward)]
    counts = settings.pop("num_experts")
    if isinstance(counts, (list, tuple)) and len(counts) != len(blocks):
        raise ValueError(f"num_experts lists {len(counts)} layers, the model has {len(blocks)}")
    for i, block in enumerate(blocks):
        count = counts[i] if isinstance(counts, (list, tuple)) else counts
        block.ffn = kinds[kind](block.ffn, num_experts=int(count), **settings)
    if kind == "moepp":
        from .moepp import link_gating_residuals
        link_gating_residuals([b.ffn for b in blocks])


EnsembleBuilder = Callable[[dict[str, Any]], nn.Module]
ENSEMBLES: dict[str, EnsembleBuilder] = {}


def register_ensemble(kind: str, build: EnsembleBuilder) -> EnsembleBuilder:
    """Let `build_model` rebuild an arch record with {"ensemble": {"kind": kind, ...}}. The module
    that defines an ensemble registers it, so this package needs to know no method."""
    ENSEMBLES[kind] = build
    return build


def build_model(arch: dict[str, Any]) -> nn.Module:
    if arch.get("ensemble"):  # an ensemble of members described by the rest of the record
        kind = arch["ensemble"].get("kind", "sisa")
        if kind not in ENSEMBLES:
            raise ValueError(f"ensemble kind {kind!r} is not registered (import the module that defines it; "
                             f"registered: {', '.join(sorted(ENSEMBLES)) or 'none'})")
        return ENSEMBLES[kind](arch)
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


__all__ = ["BACKBONES", "ENSEMBLES", "register_ensemble", "CCT", "MLP", "MoE", "attach_moe", "blocks_of", "build_model",
           "count_params",
           "make_arch", "moe_layers", "routed_aux_loss", "routed_layers", "Routed"]
