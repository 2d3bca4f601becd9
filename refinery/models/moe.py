"""Mixture-of-experts FFN with token-choice top-k routing.

Router (Shazeer et al. 2017; Switch/GShard): logits = x W_r in fp32, p = softmax(logits),
(w, idx) = topk(p, k), w <- w / sum(w), y = sum_k w_k * E_{idx_k}(x).

Auxiliary losses, stored on the module after each forward as `aux_loss`:
- load balance (Switch Transformer Eq. 4): L_aux = E * sum_e f_e * P_e, with f_e the fraction
  of routed assignments sent to e and P_e the mean router probability of e (1 when balanced);
- router z-loss (ST-MoE Eq. 5): mean over tokens of logsumexp(logits)^2.

Dispatch sorts assignments by expert and runs each expert on one contiguous slice through a
grouped FFN with a hand-written backward (`dispatch="sorted"`, see grouped.py).
`dispatch="loop"` is the plain reference: a boolean mask per expert, autograd throughout.
Both give the same outputs and gradients; tests pin that.

Statistics (`reset_stats(track=True)`): load per expert, its CV, router entropy, drop rate,
and each token's top-1 expert, from which `expert_affinity` measures inter-layer affinity
(Yao et al., "Exploiting Inter-Layer Expert Affinity", 2024): how well the top-1 expert in
layer l predicts the top-1 expert of the same token in layer l+1.

Subclasses may reshape the top-k weights (`normalise`) and route over more targets than FFN
experts (zero-computation experts, moepp.py): `num_routed` counts every routing target,
`num_experts` only the FFN experts in w1/b1/w2/b2, and stats["counts"] only assignments to
FFN experts (the cost model reads it as the FFN work done).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import FeedForward
from .grouped import grouped_ffn


class Routed(nn.Module):
    """Token-choice top-k router with its losses and statistics; every routed layer shares it.
    `num_routed` counts routing targets, `num_experts` the FFN experts (if any)."""

    def __init__(self, dim: int, num_routed: int, top_k: int, aux_coef: float = 1e-2, z_coef: float = 1e-3,
                 capacity_factor: float | None = None, num_experts: int | None = None):
        super().__init__()
        if not 1 <= top_k <= num_routed:
            raise ValueError(f"top_k must be in [1, num_experts={num_routed}], got {top_k}")
        self.dim, self.num_routed, self.top_k = dim, num_routed, top_k
        self.num_experts = num_routed if num_experts is None else num_experts
        self.aux_coef, self.z_coef, self.capacity_factor = aux_coef, z_coef, capacity_factor
        self.router = nn.Linear(dim, num_routed, bias=False)
        nn.init.normal_(self.router.weight, std=0.02)
        self.aux_loss = torch.zeros(())
        self.reset_stats()

    # ------------------------------------------------------------------ routing
    def router_logits(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.float(), self.router.weight.float())

    def normalise(self, weights: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The top-k probabilities (T, k) of targets `idx` -> the mixing weights: w / sum(w)."""
        return weights / weights.sum(dim=-1, keepdim=True)

    def router_flops(self) -> int:
        """FLOPs of the router per token (2 per multiply-add): 2 * d * routed targets."""
        return 2 * self.dim * self.num_routed

    def balance_weights(self) -> torch.Tensor | None:
        """Per-target weights of the balance loss; None means 1 for all (Switch)."""
        return None

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the top-k weights (`normalise`d) and expert indices, both (T, k); sets aux_loss."""
        logits = self.router_logits(x)
        probs = logits.softmax(dim=-1)
        weights, idx = probs.topk(self.top_k, dim=-1)
        weights = self.normalise(weights, idx)
        counts = torch.bincount(idx.flatten(), minlength=self.num_routed)
        f = counts.float() / idx.numel()
        per_target = f * probs.mean(dim=0)
        eta = self.balance_weights()
        balance = self.num_routed * (per_target if eta is None else eta * per_target).sum()
        z = torch.logsumexp(logits, dim=-1).pow(2).mean()
        self.aux_loss = self.aux_coef * balance + self.z_coef * z
        if self.tracking:
            self._record(counts.detach(), probs.detach(), idx[:, 0].detach())
        return weights, idx

    def _capacity_keep(self, idx: torch.Tensor) -> torch.Tensor | None:
        """Mask (T, k) of assignments within each expert's capacity (earlier tokens win)."""
        if self.capacity_factor is None:
            return None
        cap = math.ceil(self.capacity_factor * idx.numel() / self.num_routed)
        onehot = F.one_hot(idx.flatten(), self.num_routed)
        position = (onehot.cumsum(dim=0) * onehot).sum(dim=-1) - 1
        keep = (position < cap).view_as(idx)
        if self.tracking:
            self.stats["dropped"] += int((~keep).sum())
        return keep

    # ------------------------------------------------------------------ statistics
    @property
    def tracking(self) -> bool:
        return self._tracking

    def reset_stats(self, track: bool = False) -> None:
        self._tracking = track
        self.stats = {"counts": torch.zeros(self.num_experts, dtype=torch.long),
                      "routed_counts": torch.zeros(self.num_routed, dtype=torch.long),
                      "prob_sum": torch.zeros(self.num_routed), "tokens": 0, "dropped": 0,
                      "entropy_sum": 0.0, "top1": []}

    def _record(self, counts: torch.Tensor, probs: torch.Tensor, top1: torch.Tensor) -> None:
        self.stats["counts"] += counts[:self.num_experts].cpu()
        self.stats["routed_counts"] += counts.cpu()
        self.stats["prob_sum"] += probs.sum(dim=0).cpu()
        self.stats["tokens"] += probs.shape[0]
        self.stats["entropy_sum"] += float(-(probs * probs.clamp_min(1e-12).log()).sum())
        self.stats["top1"].append(top1.to(torch.int16).cpu())

    def summary(self) -> dict[str, float | list[float]]:
        """Load per routing target (fraction of assignments), its CV, mean router entropy, drop
        rate, and the mean number of FFN experts run per token."""
        counts = self.stats["routed_counts"].float()
        total = counts.sum().clamp_min(1)
        load = counts / total
        cv = float(load.std(unbiased=False) / load.mean()) if load.mean() > 0 else 0.0
        tokens = max(self.stats["tokens"], 1)
        return {"load": load.tolist(), "load_cv": cv, "router_entropy": self.stats["entropy_sum"] / tokens,
                "drop_rate": self.stats["dropped"] / float(total),
                "ffn_experts_per_token": float(self.stats["counts"].sum()) / tokens}



class MoE(Routed):
    def __init__(self, dim: int, hidden: int, num_experts: int, top_k: int, aux_coef: float = 1e-2,
                 z_coef: float = 1e-3, capacity_factor: float | None = None, dispatch: str = "sorted",
                 num_routed: int | None = None):
        super().__init__(dim, num_routed or num_experts, top_k, aux_coef, z_coef, capacity_factor, num_experts)
        if dispatch not in ("sorted", "loop"):
            raise ValueError(f"dispatch must be 'sorted' or 'loop', got {dispatch!r}")
        self.dispatch = dispatch
        self.w1 = nn.Parameter(torch.empty(num_experts, dim, hidden))
        self.b1 = nn.Parameter(torch.zeros(num_experts, hidden))
        self.w2 = nn.Parameter(torch.empty(num_experts, hidden, dim))
        self.b2 = nn.Parameter(torch.zeros(num_experts, dim))
        for w in (self.w1, self.w2):
            nn.init.normal_(w, std=1 / math.sqrt(w.shape[1]))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_ffn(cls, ffn: FeedForward, num_experts: int, top_k: int, **kwargs) -> MoE:
        """Sparse upcycling: every expert is an exact copy of the dense FFN."""
        return cls.from_ffns([ffn] * num_experts, top_k, **kwargs)

    @classmethod
    def from_ffns(cls, ffns: list[FeedForward], top_k: int, **kwargs) -> MoE:
        """Expert e is a copy of ffns[e] (one FFN repeated: sparse upcycling; variants: DMU)."""
        dim, hidden = ffns[0].fc1.in_features, ffns[0].fc1.out_features
        moe = cls(dim, hidden, len(ffns), top_k, **kwargs).to(ffns[0].fc1.weight.device)
        moe.load_experts(ffns)
        return moe

    @torch.no_grad()
    def load_experts(self, ffns: list[FeedForward]) -> None:
        for e, ffn in enumerate(ffns):
            self.w1[e].copy_(ffn.fc1.weight.t())
            self.b1[e].copy_(ffn.fc1.bias)
            self.w2[e].copy_(ffn.fc2.weight.t())
            self.b2[e].copy_(ffn.fc2.bias)

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
        return self.combine(flat, weights.to(flat.dtype), idx).view(shape)

    def combine(self, x: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """sum_k w_k E_{idx_k}(x) over the FFN experts (subclasses add other targets)."""
        return self._sorted(x, weights, idx) if self.dispatch == "sorted" else self._loop(x, weights, idx)

    def _sorted(self, x: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        expert, weight = idx.flatten(), weights.flatten()
        token = torch.arange(idx.shape[0], device=x.device).repeat_interleave(self.top_k)
        if self.num_routed > self.num_experts:  # only FFN targets run here
            ffn = expert < self.num_experts
            expert, weight, token = expert[ffn], weight[ffn], token[ffn]
        order = torch.argsort(expert, stable=True)
        token = token[order]
        counts = torch.bincount(expert, minlength=self.num_experts).tolist()
        ys = grouped_ffn(x.index_select(0, token), self.w1, self.b1, self.w2, self.b2, counts)
        return torch.zeros_like(x).index_add_(0, token, ys * weight[order].unsqueeze(-1))

    def _loop(self, x: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(x)
        for e in range(self.num_experts):
            tok, slot = torch.nonzero(idx == e, as_tuple=True)
            if tok.numel():
                out.index_add_(0, tok, self._expert(e, x[tok]) * weights[tok, slot].unsqueeze(-1))
        return out


def expert_affinity(first: Routed, second: Routed) -> dict[str, float]:
    """Inter-layer affinity from the tracked top-1 experts of the same tokens in two layers.

    `affinity` = sum_i P(i) max_j P(j | i): the accuracy of predicting a token's layer-(l+1)
    expert from its layer-l expert (1: fully determined). `baseline` is the same accuracy
    without knowing i (max_j P(j)); `mutual_info` is I(l; l+1) in nats.
    """
    a, b = torch.cat(first.stats["top1"] or [torch.zeros(0)]), torch.cat(second.stats["top1"] or [torch.zeros(0)])
    if a.numel() == 0 or a.shape != b.shape:
        return {"affinity": float("nan"), "baseline": float("nan"), "mutual_info": float("nan")}
    joint = torch.zeros(first.num_routed, second.num_routed)
    joint.index_put_((a.long(), b.long()), torch.ones(a.numel()), accumulate=True)
    joint /= a.numel()
    pa, pb = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
    nz = joint > 0
    mi = float((joint[nz] * (joint[nz] / (pa * pb).expand_as(joint)[nz]).log()).sum())
    return {"affinity": float(joint.max(dim=1).values.sum()), "baseline": float(pb.max()), "mutual_info": mi}


def moe_layers(model: nn.Module) -> list[MoE]:
    """Layers with FFN experts (the cost model reads their w1/b1/w2/b2)."""
    return [m for m in model.modules() if isinstance(m, MoE)]


def routed_layers(model: nn.Module) -> list[Routed]:
    """Every routed layer, in forward order (MoE layers, routed LoRA linears, ...)."""
    return [m for m in model.modules() if isinstance(m, Routed)]


def routed_aux_loss(model: nn.Module) -> torch.Tensor | float:
    return sum((m.aux_loss for m in routed_layers(model)), 0.0)
