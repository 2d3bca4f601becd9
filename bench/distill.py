"""Benchmark: what one student epoch costs with CE only, with KD from the Zarr teacher cache, and
with KD running the teacher online.

`python -m bench.distill`. digits, the default (digits-preset) teacher and student sizes, the
default teacher being the upcycled MoE. Each way is one `refinery.train.fit` epoch; after a
warm-up epoch of each, the three alternate for `--rounds` rounds (11 by default) (a, b, c, a, b, c, ...) so
drift of the machine hits all three alike. The teacher is untrained: an epoch's cost does not
depend on its accuracy. Last line: `distill: cached_vs_ce=X online_vs_cached=Y` (ratios of the
median times).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from refinery.config import DistillConfig, ModelConfig, TrainConfig, UpcycleConfig
from refinery.data import Arrays, load_source
from refinery.distill import TeacherTable, make_loss
from refinery.distill.cache import read_cache, write_cache
from refinery.models import attach_moe, build_model, make_arch
from refinery.train import Hooks, fit, predict_logits


def build_teacher(in_shape, classes) -> torch.nn.Module:
    up = UpcycleConfig()
    model = build_model(make_arch(ModelConfig().model_dump(mode="json"), in_shape, classes))
    attach_moe(model, {"num_experts": up.num_experts, "top_k": up.top_k, "aux_coef": up.aux_coef,
                       "z_coef": up.z_coef, "capacity_factor": up.capacity_factor})
    return model.eval()


def online(teacher: torch.nn.Module):
    @torch.no_grad()
    def lookup(x, ids):
        return teacher(x)
    return lookup


def epoch_seconds(cfg: DistillConfig, data: Arrays, arch: dict, loss) -> float:
    torch.manual_seed(0)
    student = build_model(arch)
    started = time.perf_counter()
    fit(student, data, cfg.train, seed=0, hooks=Hooks(loss=loss))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args()
    torch.manual_seed(0)
    src = load_source("digits")
    data = Arrays.from_numpy(src.x, src.y)
    in_shape = tuple(src.x.shape[1:])
    cfg = DistillConfig(train=TrainConfig(epochs=1))  # default student, T, alpha, batch size
    arch = make_arch(cfg.student.model_dump(mode="json"), in_shape, src.num_classes)
    teacher = build_teacher(in_shape, src.num_classes)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "teacher_logits.zarr"
        write_cache(cache, TeacherTable.from_rows(data.ids, predict_logits(teacher, data.x), None, len(data), "cpu"),
                    data.ids, "upcycle (untrained)")
        ways = {"ce": None, "kd_cached": make_loss(cfg, read_cache(cache, len(data), "cpu")),
                "kd_online": make_loss(cfg, online(teacher))}
        times: dict[str, list[float]] = {name: [] for name in ways}
        for loss in ways.values():
            epoch_seconds(cfg, data, arch, loss)  # warm-up: allocator, thread pool, caches
        for r in range(args.rounds):
            for name, loss in ways.items():
                times[name].append(epoch_seconds(cfg, data, arch, loss))
            print(f"round {r + 1}: " + "  ".join(f"{n} {t[-1]:.3f}s" for n, t in times.items()), flush=True)
    med = {name: statistics.median(t) for name, t in times.items()}
    best = {name: min(t) for name, t in times.items()}
    print("median seconds per epoch: " + "  ".join(f"{n} {m:.3f}" for n, m in med.items()))
    # On a shared machine the minimum is the least disturbed epoch: printed as a cross-check.
    print(f"min-based: cached_vs_ce={best['kd_cached'] / best['ce']:.2f} "
          f"online_vs_cached={best['kd_online'] / best['kd_cached']:.2f}")
    print(f"distill: cached_vs_ce={med['kd_cached'] / med['ce']:.2f} "
          f"online_vs_cached={med['kd_online'] / med['kd_cached']:.2f}")


if __name__ == "__main__":
    main()
