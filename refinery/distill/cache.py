"""The teacher cache: the teacher's logits on the training split, written once as Zarr keyed by
sample id and read back into a `TeacherTable`, so student epochs do not run the teacher.

Valid while augmentation is off (it always is here): the teacher then sees the same input for a
sample in every epoch. Arrays: `sample_id` (N,), `logits` (N, C) and, for an MoE teacher,
`expert_logits` (N, E, C), one set per expert path (see multi_teacher.py).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..store import open_group, read_arrays, write_arrays
from ..train import predict_logits
from . import TeacherTable
from .multi_teacher import expert_logits


def teacher_table(teacher: nn.Module, x: torch.Tensor, ids: torch.Tensor, num_samples: int, device) -> TeacherTable:
    """Run `teacher` once over (x, ids): its logits, and per-expert logits if it is an MoE."""
    return TeacherTable.from_rows(ids, predict_logits(teacher, x), expert_logits(teacher, x), num_samples, device)


def write_cache(path: Path, table: TeacherTable, ids: torch.Tensor, source: str) -> None:
    arrays = {"sample_id": ids.cpu().numpy(), "logits": table.logits[ids].cpu().numpy()}
    if table.has_experts:
        arrays["expert_logits"] = table.expert_logits[ids].cpu().numpy()
    write_arrays(path, arrays, {"teacher": source, "num_experts": table.num_experts})


def read_cache(path: Path, num_samples: int, device) -> TeacherTable:
    names = ["sample_id", "logits"] + (["expert_logits"] if "expert_logits" in open_group(path) else [])
    data, _ = read_arrays(path, names)
    experts = torch.from_numpy(data["expert_logits"]) if "expert_logits" in data else None
    return TeacherTable.from_rows(torch.from_numpy(data["sample_id"]), torch.from_numpy(data["logits"]),
                                  experts, num_samples, device)
