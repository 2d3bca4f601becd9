"""Quality of the KD losses against the controls on MNIST-1D, over seeds.

`python -m bench.distill_quality [--seeds 3] [--epochs 15]`. One teacher (a CCT trained with
CE, then sparse-upcycled to an MoE and trained briefly, as the pipeline does), shared by all
seeds; per seed, the student is trained from scratch (CE), from an untrained teacher of the
same architecture (`random_teacher`, with `kd`), and with every registered loss from the
cached teacher. Prints a Markdown table: mean and spread (sample std) over seeds of student
test accuracy and of teacher-student agreement on the test set. Sizes are reduced from the
mnist1d preset so the whole table fits in minutes on a CPU; numbers are for this budget only.
"""
from __future__ import annotations

import argparse
import statistics

import torch

from refinery.config import DistillConfig, ModelConfig, TrainConfig
from refinery.data import Arrays, load_source, stratified_split
from refinery.distill import LOSSES, attached, make_loss
from refinery.distill.cache import teacher_table
from refinery.models import attach_moe, build_model, make_arch
from refinery.train import Hooks, accuracy, fit, predict_logits


def splits():
    src = load_source("mnist1d", n_samples=5000)
    split = stratified_split(src.y, 0.1, 0.2, 0, src.published_test)
    full = Arrays.from_numpy(src.x, src.y)
    return full.subset(split == 0), full.subset(split == 2), tuple(src.x.shape[1:]), len(src.y)


def train_teacher(train, in_shape, epochs: int):
    cfg = ModelConfig(dim=64, depth=2, heads=4, conv_channels=32, conv_kernel=5)
    arch = make_arch(cfg.model_dump(mode="json"), in_shape, 10)
    torch.manual_seed(0)
    model = build_model(arch)
    fit(model, train, TrainConfig(epochs=epochs, batch_size=128), seed=0)
    moe = {"num_experts": 4, "top_k": 2}
    attach_moe(model, moe)
    fit(model, train, TrainConfig(epochs=max(1, epochs // 5), batch_size=128, lr=1e-3), seed=0)
    return model.eval(), dict(arch, moe=moe)


def student_run(dcfg: DistillConfig, train, test, in_shape, seed, lookup, teacher):
    torch.manual_seed(seed)
    model = build_model(make_arch(dcfg.student.model_dump(mode="json"), in_shape, 10))
    loss = make_loss(dcfg, lookup) if lookup is not None else None
    with attached(model, loss):
        fit(model, train, dcfg.train, seed=seed, hooks=Hooks(loss=loss))
    agree = float((predict_logits(model, test.x).argmax(1) == predict_logits(teacher, test.x).argmax(1)).float().mean())
    return accuracy(model, test), agree


def fmt(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * spread:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15, help="student epochs (teacher: 2x)")
    args = parser.parse_args()
    train, test, in_shape, n = splits()
    teacher, teacher_arch = train_teacher(train, in_shape, 2 * args.epochs)
    cached = teacher_table(teacher, train.x, train.ids, n, "cpu")
    print(f"teacher test acc {100 * accuracy(teacher, test):.1f}", flush=True)
    rows: dict[str, list[tuple[float, float]]] = {}
    for seed in range(args.seeds):
        torch.manual_seed(seed + 100)
        random_table = teacher_table(build_model(teacher_arch).eval(), train.x, train.ids, n, "cpu")
        runs = [("scratch", "kd", None), ("random_teacher (kd)", "kd", random_table)]
        runs += [(name, name, cached) for name in sorted(LOSSES)]
        for label, loss, lookup in runs:
            student = ModelConfig(dim=32, depth=1, heads=2, conv_channels=16, conv_kernel=5)
            dcfg = DistillConfig(loss=loss, student=student,
                                 train=TrainConfig(epochs=args.epochs, batch_size=128),
                                 dkd_warmup_epochs=max(1, args.epochs // 3))
            rows.setdefault(label, []).append(student_run(dcfg, train, test, in_shape, seed, lookup, teacher))
            print(f"seed {seed} {label}: acc {rows[label][-1][0]:.4f} agree {rows[label][-1][1]:.4f}", flush=True)
    print("\n| run | test acc % (mean ± std) | agreement % |\n| --- | --- | --- |")
    print(f"| teacher (MoE) | {100 * accuracy(teacher, test):.1f} | 100 |")
    for label, vals in rows.items():
        print(f"| {label} | {fmt([a for a, _ in vals])} | {fmt([g for _, g in vals])} |")


if __name__ == "__main__":
    main()
