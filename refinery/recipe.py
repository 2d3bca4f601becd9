"""Training-recipe options of TrainConfig that act through the loss hook, so the one loop in
refinery/train.py stays the only loop: Multi-Sample Dropout and on-device augmentation."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

LossFn = Callable[..., torch.Tensor]  # (model, x, y, ids, at: train.Step) -> loss


def multi_sample_dropout_loss(samples: int, p: float, label_smoothing: float,
                              aux: Callable[[nn.Module], torch.Tensor | float] = lambda m: 0.0) -> LossFn:
    """Multi-Sample Dropout (Inoue, "Multi-Sample Dropout for Accelerated Training and Better
    Generalization", 2019): run the trunk once, draw M dropout masks on its features, send each
    masked copy through the *shared* head and average the M losses,
        L = (1/M) sum_m CE(head(dropout_m(features(x))), y).
    The M copies go through the head as one (M*B) batch; with equal batch sizes the mean over
    all rows is the mean of the M losses. Needs `model.features` and `model.head`; inference
    (model(x)) is unchanged and the head gains no parameters. `aux` adds e.g. MoE balance losses.
    """
    def loss(model, x, y, ids, at=None):
        z = model.features(x)
        masked = F.dropout(z.unsqueeze(0).expand(samples, *z.shape), p, training=model.training)
        logits = model.head(masked.reshape(samples * len(z), *z.shape[1:]))
        return F.cross_entropy(logits, y.repeat(samples), label_smoothing=label_smoothing) + aux(model)
    return loss


def random_crop_flip(x: torch.Tensor, padding: int, flip: bool) -> torch.Tensor:
    """The standard CIFAR augmentation (He et al. 2016, Sec. 4.2) on a batch already on the
    device: zero-pad by `padding`, crop back to size at a random offset per sample, and (2-D
    only) mirror half the samples. Signals (B, C, L) get the crop, a random shift. Uses the
    global torch RNG, which the loop seeds per (seed, epoch)."""
    if padding:
        size = x.shape[2:]
        padded = F.pad(x, [padding] * (2 * len(size)))
        offsets = torch.randint(0, 2 * padding + 1, (len(x), len(size)), device=x.device)
        batch = torch.arange(len(x), device=x.device)
        if len(size) == 1:
            cols = offsets[:, 0, None] + torch.arange(size[0], device=x.device)
            x = padded[batch[:, None], :, cols].permute(0, 2, 1)
        else:
            rows = (offsets[:, 0, None] + torch.arange(size[0], device=x.device))[:, :, None]
            cols = (offsets[:, 1, None] + torch.arange(size[1], device=x.device))[:, None, :]
            x = padded[batch[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    if flip and x.dim() == 4:
        mirror = torch.rand(len(x), device=x.device) < 0.5
        x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
    return x.contiguous()


def augmented(loss: LossFn, padding: int, flip: bool) -> LossFn:
    """Apply crop/flip to the batch before any loss (teacher CE, retrain, online KD)."""
    def wrapped(model, x, y, ids, at=None):
        return loss(model, random_crop_flip(x, padding, flip), y, ids, at)
    return wrapped
