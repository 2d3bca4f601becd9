"""MoE++ upcycling (Jin et al., "MoE++: Accelerating Mixture-of-Experts Methods with
Zero-Computation Experts", 2024). Reference code: github.com/SkyworkAI/MoE-plus-plus,
MoE++/moe_plus_plus_layer.py (`gating`, `Router`, `MOELayer`, the expert classes) and
MoE++/modeling_moe_plus_plus.py (`_init_weights`); defaults from configuration_moe_plus_plus.py.

Every FFN becomes a MoE++ layer (refinery/models/moepp.py): N FFN experts that start as copies
of the dense FFN (as in sparse upcycling), plus zero-computation experts (Sec. 3.1, Eq. 5):
zero E(x) = 0, copy E(x) = x, constant E(x) = a1 x + a2 v with [a1, a2] = softmax(W_c x).
The reference has one zero, one copy and two constant experts (`Constant = 2`): the defaults
of `moepp_zero`, `moepp_copy`, `moepp_constant`. Every weight then trains with the task loss.

What the layer does by default, as the reference code:
- gating (`gating`, non-Mixtral branch): p = softmax(logits), top-k (k = 2, `MOE_TOP_K`), the
  zero expert's gate set to 0, the rest renormalised. A token routed to (zero, FFN) gets
  exactly the FFN's output: the zero expert saves compute without scaling the output
  (renormalising over all k choices, as a plain top-k MoE does, would scale the FFN's output
  by its share, e.g. halve it at equal gates);
- expert inputs scaled by k (`MOELayer.forward`: `reshaped_input *= MOE_TOP_K` after the
  router has read the input, unless `moe_feature_no_mul_topk`): all experts see 2x;
- router (`moe_2layer_gate=True`): Linear(d, 8R) -> tanh -> Linear(8R, R), no biases, fp32;
- gating residual (Eq. 6, `Router.gate_map`): logits_l += W_g logits_(l-1);
- initialisation (`_init_weights`): every Linear (router, W_g, W_c) N(0, 0.02); v ~ N(0, 1).

Heterogeneous balance loss (paper Eq. 7): L_b = R * sum_i eta_i f_i P_i, eta = 1 for FFN
experts and tau (`moepp_tau`, paper default 0.75) for zero-computation ones, coefficient
`aux_coef`. The released code has no training loss, so the paper is the only source here.

Deviations from the reference, each a named key:
- `moepp_router="linear"`: the vanilla MoE's single Linear router;
- `moepp_scale_inputs=False`: experts see x. Note that with the default the FFN experts, copies
  of the dense FFN, see 2x, so the upcycled model does not start equal to the dense one;
- `moepp_residual_init="zero"`: W_g = 0 at the start (a vanilla MoE at step 0);
- `z_coef`: the router z-loss (ST-MoE) is added as for the other recipes; neither the paper
  nor the code has it (z_coef = 0 removes it).
Not configurable: FFN experts are the dense model's GELU FFN (the reference trains SwiGLU
experts from scratch), and targets are ordered FFN, zero, copy, constant (reference: FFN,
constant, copy, zero; the order only matters for ties).
Reported: the mean number of FFN experts a token runs (below top_k when tokens skip).
"""
from __future__ import annotations

import copy

from torch import nn

from ..config import UpcycleConfig
from ..models import attach_moe
from . import Upcycled, register
from ..train import cross_entropy_loss
from .sparse import trainable_parameters


def moepp_settings(cfg: UpcycleConfig) -> dict:
    return {"kind": "moepp", "num_experts": cfg.num_experts, "top_k": cfg.top_k, "num_zero": cfg.moepp_zero,
            "num_copy": cfg.moepp_copy, "num_constant": cfg.moepp_constant, "tau": cfg.moepp_tau,
            "aux_coef": cfg.aux_coef, "z_coef": cfg.z_coef, "router": cfg.moepp_router,
            "scale_inputs": cfg.moepp_scale_inputs, "residual_init": cfg.moepp_residual_init}


@register("moepp")
def upcycle(dense: nn.Module, dense_arch: dict, cfg: UpcycleConfig, data=None, seed: int = 0) -> Upcycled:
    model = copy.deepcopy(dense)
    settings = moepp_settings(cfg)
    attach_moe(model, settings)
    return Upcycled(model, dict(dense_arch, moe=settings), trainable_parameters(model, cfg.train_scope),
                    loss=cross_entropy_loss(cfg.train.label_smoothing))
