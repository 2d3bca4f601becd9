"""upcycle: turn the dense teacher into a mixture of experts and train it."""
from __future__ import annotations

import pandas as pd

from refinery.data import load_prepared
from refinery.models import count_params, moe_layers
from refinery.store import write_json, write_table
from refinery.train import Hooks, accuracy, fit, predict_logits
from refinery.upcycle import get_recipe
from refinery.upcycle.sparse import trainable_parameters

from .common import Workspace, log, pick_device, progress_reporter, seed_everything, write_manifest
from .models import load_model, save_model, write_history


def expert_stats(model, x) -> pd.DataFrame:
    """Route `x` once and tabulate each MoE layer's load, CV, entropy and drop rate."""
    layers = moe_layers(model)
    for layer in layers:
        layer.reset_stats(track=True)
    predict_logits(model, x)
    rows = []
    for i, layer in enumerate(layers):
        s = layer.summary()
        rows.append({"layer": i, "load": s["load"], "load_cv": s["load_cv"],
                     "router_entropy": s["router_entropy"], "drop_rate": s["drop_rate"]})
        layer.reset_stats(track=False)
    return pd.DataFrame(rows)


def upcycle(ws: Workspace) -> None:
    cfg = ws.config()
    out, arrays, dense_path = ws.stage_dir("upcycle"), ws.stage_dir("prepare") / "arrays.zarr", ws.stage_dir("teacher") / "model.zarr"
    data = load_prepared(arrays)
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    dense, dense_arch = load_model(dense_path, device)
    model, arch = get_recipe(cfg.upcycle.recipe)(dense, dense_arch, cfg.upcycle)
    result = fit(model, data.train, cfg.upcycle.train, seed=cfg.seed, val=data.val, arch=arch,
                 params=trainable_parameters(model, cfg.upcycle.train_scope),
                 checkpoint=ws.resume_path("upcycle"), desc="upcycle",
                 hooks=Hooks(on_epoch=progress_reporter("upcycle-progress", "MoE training")))
    experts = expert_stats(model, data.test.x)
    test_acc = accuracy(model, data.test.to(device))
    save_model(out / "model.zarr", model, arch, step=len(result.history))
    write_history(out / "history.parquet", {"upcycle": result})
    write_table(out / "experts.parquet", experts)
    write_json(out / "metrics.json", {"test_acc": test_acc, "dense_test_acc": accuracy(dense, data.test.to(device)),
                                      "params": count_params(model), "expert_load_cv": float(experts["load_cv"].mean()),
                                      "train_seconds": result.seconds})
    log.info("upcycle (%s, E=%d, k=%d): test accuracy %.4f, mean load CV %.3f", cfg.upcycle.recipe,
             cfg.upcycle.num_experts, cfg.upcycle.top_k, test_acc, experts["load_cv"].mean())
    write_manifest(ws, "upcycle", {"seed": cfg.seed, "upcycle": cfg.upcycle.model_dump(mode="json")},
                   inputs=[arrays, dense_path], outputs=[out / "model.zarr"])
    ws.clear_resume("upcycle")
