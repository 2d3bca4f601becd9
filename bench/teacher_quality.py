"""Teacher accuracy over seeds: each preset's teacher, trained as the teacher stage trains it.

    python -m bench.teacher_quality [--presets digits,mnist1d] [--seeds 0,1,2]

Each seed draws its own split (the published test split stays fixed for MNIST-1D) and its own
initialisation; accuracy is on the test split, seconds are wall-clock training time on this
machine with the default threads. Prints a Markdown table, then one line per preset with
mean, standard deviation and the slowest seed. Quality bars (issue: teacher training):
digits >= 0.98 and MNIST-1D >= 0.94 (the published CNN), mean of 3 seeds.
"""
from __future__ import annotations

import argparse
import statistics
import time

from refinery.models import build_model, count_params
from refinery.train import accuracy, fit
from tasks.common import seed_everything

from .presets import preset_data


def train_teacher(preset: str, seed: int) -> tuple[float, float, int]:
    """(test accuracy, training seconds, parameters) of one seed's teacher."""
    cfg, arch, train, val, test = preset_data(preset, seed)
    seed_everything(seed)
    model = build_model(arch)
    t0 = time.perf_counter()
    fit(model, train, cfg.teacher.train, seed=seed, val=val)
    return accuracy(model, test), time.perf_counter() - t0, count_params(model)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="digits,mnist1d")
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    print("| preset | seed | test_acc | seconds | params |\n| --- | --- | --- | --- | --- |")
    summary = []
    for preset in args.presets.split(","):
        accs, secs = [], []
        for seed in seeds:
            acc, seconds, params = train_teacher(preset, seed)
            accs.append(acc)
            secs.append(seconds)
            print(f"| {preset} | {seed} | {acc:.4f} | {seconds:.1f} | {params:,} |", flush=True)
        spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
        summary.append(f"{preset}={statistics.mean(accs):.4f}+-{spread:.4f} (slowest seed {max(secs):.0f} s)")
    print("teacher_quality: " + " ".join(summary))


if __name__ == "__main__":
    main()
