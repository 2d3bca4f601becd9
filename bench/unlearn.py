"""Benchmark: the time an unlearning method takes for one request, relative to retraining.

`python -m bench.unlearn`. Class forgetting (class 3) on digits, split as the pipeline splits
it; the target is a dim-64, depth-2 model (MLP by default, `--arch cct` for the preset's
CCT teacher) trained with its recipe (`--epochs`, 30 by default) on the training split. Retrain runs
that same recipe (same epochs) on D_r; finetune, salun and ssd use
their config defaults. SSD's per-request time excludes the full-data importance I_D, which the
pipeline caches (per model, and per request order with the default reference importance); the
time including I_D is printed too. Last line:
`unlearn: ssd_vs_retrain=X salun_vs_retrain=Y` (time ratios).
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would drown the table

import numpy as np
import torch

from refinery.config import ModelConfig, TrainConfig, UnlearnConfig
from refinery.data import TEST, TRAIN, VAL, Arrays, load_source, stratified_split
from refinery.models import build_model, make_arch
from refinery.train import accuracy, fit
from refinery.unlearn import UnlearnContext, run_method
from refinery.unlearn.ssd import full_importance


def digits_splits(seed: int) -> tuple[Arrays, Arrays, Arrays]:
    """(train, val, test) exactly as the prepare stage splits digits."""
    src = load_source("digits")
    split = stratified_split(src.y, 0.1, 0.2, seed)
    full = Arrays.from_numpy(src.x, src.y)
    return full.subset(split == TRAIN), full.subset(split == VAL), full.subset(split == TEST)


def original_model(model_cfg: ModelConfig, recipe: TrainConfig, train: Arrays, seed: int):
    arch = make_arch(model_cfg.model_dump(mode="json"), tuple(train.x.shape[1:]), 10)
    torch.manual_seed(seed)
    model = build_model(arch)
    fit(model, train, recipe, seed=seed)
    return model, arch


def context(model, arch, train: Arrays, val: Arrays, forget_ids: np.ndarray, recipe: TrainConfig, seed: int,
            cfg: UnlearnConfig | None = None) -> UnlearnContext:
    return UnlearnContext(model=model, arch=arch, retain=train.without(forget_ids), forget=train.only(forget_ids),
                          train_cfg=recipe, seed=seed, cfg=cfg or UnlearnConfig(), val=val)


def timed(name: str, ctx: UnlearnContext, **options) -> tuple[torch.nn.Module, float]:
    torch.manual_seed(ctx.seed)
    started = time.perf_counter()
    model = run_method(name, ctx, **options)
    return model, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forget-class", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--arch", choices=["mlp", "cct"], default="mlp",
                        help="cct: the digits preset's teacher (minutes per training on a shared CPU)")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, val, test = digits_splits(0)
    recipe = TrainConfig(epochs=args.epochs)  # the model's own recipe; retrain reuses it
    model, arch = original_model(ModelConfig(arch=args.arch, dim=64, depth=2), recipe, train, 0)
    ctx = context(model, arch, train, val, train.ids[train.y == args.forget_class].numpy(), recipe, 0)
    started = time.perf_counter()
    full_i = full_importance(ctx)
    importance_s = time.perf_counter() - started
    seconds, models = {}, {}
    for name in ("retrain", "finetune", "salun"):
        models[name], seconds[name] = timed(name, ctx)
    models["ssd"], seconds["ssd"] = timed("ssd", ctx, full_importance=full_i)
    for name, s in seconds.items():
        ua = 100 * (1 - accuracy(models[name], ctx.forget))
        print(f"{name:9s} {s:8.2f}s  ratio {s / seconds['retrain']:.4f}  UA {ua:6.2f}"
              f"  RA {100 * accuracy(models[name], ctx.retain):6.2f}")
    with_i = seconds["ssd"] + importance_s
    print(f"ssd including I_D ({importance_s:.2f}s, once per model): {with_i:.2f}s, "
          f"ratio {with_i / seconds['retrain']:.4f}")
    print(f"unlearn: ssd_vs_retrain={seconds['ssd'] / seconds['retrain']:.3f} "
          f"salun_vs_retrain={seconds['salun'] / seconds['retrain']:.3f}")


if __name__ == "__main__":
    main()
