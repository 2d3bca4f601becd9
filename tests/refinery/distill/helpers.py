"""Small fixtures shared by the distillation-loss tests."""
from __future__ import annotations

import torch

from refinery.config import DistillConfig
from refinery.distill import TeacherTable
from refinery.models import build_model, make_arch


def logits(b: int = 16, c: int = 10, seed: int = 0,
           scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, c, generator=g) * scale, torch.randn(b, c, generator=g) * scale,
            torch.randint(0, c, (b,), generator=g))


def student(arch: str = "mlp", in_shape=(1, 8, 8), classes: int = 10):
    torch.manual_seed(0)
    cfg = {"arch": arch, "dim": 16, "depth": 1, "heads": 2, "mlp_ratio": 2.0, "conv_channels": 8,
           "conv_kernel": 3, "dropout": 0.0}
    a = make_arch(cfg, in_shape, classes)
    return build_model(a), a


def table(n: int = 32, c: int = 10, experts: int = 0, seed: int = 1) -> TeacherTable:
    g = torch.Generator().manual_seed(seed)
    ids = torch.arange(n)
    ex = torch.randn(n, experts, c, generator=g) if experts else None
    return TeacherTable.from_rows(ids, torch.randn(n, c, generator=g), ex, n, "cpu")


def cfg(**kw) -> DistillConfig:
    return DistillConfig(**kw)
