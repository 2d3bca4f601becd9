"""upcycle: turn the dense teacher into a mixture of experts with the configured recipe, train it.

The MoE is the teacher plus `upcycle.train` more epochs, so beating the teacher alone does not show
that the experts helped: the extra steps might have. As Komatsuzaki et al. (Sparse Upcycling, ICLR
2023) do, the stage also trains a copy of the dense teacher for the same extra steps (the same
`upcycle.train` recipe and seed, plain cross-entropy as the teacher trained) and reports it beside
the MoE: dense.zarr, `dense_continued_test_acc`, the "dense teacher, continued" row.
"""
from __future__ import annotations

import math

import pandas as pd

from refinery.config import UpcycleConfig
from refinery.data import load_prepared
from refinery.metrics.cost import active_params, flops_per_sample
from refinery.models import count_params, routed_layers
from refinery.models.moe import expert_affinity
from refinery.store import write_json, write_table
from refinery.train import Hooks, accuracy, fit, predict_logits
from refinery.upcycle import get_recipe

from .common import (Workspace, log, pick_device, progress_reporter, seed_everything, stage_identity,
                     write_manifest)
from .models import load_model, save_model, write_history

CONTINUED = "dense teacher, continued"  # its row in recipes.parquet


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
                     "next_affinity": nxt.get("affinity", math.nan),
                     "next_affinity_baseline": nxt.get("baseline", math.nan)})
    for layer in layers:
        layer.reset_stats(track=False)
    return pd.DataFrame(rows)


def _mean(series: pd.Series) -> float | None:
    value = series.mean()
    return None if pd.isna(value) else float(value)  # JSON has no NaN


def build_and_train(upcycle_cfg, data, dense, dense_arch, seed: int, checkpoint=None, hooks: Hooks | None = None,
                    identity: dict | None = None):
    """Run a recipe and its final training; returns (model, arch, runs, recipe result)."""
    made = get_recipe(upcycle_cfg.recipe)(dense, dense_arch, upcycle_cfg, data, seed)
    model, arch, runs = made.model, made.arch, dict(made.history)
    if made.params:
        hooks = hooks or Hooks()
        hooks.loss = made.loss
        runs["upcycle"] = fit(model, data.train, upcycle_cfg.train, seed=seed, val=data.val, arch=arch,
                              params=made.params, checkpoint=checkpoint, identity=identity, desc="upcycle",
                              hooks=hooks)
    return model, arch, runs, made


def recipe_variants(cfg: UpcycleConfig, depth: int) -> list[tuple[str, UpcycleConfig]]:
    """Every recipe, plus MoLA increasing / uniform / decreasing at an equal total of experts."""
    out = [(name, cfg.model_copy(update={"recipe": name})) for name in ("sparse", "dmu", "moepp", "phatgoose")]
    # Steps of 2 around a uniform count u (depth 4: [2, 4, 6, 8] against [5, 5, 5, 5]), so all
    # three have exactly depth * u experts and the smallest layer still has top_k of them.
    uniform = max(4, cfg.top_k + depth - 1)
    increasing = [uniform + 2 * i - (depth - 1) for i in range(depth)]
    shapes = {"increasing": increasing, "uniform": [uniform] * depth, "decreasing": increasing[::-1]}
    for label, counts in shapes.items():
        out.append((f"mola {label} {counts}", cfg.model_copy(update={"recipe": "mola", "mola_experts": counts})))
    return out


def cost_row(name: str, model, test) -> dict:
    return {"model": name, "test_acc": accuracy(model, test), "active_params": active_params(model),
            "flops_per_sample": flops_per_sample(model, test.x[:64])}


def compare_recipes(cfg: UpcycleConfig, data, dense, dense_arch, seed: int, trained, continued=None) -> pd.DataFrame:
    """Rows of test accuracy, active params and FLOPs per sample: the dense teacher, the configured
    recipe (`trained`), the dense teacher trained for the same extra steps (`continued`, when given),
    and with `cfg.compare` every variant, each from the same teacher and seed.
    The first two rows are always the dense teacher and the configured recipe, in that order."""
    test = data.test.to(next(dense.parameters()).device)
    configured = cost_row(f"{cfg.recipe} (configured)", trained, test)
    rows = [cost_row("dense teacher", dense, test), configured]
    if continued is not None:
        rows.append(cost_row(CONTINUED, continued, test))
    if cfg.compare:
        for name, variant in recipe_variants(cfg, int(dense_arch["backbone"].get("depth", 2))):
            if variant == cfg:  # the configured recipe itself: already trained
                rows.append(dict(configured, model=name))
                continue
            log.info("upcycle: comparing %s", name)
            seed_everything(seed)
            model, _, _, _ = build_and_train(variant, data, dense, dense_arch, seed)
            rows.append(cost_row(name, model, test))
    return pd.DataFrame(rows)


def continue_dense(ws: Workspace, cfg, data, dense_path, device):
    """A fresh copy of the dense teacher trained for the MoE's extra steps: `upcycle.train`, the same
    seed and validation split, plain cross-entropy (no custom loss); returns (model, arch, result)."""
    model, arch = load_model(dense_path, device)
    seed_everything(cfg.seed)
    result = fit(model, data.train, cfg.upcycle.train, seed=cfg.seed, val=data.val, arch=arch,
                 checkpoint=ws.resume_path("upcycle-dense"), identity=stage_identity(ws, cfg, "upcycle", run="dense"),
                 desc=CONTINUED, hooks=Hooks(on_epoch=progress_reporter("upcycle-dense-progress", "dense training")))
    return model, arch, result


def upcycle(ws: Workspace) -> None:
    cfg = ws.config()
    out, arrays = ws.stage_dir("upcycle"), ws.stage_dir("prepare") / "arrays.zarr"
    dense_path = ws.stage_dir("teacher") / "model.zarr"
    data = load_prepared(arrays)
    device = pick_device(cfg.device)
    dense, dense_arch = load_model(dense_path, device)
    seed_everything(cfg.seed)  # after loading (which draws an initialisation): as each compared recipe
    model, arch, runs, made = build_and_train(
        cfg.upcycle, data, dense, dense_arch, cfg.seed, checkpoint=ws.resume_path("upcycle"),
        identity=stage_identity(ws, cfg, "upcycle"),
        hooks=Hooks(on_epoch=progress_reporter("upcycle-progress", "MoE training")))
    experts = expert_stats(model, data.test.x)
    continued, continued_arch, continued_run = continue_dense(ws, cfg, data, dense_path, device)
    recipes = compare_recipes(cfg.upcycle, data, dense, dense_arch, cfg.seed, model, continued=continued)
    dense_acc, test_acc = float(recipes["test_acc"][0]), float(recipes["test_acc"][1])
    continued_acc = float(recipes["test_acc"][2])
    extra = made.evaluate(model, data) if made.evaluate else {}
    save_model(out / "model.zarr", model, arch, step=len(runs["upcycle"].history) if "upcycle" in runs else 0)
    save_model(out / "dense.zarr", continued, continued_arch, step=len(continued_run.history),
               extra={"continued_from": "teacher"})
    write_history(out / "history.parquet", {**runs, "dense (continued)": continued_run})
    write_table(out / "experts.parquet", experts)
    write_table(out / "recipes.parquet", recipes)
    write_json(out / "metrics.json", {"test_acc": test_acc, "dense_test_acc": dense_acc,
                                      "dense_continued_test_acc": continued_acc,
                                      "params": count_params(model), "expert_load_cv": float(experts["load_cv"].mean()),
                                      "ffn_experts_per_token": _mean(experts["ffn_experts_per_token"]),
                                      "expert_affinity": _mean(experts["next_affinity"]),
                                      "train_seconds": sum(r.seconds for r in runs.values()), **extra})
    log.info("upcycle (%s, E=%d, k=%d): test accuracy %.4f (dense teacher %.4f, continued %.4f), mean load CV %.3f",
             cfg.upcycle.recipe, cfg.upcycle.num_experts, cfg.upcycle.top_k, test_acc, dense_acc, continued_acc,
             experts["load_cv"].mean())
    write_manifest(ws, "upcycle", cfg)
    ws.clear_resume("upcycle")
    ws.clear_resume("upcycle-dense")
