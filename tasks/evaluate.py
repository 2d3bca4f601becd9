"""evaluate: score every model on the test set and write metrics.json (the contract) and the report."""
from __future__ import annotations

import subprocess

from refinery import config as C
from refinery.data import load_prepared
from refinery.metrics import accuracy, cost_report, ece, nll
from refinery.report import render_markdown
from refinery.store import read_json, read_table, write_json, write_text
from refinery.train import predict_logits

from .common import Workspace, log, write_manifest
from .models import load_model


def model_paths(ws: Workspace) -> dict:
    paths = {"teacher": ws.stage_dir("teacher") / "model.zarr", "upcycle": ws.stage_dir("upcycle") / "model.zarr",
             "student": ws.stage_dir("distill") / "student.zarr", "scratch": ws.stage_dir("distill") / "scratch.zarr"}
    for path in sorted((ws.stage_dir("unlearn") / "models").glob("*.zarr")):
        paths[f"unlearn_{path.stem}"] = path
    return paths


def git_rev(ws: Workspace) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ws.root, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def evaluate(ws: Workspace) -> None:
    cfg = ws.config()
    out, arrays = ws.stage_dir("evaluate"), ws.stage_dir("prepare") / "arrays.zarr"
    data = load_prepared(arrays)
    test = data.test
    models, costs = {}, {}
    for name, path in model_paths(ws).items():
        model, _ = load_model(path)
        logits = predict_logits(model, test.x)
        cost = cost_report(model, data.in_shape, example_input=test.x[:64],
                           latency_repeats=cfg.evaluate.latency_repeats, throughput_batch=cfg.evaluate.throughput_batch)
        models[name] = dict(test_acc=accuracy(logits, test.y), nll=nll(logits, test.y),
                            ece=ece(logits, test.y, cfg.evaluate.ece_bins), **cost)
        costs[name] = {k: cost[k] for k in ("params", "active_params", "flops_per_sample", "latency_ms", "throughput")}
        log.info("evaluate %-18s acc %.4f ece %.4f flops %.3g", name, models[name]["test_acc"], models[name]["ece"],
                 cost["flops_per_sample"])
    experts = read_table(ws.stage_dir("upcycle") / "experts.parquet")
    unlearn = read_json(ws.stage_dir("unlearn") / "metrics.json")
    metrics = {
        "teacher": {"test_acc": models["teacher"]["test_acc"]},
        "upcycle": {"test_acc": models["upcycle"]["test_acc"], "active_params": models["upcycle"]["active_params"],
                    "expert_load_cv": float(experts["load_cv"].mean())},
        "distill": {"student": {"test_acc": models["student"]["test_acc"]},
                    "scratch": {"test_acc": models["scratch"]["test_acc"]},
                    "teacher": {"test_acc": models[cfg.distill.teacher]["test_acc"]}},
        "unlearn": {k: v for k, v in unlearn.items() if isinstance(v, dict)},
        "cost": costs,
    }
    write_json(out / "metrics.json", metrics)
    context = {"pipeline": cfg.name, "seed": cfg.seed, "config_hash": C.config_hash(cfg), "git_rev": git_rev(ws),
               "data": f"{cfg.data.source}: {len(data.train)} train, {len(data.val)} val, {len(test)} test samples"}
    markdown = render_markdown(metrics, models, context)
    write_text(out / "report.md", markdown)
    write_text(out / "report.html", "<!doctype html><meta charset='utf-8'><pre>" + markdown + "</pre>")
    (out / "plots").mkdir(parents=True, exist_ok=True)
    write_manifest(ws, "evaluate", {"evaluate": cfg.evaluate.model_dump(mode="json")},
                   inputs=[arrays, *model_paths(ws).values()], outputs=[out / "metrics.json", out / "report.md"])
