"""Distillation losses, registered by name; `distill.loss` selects one.

A loss factory takes the DistillConfig and a `teacher_logits(ids) -> Tensor` lookup (the Zarr
cache, or the teacher run online) and returns a training-loop loss hook.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..config import DistillConfig
from ..train import LossFn

TeacherLookup = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, ids) -> teacher logits
LOSSES: dict[str, Callable[[DistillConfig, TeacherLookup], LossFn]] = {}


def register(name: str):
    def wrap(fn):
        LOSSES[name] = fn
        return fn
    return wrap


def make_loss(cfg: DistillConfig, teacher: TeacherLookup) -> LossFn:
    if cfg.loss not in LOSSES:
        raise ValueError(f"distill.loss: unknown loss {cfg.loss!r}; known: {', '.join(sorted(LOSSES))}")
    return LOSSES[cfg.loss](cfg, teacher)


from . import kd  # noqa: E402,F401  (registers itself)
