"""Reading and writing the models that stages hand to each other."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from torch import nn

from refinery.models import build_model
from refinery.store import load_checkpoint, save_checkpoint, write_table
from refinery.train import FitResult


def save_model(path: Path, model: nn.Module, arch: dict, step: int = 0, extra: dict | None = None) -> str:
    return save_checkpoint(path, model.state_dict(), arch, step=step, extra=extra)


def load_model(path: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a model from its checkpoint's architecture record; verifies the content hash."""
    tensors, attrs = load_checkpoint(path)
    model = build_model(attrs["arch"])
    model.load_state_dict(tensors)
    return model.to(device).eval(), attrs["arch"]


def write_history(path: Path, runs: dict[str, FitResult]) -> None:
    rows = [dict(record, run=name) for name, result in runs.items() for record in result.history]
    write_table(path, pd.DataFrame(rows))
