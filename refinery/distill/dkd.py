"""Decoupled knowledge distillation (Zhao, Cui, Song, Qiu and Liang, "Decoupled Knowledge
Distillation", CVPR 2022, Eq. 1-7).

With p = softmax(z / T) and the target class g:
- TCKD = KL(b_t || b_s), b = [p_g, 1 - p_g]            (binary target-class term)
- NCKD = KL(p^_t || p^_s), p^ = softmax over the non-target classes only
- the paper's decomposition (Eq. 5): KD = TCKD + (1 - p_t,g) * NCKD   (per sample)
- L = CE(s, y) + min(epoch / warmup, 1) * (alpha * TCKD + beta * NCKD) * T^2,
  alpha = 1, beta = 8, T = 4, warmup = 20 epochs (the reference implementation's defaults).

The epoch of the warm-up: the loss hook only sees (model, x, y, ids), so the loss counts
epochs itself. `fit` visits every training sample exactly once per epoch (a permutation), so
the first sample id seen twice marks the start of the next epoch. This works in every caller
of `fit` (distill, unlearning's retrain and fine-tune, the benchmark) without wiring. The
count lives in buffers, so when the loss is `attached` to the student the epoch checkpoint
keeps it and a resumed run continues the ramp where it stopped. A new model object restarts
the count (unlearning reuses one loss object for several models).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import DistillConfig
from . import DistillLoss, TeacherLookup, register

_MASK = 1000.0  # subtracted from the target logit to drop it from the non-target softmax


def dkd_terms(student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor, temperature: float):
    """Per-sample (TCKD, NCKD), both without the T^2 factor."""
    t = temperature
    gt = F.one_hot(y, student.shape[1]).bool()
    ps, pt = F.softmax(student / t, dim=1), F.softmax(teacher / t, dim=1)
    bs = torch.stack([(ps * gt).sum(1), (ps * ~gt).sum(1)], dim=1).clamp_min(1e-12)
    bt = torch.stack([(pt * gt).sum(1), (pt * ~gt).sum(1)], dim=1).clamp_min(1e-12)
    tckd = (bt * (bt.log() - bs.log())).sum(1)
    log_ns = F.log_softmax(student / t - _MASK * gt, dim=1)
    log_nt = F.log_softmax(teacher / t - _MASK * gt, dim=1)
    nckd = (log_nt.exp() * (log_nt - log_ns)).masked_fill(gt, 0.0).sum(1)
    return tckd, nckd


def dkd_loss(student, teacher, y, temperature: float, alpha: float, beta: float, warmup: float,
             label_smoothing: float = 0.0) -> torch.Tensor:
    tckd, nckd = dkd_terms(student, teacher, y, temperature)
    kd = (alpha * tckd.mean() + beta * nckd.mean()) * temperature ** 2
    return F.cross_entropy(student, y, label_smoothing=label_smoothing) + warmup * kd


class DKDLoss(DistillLoss):
    def __init__(self, cfg: DistillConfig, teacher: TeacherLookup):
        super().__init__()
        self.cfg, self.teacher = cfg, teacher
        self.register_buffer("epoch", torch.zeros((), dtype=torch.long))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self._seen: set[int] = set()
        self._model_id: int | None = None

    def advance(self, model, ids: torch.Tensor) -> int:
        """Count epochs from repeated sample ids; returns the 0-based epoch of this batch."""
        if self._model_id is not None and self._model_id != id(model):
            self.epoch.zero_()
            self.steps.zero_()
            self._seen = set()
        self._model_id = id(model)
        batch = ids.tolist()
        if not self._seen.isdisjoint(batch):
            self.epoch += 1
            self._seen = set()
        elif not self._seen and int(self.steps) > 0:
            self.epoch += 1  # resumed from an epoch checkpoint: this batch opens the next epoch
        self._seen.update(batch)
        self.steps += 1
        return int(self.epoch)

    def warmup(self, epoch: int) -> float:
        return min(epoch / self.cfg.dkd_warmup_epochs, 1.0) if self.cfg.dkd_warmup_epochs else 1.0

    def forward(self, model, x, y, ids, at=None):
        factor = self.warmup(self.advance(model, ids))
        c = self.cfg
        return dkd_loss(model(x), self.teacher(x, ids), y, c.temperature, c.dkd_alpha, c.dkd_beta, factor,
                        c.train.label_smoothing)


@register("dkd")
def make(cfg: DistillConfig, teacher: TeacherLookup):
    return DKDLoss(cfg, teacher)
