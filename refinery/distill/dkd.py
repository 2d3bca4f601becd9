"""Decoupled knowledge distillation.

Paper: Zhao, Cui, Song, Qiu and Liang, "Decoupled Knowledge Distillation", CVPR 2022 (Eq. 1-7).
Reference code: megvii-research/mdistiller, `mdistiller/distillers/DKD.py` (`dkd_loss`,
`DKD.forward_train`), defaults in `mdistiller/engine/cfg.py` (CFG.DKD), epochs counted by
`mdistiller/engine/trainer.py` (`epoch = 1`, then `train_epoch(epoch)` while epoch <= EPOCHS).

With p = softmax(z / T) and the target class g:
- TCKD = KL(b_t || b_s), b = [p_g, 1 - p_g]                  (binary target-class term, Eq. 3)
- NCKD = KL(p^_t || p^_s), p^ = softmax over the non-target classes only  (the target logit is
  pushed down by 1000 before the softmax, as the reference does)
- the paper's decomposition (Eq. 5): KD = TCKD + (1 - p_t,g) * NCKD   (per sample)
- L = CE(s, y) + min(epoch / warmup, 1) * (alpha * TCKD + beta * NCKD) * T^2     (Eq. 7 with the
  reference's warm-up), TCKD and NCKD averaged over the batch; alpha = 1, beta = 8, T = 4,
  warmup = 20 epochs, CE weight 1 (CFG.DKD).

Warm-up epoch: the reference counts epochs from 1, so the factor is 1/20 during the first epoch
and reaches 1 in epoch 20; it is constant within an epoch. Here the epoch comes from the training
loop: `at.epoch + 1`, `at` being the `refinery.train.Step` that `fit` passes to the loss. A
resumed run gets its epoch from the loop too, so the loss keeps no state. Under RS2
(`train.subset_fraction` < 1) an epoch of the loop is a fraction r of a pass over the data; the
warm-up follows the loop's epochs (20 of them), not passes. Called directly, without `at` (outside
`fit`), the loss applies the full weight (factor 1): the loss after its warm-up.

Deviations from the reference, each a named option:
- `train.label_smoothing`: every CE of this project uses it (TrainConfig default 0.1); the
  reference uses plain CE. Set `distill.train.label_smoothing: 0` for the reference's CE.
- `dkd_warmup_epochs: 0` turns the warm-up off (factor 1 from the first step).
Numerics only (same values where the reference is finite): the binary probabilities are clamped
at 1e-12 before the log, where the reference takes log(p) unclamped.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import DistillConfig
from . import TeacherLookup, register

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
    """CE + warmup * (alpha * TCKD + beta * NCKD) * T^2; `warmup` is the factor, not epochs."""
    tckd, nckd = dkd_terms(student, teacher, y, temperature)
    kd = (alpha * tckd.mean() + beta * nckd.mean()) * temperature ** 2
    return F.cross_entropy(student, y, label_smoothing=label_smoothing) + warmup * kd


def warmup_factor(epoch: int, warmup_epochs: int) -> float:
    """The reference's min(epoch / warmup, 1), `epoch` counted from 1."""
    return min(epoch / warmup_epochs, 1.0) if warmup_epochs > 0 else 1.0


def step_factor(at, warmup_epochs: int) -> float:
    """The warm-up factor at the loop's step `at` (epoch from 0); full weight without one."""
    return 1.0 if at is None else warmup_factor(at.epoch + 1, warmup_epochs)


@register("dkd")
def make(cfg: DistillConfig, teacher: TeacherLookup):
    def loss(model, x, y, ids, at=None):
        return dkd_loss(model(x), teacher(x, ids), y, cfg.temperature, cfg.dkd_alpha, cfg.dkd_beta,
                        step_factor(at, cfg.dkd_warmup_epochs), cfg.train.label_smoothing)
    return loss
