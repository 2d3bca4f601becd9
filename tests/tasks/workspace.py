"""Throwaway projects for stage tests: a validated config, prepared digits, and an untrained
model written where the stage under test reads it (no earlier stage runs)."""
from __future__ import annotations

from pathlib import Path

import torch

from refinery import config as C
from refinery.models import attach_moe, build_model, make_arch
from tasks.common import Workspace
from tasks.models import save_model
from tasks.prepare import prepare


def stage_workspace(root: Path, raw: dict) -> Workspace:
    """A project at `root` with config `raw` and its data prepared."""
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "params.yaml").write_text(C.dump_yaml(C.validate(raw)))
    ws = Workspace(root)
    prepare(ws)
    return ws


def save_untrained(ws: Workspace, stage: str, model_cfg: dict, moe: dict | None = None) -> dict:
    """An untrained model of `model_cfg` (with experts when `moe` is given), seeded, saved as
    `stage`'s model.zarr for 8x8 digits; returns its architecture record."""
    torch.manual_seed(0)
    arch = make_arch(C.ModelConfig(**model_cfg).model_dump(mode="json"), (1, 8, 8), 10)
    model = build_model(arch)
    if moe:
        attach_moe(model, moe)
        arch = dict(arch, moe=moe)
    save_model(ws.stage_dir(stage) / "model.zarr", model, arch)
    return arch
