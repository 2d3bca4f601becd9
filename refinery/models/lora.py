"""LoRA experts on a frozen dense FFN, mixed per token: MoLA and PHATGOOSE layers.

LoRA (Hu et al. 2021): W x + (alpha / r) B A x, with A (r x n) random and B (m x r) zero, so
the adapted layer starts equal to the frozen one. Each of the FFN's two linears gets E such
adapters; a token's gate weights g (T x E, zero outside its chosen experts) mix them:
    h = gelu(W1 x + b1 + s sum_e g_e B1_e A1_e x),  y = W2 h + b2 + s sum_e g_e B2_e A2_e h.
Because r*E is small, all adapters run as two thin GEMMs with the gates applied in between;
weights outside the top-k are exactly zero, so this equals top-k dispatch.

- MoLA (Gao et al., "Higher Layers Need More LoRA Experts", 2024): a learned top-k router;
  layer l has E_l experts (counts are config; increasing with depth is the paper's finding).
- PHATGOOSE (Muqeeth et al., "Learning to Route Among Specialized Experts for Zero-Shot
  Generalization", 2024): experts trained independently, each with a gate vector v_i trained
  afterwards (sigmoid(v_i . u) scales expert i); at inference tokens go top-k by the dot
  products of the standardised token u and standardised v_i, with softmax weights (Sec. 3).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import FeedForward
from .moe import Routed


class LoRAExperts(nn.Module):
    def __init__(self, dim: int, hidden: int, num: int, rank: int, alpha: float):
        super().__init__()
        self.num, self.rank, self.scale = num, rank, alpha / rank
        self.a1 = nn.Parameter(torch.randn(num, dim, rank) / math.sqrt(dim))
        self.b1 = nn.Parameter(torch.zeros(num, rank, hidden))
        self.a2 = nn.Parameter(torch.randn(num, hidden, rank) / math.sqrt(hidden))
        self.b2 = nn.Parameter(torch.zeros(num, rank, dim))

    def delta(self, x: torch.Tensor, gates: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        low = x @ a.permute(1, 0, 2).reshape(a.shape[1], -1)  # (T, E*r)
        low = low * gates.to(x.dtype).repeat_interleave(self.rank, dim=1)
        return (low @ b.reshape(-1, b.shape[2])) * self.scale


class LoRAFFN(Routed):
    """Frozen FFN (fc1/fc2 stay nn.Linear, so cost hooks see them) plus gated LoRA experts."""

    def __init__(self, dim: int, hidden: int, num_experts: int, top_k: int, rank: int = 8, alpha: float = 16.0,
                 aux_coef: float = 1e-3, z_coef: float = 0.0):
        super().__init__(dim, num_experts, top_k, aux_coef, z_coef)
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.lora = LoRAExperts(dim, hidden, num_experts, rank, alpha)
        self.freeze_base()

    def freeze_base(self) -> None:
        for p in (*self.fc1.parameters(), *self.fc2.parameters()):
            p.requires_grad_(False)

    @classmethod
    def from_ffn(cls, ffn: FeedForward, num_experts: int, top_k: int, **kwargs) -> "LoRAFFN":
        layer = cls(ffn.fc1.in_features, ffn.fc1.out_features, num_experts, top_k, **kwargs)
        layer = layer.to(ffn.fc1.weight.device)
        layer.fc1.load_state_dict(ffn.fc1.state_dict())
        layer.fc2.load_state_dict(ffn.fc2.state_dict())
        return layer

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """(T, E) mixing weights, zero outside each token's chosen experts."""
        weights, idx = self.route(x)
        return torch.zeros(x.shape[0], self.num_routed, device=x.device).scatter(1, idx, weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        g = self.gates(flat)
        h = F.gelu(self.fc1(flat) + self.lora.delta(flat, g, self.lora.a1, self.lora.b1))
        return (self.fc2(h) + self.lora.delta(h, g, self.lora.a2, self.lora.b2)).view(shape)


class MoLA(LoRAFFN):
    """Learned top-k router over this layer's LoRA experts (the Routed router)."""


class Phatgoose(LoRAFFN):
    """`mode` picks the gating: "route" (inference), "uniform" (1/E each, the baseline),
    "expert" (only expert `active`, weight 1: its training), "gate" (only expert `active`,
    weight sigmoid(v . u): its gate's training). The router weight rows are the gate vectors v."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("aux_coef", 0.0)
        super().__init__(*args, **kwargs)
        nn.init.zeros_(self.router.weight)  # sigmoid(0) = 1/2: every gate starts half open
        self.mode, self.active = "route", 0

    def router_logits(self, x: torch.Tensor) -> torch.Tensor:
        u, v = _standardise(x.float()), _standardise(self.router.weight.float())
        return u @ v.t()

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "route":
            return super().gates(x)
        g = torch.zeros(x.shape[0], self.num_routed, device=x.device)
        if self.mode == "uniform":
            return g + 1.0 / self.num_routed
        if self.mode == "expert":
            g[:, self.active] = 1.0
            return g
        if self.mode == "gate":
            gate = torch.sigmoid(x.float() @ self.router.weight[self.active].float())
            return torch.cat([g[:, :self.active], gate[:, None], g[:, self.active + 1:]], dim=1)
        raise ValueError(f"unknown PHATGOOSE mode {self.mode!r}")


def _standardise(t: torch.Tensor) -> torch.Tensor:
    return (t - t.mean(-1, keepdim=True)) / (t.std(-1, keepdim=True) + 1e-6)
