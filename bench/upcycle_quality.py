"""Dense teacher vs every upcycling recipe, and MoLA's expert allocation, on one prepared project.

    python -m bench.upcycle_quality [PROJECT]      (default: the current project)

PROJECT must have run prepare and teacher (e.g. `make run`). This is the upcycle stage's own
comparison (`upcycle.compare`, tasks/upcycle.py) without the rest of the pipeline: each recipe
starts from the same dense teacher, with the project's upcycle settings and seed; accuracy is
on the test split, FLOPs follow the real routing. Prints one Markdown table; the last line
names the best recipe and whether it beats the dense teacher by more than 2 standard errors
(`verdict=beats`), within them (`noise`) or not at all (`worse`).
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from refinery.data import load_prepared
from refinery.report import accuracy_verdict
from tasks.common import Workspace, find_root, pick_device, seed_everything
from tasks.models import load_model
from tasks.upcycle import build_and_train, compare_recipes


def main(root: Path) -> None:
    ws = Workspace(root)
    cfg = ws.config()
    device = pick_device(cfg.device)
    data = load_prepared(ws.stage_dir("prepare") / "arrays.zarr")
    dense, dense_arch = load_model(ws.stage_dir("teacher") / "model.zarr", device)
    seed_everything(cfg.seed)
    configured, _, _, _ = build_and_train(cfg.upcycle, data, dense, dense_arch, cfg.seed)
    table = compare_recipes(cfg.upcycle.model_copy(update={"compare": True}), data, dense, dense_arch, cfg.seed,
                            configured)
    print(f"{cfg.data.source}, seed {cfg.seed}, {len(data.train)} train / {len(data.test)} test samples")
    print("| model | test_acc | active_params | flops_per_sample |\n| --- | --- | --- | --- |")
    for row in table.itertuples():
        print(f"| {row.model} | {row.test_acc:.4f} | {row.active_params:,} | {row.flops_per_sample:,.0f} |")
    best = table.iloc[1:].sort_values("test_acc", ascending=False).iloc[0]
    dense_acc = float(table["test_acc"].iloc[0])
    verdict, diff, se2 = accuracy_verdict(best.test_acc, dense_acc, len(data.test))  # the report's rule
    print(f"upcycle_quality: best={best.model} test_acc={best.test_acc:.4f} dense={dense_acc:.4f} "
          f"diff={diff:+.2f} points 2SE={se2:.2f} verdict={verdict}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else find_root())
