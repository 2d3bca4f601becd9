"""What the recipes share: FFN and router parameters, per-expert outputs, and linear CKA."""
from __future__ import annotations

import torch
from torch import nn

from ..config import TrainConfig, UpcycleConfig
from ..models import blocks_of
from ..models.moe import MoE, routed_layers


def ffn_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for block in blocks_of(model) for p in block.ffn.parameters()]


def router_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for layer in routed_layers(model) for p in layer.router.parameters()]


def expert_train_config(cfg: UpcycleConfig) -> TrainConfig:
    return cfg.train.model_copy(update={"epochs": cfg.expert_epochs})


def linear_cka(a: torch.Tensor, b: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019, Eq. 5): ||B^T A||_F^2 / (||A^T A||_F ||B^T B||_F),
    columns centred. 1 for identical (or isotropically scaled / rotated) representations."""
    a, b = a.double() - a.double().mean(0), b.double() - b.double().mean(0)
    num = (b.t() @ a).pow(2).sum()
    den = (a.t() @ a).pow(2).sum().sqrt() * (b.t() @ b).pow(2).sum().sqrt()
    return float(num / den) if den > 0 else float("nan")


@torch.no_grad()
def expert_outputs(model: nn.Module, x: torch.Tensor) -> list[list[torch.Tensor]]:
    """For each MoE layer, every expert's output on every token that reaches the layer."""
    layers = [m for m in routed_layers(model) if isinstance(m, MoE)]
    inputs: list[torch.Tensor] = []
    handles = [m.register_forward_pre_hook(lambda mod, args: inputs.append(args[0].reshape(-1, args[0].shape[-1])))
               for m in layers]
    was_training = model.training
    model.eval()
    try:
        model(x.to(next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return [[layer._expert(e, tokens) for e in range(layer.num_experts)] for layer, tokens in zip(layers, inputs)]


def mean_expert_cka(model: nn.Module, x: torch.Tensor) -> float:
    """Mean linear CKA over pairs of experts of the same layer, averaged over layers."""
    values = []
    for outs in expert_outputs(model, x):
        values += [linear_cka(outs[i], outs[j]) for i in range(len(outs)) for j in range(i + 1, len(outs))]
    return float(sum(values) / len(values)) if values else float("nan")
