"""Dense teacher vs every upcycling recipe, and MoLA's expert allocation, on one prepared project.

    python -m bench.upcycle_quality [PROJECT]      (default: the current project)

PROJECT must have run prepare and teacher (e.g. `make run`). Each recipe starts from the same
dense teacher, with the project's upcycle settings and seed; accuracy is on the test split,
FLOPs follow the real routing. Prints one Markdown table; the last line names the best recipe.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from refinery.data import load_prepared
from refinery.metrics import accuracy, active_params, flops_per_sample
from refinery.train import predict_logits
from tasks.common import Workspace, find_root, pick_device, seed_everything
from tasks.models import load_model
from tasks.upcycle import build_and_train


def variants(cfg, depth: int) -> list[tuple[str, object]]:
    """Every recipe, plus MoLA increasing / uniform / decreasing at an equal total of experts."""
    out = [(name, cfg.model_copy(update={"recipe": name})) for name in ("sparse", "dmu", "moepp", "phatgoose")]
    per_layer = 4
    increasing = [max(cfg.top_k, per_layer + 2 * (2 * i - depth + 1)) for i in range(depth)]
    shapes = {"increasing": increasing, "uniform": [round(sum(increasing) / depth)] * depth,
              "decreasing": increasing[::-1]}
    for label, counts in shapes.items():
        out.append((f"mola {label} {counts}", cfg.model_copy(update={"recipe": "mola", "mola_experts": counts})))
    return out


def main(root: Path) -> None:
    ws = Workspace(root)
    cfg = ws.config()
    device = pick_device(cfg.device)
    data = load_prepared(ws.stage_dir("prepare") / "arrays.zarr")
    dense, dense_arch = load_model(ws.stage_dir("teacher") / "model.zarr", device)
    test, sample = data.test.to(device), data.test.x[:64].to(device)

    def row(name, model):
        logits = predict_logits(model, test.x)
        return (f"| {name} | {accuracy(logits, test.y.cpu()):.4f} | {active_params(model):,} | "
                f"{flops_per_sample(model, sample):,.0f} |")

    print(f"{cfg.data.source}, seed {cfg.seed}, {len(data.train)} train / {len(data.test)} test samples")
    print("| model | test_acc | active_params | flops_per_sample |\n| --- | --- | --- | --- |")
    print(row("dense teacher", dense))
    depth = int(dense_arch["backbone"].get("depth", 2))
    best = ("dense teacher", accuracy(predict_logits(dense, test.x), test.y.cpu()))
    for name, upcycle_cfg in variants(cfg.upcycle, depth):
        seed_everything(cfg.seed)
        model, _, _, _ = build_and_train(upcycle_cfg, data, dense, dense_arch, cfg.seed)
        print(row(name, model), flush=True)
        acc = accuracy(predict_logits(model, test.x), test.y.cpu())
        best = max(best, (name, acc), key=lambda b: b[1])
    print(f"upcycle_quality: best={best[0]} test_acc={best[1]:.4f}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else find_root())
