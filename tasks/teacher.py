"""teacher: train the dense teacher on the training split."""
from __future__ import annotations

from refinery.data import load_prepared
from refinery.models import build_model, count_params, make_arch
from refinery.store import write_json
from refinery.train import Hooks, accuracy, fit

from .common import (Workspace, log, pick_device, progress_reporter, seed_everything, stage_identity,
                     write_manifest)
from .models import save_model, write_history


def teacher(ws: Workspace) -> None:
    cfg = ws.config()
    out, arrays = ws.stage_dir("teacher"), ws.stage_dir("prepare") / "arrays.zarr"
    data = load_prepared(arrays)
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    arch = make_arch(cfg.teacher.model.model_dump(mode="json"), data.in_shape, data.num_classes)
    model = build_model(arch).to(device)
    log.info("teacher: %s with %d parameters on %s", cfg.teacher.model.arch, count_params(model), device)
    result = fit(model, data.train, cfg.teacher.train, seed=cfg.seed, val=data.val, arch=arch,
                 checkpoint=ws.resume_path("teacher"), identity=stage_identity(ws, cfg, "teacher"), desc="teacher",
                 hooks=Hooks(on_epoch=progress_reporter("teacher-progress", "teacher training")))
    if result.resumed_from:
        log.info("teacher: resumed from the checkpoint of epoch %d", result.resumed_from)
    test_acc = accuracy(model, data.test.to(device))
    save_model(out / "model.zarr", model, arch, step=len(result.history))
    write_history(out / "history.parquet", {"teacher": result})
    write_json(out / "metrics.json", {"test_acc": test_acc, "val_acc": result.history[-1].get("val_acc"),
                                      "params": count_params(model), "train_seconds": result.seconds})
    log.info("teacher: test accuracy %.4f", test_acc)
    write_manifest(ws, "teacher", cfg)
    ws.clear_resume("teacher")
