"""unlearn: make the deployed model forget the forget set, by each configured method, and score
every result against retraining (UA, RA, TA, MIA-efficacy, Avg.Gap, seconds)."""
from __future__ import annotations

import time

import pandas as pd

from refinery.data import load_prepared
from refinery.distill import make_loss
from refinery.metrics.unlearning import avg_gap, confidence, unlearning_scores
from refinery.store import atomic_path, read_table, write_json, write_table
from refinery.train import predict_logits
from refinery.unlearn import UnlearnContext, run_method

from .common import Workspace, log, pick_device, progress_reporter, seed_everything, write_manifest
from .distill import cached_teacher
from .models import load_model, save_model


def build_context(ws: Workspace, cfg, data, device) -> UnlearnContext:
    """The target model with its own recipe: the student keeps its KD loss, the teacher its CE."""
    forget_ids = read_table(ws.stage_dir("prepare") / "forget.parquet")["sample_id"].to_numpy()
    if cfg.unlearn.target == "student":
        model, arch = load_model(ws.stage_dir("distill") / "student.zarr", device)
        num_samples = len(data.train) + len(data.val) + len(data.test)
        lookup = cached_teacher(ws.stage_dir("distill") / "teacher_logits.zarr", num_samples, device)
        train_cfg, loss = cfg.distill.train, make_loss(cfg.distill, lookup)
    else:
        model, arch = load_model(ws.stage_dir("teacher") / "model.zarr", device)
        train_cfg, loss = cfg.teacher.train, None
    return UnlearnContext(model=model, arch=arch, retain=data.train.without(forget_ids),
                          forget=data.train.only(forget_ids), train_cfg=train_cfg, seed=cfg.seed,
                          cfg=cfg.unlearn, model_loss=loss)


def score(model, ctx: UnlearnContext, test, seed: int) -> tuple[dict, pd.Series]:
    lf, lr, lt = (predict_logits(model, d.x) for d in (ctx.forget, ctx.retain, test))
    scores = unlearning_scores(lf, ctx.forget.y, lr, ctx.retain.y, lt, test.y, seed)
    return scores, pd.Series(confidence(lf, ctx.forget.y))


def unlearn(ws: Workspace) -> None:
    cfg = ws.config()
    out, arrays = ws.stage_dir("unlearn"), ws.stage_dir("prepare") / "arrays.zarr"
    data = load_prepared(arrays)
    device = pick_device(cfg.device)
    ctx = build_context(ws, cfg, data, device)
    log.info("unlearn: %s forgets %d of %d training samples", cfg.unlearn.target, len(ctx.forget), len(data.train))
    results, per_sample = {}, []
    base_scores, base_conf = score(ctx.model, ctx, data.test, cfg.seed)
    results["original"] = dict(base_scores, seconds=0.0)
    per_sample.append(pd.DataFrame({"method": "original", "sample_id": ctx.forget.ids.numpy(), "confidence": base_conf}))
    # retrain first: every gap is measured against it
    methods = ["retrain"] + [m for m in cfg.unlearn.methods if m != "retrain"]
    with atomic_path(out / "models") as models_dir:
        models_dir.mkdir(parents=True)
        for name in methods:
            seed_everything(cfg.seed)
            ctx.on_epoch = progress_reporter(f"unlearn-{name}-progress", f"unlearn ({name})")
            started = time.perf_counter()
            model = run_method(name, ctx)
            seconds = time.perf_counter() - started
            scores, conf = score(model, ctx, data.test, cfg.seed)
            results[name] = dict(scores, seconds=seconds)
            per_sample.append(pd.DataFrame({"method": name, "sample_id": ctx.forget.ids.numpy(), "confidence": conf}))
            save_model(models_dir / f"{name}.zarr", model, ctx.arch, extra={"method": name})
            log.info("unlearn %-9s UA %6.2f RA %6.2f TA %6.2f MIA %6.2f in %.2fs", name,
                     scores["UA"], scores["RA"], scores["TA"], scores["MIA"], seconds)
    for name, res in results.items():
        res["gap"] = avg_gap(res, results["retrain"])
    write_table(out / "forget_scores.parquet", pd.concat(per_sample, ignore_index=True))
    write_json(out / "metrics.json", dict(results, target=cfg.unlearn.target, forget_size=len(ctx.forget)))
    write_manifest(ws, "unlearn", {"seed": cfg.seed, "unlearn": cfg.unlearn.model_dump(mode="json")},
                   inputs=[arrays, ws.stage_dir("prepare") / "forget.parquet"],
                   outputs=[out / "models", out / "forget_scores.parquet"])
