"""distill: cache the teacher's logits, train the student with the configured KD loss, and the
two controls every KD result is reported beside: `scratch` (the same student, CE only) and
`random_teacher` (the same student and loss, distilled from an untrained teacher of the
teacher's architecture).

With `distill.train_fraction` < 1 the student and both controls train on the same seeded,
class-stratified subset of the training split (KD at reduced data); validation, test and the
teacher-logit cache keep the whole of their splits.
"""
from __future__ import annotations

from dataclasses import replace

from refinery.data import load_prepared, stratified_subset
from refinery.distill import TeacherTable, attached, cache, make_loss
from refinery.models import build_model, count_params, make_arch
from refinery.store import write_json
from refinery.train import Hooks, accuracy, fit, predict_logits

from .common import (Workspace, log, pick_device, progress_reporter, seed_everything, stage_identity,
                     write_manifest)
from .models import load_model, save_model, write_history

RUNS = ("student", "scratch", "random_teacher")


def teacher_table(teacher, data, device) -> TeacherTable:
    """Logits (and per-expert logits of an MoE) of `teacher` on the training split, by sample id."""
    return cache.teacher_table(teacher, data.train.x, data.train.ids, data.num_samples, device)


def cached_teacher(cache_path, num_samples: int, device) -> TeacherTable:
    """A lookup (x, ids) -> teacher logits served from the Zarr cache, keyed by sample id."""
    return cache.read_cache(cache_path, num_samples, device)


def train_student(cfg, data, device, run: str, teacher_lookup, ws: Workspace):
    """Train one student from the same seed; `teacher_lookup=None` is the CE-only scratch control."""
    seed_everything(cfg.seed)
    arch = make_arch(cfg.distill.student.model_dump(mode="json"), data.in_shape, data.num_classes)
    model = build_model(arch).to(device)
    hooks = Hooks(on_epoch=progress_reporter(f"distill-{run}-progress", f"student ({run})"))
    hooks.loss = make_loss(cfg.distill, teacher_lookup) if teacher_lookup is not None else None
    # A loss with its own parts (auxiliary head, router, epoch count) trains attached to the
    # student and is taken off before the student is saved or counted.
    with attached(model, hooks.loss):
        result = fit(model, data.train, cfg.distill.train, seed=cfg.seed, val=data.val, arch=arch, hooks=hooks,
                     checkpoint=ws.resume_path(f"distill-{run}"), identity=stage_identity(ws, cfg, "distill", run=run),
                     desc=f"student ({run})")
    return model, arch, result


def random_teacher_table(cfg, teacher_arch: dict, data, device) -> TeacherTable:
    """The teacher's architecture at initialisation (seeded by the run's seed), never trained."""
    seed_everything(cfg.seed)
    untrained = build_model(teacher_arch).to(device).eval()
    return teacher_table(untrained, data, device)


def agreement(model, teacher, test) -> float:
    return float((predict_logits(model, test.x).argmax(1) == predict_logits(teacher, test.x).argmax(1)).float().mean())


def distill(ws: Workspace) -> None:
    cfg = ws.config()
    out, arrays = ws.stage_dir("distill"), ws.stage_dir("prepare") / "arrays.zarr"
    teacher_path = ws.stage_dir(cfg.distill.teacher) / "model.zarr"
    data = load_prepared(arrays)
    device = pick_device(cfg.device)
    teacher, teacher_arch = load_model(teacher_path, device)
    cache.write_cache(out / "teacher_logits.zarr", teacher_table(teacher, data, device), data.train.ids,
                      cfg.distill.teacher)
    num_samples = data.num_samples
    # Training reads the cache (augmentation is off, so the teacher's logits never change).
    lookups = {"student": cached_teacher(out / "teacher_logits.zarr", num_samples, device), "scratch": None,
               "random_teacher": random_teacher_table(cfg, teacher_arch, data, device)}
    # Every run trains on the same subset (the whole split at fraction 1.0, with no draw).
    reduced = replace(data, train=stratified_subset(data.train, cfg.distill.train_fraction, cfg.seed))
    models, runs = {}, {}
    for run in RUNS:
        models[run], arch, runs[run] = train_student(cfg, reduced, device, run, lookups[run], ws)
    test = data.test.to(device)
    for run in RUNS:
        source = {"scratch": None, "random_teacher": "untrained"}.get(run, cfg.distill.teacher)
        save_model(out / f"{run}.zarr", models[run], arch,
                   extra={"loss": cfg.distill.loss if source else "scratch", "teacher": source})
    write_history(out / "history.parquet", {f"student ({cfg.distill.loss})": runs["student"],
                                            "scratch": runs["scratch"],
                                            f"random_teacher ({cfg.distill.loss})": runs["random_teacher"]})
    metrics = {run: {"test_acc": accuracy(models[run], test), "agreement": agreement(models[run], teacher, test),
                     "train_seconds": runs[run].seconds} for run in RUNS}
    metrics["student"]["params"] = count_params(models["student"])
    metrics["teacher"] = {"test_acc": accuracy(teacher, test), "source": cfg.distill.teacher}
    metrics["loss"] = cfg.distill.loss
    metrics["train_fraction"], metrics["train_samples"] = cfg.distill.train_fraction, len(reduced.train)
    write_json(out / "metrics.json", metrics)
    log.info("distill: student (%s) %.4f, scratch %.4f, random teacher %.4f, teacher %.4f", cfg.distill.loss,
             metrics["student"]["test_acc"], metrics["scratch"]["test_acc"], metrics["random_teacher"]["test_acc"],
             metrics["teacher"]["test_acc"])
    write_manifest(ws, "distill", cfg)
    for run in RUNS:
        ws.clear_resume(f"distill-{run}")
