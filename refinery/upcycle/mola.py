"""MoLA (Gao et al., "Higher Layers Need More LoRA Experts", 2024). Reference code:
github.com/GCYZSL/MoLA, src/mola_lora_hacked.py (`Linear_MoE`, `LoraMoE_Layer`),
src/mola_modeling_llama_hacked.py (`load_balancing_loss_func`, the causal LM's loss) and
mola_training.py (defaults).

The dense model is frozen; every adapted linear gets E_l LoRA experts and a router of its own
that reads that linear's own input (Sec. 3; `Linear_MoE.forward`):
    y = W x + sum_{k in topk(softmax(W_r x))} w_k * B_k A_k x * (alpha / r),
w renormalised over the top k. Here the adapted linears are both FFN linears, so fc1's router
reads the block input and fc2's router reads gelu(fc1(x)), as the reference's down_proj router
reads its own input. B = 0 at the start, so the model equals the dense one at step 0.
As in the reference: routers Linear(n, E) without bias, kaiming-uniform (like A); r = 8,
alpha = 16 (`lora_rank`, `lora_alpha`), lora_dropout 0.05 on the adapters' input
(`mola_lora_dropout`), top-2, no balance loss (`obalance=False`). With `mola_balance` the
Switch balance loss E * sum_e f_e P_e, f counting all k choices, is added with coefficient
`mola_aux_coef` (the reference's `router_aux_loss_coef = 0.001`).

`mola_experts` lists counts per group of layers (the paper's 2,4,6,8 over four groups of
layers: "increasing" beats uniform at an equal total). Layer l of L takes the count of group
floor(l * G / L), so a list longer than the depth is sampled and a shorter one is repeated;
both linears of a layer get that count (the reference's `number_experts[layer_index]`).

Trainable parameters per layer: E_l * (2 r (d + h) + d + h): A1 (d x r), B1 (r x h),
A2 (h x r), B2 (r x d) per expert, plus the routers of fc1 (d x E_l) and fc2 (h x E_l).

Deviations from the reference:
- only the FFN's two linears are adapted (the reference adapts q, k, v, o, gate, up and down
  projections of a Llama block); this is a scope choice, not a key;
- with `mola_balance`, the loss is taken per adapted linear and summed, where the reference
  concatenates the router logits of a decoder layer's adapted linears into one loss per layer
  (the default, off, is the same in both);
- the router z-loss is not used (z_coef 0), as in the reference.
"""
from __future__ import annotations

import copy

from torch import nn

from ..config import UpcycleConfig
from ..models import attach_moe, blocks_of
from ..models.lora import LoRAExpertLinear
from . import Upcycled, register
from ..train import cross_entropy_loss


def layer_counts(counts: list[int], depth: int) -> list[int]:
    return [int(counts[layer * len(counts) // depth]) for layer in range(depth)]


def mola_settings(cfg: UpcycleConfig, depth: int) -> dict:
    return {"kind": "mola", "num_experts": layer_counts(cfg.mola_experts, depth), "top_k": cfg.top_k,
            "rank": cfg.lora_rank, "scale": cfg.lora_alpha / cfg.lora_rank,
            "aux_coef": cfg.mola_aux_coef if cfg.mola_balance else 0.0, "z_coef": 0.0,
            "lora_dropout": cfg.mola_lora_dropout}


def trainable_count(counts: list[int], dim: int, hidden: int, rank: int) -> int:
    return sum(e * (2 * rank * (dim + hidden) + dim + hidden) for e in counts)


def adapter_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The LoRA experts and routers of every adapted linear: what MoLA trains."""
    layers = [m for m in model.modules() if isinstance(m, LoRAExpertLinear)]
    return [p for layer in layers for p in (*layer.a, *layer.b, *layer.router.parameters())]


@register("mola")
def upcycle(dense: nn.Module, dense_arch: dict, cfg: UpcycleConfig, data=None, seed: int = 0) -> Upcycled:
    model = copy.deepcopy(dense)
    settings = mola_settings(cfg, len(blocks_of(model)))
    attach_moe(model, settings)
    model.requires_grad_(False)
    params = adapter_parameters(model)
    for p in params:
        p.requires_grad_(True)
    return Upcycled(model, dict(dense_arch, moe=settings), params, loss=cross_entropy_loss(cfg.train.label_smoothing))
