"""Distillation losses, registered by name; `distill.loss` selects one.

A loss factory takes the DistillConfig and a teacher lookup `teacher(x, ids) -> logits` (the
Zarr cache, or the teacher run online) and returns a training-loop loss hook
`loss(model, x, y, ids, at=None)`; `at` is the `refinery.train.Step` that `fit` passes (epoch,
step, totals), None when the loss is called outside the loop. A lookup may also offer
`teacher.experts(x, ids) -> (B, E, C)`, one set of logits per expert path of an MoE teacher
(used by `multi_teacher`).

Losses with parameters of their own (dual_head's auxiliary head, multi_teacher's router) are
`DistillLoss` modules. `attached(model, loss)` hangs such a loss on the student while it
trains, so the optimizer of `refinery.train.fit` updates its parameters and the epoch
checkpoints resume them; on exit it is taken off again, so the deployed student is the plain
backbone (same state_dict keys, same parameter count).
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
from torch import nn

from ..config import DistillConfig
from ..train import LossFn

TeacherLookup = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, ids) -> teacher logits
LOSSES: dict[str, Callable[[DistillConfig, TeacherLookup], LossFn]] = {}
ATTACH_NAME = "distill_loss"


def register(name: str):
    def wrap(fn):
        LOSSES[name] = fn
        return fn
    return wrap


def make_loss(cfg: DistillConfig, teacher: TeacherLookup) -> LossFn:
    if cfg.loss not in LOSSES:
        raise ValueError(f"distill.loss: unknown loss {cfg.loss!r}; known: {', '.join(sorted(LOSSES))}")
    return LOSSES[cfg.loss](cfg, teacher)


class TeacherTable:
    """Teacher logits looked up by sample id, held on the training device.

    `logits` is (num_samples, C), indexed by sample id; `expert_logits`, if given, is
    (num_samples, E, C). Rows of ids never written stay NaN, so a lookup of a sample the
    teacher never saw poisons the loss (and `fit` stops) instead of training on zeros.
    """

    def __init__(self, logits: torch.Tensor, expert_logits: torch.Tensor | None = None):
        self.logits, self.expert_logits = logits, expert_logits

    @classmethod
    def from_rows(cls, ids: torch.Tensor, logits: torch.Tensor, expert_logits: torch.Tensor | None,
                  num_samples: int, device) -> TeacherTable:
        def table(rows: torch.Tensor) -> torch.Tensor:
            out = torch.full((num_samples, *rows.shape[1:]), float("nan"))
            out[ids.long()] = rows.float()
            return out.to(device)
        return cls(table(logits), None if expert_logits is None else table(expert_logits))

    def __call__(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return self.logits[ids]

    @property
    def has_experts(self) -> bool:
        return self.expert_logits is not None

    @property
    def num_experts(self) -> int:
        return 0 if self.expert_logits is None else self.expert_logits.shape[1]

    def experts(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if self.expert_logits is None:
            raise ValueError("this teacher has no per-expert logits (it is not a mixture of experts)")
        return self.expert_logits[ids]


class DistillLoss(nn.Module):
    """A loss hook with parameters. `bind(model)` creates what depends on the
    student's shape (called by `attached` before training, else lazily on first use)."""

    def bind(self, model: nn.Module) -> None:  # pragma: no cover - default: nothing to create
        pass

    def forward(self, model, x, y, ids, at=None):  # pragma: no cover
        raise NotImplementedError


def student_head(model: nn.Module) -> nn.Linear:
    """The student's classifier; every backbone exposes `features(x)` and `head`."""
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Linear) or not hasattr(model, "features"):
        raise TypeError(f"{type(model).__name__}: this loss needs a backbone with `features(x)` and a linear `head`")
    return head


@contextlib.contextmanager
def attached(model: nn.Module, loss) -> Iterator[None]:
    """Train `loss`'s own parameters with the student, then take them off it again."""
    if not isinstance(loss, DistillLoss):
        yield
        return
    loss.bind(model)
    loss.to(next(model.parameters()).device)
    model.add_module(ATTACH_NAME, loss)
    try:
        yield
    finally:
        delattr(model, ATTACH_NAME)


from . import dkd, dual_head, kd, multi_teacher, pld, sinkhorn  # noqa: E402,F401  (register themselves)
