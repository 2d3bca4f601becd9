"""Classification metrics: accuracy, negative log-likelihood and calibration.

Calibration follows Guo et al., "On Calibration of Modern Neural Networks" (ICML 2017), Eq. 3:
confidence is the top-label (max) softmax probability; samples fall into `bins` equal-width
intervals I_m = ((m-1)/M, m/M] of confidence, and

    ECE = sum_m |B_m| / n * |acc(B_m) - conf(B_m)|.

METHODS.md ("Evaluation") reports ECE with 15 bins, the default here. `reliability_table`
returns the per-bin numbers a reliability diagram plots (Guo et al., Fig. 1).

Every function takes raw logits (N, C) and integer labels (N,) and returns plain Python
numbers, so results drop straight into JSON / Parquet reports.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _check(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    logits, y = torch.as_tensor(logits), torch.as_tensor(y)
    if logits.ndim != 2 or y.ndim != 1 or logits.shape[0] != y.shape[0]:
        raise ValueError(f"expected logits (N, C) and labels (N,), got {tuple(logits.shape)} and {tuple(y.shape)}")
    if y.numel() == 0:
        raise ValueError("metrics of an empty set are undefined")
    # float64 on the CPU: metrics are computed once per evaluation, and exact bin edges and
    # sums matter more than speed (ECE bins are compared against hand-computed values).
    return logits.detach().cpu().double(), y.detach().cpu().long()


def accuracy(logits: Tensor, y: Tensor) -> float:
    """Fraction of samples whose argmax logit is the label, in [0, 1]."""
    logits, y = _check(logits, y)
    return float((logits.argmax(dim=-1) == y).double().mean())


def nll(logits: Tensor, y: Tensor) -> float:
    """Mean cross-entropy -log softmax(logits)[y], natural log."""
    logits, y = _check(logits, y)
    return float(F.cross_entropy(logits, y))


def _bin_stats(logits: Tensor, y: Tensor, bins: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-bin sample count, summed confidence and summed correctness."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    logits, y = _check(logits, y)
    conf, pred = logits.softmax(dim=-1).max(dim=-1)
    correct = (pred == y).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    # right=False puts a value equal to an inner edge into the lower bin: intervals are
    # (lo, hi], as in Guo et al.; a confidence of exactly 1 lands in the last bin.
    index = torch.bucketize(conf, edges[1:-1], right=False)
    count = torch.bincount(index, minlength=bins).double()
    conf_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, conf)
    correct_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, correct)
    return count, conf_sum, correct_sum


def ece(logits: Tensor, y: Tensor, bins: int = 15) -> float:
    """Expected calibration error over `bins` equal-width bins of max softmax probability."""
    count, conf_sum, correct_sum = _bin_stats(logits, y, bins)
    # |sum correct - sum conf| / n equals |B|/n * |acc(B) - conf(B)| and is 0 for empty bins.
    return float((correct_sum - conf_sum).abs().sum() / count.sum())


def reliability_table(logits: Tensor, y: Tensor, bins: int = 15) -> list[dict]:
    """One row per bin: edges `lo`/`hi`, mean `confidence`, `accuracy` and `count`.

    Empty bins keep their row (so a diagram has a fixed x-axis) with `confidence` and
    `accuracy` set to None rather than a made-up 0 or a NaN that strict JSON rejects.
    """
    count, conf_sum, correct_sum = _bin_stats(logits, y, bins)
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64).tolist()
    rows = []
    for b in range(bins):
        n = int(count[b])
        rows.append({"lo": edges[b], "hi": edges[b + 1],
                     "confidence": float(conf_sum[b] / n) if n else None,
                     "accuracy": float(correct_sum[b] / n) if n else None,
                     "count": n})
    return rows
