"""distill: cache the teacher's logits, train the student with KD, and the scratch control."""
from __future__ import annotations

import numpy as np
import torch

from refinery.data import load_prepared
from refinery.distill import make_loss
from refinery.models import build_model, count_params, make_arch
from refinery.store import read_arrays, write_arrays, write_json
from refinery.train import Hooks, accuracy, fit, predict_logits

from .common import Workspace, log, pick_device, progress_reporter, seed_everything, write_manifest
from .models import load_model, save_model, write_history


def cached_teacher(cache_path, num_samples: int, device) -> callable:
    """A lookup (x, ids) -> teacher logits served from the Zarr cache, keyed by sample id."""
    data, _ = read_arrays(cache_path, ["sample_id", "logits"])
    table = torch.full((num_samples, data["logits"].shape[1]), float("nan"))
    table[torch.from_numpy(data["sample_id"])] = torch.from_numpy(data["logits"])
    table = table.to(device)
    return lambda x, ids: table[ids]


def train_student(cfg, data, device, loss_name: str | None, teacher_lookup, ws: Workspace):
    """Train one student from the same seed; `loss_name=None` is the CE-only scratch control."""
    seed_everything(cfg.seed)
    arch = make_arch(cfg.distill.student.model_dump(mode="json"), data.in_shape, data.num_classes)
    model = build_model(arch).to(device)
    name = loss_name or "scratch"
    hooks = Hooks(on_epoch=progress_reporter(f"distill-{name}-progress", f"student ({name})"))
    if loss_name:
        hooks.loss = make_loss(cfg.distill, teacher_lookup)
    result = fit(model, data.train, cfg.distill.train, seed=cfg.seed, val=data.val, arch=arch, hooks=hooks,
                 checkpoint=ws.resume_path(f"distill-{name}"), desc=f"student ({name})")
    return model, arch, result


def distill(ws: Workspace) -> None:
    cfg = ws.config()
    out, arrays = ws.stage_dir("distill"), ws.stage_dir("prepare") / "arrays.zarr"
    teacher_path = ws.stage_dir(cfg.distill.teacher) / "model.zarr"
    data = load_prepared(arrays)
    device = pick_device(cfg.device)
    teacher, _ = load_model(teacher_path, device)
    logits = predict_logits(teacher, data.train.x)
    write_arrays(out / "teacher_logits.zarr", {"sample_id": data.train.ids.numpy(), "logits": logits.numpy()},
                 {"teacher": cfg.distill.teacher})
    num_samples = len(data.train) + len(data.val) + len(data.test)
    lookup = cached_teacher(out / "teacher_logits.zarr", num_samples, device)
    student, arch, kd_run = train_student(cfg, data, device, cfg.distill.loss, lookup, ws)
    scratch, _, scratch_run = train_student(cfg, data, device, None, None, ws)
    test = data.test.to(device)
    agreement = float((predict_logits(student, test.x).argmax(1) == predict_logits(teacher, test.x).argmax(1)).float().mean())
    save_model(out / "student.zarr", student, arch, extra={"loss": cfg.distill.loss})
    save_model(out / "scratch.zarr", scratch, arch, extra={"loss": "scratch"})
    write_history(out / "history.parquet", {f"student ({cfg.distill.loss})": kd_run, "scratch": scratch_run})
    metrics = {"student": {"test_acc": accuracy(student, test), "params": count_params(student),
                           "agreement": agreement, "train_seconds": kd_run.seconds},
               "scratch": {"test_acc": accuracy(scratch, test), "train_seconds": scratch_run.seconds},
               "teacher": {"test_acc": accuracy(teacher, test), "source": cfg.distill.teacher},
               "loss": cfg.distill.loss}
    write_json(out / "metrics.json", metrics)
    log.info("distill: student (%s) %.4f, scratch %.4f, teacher %.4f", cfg.distill.loss,
             metrics["student"]["test_acc"], metrics["scratch"]["test_acc"], metrics["teacher"]["test_acc"])
    write_manifest(ws, "distill", {"seed": cfg.seed, "distill": cfg.distill.model_dump(mode="json")},
                   inputs=[arrays, teacher_path],
                   outputs=[out / "teacher_logits.zarr", out / "student.zarr", out / "scratch.zarr"])
    for name in (cfg.distill.loss, "scratch"):
        ws.clear_resume(f"distill-{name}")
