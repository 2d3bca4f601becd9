"""upcycle: turn the dense teacher into a mixture of experts with the configured recipe, train it."""
from __future__ import annotations

import math

import pandas as pd

from refinery.data import load_prepared
from refinery.models import count_params, routed_layers
from refinery.models.moe import expert_affinity
from refinery.store import write_json, write_table
from refinery.train import Hooks, accuracy, fit, predict_logits
from refinery.upcycle import get_recipe

from .common import Workspace, log, pick_device, progress_reporter, seed_everything, write_manifest
from .models import load_model, save_model, write_history


def expert_stats(model, x) -> pd.DataFrame:
    """Route `x` once and tabulate each routed layer's load, CV, entropy, drop rate, FFN
    experts per token, and its top-1 affinity with the next layer."""
    layers = routed_layers(model)
    for layer in layers:
        layer.reset_stats(track=True)
    predict_logits(model, x)
    rows = []
    for i, layer in enumerate(layers):
        s = layer.summary()
        nxt = expert_affinity(layer, layers[i + 1]) if i + 1 < len(layers) else {}
        rows.append({"layer": i, "load": s["load"], "load_cv": s["load_cv"],
                     "router_entropy": s["router_entropy"], "drop_rate": s["drop_rate"],
                     "ffn_experts_per_token": s["ffn_experts_per_token"],
                     "next_affinity": nxt.get("affinity", math.nan), "next_affinity_baseline": nxt.get("baseline", math.nan)})
    for layer in layers:
        layer.reset_stats(track=False)
    return pd.DataFrame(rows)


def _mean(series: pd.Series) -> float | None:
    value = series.mean()
    return None if pd.isna(value) else float(value)  # JSON has no NaN


def build_and_train(upcycle_cfg, data, dense, dense_arch, seed: int, checkpoint=None, hooks: Hooks | None = None):
    """Run a recipe and its final training; returns (model, arch, runs, recipe result)."""
    made = get_recipe(upcycle_cfg.recipe)(dense, dense_arch, upcycle_cfg, data, seed)
    model, arch, runs = made.model, made.arch, dict(made.history)
    if made.params:
        hooks = hooks or Hooks()
        hooks.loss = made.loss
        runs["upcycle"] = fit(model, data.train, upcycle_cfg.train, seed=seed, val=data.val, arch=arch,
                              params=made.params, checkpoint=checkpoint, desc="upcycle", hooks=hooks)
    return model, arch, runs, made


def upcycle(ws: Workspace) -> None:
    cfg = ws.config()
    out, arrays, dense_path = ws.stage_dir("upcycle"), ws.stage_dir("prepare") / "arrays.zarr", ws.stage_dir("teacher") / "model.zarr"
    data = load_prepared(arrays)
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    dense, dense_arch = load_model(dense_path, device)
    model, arch, runs, made = build_and_train(
        cfg.upcycle, data, dense, dense_arch, cfg.seed, checkpoint=ws.resume_path("upcycle"),
        hooks=Hooks(on_epoch=progress_reporter("upcycle-progress", "MoE training")))
    experts = expert_stats(model, data.test.x)
    test_acc = accuracy(model, data.test.to(device))
    extra = made.evaluate(model, data) if made.evaluate else {}
    save_model(out / "model.zarr", model, arch, step=len(runs["upcycle"].history) if "upcycle" in runs else 0)
    write_history(out / "history.parquet", runs)
    write_table(out / "experts.parquet", experts)
    write_json(out / "metrics.json", {"test_acc": test_acc, "dense_test_acc": accuracy(dense, data.test.to(device)),
                                      "params": count_params(model), "expert_load_cv": float(experts["load_cv"].mean()),
                                      "ffn_experts_per_token": _mean(experts["ffn_experts_per_token"]),
                                      "expert_affinity": _mean(experts["next_affinity"]),
                                      "train_seconds": sum(r.seconds for r in runs.values()), **extra})
    log.info("upcycle (%s, E=%d, k=%d): test accuracy %.4f, mean load CV %.3f", cfg.upcycle.recipe,
             cfg.upcycle.num_experts, cfg.upcycle.top_k, test_acc, experts["load_cv"].mean())
    write_manifest(ws, "upcycle", {"seed": cfg.seed, "upcycle": cfg.upcycle.model_dump(mode="json")},
                   inputs=[arrays, dense_path], outputs=[out / "model.zarr"])
    ws.clear_resume("upcycle")
