"""unlearn: make the deployed model forget the forget set, by each configured method, and score
every result against retraining (UA, RA, TA, MIA-efficacy, Avg.Gap, seconds), plus an audit
(linear probe, relearn steps, UA on noisy inputs) under the key "audit".

Reusable work is cached outside DVC's outputs, keyed by content, under .refinery/cache/unlearn/:
SSD's and LFSSD's full-data importance I_D (keyed by the target model's content hash, the
importance mode and batch, and the samples in the order they are read: with the reference
importance that order depends on the request) and the SISA deployment (keyed by the training
data and recipe).

With `unlearn.select_lr`, each method that trains with an LR (finetune, grad_ascent,
random_label, salun) first has its LR chosen from `unlearn.<method>.lr_grid` by the declared
rule of refinery/unlearn/selection.py (smallest Avg.Gap to retrain on a validation request drawn
from the training split, the validation split standing in for test); the grid, the chosen LR
and the gaps go to metrics.json under "selection".
`seconds` is the per-request time; `seconds_with_importance` / `seconds_with_training` add
the cached part's (measured) cost.

margins.parquet holds every model's per-sample margin (refinery/metrics/klom.py) on the forget,
retain and test samples, for KLoM across a seed group. With `unlearn.relearn_epochs` > 0 each
model's row gets the relearning check (refinery/unlearn/relearn.py): forget accuracy before and
after fine-tuning on D_r alone, what returned, and that less what returned for retrain.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pandas as pd

from refinery.data import load_prepared
from refinery.data.dataset import Arrays
from refinery.distill import cache, make_loss
from refinery.metrics.klom import margins
from refinery.metrics.unlearning import avg_gap, confidence, unlearning_scores
from refinery.store.cache import read_cache
from refinery.store import (atomic_path, load_checkpoint, open_group, read_table, save_checkpoint,
                            write_json, write_table)
from refinery.train import accuracy, predict_logits
from refinery.unlearn import UnlearnContext, run_method
from refinery.unlearn.audit import audit
from refinery.unlearn.relearn import relearn_on_retain
from refinery.unlearn.selection import select_lrs, with_setting
from refinery.unlearn.ssd import full_importance, importance_inputs
from refinery.unlearn.sisa import SISAEnsemble, deploy, deployment_key, load_deployment, save_deployment

from .common import Workspace, log, pick_device, progress_reporter, seed_everything, write_manifest
from .distill import cached_teacher
from .models import load_model, save_model
from .stages import STAGE_NAMES

TARGETS = {"teacher": ("teacher", "model.zarr"), "upcycle": ("upcycle", "model.zarr"),
           "student": ("distill", "student.zarr")}


def training_split(data, forget_ids) -> Arrays:
    """The training split as the request saw it: with `forget.exact`, prepare moved D_f out of
    it (into forgotten.zarr) so no stage trained on it; it is put back here to be scored. Only
    the request's own samples come back: a kept-apart sample of another request stays out."""
    apart = data.forgotten.only(forget_ids) if data.forgotten is not None and len(data.forgotten) else None
    return data.train.union(apart) if apart is not None and len(apart) else data.train


def fill_teacher_rows(ws: Workspace, cfg, lookup, samples: Arrays, num_samples: int, device) -> None:
    """Add the distillation teacher's logits on `samples` (absent from the cache, which covers the
    training split) to `lookup`, so a method that trains the student on D_f with its KD loss sees
    the teacher's outputs instead of the cache's NaN rows."""
    teacher, _ = load_model(ws.stage_dir(cfg.distill.teacher) / "model.zarr", device)
    extra = cache.teacher_table(teacher, samples.x.to(device), samples.ids, num_samples, device)
    ids = samples.ids.to(lookup.logits.device)
    lookup.logits[ids] = extra.logits[ids]
    if lookup.expert_logits is not None and extra.expert_logits is not None:
        lookup.expert_logits[ids] = extra.expert_logits[ids]


def target_path(ws: Workspace, target: str) -> Path:
    stage, name = TARGETS[target]
    return ws.stage_dir(stage) / name


def build_context(ws: Workspace, cfg, data, device) -> UnlearnContext:
    """The target model with its own recipe: the student keeps its KD loss, the teacher and the
    upcycled MoE their CE (the MoE's includes its balance loss)."""
    forget_ids = read_table(ws.stage_dir("prepare") / "forget.parquet")["sample_id"].to_numpy()
    train = training_split(data, forget_ids)
    model, arch = load_model(target_path(ws, cfg.unlearn.target), device)
    loss = None
    if cfg.unlearn.target == "student":
        lookup = cached_teacher(ws.stage_dir("distill") / "teacher_logits.zarr", data.num_samples, device)
        if data.forgotten is not None and len(data.forgotten):  # D_f kept apart: the teacher never saw it
            fill_teacher_rows(ws, cfg, lookup, data.forgotten, data.num_samples, device)
        train_cfg = cfg.distill.train
        loss = lambda: make_loss(cfg.distill, lookup)  # noqa: E731  a fresh loss (and its parts) per method
    elif cfg.unlearn.target == "upcycle":
        train_cfg = cfg.upcycle.train
    else:
        train_cfg = cfg.teacher.train
    return UnlearnContext(model=model, arch=arch, retain=train.without(forget_ids), forget=train.only(forget_ids),
                          train_cfg=train_cfg, seed=cfg.seed, cfg=cfg.unlearn, model_loss=loss, val=data.val)


def score(model, ctx: UnlearnContext, test, seed: int) -> tuple[dict, pd.Series]:
    lf, lr, lt = (predict_logits(model, d.x) for d in (ctx.forget, ctx.retain, test))
    scores = unlearning_scores(lf, ctx.forget.y, lr, ctx.retain.y, lt, test.y, seed)
    return scores, pd.Series(confidence(lf, ctx.forget.y))


def cached_importance(ws: Workspace, kind: str, ctx: UnlearnContext, model_hash: str) -> tuple[dict, float]:
    """(I_D, seconds it took to compute) for `kind` in {ssd, lfssd}, computed once per target
    model (content hash), importance mode, batch size and sample order, and reused."""
    full, _, mode, batch = importance_inputs(ctx, kind)
    h = hashlib.sha256(f"{kind}|{model_hash}|{mode}|{batch}".encode())
    h.update(full.ids.numpy().tobytes())
    path = ws.root / ".refinery" / "cache" / "unlearn" / f"{kind}_importance" / f"{h.hexdigest()[:20]}.zarr"
    cached = read_cache(path, load_checkpoint)
    if cached is not None:
        tensors, attrs = cached
        return {n: t.to(ctx.device) for n, t in tensors.items()}, float(attrs["extra"]["seconds"])
    started = time.perf_counter()
    imp = full_importance(ctx, kind)
    seconds = time.perf_counter() - started
    save_checkpoint(path, imp, {}, packed=True, extra={"seconds": seconds, "model_hash": model_hash, "kind": kind})
    return imp, seconds


def cached_sisa(ws: Workspace, ctx: UnlearnContext):
    """The SISA deployment trained on D = D_r ∪ D_f (the deployed system a request arrives at)."""
    s = ctx.cfg.sisa
    full = ctx.full()
    key = deployment_key(ctx.arch, full, ctx.train_cfg, ctx.seed, s.shards, s.slices)
    path = ws.root / ".refinery" / "cache" / "unlearn" / "sisa" / f"{key}.zarr"
    cached = read_cache(path, lambda p: load_deployment(p, ctx.device))
    if cached is not None:
        return cached
    deployment = deploy(ctx.arch, full, ctx.train_cfg, ctx.seed, s.shards, s.slices, ctx.device)
    save_deployment(path, deployment)
    return deployment


def method_options(ws: Workspace, name: str, ctx: UnlearnContext, model_hash: str) -> tuple[dict, dict]:
    """(keyword options for the method, extra timing fields) for the request-independent parts."""
    if name in ("ssd", "lfssd"):
        imp, seconds = cached_importance(ws, name, ctx, model_hash)
        return {"full_importance": imp}, {"importance_seconds": seconds}
    if name == "sisa":
        deployment = cached_sisa(ws, ctx)
        return {"deployment": deployment}, {"training_seconds": deployment.seconds}
    return {}, {}


def run_one(ws: Workspace, name: str, ctx: UnlearnContext, test, seed: int, model_hash: str):
    """Run one method; return (model, results row, per-sample confidences)."""
    options, extra = method_options(ws, name, ctx, model_hash)
    seed_everything(seed)
    ctx.on_epoch = progress_reporter(f"unlearn-{name.replace('_', '-')}-progress", f"unlearn ({name})")
    started = time.perf_counter()
    model = run_method(name, ctx, **options)
    seconds = time.perf_counter() - started
    scores, conf = score(model, ctx, test, seed)
    row = dict(scores, seconds=seconds)
    if "importance_seconds" in extra:
        row["seconds_with_importance"] = seconds + extra["importance_seconds"]
    if "training_seconds" in extra:
        row["seconds_with_training"] = seconds + extra["training_seconds"]
    log.info("unlearn %-12s UA %6.2f RA %6.2f TA %6.2f MIA %6.2f in %.2fs", name,
             scores["UA"], scores["RA"], scores["TA"], scores["MIA"], seconds)
    return model, row, conf


def margin_table(models: dict, ctx: UnlearnContext, test: Arrays) -> pd.DataFrame:
    """One row per (model, sample) of the forget, retain and test splits: the KLoM margin
    z_y - logsumexp_{j != y} z_j of each model's logits, keyed by sample id."""
    frames = [pd.DataFrame({"model": name, "split": split, "sample_id": d.ids.cpu().numpy().astype("int64"),
                            "margin": margins(predict_logits(model, d.x), d.y)})
              for name, model in models.items()
              for split, d in (("forget", ctx.forget), ("retain", ctx.retain), ("test", test)) if len(d)]
    return pd.concat(frames, ignore_index=True)


def relearn_rows(models: dict, ctx: UnlearnContext, seed: int, epochs: int) -> dict[str, dict]:
    """{model name: relearn_* fields} from `relearn_on_retain` (same recipe, seed, D_r and D_f for
    every model); retrain's is run once and is the reference the excess is read against.
    Accuracies in percent (x100 of relearn.py's [0, 1]), as UA, RA and TA in the same row."""
    def run(model) -> dict:
        r = relearn_on_retain(model, ctx.retain, ctx.forget, ctx.train_cfg, seed, epochs=epochs)
        return {"relearn_forget_acc_before": 100.0 * r["forget_acc_before"],
                "relearn_forget_acc_after": 100.0 * r["forget_acc_after"], "relearn_returned": 100.0 * r["returned"]}

    gold = run(models["retrain"])
    rows = {}
    for name, model in models.items():
        row = dict(gold) if name == "retrain" else run(model)
        row["relearn_excess_returned"] = row["relearn_returned"] - gold["relearn_returned"]
        log.info("unlearn %-12s relearn on D_r (%d epochs): forget acc %6.2f -> %6.2f, returned %+6.2f "
                 "(%+6.2f against retrain)", name, epochs, row["relearn_forget_acc_before"],
                 row["relearn_forget_acc_after"], row["relearn_returned"], row["relearn_excess_returned"])
        rows[name] = row
    return rows


def unlearn(ws: Workspace) -> None:
    cfg = ws.config()
    out, arrays = ws.stage_dir("unlearn"), ws.stage_dir("prepare") / "arrays.zarr"
    data = load_prepared(arrays, forgotten=True)
    device = pick_device(cfg.device)
    ctx = build_context(ws, cfg, data, device)
    model_hash = str(open_group(target_path(ws, cfg.unlearn.target)).attrs.get("content_hash", ""))
    log.info("unlearn: %s forgets %d of %d training samples%s", cfg.unlearn.target, len(ctx.forget),
             len(ctx.retain) + len(ctx.forget), " (exact: the lineage never saw them)" if cfg.forget.exact else "")
    results, per_sample, audits = {}, [], []
    base_scores, base_conf = score(ctx.model, ctx, data.test, cfg.seed)
    results["original"] = dict(base_scores, seconds=0.0)
    per_sample.append(pd.DataFrame({"method": "original", "sample_id": ctx.forget.ids.numpy(),
                                    "confidence": base_conf}))
    original_forget_acc = accuracy(ctx.model, ctx.forget)
    models = {"original": ctx.model}
    # retrain first: every gap is measured against it
    methods = ["retrain"] + [m for m in cfg.unlearn.methods if m != "retrain"]
    chosen, selection = select_lrs(ctx, methods) if cfg.unlearn.select_lr else ({}, [])
    for record in selection:
        log.info("unlearn %-12s LR %g chosen on the validation request from %s (val gaps %s)", record["method"],
                 record["chosen"], record["grid"], record["val_gaps"])
    with atomic_path(out / "models") as models_dir:
        models_dir.mkdir(parents=True)
        for name in methods:
            run_ctx = with_setting(ctx, name, "lr", chosen[name]) if name in chosen else ctx
            model, results[name], conf = run_one(ws, name, run_ctx, data.test, cfg.seed, model_hash)
            per_sample.append(pd.DataFrame({"method": name, "sample_id": ctx.forget.ids.numpy(), "confidence": conf}))
            arch = model.arch if isinstance(model, SISAEnsemble) else ctx.arch  # SISA: its ensemble record
            save_model(models_dir / f"{name}.zarr", model, arch, extra={"method": name})
            models[name] = model
    for res in results.values():
        res["gap"] = avg_gap(res, results["retrain"])
    if cfg.unlearn.audit and len(ctx.forget):
        for name, model in models.items():
            audits.append(dict(method=name, **audit(model, ctx.forget, data.test, original_forget_acc,
                                                    ctx.train_cfg, cfg.seed)))
    if cfg.unlearn.relearn_epochs > 0 and len(ctx.forget):
        for name, row in relearn_rows(models, ctx, cfg.seed, cfg.unlearn.relearn_epochs).items():
            results[name].update(row)
    write_table(out / "forget_scores.parquet", pd.concat(per_sample, ignore_index=True))
    write_table(out / "margins.parquet", margin_table(models, ctx, data.test))
    lineage = list(STAGE_NAMES[:STAGE_NAMES.index("unlearn") + 1]) if cfg.forget.exact else []
    write_json(out / "metrics.json", dict(results, target=cfg.unlearn.target, forget_size=len(ctx.forget),
                                          exact=cfg.forget.exact, retrained_stages=lineage, audit=audits,
                                          selection=selection))
    write_manifest(ws, "unlearn", cfg)
