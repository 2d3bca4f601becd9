"""Dual-head knowledge distillation (DHKD).

Paper: Yang, Zong, Huang, Feng and An, "Dual-Head Knowledge Distillation: Enhancing Logits
Utilization with an Auxiliary Head", 2024, arXiv:2411.08937.
Reference code: penghui-yang/DHKD: `distiller_zoo/BinaryKLNorm.py` (class `BinaryKLNorm`),
`helper/loops.py` (`train_distill`, branch `args.distill == 'dhkd'`), `train_student.py`
(options and defaults), `models/*.py` (`dual_head`, `classifier2`).

A logit-level loss and CE/KD on one linear head pull that head in conflicting directions (the
paper's neural-collapse analysis), while both help the backbone. So the student gets a second,
auxiliary linear head on the same (not detached) features f:
- main head z = W f:      L_main = CE(z, y);
- auxiliary head a = W' f: L_aux = T^2 / N * sum_{i, c} BinaryKL-Norm(a_ic, t_ic), T = 2, where
  BinaryKL-Norm = KL( Bern(1/2) || Bern(sigmoid((a_c - t_c) / T)) )
                = -log 2 - log sigmoid(d) / 2 - log sigmoid(-d) / 2,  d = (a_c - t_c) / T,
  summed over the C classes and averaged over the N samples of the batch (`loss.sum() / N`);
  zero exactly when a_c = t_c, ~d^2 / 8 near it, ~|d| / 2 far from it;
- L = gamma * L_main + alpha * L_aux with gamma = 1 (`-r 1`) and alpha = 1 (`-a 1`, the README's
  CIFAR-100 command; ImageNet uses 0.1): `dual_head_weight` is that alpha.
At inference only the main head is used.

The auxiliary head lives in this loss module, not in the student: `attached` hangs it on the
student while it trains (so the optimizer and the epoch checkpoints include it) and takes it
off afterwards. The deployed student is the plain backbone: same forward output, same
state_dict keys, same parameter count.

Deviations from the reference, each a named option:
- `dual_head_main: "kd"` puts the KD mix (1 - alpha) * CE + alpha * T^2 * KL (`temperature`,
  `alpha`, as `kd`) on the main head instead of CE alone. That is the summary's reading in
  METHODS.md ("keep CE+KD on the main head"); the reference code trains the main head with CE only
  when it distils with `dhkd` (its `kd` mode is single-head KD). Default "ce", the code's.
- `dual_head_reduction: "mean"` averages BinaryKL-Norm over classes as well (C times smaller);
  default "sum", the code's.
- `train.label_smoothing`: every CE of this project uses it (TrainConfig default 0.1); the
  reference uses plain `nn.CrossEntropyLoss()`. Set it to 0 for the reference's CE.
Not implemented (reference options that are off by default in `train_student.py`): the
non-linear auxiliary head (`--nonlinear`, Linear-Dropout-BatchNorm-ReLU-Linear, which the README's
CIFAR command uses) and the gradient-alignment optimizer (`--ga`, a PCGrad-style projection of the
auxiliary loss's gradient against CE's). The auxiliary head here is the reference's default linear
one, and plain gradients are summed.
Numerics only: the loss is written with log-sigmoid, finite for every d. The reference clamps
sigmoid(d) to [1e-8, 1 - 1e-8] before the log; in float32 the upper bound rounds to 1.0, so
there its loss is +inf once sigmoid(d) rounds to 1 (d above ~17, i.e. a_c - t_c > ~34 at T = 2),
and below d ~ -18.4 its loss stops growing and its gradient vanishes. Elsewhere the values and
gradients agree (to 1e-14 in float64 on random logits).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import DistillConfig
from . import DistillLoss, TeacherLookup, register, student_head
from .kd import kd_loss


def binary_kl_norm(aux: torch.Tensor, teacher: torch.Tensor, temperature: float,
                   reduction: str = "sum") -> torch.Tensor:
    """KL(Bern(1/2) || Bern(sigmoid((aux - teacher) / T))) per (sample, class), summed over the
    classes and averaged over the samples ("sum", the reference's) or averaged over both ("mean").
    Without the T^2 factor."""
    d = (aux - teacher) / temperature
    per_entry = -math.log(2.0) - 0.5 * (F.logsigmoid(d) + F.logsigmoid(-d))
    if reduction == "sum":
        return per_entry.sum() / aux.shape[0]
    if reduction == "mean":
        return per_entry.mean()
    raise ValueError(f"dual_head_reduction: unknown reduction {reduction!r}")


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
        alpha = c.alpha if c.dual_head_main == "kd" else 0.0  # alpha 0: exactly CE
        main = kd_loss(model.head(features), t, y, c.temperature, alpha, c.train.label_smoothing)
        tau = c.dual_head_temperature
        aux = binary_kl_norm(self.aux_head(features), t, tau, c.dual_head_reduction) * tau ** 2
        return main + c.dual_head_weight * aux


@register("dual_head")
def make(cfg: DistillConfig, teacher: TeacherLookup):
    return DualHeadLoss(cfg, teacher)
