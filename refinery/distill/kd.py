"""Knowledge distillation (Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural
Network", 2015).

L = (1 - alpha) * CE(s, y) + alpha * T^2 * KL(softmax(t / T) || softmax(s / T)).

`alpha` weights the distillation term (mdistiller's convention; torchdistill weights CE
instead). The T^2 factor keeps the soft-target gradients on the same scale as CE's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import DistillConfig
from . import TeacherLookup, register


def kd_term(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(t/T) || softmax(s/T)), averaged over the batch."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1),
                    reduction="batchmean", log_target=True) * t * t


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor, temperature: float,
            alpha: float, label_smoothing: float = 0.0) -> torch.Tensor:
    hard = F.cross_entropy(student, y, label_smoothing=label_smoothing)
    if alpha == 0:
        return hard  # exactly CE: no teacher term, not even 0 * a NaN from a missing cache row
    return (1 - alpha) * hard + alpha * kd_term(student, teacher, temperature)


@register("kd")
def make(cfg: DistillConfig, teacher: TeacherLookup):
    def loss(model, x, y, ids, at=None):
        return kd_loss(model(x), teacher(x, ids), y, cfg.temperature, cfg.alpha, cfg.train.label_smoothing)
    return loss
