"""Batch-wise Sinkhorn distillation (SinKD).

Paper: Cui, Qin, Gao, Zhang, Xu, Wu, Li, Sun, Zhou and Li, "Sinkhorn Distance Minimization for
Knowledge Distillation", LREC-COLING 2024 (arXiv:2402.17110) and IEEE TNNLS 2024; the batch-wise
reformulation (Sec. 3).
Reference code: 2018cx/SinKD, `loss.py`, class `Sinkhorn` (`forward`, `sinkhorn_loss`,
`sinkhorn_normalized`); the same class in `GPT-Neo/lossd.py` and `T0/lossd.py`.

Over a batch of B samples, with p = softmax(z / T), T = 2 (the reference fixes it in `__init__`):
- cost C_ij = || p_s,i - p_t,j ||_1  (B x B, `torch.cdist(p_s, p_t, p=1)` there), in [0, 2];
- kernel K = exp(-C / eps), eps = 0.1;
- 20 rounds, each: divide every row by its sum, then every column by its sum (Sinkhorn-Knopp to
  unit marginals). After the last round every column sums to exactly 1 and every row to ~1;
  sum(P) = B. (`sinkhorn_loss` passes n_iters=20 to `sinkhorn_normalized`, whose own default of
  10 is therefore unused.)
- L_sink = sum(P * C), and the reference's loss is 0.001 * L_sink (0.0008 in its GPT-Neo copy).
Gradients flow through the Sinkhorn iterations (autograd unrolls them); the teacher is constant.

Combined with the labels: L = CE(s, y) + sinkhorn_weight * L_sink, sinkhorn_weight = 0.001.

Relation to POT: with uniform marginals 1/B, POT's `ot.sinkhorn2` updates columns first and rows
second; the reference's order (rows first) is POT's on the transposed cost. So
L_sink = B * ot.sinkhorn2(1/B, 1/B, C^T, eps, numItermax=iters, stopThr=0) exactly; because the
plan sums to B, the term grows linearly with the batch size (B times the value under a plan of
mass 1).

Deviations from the reference, each a named option:
- `sinkhorn_kd_alpha` (default 0: CE only): the reference's GLUE scripts run `--distill_loss
  kd+sinkhorn`, i.e. alpha * KD + (1 - alpha) * CE plus beta (0.8) times this module's loss. With
  sinkhorn_kd_alpha = a > 0 the CE term becomes (1 - a) * CE + a * T^2 * KL at `temperature`, as
  `kd` computes it (the reference's KD is a cross-entropy to the soft targets without T^2). For the
  scripts' overall weight use sinkhorn_weight = 0.8 * 0.001.
- `sinkhorn_temperature`, `sinkhorn_eps`, `sinkhorn_iters`: the reference hard-codes 2, 0.1, 20.
- `train.label_smoothing`: every CE of this project uses it (TrainConfig default 0.1); the
  reference's CE (from the Hugging Face model) has none. Set it to 0 for the reference's CE.
Numerics only (same values): the iterations run in the log domain (logsumexp scalings). exp(-C/eps)
reaches 2e-9 at C = 2, eps = 0.1, which a half-precision autocast flushes to zero, and a smaller
eps would underflow float32 as well; the reference divides the kernel directly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import DistillConfig
from . import TeacherLookup, register
from .kd import kd_loss


def sinkhorn_cost(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """C_ij = || softmax(s_i / T) - softmax(t_j / T) ||_1, (B, B)."""
    ps, pt = F.softmax(student / temperature, dim=1), F.softmax(teacher / temperature, dim=1)
    return (ps.unsqueeze(1) - pt.unsqueeze(0)).abs().sum(-1)


def sinkhorn_plan(cost: torch.Tensor, eps: float, iters: int) -> torch.Tensor:
    """P = diag(u) K diag(v), K = exp(-C / eps), after `iters` rounds of "rows sum to 1, then
    columns sum to 1", computed as log-domain scalings (the same numbers as dividing K)."""
    log_k = -cost / eps
    log_v = torch.zeros(cost.shape[1], dtype=cost.dtype, device=cost.device)
    for _ in range(iters):
        log_u = -torch.logsumexp(log_k + log_v.unsqueeze(0), dim=1)  # rows sum to 1
        log_v = -torch.logsumexp(log_k + log_u.unsqueeze(1), dim=0)  # then columns sum to 1
    return (log_u.unsqueeze(1) + log_k + log_v.unsqueeze(0)).exp()


def sinkhorn_distance(student, teacher, temperature: float, eps: float, iters: int) -> torch.Tensor:
    """L_sink = sum(P * C) over the batch (without the loss weight)."""
    cost = sinkhorn_cost(student, teacher, temperature)
    return (sinkhorn_plan(cost, eps, iters) * cost).sum()


@register("sinkhorn")
def make(cfg: DistillConfig, teacher: TeacherLookup):
    def loss(model, x, y, ids, at=None):
        s, t = model(x), teacher(x, ids)
        base = kd_loss(s, t, y, cfg.temperature, cfg.sinkhorn_kd_alpha, cfg.train.label_smoothing)
        ot = sinkhorn_distance(s, t, cfg.sinkhorn_temperature, cfg.sinkhorn_eps, cfg.sinkhorn_iters)
        return base + cfg.sinkhorn_weight * ot
    return loss
