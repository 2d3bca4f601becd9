"""Quality of the unlearning methods on digits, against retraining: the SalUn-protocol table.

`python -m bench.unlearn_quality [--seeds 0 1 2] [--arch mlp|cct]`. For each seed: digits split as
the pipeline splits it, an original model trained with its recipe, then two requests:
class-wise forgetting of class 3, and 10% random forgetting. Each method runs with its config
defaults, except the LR of grad_ascent and salun and the alpha of ssd and lfssd, chosen per seed and
request on the VALIDATION
split by the declared rule of `refinery.unlearn.selection` (Avg.Gap to retrain on a validation
request drawn from the training split, val standing in for test); the reported forget set and
the test split are only read for the final scores. Prints UA, RA, TA, MIA, Avg.Gap, seconds (means
over seeds) and the quality bars:
- class: salun and ssd reach UA >= 95 with RA within 2 points of retrain;
- random 10%: salun's Avg.Gap is below finetune's and grad_ascent's.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would drown the table

import numpy as np
import pandas as pd
import torch

from refinery.config import ModelConfig, TrainConfig
from refinery.metrics.unlearning import avg_gap, unlearning_scores
from refinery.train import predict_logits
from refinery.unlearn import run_method
from refinery.unlearn.selection import select_on_val, validation_request, with_setting

from .unlearn import context, digits_splits, original_model

METHODS = ["retrain", "finetune", "grad_ascent", "random_label", "salun", "ssd", "lfssd"]
GRIDS = {"grad_ascent": ("lr", [1e-5, 1e-4, 1e-3, 1e-2]), "salun": ("lr", [0.004, 0.013, 0.04]),
         "ssd": ("alpha", [10.0, 30.0, 100.0]), "lfssd": ("alpha", [1.0, 3.0, 10.0])}


def scores(model, ctx, test) -> dict:
    lf, lr, lt = (predict_logits(model, d.x) for d in (ctx.forget, ctx.retain, test))
    return unlearning_scores(lf, ctx.forget.y, lr, ctx.retain.y, lt, test.y, ctx.seed)


def one_request(ctx, test) -> tuple[list[dict], dict]:
    rows, chosen = [], {}
    vctx, _ = validation_request(ctx)
    val_retrained = run_method("retrain", vctx)
    for name in METHODS:
        run_ctx = ctx
        if name in GRIDS:
            key, grid = GRIDS[name]
            chosen[name], _ = select_on_val(name, key, grid, vctx, val_retrained)
            run_ctx = with_setting(ctx, name, key, chosen[name])
        torch.manual_seed(ctx.seed)
        started = time.perf_counter()
        model = run_method(name, run_ctx)
        seconds = time.perf_counter() - started
        rows.append(dict(method=name, seconds=seconds, **scores(model, ctx, test)))
    ref = rows[0]
    for row in rows:
        row["gap"] = avg_gap(row, ref)
    return rows, chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arch", choices=["mlp", "cct"], default="mlp")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model_cfg = ModelConfig(arch=args.arch, dim=64, depth=2)
    recipe = TrainConfig(epochs=args.epochs)
    results = []
    for seed in args.seeds:
        train, val, test = digits_splits(seed)
        model, arch = original_model(model_cfg, recipe, train, seed)
        rng = np.random.default_rng(seed)
        requests = {"class 3": train.ids[train.y == 3].numpy(),
                    "random 10%": np.sort(rng.choice(train.ids.numpy(), round(0.1 * len(train)), replace=False))}
        for request, ids in requests.items():
            rows, chosen = one_request(context(model, arch, train, val, ids, recipe, seed), test)
            print(f"seed {seed} {request}: LR chosen on val {chosen}", flush=True)
            results += [dict(row, seed=seed, request=request) for row in rows]
    table = pd.DataFrame(results).groupby(["request", "method"], sort=False)[
        ["UA", "RA", "TA", "MIA", "gap", "seconds"]].mean().round(2)
    print(f"\nmeans over seeds {args.seeds} ({args.arch}, {args.epochs}-epoch recipe)")
    print(table.to_markdown() if hasattr(table, "to_markdown") else table.to_string())
    verdicts(table)


def verdicts(table: pd.DataFrame) -> None:
    c, r = table.loc["class 3"], table.loc["random 10%"]
    for name in ("salun", "ssd"):
        ok = c.loc[name, "UA"] >= 95 and abs(c.loc[name, "RA"] - c.loc["retrain", "RA"]) <= 2
        print(f"class 3: {name} UA {c.loc[name, 'UA']:.2f} (>= 95), RA gap to retrain "
              f"{c.loc[name, 'RA'] - c.loc['retrain', 'RA']:+.2f} (within 2): {'PASS' if ok else 'FAIL'}")
    ok = r.loc["salun", "gap"] < min(r.loc["finetune", "gap"], r.loc["grad_ascent", "gap"])
    print(f"random 10%: salun gap {r.loc['salun', 'gap']:.2f} < finetune {r.loc['finetune', 'gap']:.2f} and "
          f"grad_ascent {r.loc['grad_ascent', 'gap']:.2f}: {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
