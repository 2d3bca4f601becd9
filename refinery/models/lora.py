"""Routed LoRA experts on frozen linears.

LoRA (Hu et al. 2021): W x + s B A x, with A (r x n) random, B (m x r) zero and s the scale,
so the adapted linear starts equal to the frozen one. A `LoRAExpertLinear` is one frozen
linear with E such adapters and its own router, which reads that linear's own input:
    y = W x + b + s * sum_e g_e(x) B_e A_e x,
g (T x E) zero outside each token's chosen experts. This is how both references adapt a
model: MoLA's `Linear_MoE` (a router and E LoRA pairs inside every adapted nn.Linear) and
PHATGOOSE's per-module routers (`router_modules` = the expert modules, `d_router` = the
module's input width). A `LoRAFFN` is the dense FFN with both linears adapted this way, so a
block holds two routed layers: fc1's router reads x, fc2's reads gelu(fc1(x)).

Because r*E is small, all adapters of a linear run as two thin GEMMs with the gates applied in
between; weights outside the top-k are exactly zero, so this equals top-k dispatch. Each
expert's A and B are parameters of their own (`expert_parameters(e)`), so one expert can be
trained alone by handing exactly its tensors to the optimizer.

Two routings: `LoRAExpertLinear`'s learned top-k router, and `GateVectorLoRALinear`'s gate
vectors. The recipes in refinery/upcycle assemble them and document each method against its
paper and reference code.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import FeedForward
from .moe import Routed


class LoRAExpertLinear(Routed):
    """Frozen `base` Linear (it stays an nn.Linear, so cost hooks see it) + E routed LoRA
    adapters. The router is the learned top-k one of `Routed`: Linear(n, E) without bias on the
    linear's input, kaiming-uniform initialised like nn.Linear; softmax, top-k, renormalised.
    `a_std=None` draws A like PEFT (kaiming-uniform, a=sqrt(5)); a float draws A ~ N(0, a_std^2).
    `lora_dropout` applies to the adapters' input only (PEFT's lora_dropout)."""

    def __init__(self, in_features: int, out_features: int, num_experts: int, top_k: int, rank: int = 8,
                 scale: float = 2.0, aux_coef: float = 0.0, z_coef: float = 0.0, lora_dropout: float = 0.0,
                 a_std: float | None = None):
        super().__init__(in_features, num_experts, top_k, aux_coef, z_coef)
        nn.init.kaiming_uniform_(self.router.weight, a=math.sqrt(5))  # as PEFT/nn.Linear: U(+-1/sqrt(n))
        self.rank, self.scale = rank, scale
        self.base = nn.Linear(in_features, out_features).requires_grad_(False)
        self.lora_dropout = nn.Dropout(lora_dropout)
        self.a = nn.ParameterList([nn.Parameter(torch.empty(in_features, rank)) for _ in range(num_experts)])
        self.b = nn.ParameterList([nn.Parameter(torch.zeros(rank, out_features)) for _ in range(num_experts)])
        for a in self.a:
            if a_std is None:  # kaiming_uniform_(a=sqrt(5)) on the (r, n) weight: U(-1/sqrt(n), 1/sqrt(n))
                nn.init.uniform_(a, -1 / math.sqrt(in_features), 1 / math.sqrt(in_features))
            else:
                nn.init.normal_(a, std=a_std)

    def expert_parameters(self, e: int) -> list[nn.Parameter]:
        return [self.a[e], self.b[e]]

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """(T, E) mixing weights, zero outside each token's chosen experts."""
        weights, idx = self.route(x)
        return torch.zeros(x.shape[0], self.num_routed, device=x.device).scatter(1, idx, weights)

    def delta(self, x: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        low = self.lora_dropout(x) @ torch.cat(list(self.a), dim=1)  # (T, E*r)
        low = low * gates.to(low.dtype).repeat_interleave(self.rank, dim=1)
        return (low @ torch.cat(list(self.b), dim=0)) * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        out = self.base(flat) + self.delta(flat, self.gates(flat))
        return out.view(*shape[:-1], out.shape[-1])


class LoRAFFN(nn.Module):
    """The dense FFN, Linear(d, h) -> GELU -> Linear(h, d), with both linears routed LoRA
    linears of class `linear`; keyword arguments go to both."""

    linear = LoRAExpertLinear

    def __init__(self, dim: int, hidden: int, num_experts: int, top_k: int, dropout: float = 0.0, **kwargs):
        super().__init__()
        self.fc1 = self.linear(dim, hidden, num_experts, top_k, **kwargs)
        self.fc2 = self.linear(hidden, dim, num_experts, top_k, **kwargs)
        self.dropout = nn.Dropout(dropout)

    @classmethod
    def from_ffn(cls, ffn: FeedForward, num_experts: int, top_k: int, **kwargs) -> LoRAFFN:
        layer = cls(ffn.fc1.in_features, ffn.fc1.out_features, num_experts, top_k, dropout=ffn.dropout.p, **kwargs)
        layer = layer.to(ffn.fc1.weight.device)
        layer.fc1.base.load_state_dict(ffn.fc1.state_dict())
        layer.fc2.base.load_state_dict(ffn.fc2.state_dict())
        return layer

    def routed(self) -> list[LoRAExpertLinear]:
        return [self.fc1, self.fc2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(F.gelu(self.fc1(x))))


class GateVectorLoRALinear(LoRAExpertLinear):
    """Routing by gate vectors v_e (one parameter each, zero-initialised: sigmoid(0) = 1/2),
    trained one expert at a time. `mode` picks the gating: "route" (inference: top-k of softmax over the scores,
    renormalised), "uniform" (1/E each, the baseline), "expert" (only expert `active`, weight 1:
    its training), "gate" (only expert `active`, weight sigmoid(v . x): its gate's training).

    Scores: LN(x) . LN(v_e) * sqrt(1/n), LN a LayerNorm without affine (biased variance,
    eps 1e-5); the top-k weights are w / (sum w + 1e-6)."""

    EPS_NORM, EPS_TOPK = 1e-5, 1e-6

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        del self.router
        self.router = nn.ParameterList([nn.Parameter(torch.zeros(self.dim)) for _ in range(self.num_routed)])
        self.mode, self.active = "route", 0

    def router_logits(self, x: torch.Tensor) -> torch.Tensor:
        v = torch.stack(list(self.router)).float()
        u = F.layer_norm(x.float(), (self.dim,), eps=self.EPS_NORM)
        return u @ F.layer_norm(v, (self.dim,), eps=self.EPS_NORM).t() * math.sqrt(1.0 / self.dim)

    def normalise(self, weights: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return weights / (weights.sum(dim=-1, keepdim=True) + self.EPS_TOPK)

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
            gate = torch.sigmoid(x.float() @ self.router[self.active].float())
            return torch.cat([g[:, :self.active], gate[:, None], g[:, self.active + 1:]], dim=1)
        raise ValueError(f"unknown gate-vector mode {self.mode!r}")


class GateVectorLoRAFFN(LoRAFFN):
    linear = GateVectorLoRALinear
