"""Mixture-of-experts FFN with token-choice top-k routing.

Router (Shazeer et al. 2017; Switch/GShard): logits = x W_r in fp32, p = softmax(logits),
(w, idx) = topk(p, k), w <- w / sum(w), y = sum_k w_k * E_{idx_k}(x).

Auxiliary losses, stored on the module after each forward as `aux_loss`:
- load balance (Switch Transformer Eq. 4): L_aux = E * sum_e f_e * P_e, with f_e the fraction
  of routed assignments sent to e and P_e the mean router probability of e (1 when balanced);
- router z-loss (ST-MoE Eq. 5): mean over tokens of logsumexp(logits)^2.

Dispatch sorts assignments by expert and runs each expert on one contiguous slice
(`dispatch="sorted"`). `dispatch="loop"` is the plain reference: a boolean mask per expert.
Both give the same outputs and gradients; tests pin that.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import FeedForward


class MoE(nn.Module):
    def __init__(self, dim: int, hidden: int, num_experts: int, top_k: int, aux_coef: float = 1e-2,
                 z_coef: float = 1e-3, capacity_factor: float | None = None, dispatch: str = "sorted"):
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k must be in [1, num_experts={num_experts}], got {top_k}")
        self.num_experts, self.top_k = num_experts, top_k
        self.aux_coef, self.z_coef, self.capacity_factor = aux_coef, z_coef, capacity_factor
        self.dispatch = dispatch
        self.router = nn.Linear(dim, num_experts, bias=False)
        nn.init.normal_(self.router.weight, std=0.02)
        self.w1 = nn.Parameter(torch.empty(num_experts, dim, hidden))
        self.b1 = nn.Parameter(torch.zeros(num_experts, hidden))
        self.w2 = nn.Parameter(torch.empty(num_experts, hidden, dim))
        self.b2 = nn.Parameter(torch.zeros(num_experts, dim))
        for w in (self.w1, self.w2):
            nn.init.normal_(w, std=1 / math.sqrt(w.shape[1]))
        self.aux_loss = torch.zeros(())
        self.reset_stats()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_ffn(cls, ffn: FeedForward, num_experts: int, top_k: int, **kwargs) -> "MoE":
        """Sparse upcycling: every expert is an exact copy of the dense FFN."""
        dim, hidden = ffn.fc1.in_features, ffn.fc1.out_features
        moe = cls(dim, hidden, num_experts, top_k, **kwargs).to(ffn.fc1.weight.device)
        with torch.no_grad():
            moe.w1.copy_(ffn.fc1.weight.t().unsqueeze(0).expand_as(moe.w1))
            moe.b1.copy_(ffn.fc1.bias.unsqueeze(0).expand_as(moe.b1))
            moe.w2.copy_(ffn.fc2.weight.t().unsqueeze(0).expand_as(moe.w2))
            moe.b2.copy_(ffn.fc2.bias.unsqueeze(0).expand_as(moe.b2))
        return moe

    # ------------------------------------------------------------------ routing
    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return renormalised top-k weights and expert indices, both (T, k); sets aux_loss."""
        logits = F.linear(x.float(), self.router.weight.float())
        probs = logits.softmax(dim=-1)
        weights, idx = probs.topk(self.top_k, dim=-1)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        counts = torch.bincount(idx.flatten(), minlength=self.num_experts)
        f = counts.float() / idx.numel()
        balance = self.num_experts * (f * probs.mean(dim=0)).sum()
        z = torch.logsumexp(logits, dim=-1).pow(2).mean()
        self.aux_loss = self.aux_coef * balance + self.z_coef * z
        if self.tracking:
            self._record(counts.detach(), probs.detach())
        return weights, idx

    def _capacity_keep(self, idx: torch.Tensor) -> torch.Tensor | None:
        """Mask (T, k) of assignments within each expert's capacity (earlier tokens win)."""
        if self.capacity_factor is None:
            return None
        cap = math.ceil(self.capacity_factor * idx.numel() / self.num_experts)
        onehot = F.one_hot(idx.flatten(), self.num_experts)
        position = (onehot.cumsum(dim=0) * onehot).sum(dim=-1) - 1
        keep = (position < cap).view_as(idx)
        if self.tracking:
            self.stats["dropped"] += int((~keep).sum())
        return keep

    # ------------------------------------------------------------------ experts
    def _expert(self, e: int, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x @ self.w1[e] + self.b1[e]) @ self.w2[e] + self.b2[e]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        weights, idx = self.route(flat)
        keep = self._capacity_keep(idx)
        if keep is not None:
            weights = weights * keep
        combine = self._sorted if self.dispatch == "sorted" else self._loop
        return combine(flat, weights.to(flat.dtype), idx).view(shape)

    def _sorted(self, x: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        flat_idx = idx.flatten()
        order = torch.argsort(flat_idx, stable=True)
        token = order // self.top_k
        counts = torch.bincount(flat_idx, minlength=self.num_experts).tolist()
        xs = x.index_select(0, token)
        outs = [self._expert(e, part) for e, part in enumerate(xs.split(counts)) if counts[e]]
        ys = torch.cat(outs) * weights.flatten()[order].unsqueeze(-1)
        return torch.zeros_like(x).index_add_(0, token, ys)

    def _loop(self, x: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(x)
        for e in range(self.num_experts):
            tok, slot = torch.nonzero(idx == e, as_tuple=True)
            if tok.numel():
                out.index_add_(0, tok, self._expert(e, x[tok]) * weights[tok, slot].unsqueeze(-1))
        return out

    # ------------------------------------------------------------------ statistics
    @property
    def tracking(self) -> bool:
        return self._tracking

    def reset_stats(self, track: bool = False) -> None:
        self._tracking = track
        self.stats = {"counts": torch.zeros(self.num_experts, dtype=torch.long),
                      "prob_sum": torch.zeros(self.num_experts), "tokens": 0, "dropped": 0,
                      "entropy_sum": 0.0}

    def _record(self, counts: torch.Tensor, probs: torch.Tensor) -> None:
        self.stats["counts"] += counts.cpu()
        self.stats["prob_sum"] += probs.sum(dim=0).cpu()
        self.stats["tokens"] += probs.shape[0]
        self.stats["entropy_sum"] += float(-(probs * probs.clamp_min(1e-12).log()).sum())

    def summary(self) -> dict[str, float | list[float]]:
        """Load per expert (fraction of assignments), its CV, mean router entropy, drop rate."""
        counts = self.stats["counts"].float()
        total = counts.sum().clamp_min(1)
        load = counts / total
        cv = float(load.std(unbiased=False) / load.mean()) if load.mean() > 0 else 0.0
        tokens = max(self.stats["tokens"], 1)
        return {"load": load.tolist(), "load_cv": cv, "router_entropy": self.stats["entropy_sum"] / tokens,
                "drop_rate": self.stats["dropped"] / float(total)}


def moe_layers(model: nn.Module) -> list[MoE]:
    return [m for m in model.modules() if isinstance(m, MoE)]
