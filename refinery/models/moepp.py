"""MoE++ (Jin et al., "MoE++: Accelerating Mixture-of-Experts Methods with Zero-Computation
Experts", 2024).

Beside N FFN experts the router chooses among zero-computation experts (Sec. 3.1):
- zero expert: E(x) = 0 (the token skips the layer's FFN);
- copy expert: E(x) = x;
- constant expert: E(x) = a1 * x + a2 * v, [a1, a2] = softmax(W_c x), v learned (Eq. 5).
Zero and copy experts have no parameters; a constant expert has W_c (2 x d) and v (d).

Gating residual (Eq. 6): logits_l = x W_r + W_g logits_(l-1), W_g (R x R) initialised to zero,
so at initialisation the layer is a vanilla top-k MoE over its R = N + zero + copy + constant
targets. Layers are linked by `link_gating_residuals` (done by `attach_moe`).

Heterogeneous balance loss (Eq. 7): L_b = R * sum_i eta_i f_i P_i with eta_i = 1 for FFN
experts and eta_i = tau for zero-computation experts. tau < 1 penalises load on the cheap
experts less, so more tokens are allowed to skip FFN compute; the paper's default is
tau = 0.75 (its ablation sweeps 0.1-1.0). The factor R keeps L_b = 1 at perfect balance
when tau = 1, as for the Switch loss.

Deviation: the reference router is two-layer (Linear(d, 8R), tanh, Linear(8R, R)); this one
is the single fp32 Linear of the vanilla MoE, so the same checkpoint layout and "W_g = 0 is a
vanilla MoE" hold exactly.
"""
from __future__ import annotations

import torch
from torch import nn

from .blocks import FeedForward
from .moe import MoE


class MoEPlusPlus(MoE):
    def __init__(self, dim: int, hidden: int, num_experts: int, top_k: int, num_zero: int = 1,
                 num_copy: int = 1, num_constant: int = 1, tau: float = 0.75, aux_coef: float = 1e-2,
                 z_coef: float = 1e-3, dispatch: str = "sorted"):
        routed = num_experts + num_zero + num_copy + num_constant
        super().__init__(dim, hidden, num_experts, top_k, aux_coef, z_coef, None, dispatch, num_routed=routed)
        self.num_zero, self.num_copy, self.num_constant, self.tau = num_zero, num_copy, num_constant, tau
        self.gate_residual = nn.Linear(routed, routed, bias=False)
        nn.init.zeros_(self.gate_residual.weight)
        self.const_gate = nn.Parameter(torch.zeros(num_constant, 2, dim))  # W_c: [a1, a2] = softmax(W_c x)
        self.const_value = nn.Parameter(torch.randn(num_constant, dim) * 0.02)  # v
        self._previous: list[MoEPlusPlus] = []  # a list, so the link is no submodule
        self._feeds_next = False
        # Handed to the next layer within one forward and dropped there: a non-leaf tensor
        # left on the module would make deepcopy fail and hold the graph alive.
        self.last_logits: torch.Tensor | None = None

    @classmethod
    def from_ffn(cls, ffn: FeedForward, num_experts: int, top_k: int, **kwargs) -> "MoEPlusPlus":
        dim, hidden = ffn.fc1.in_features, ffn.fc1.out_features
        layer = cls(dim, hidden, num_experts, top_k, **kwargs).to(ffn.fc1.weight.device)
        layer.load_experts([ffn] * num_experts)
        return layer

    # targets are ordered: FFN experts, zero, copy, constant
    @property
    def copy_ids(self) -> range:
        start = self.num_experts + self.num_zero
        return range(start, start + self.num_copy)

    @property
    def const_ids(self) -> range:
        start = self.num_experts + self.num_zero + self.num_copy
        return range(start, start + self.num_constant)

    def router_logits(self, x: torch.Tensor) -> torch.Tensor:
        logits = super().router_logits(x)
        prev = self._previous[0].last_logits if self._previous else None
        if self._previous:
            self._previous[0].last_logits = None
        if prev is not None and prev.shape == logits.shape:
            logits = logits + self.gate_residual(prev)
        self.last_logits = logits if self._feeds_next else None
        return logits

    def balance_weights(self) -> torch.Tensor:
        eta = torch.full((self.num_routed,), self.tau, device=self.router.weight.device)
        eta[:self.num_experts] = 1.0
        return eta

    def combine(self, x: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        out = super().combine(x, weights, idx)  # FFN experts only
        if self.num_copy:
            lo, hi = self.copy_ids.start, self.copy_ids.stop
            out = out + (weights * ((idx >= lo) & (idx < hi))).sum(-1, keepdim=True) * x
        for c, target in enumerate(self.const_ids):
            w = (weights * (idx == target)).sum(-1, keepdim=True)
            a = torch.softmax(x @ self.const_gate[c].t(), dim=-1)  # (T, 2)
            out = out + w * (a[:, :1] * x + a[:, 1:] * self.const_value[c])
        return out  # zero experts add nothing


def link_gating_residuals(layers: list[MoEPlusPlus]) -> None:
    for prev, layer in zip(layers, layers[1:]):
        layer._previous, prev._feeds_next = [prev], True
