"""Results do not depend on the machine's thread count: a stage computes with the `threads` the
config names (a param of every stage, recorded in dvc.lock and the manifests), whatever the
process was started with (OMP_NUM_THREADS, torch's default of one per core)."""
from __future__ import annotations

import json

import torch

from tasks.entry import run_stage
from tests.tasks.workspace import stage_workspace


def teacher_hash(tmp_path, start_threads: int) -> str:
    root = tmp_path / f"start-{start_threads}"
    root.mkdir()
    raw = {"name": "t", "device": "cpu", "threads": 2,
           "teacher": {"model": {"arch": "cct", "dim": 32, "depth": 1, "heads": 2, "conv_channels": 16},
                       "train": {"epochs": 1, "batch_size": 64}}}
    stage_workspace(root, raw)
    torch.set_num_threads(start_threads)  # what the machine or OMP_NUM_THREADS would give
    run_stage("teacher", str(root))
    manifest = json.loads((root / "data" / "teacher" / "manifest.json").read_text())
    return manifest["outputs"]["data/teacher/model.zarr"], manifest


def test_the_teacher_is_the_same_whatever_threads_the_process_started_with(tmp_path):
    before = torch.get_num_threads()
    try:
        one, manifest = teacher_hash(tmp_path, 1)
        three, _ = teacher_hash(tmp_path, 3)
    finally:
        torch.set_num_threads(before)
    assert one == three
    assert manifest["config"]["threads"] == 2
    assert manifest["runtime"]["torch"] == torch.__version__ and manifest["runtime"]["threads"] == 2
