"""Plackett-Luce distillation (list-wise KD; "PLD: A Choice-Theoretic List-Wise Knowledge
Distillation", 2025, the weighted Plackett-Luce loss).

The teacher defines an ordering pi of the classes: the true label first, then the other
classes by decreasing teacher logit. The student's logits s score that list under the
Plackett-Luce model, each position weighted by the teacher's confidence in its class:

    L = - sum_k w_k [ s_pi(k) - logsumexp_{j >= k} s_pi(j) ],  w_k = softmax(t)_pi(k).

It replaces CE + KD (no mixing weight, no temperature): position 1 is a CE on the true label
weighted by the teacher's probability of it, and the later positions carry the teacher's
ranking of the rest. Each bracket is a log-softmax over a suffix, so the loss does not change
when a constant is added to the student's logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import DistillConfig
from . import TeacherLookup, register


def teacher_order(teacher: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B, C) class indices: the label first, then the rest by descending teacher logit."""
    boosted = teacher.masked_fill(F.one_hot(y, teacher.shape[1]).bool(), float("inf"))
    return boosted.argsort(dim=1, descending=True, stable=True)


def pld_loss(student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    order = teacher_order(teacher, y)
    s = student.gather(1, order)
    w = F.softmax(teacher, dim=1).gather(1, order)
    # logsumexp over each suffix j >= k: a reversed cumulative logsumexp
    suffix = torch.logcumsumexp(s.flip(1), dim=1).flip(1)
    return -(w * (s - suffix)).sum(1).mean()


@register("pld")
def make(cfg: DistillConfig, teacher: TeacherLookup):
    def loss(model, x, y, ids, at=None):
        return pld_loss(model(x), teacher(x, ids), y)
    return loss
