"""Dual-head knowledge distillation (Yang, Zong, Huang, Feng and An, "Dual-Head Knowledge
Distillation: Enhancing Logits Utilization with an Auxiliary Head", 2024, arXiv:2411.08937).

A logit-level loss and CE/KD on one linear head pull that head in conflicting directions (the
paper's neural-collapse analysis), while both help the backbone. So the student gets a second,
auxiliary linear head on the same features f:
- main head z = W f:     L_main = (1 - alpha) * CE(z, y) + alpha * T^2 * KL(p_t || p_s)  (as `kd`);
- auxiliary head a = W' f: L_aux = T'^2 * mean_c BinaryKL-Norm(a_c, t_c), T' = 2, where, per class,
  BinaryKL-Norm = KL( Bern(1/2) || Bern(sigmoid((a_c - t_c) / T')) ) = -log 2 - log sigmoid(d) / 2
  - log sigmoid(-d) / 2, d = (a_c - t_c) / T'. It is zero exactly when a_c = t_c and grows like
  d^2 / 8 near it and like |d| / 2 far from it, so its gradient stays bounded (the "Norm":
  a stabilised form of the binary KL between sigmoid(a/T') and sigmoid(t/T')). This reading
  follows the method summary in METHODS.md; the reference code may differ in details.
- L = L_main + dual_head_weight * L_aux.

The auxiliary head lives in this loss module, not in the student: `attached` hangs it on the
student while it trains (so the optimizer and the epoch checkpoints include it) and takes it
off afterwards. At inference the student is the plain backbone: same forward output, same
state_dict keys, same parameter count.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import DistillConfig
from . import DistillLoss, TeacherLookup, register, student_head
from .kd import kd_loss


def binary_kl_norm(aux: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over samples and classes of KL(Bern(1/2) || Bern(sigmoid((aux - teacher) / T)))."""
    d = (aux - teacher) / temperature
    return (-math.log(2.0) - 0.5 * (F.logsigmoid(d) + F.logsigmoid(-d))).mean()


class DualHeadLoss(DistillLoss):
    def __init__(self, cfg: DistillConfig, teacher: TeacherLookup):
        super().__init__()
        self.cfg, self.teacher = cfg, teacher
        self.aux_head: nn.Linear | None = None

    def bind(self, model: nn.Module) -> None:
        """Create the auxiliary head with the shape of the student's main head."""
        if self.aux_head is None:
            head = student_head(model)
            self.aux_head = nn.Linear(head.in_features, head.out_features).to(head.weight.device)

    def forward(self, model, x, y, ids, at=None):
        # Unattached (e.g. a caller that builds its own optimizer) the head is created here and
        # then only trained if that caller passes this module's parameters to `fit`.
        self.bind(model)
        c, t = self.cfg, self.teacher(x, ids)
        features = model.features(x)
        main = kd_loss(model.head(features), t, y, c.temperature, c.alpha, c.train.label_smoothing)
        aux = binary_kl_norm(self.aux_head(features), t, c.dual_head_temperature) * c.dual_head_temperature ** 2
        return main + c.dual_head_weight * aux


@register("dual_head")
def make(cfg: DistillConfig, teacher: TeacherLookup):
    return DualHeadLoss(cfg, teacher)
