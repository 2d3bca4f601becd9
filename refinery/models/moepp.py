"""A mixture of FFN experts and zero-computation experts, with gating residuals.

Beside N FFN experts the router chooses among experts that cost (almost) nothing:
- zero expert: E(x) = 0;
- copy expert: E(x) = x;
- constant expert: E(x) = a1 * x + a2 * v, [a1, a2] = softmax(W_c x), v learned.
Zero and copy experts have no parameters; a constant expert has W_c (2 x d) and v (d).
Targets are ordered: FFN experts, zero, copy, constant (R in all).

Gating: p = softmax(logits), (w, idx) = topk(p, k); the weight of every zero expert among
the k is set to 0 and the rest renormalised, w_i / sum_j w_j. A token routed to (zero, FFN e)
therefore outputs exactly FFN_e(x): choosing the zero expert saves an FFN's compute. (A token
whose k choices are all zero experts, possible only with num_zero >= k, outputs 0.) With
`scale_inputs` the experts see k * x (the router reads x): y = sum_i w_i E_i(k x).

Router: `router="two_layer"`, logits = W_2 tanh(W_1 x), W_1 (8R x d), W_2 (R x 8R), no
biases, fp32; or `router="linear"`, the single Linear(d, R) of the vanilla MoE. Gating
residual: logits_l += W_g logits_(l-1), W_g (R x R), N(0, 0.02) (`residual_init="normal"`) or
zero (`"zero"`). Every other Linear starts N(0, 0.02); v ~ N(0, 1). Layers are linked by
`link_gating_residuals` (done by `attach_moe`). With W_g = 0, the linear router, no input
scaling and no zero expert chosen, the layer is a vanilla top-k MoE over its R targets.

Heterogeneous balance loss: L_b = R * sum_i eta_i f_i P_i with eta_i = 1 for FFN experts and
eta_i = tau for zero-computation experts; R keeps L_b = 1 at perfect balance when tau = 1.

Which settings the method's paper and reference code use: refinery/upcycle/moepp.py.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import FeedForward
from .moe import MoE

ROUTER_WIDTH = 8  # the two-layer router: Linear(d, 8R) -> tanh -> Linear(8R, R)


class MoEPlusPlus(MoE):
    def __init__(self, dim: int, hidden: int, num_experts: int, top_k: int, num_zero: int = 1,
                 num_copy: int = 1, num_constant: int = 2, tau: float = 0.75, aux_coef: float = 1e-2,
                 z_coef: float = 1e-3, dispatch: str = "sorted", router: str = "two_layer",
                 scale_inputs: bool = True, residual_init: str = "normal"):
        routed = num_experts + num_zero + num_copy + num_constant
        super().__init__(dim, hidden, num_experts, top_k, aux_coef, z_coef, None, dispatch, num_routed=routed)
        if router not in ("two_layer", "linear") or residual_init not in ("normal", "zero"):
            raise ValueError(f"router must be two_layer|linear, residual_init normal|zero; got {router!r}, "
                             f"{residual_init!r}")
        self.num_zero, self.num_copy, self.num_constant, self.tau = num_zero, num_copy, num_constant, tau
        self.scale_inputs, self.router_kind = scale_inputs, router
        if router == "two_layer":
            self.router = nn.Sequential(nn.Linear(dim, ROUTER_WIDTH * routed, bias=False), nn.Tanh(),
                                        nn.Linear(ROUTER_WIDTH * routed, routed, bias=False))
            for layer in (self.router[0], self.router[2]):
                nn.init.normal_(layer.weight, std=0.02)
        self.gate_residual = nn.Linear(routed, routed, bias=False)
        nn.init.normal_(self.gate_residual.weight, std=0.02)
        if residual_init == "zero":
            nn.init.zeros_(self.gate_residual.weight)
        self.const_gate = nn.Parameter(torch.randn(num_constant, 2, dim) * 0.02)  # W_c: [a1, a2] = softmax(W_c x)
        self.const_value = nn.Parameter(torch.randn(num_constant, dim))  # v
        self._previous: list[MoEPlusPlus] = []  # a list, so the link is no submodule
        self._feeds_next = False
        # Handed to the next layer within one forward and dropped there: a non-leaf tensor
        # left on the module would make deepcopy fail and hold the graph alive.
        self.last_logits: torch.Tensor | None = None

    @classmethod
    def from_ffn(cls, ffn: FeedForward, num_experts: int, top_k: int, **kwargs) -> MoEPlusPlus:
        dim, hidden = ffn.fc1.in_features, ffn.fc1.out_features
        layer = cls(dim, hidden, num_experts, top_k, **kwargs).to(ffn.fc1.weight.device)
        layer.load_experts([ffn] * num_experts)
        return layer

    # targets are ordered: FFN experts, zero, copy, constant
    @property
    def zero_ids(self) -> range:
        return range(self.num_experts, self.num_experts + self.num_zero)

    @property
    def copy_ids(self) -> range:
        start = self.num_experts + self.num_zero
        return range(start, start + self.num_copy)

    @property
    def const_ids(self) -> range:
        start = self.num_experts + self.num_zero + self.num_copy
        return range(start, start + self.num_constant)

    def router_flops(self) -> int:
        if self.router_kind == "linear":
            return super().router_flops()
        width = ROUTER_WIDTH * self.num_routed
        return 2 * self.dim * width + 2 * width * self.num_routed

    def router_logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.router_kind == "linear":
            logits = super().router_logits(x)
        else:
            first, second = self.router[0].weight.float(), self.router[2].weight.float()
            logits = F.linear(torch.tanh(F.linear(x.float(), first)), second)
        prev = self._previous[0].last_logits if self._previous else None
        if self._previous:
            self._previous[0].last_logits = None
        if prev is not None and prev.shape == logits.shape:
            logits = logits + F.linear(prev, self.gate_residual.weight.float())
        self.last_logits = logits if self._feeds_next else None
        return logits

    def normalise(self, weights: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Zero experts' gates are set to 0 before renormalising."""
        zero = (idx >= self.zero_ids.start) & (idx < self.zero_ids.stop)
        weights = weights.masked_fill(zero, 0.0)
        total = weights.sum(dim=-1, keepdim=True)
        return torch.where(total > 0, weights / total.clamp_min(torch.finfo(weights.dtype).tiny), 0.0)

    def balance_weights(self) -> torch.Tensor:
        eta = torch.full((self.num_routed,), self.tau, device=self.gate_residual.weight.device)
        eta[:self.num_experts] = 1.0
        return eta

    def combine(self, x: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        if self.scale_inputs:
            x = x * self.top_k
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
