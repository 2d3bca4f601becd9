"""The distill stage in a throwaway workspace: prepared digits, a tiny upcycled teacher written
directly (no teacher/upcycle stage run), then `distill` for a few losses."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import tasks.distill
from refinery.data import load_prepared, stratified_subset
from refinery.models import build_model, count_params
from refinery.store import load_checkpoint, read_arrays, read_json
from refinery.train import fit
from tasks.common import Workspace
from tasks.distill import distill
from tasks.models import load_model
from tests.tasks.workspace import save_untrained, stage_workspace

TINY = {"arch": "mlp", "dim": 16, "depth": 1}


def workspace(tmp_path, **distill_cfg) -> Workspace:
    raw = {"name": "t", "device": "cpu",
           "teacher": {"model": TINY},
           "distill": {"student": {"arch": "cct", "dim": 8, "depth": 1, "heads": 2, "conv_channels": 4},
                       "train": {"epochs": 1, "batch_size": 256}, **distill_cfg}}
    ws = stage_workspace(tmp_path, raw)
    save_untrained(ws, "upcycle", TINY, moe={"num_experts": 3, "top_k": 2})
    return ws


@pytest.mark.parametrize("loss", ["kd", "dual_head", "multi_teacher"])
def test_stage_writes_student_and_both_controls(tmp_path, loss):
    ws = workspace(tmp_path, loss=loss)
    distill(ws)
    out = ws.stage_dir("distill")
    metrics = read_json(out / "metrics.json")
    for run in ("student", "scratch", "random_teacher"):
        assert 0.0 <= metrics[run]["test_acc"] <= 1.0
        assert (out / f"{run}.zarr").exists()
    assert metrics["loss"] == loss
    assert metrics["train_fraction"] == 1.0
    assert metrics["train_samples"] == len(load_prepared(ws.stage_dir("prepare") / "arrays.zarr").train)
    # the deployed student is the plain backbone: no auxiliary head or router in the checkpoint
    tensors, attrs = load_checkpoint(out / "student.zarr")
    assert not any(k.startswith("distill_loss") for k in tensors)
    student, _ = load_model(out / "student.zarr")
    assert metrics["student"]["params"] == count_params(student) == count_params(build_model(attrs["arch"]))
    cache, _ = read_arrays(out / "teacher_logits.zarr")
    assert cache["expert_logits"].shape[1:] == (3, 10) and cache["logits"].shape[0] == len(cache["sample_id"])


def test_heterogeneous_pair_mlp_teacher_cct_student(tmp_path):
    ws = workspace(tmp_path, teacher="upcycle")
    distill(ws)
    _, attrs = load_checkpoint(ws.stage_dir("distill") / "student.zarr")
    assert attrs["arch"]["backbone"]["arch"] == "cct"



def test_train_fraction_trains_every_run_on_the_same_stratified_subset(tmp_path, monkeypatch):
    seen = {}

    def recording_fit(model, train, cfg, **kw):
        seen[kw["desc"]] = train.ids.clone()
        return fit(model, train, cfg, **kw)

    monkeypatch.setattr(tasks.distill, "fit", recording_fit)
    ws = workspace(tmp_path, train_fraction=0.25)
    distill(ws)
    data = load_prepared(ws.stage_dir("prepare") / "arrays.zarr")
    kept = stratified_subset(data.train, 0.25, seed=ws.config().seed)
    assert sorted(seen) == ["student (random_teacher)", "student (scratch)", "student (student)"]
    assert all(torch.equal(ids, kept.ids) for ids in seen.values())
    counts, full = np.bincount(kept.y.numpy(), minlength=10), np.bincount(data.train.y.numpy(), minlength=10)
    assert (counts == np.maximum(1, np.round(0.25 * full))).all()
    metrics = read_json(ws.stage_dir("distill") / "metrics.json")
    assert metrics["train_fraction"] == 0.25 and metrics["train_samples"] == len(kept) < len(data.train)
    # the teacher-logit cache still covers the whole training split
    cache, _ = read_arrays(ws.stage_dir("distill") / "teacher_logits.zarr")
    assert sorted(cache["sample_id"].tolist()) == sorted(data.train.ids.tolist())
