"""Benchmark: one teacher epoch of refinery.train.fit against a plain PyTorch tutorial loop.

Same model (the mnist1d pipeline's teacher CCT), same data (MNIST-1D, published split,
training part), same batch size, AdamW and label smoothing. Ours runs as the teacher stage
runs it: one-cycle LR, gradient clipping, a resume checkpoint every epoch. The plain loop is
the tutorial one: a shuffling DataLoader over a TensorDataset, batches moved to the device
each step. The two are timed in paired rounds whose order swaps every round (bench/timing.py);
the figure is the median of the per-round ratios. With CUDA the pair runs again on the GPU.

Optionally (--tta), time-to-accuracy on MNIST-1D: seconds until val accuracy first reaches
0.94 for our default recipe (one-cycle AdamW, label smoothing) vs Adam 1e-3 at constant LR.

Last line: `train: speedup=X gpu_speedup=Y`, X = plain time / our time (above 1: ours faster).
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from refinery.data import Arrays
from refinery.models import build_model
from refinery.train import accuracy, fit

from .presets import preset_data
from .timing import paired_ratio, paired_rounds

def plain_epoch(model, loader, opt, device, label_smoothing) -> None:
    model.train()
    for xb, yb in loader:
        xb, yb = xb.to(device), yb.to(device)
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb, label_smoothing=label_smoothing)
        loss.backward()
        opt.step()


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def compare(cfg, arch, train: Arrays, device: torch.device, rounds: int) -> float:
    """Median over paired rounds of (plain-epoch seconds / fit-epoch seconds)."""
    tcfg = cfg.teacher.train.model_copy(update={"epochs": 1})
    ours_model, plain_model = build_model(arch).to(device), build_model(arch).to(device)
    plain_model.load_state_dict(ours_model.state_dict())
    opt = torch.optim.AdamW(plain_model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    loader = DataLoader(TensorDataset(train.x, train.y), batch_size=tcfg.batch_size, shuffle=True)
    data = train.to(device)
    resume = Path(tempfile.mkdtemp(prefix="bench-train-"))  # ours checkpoints every epoch, as the teacher stage does
    loops = {"ours": lambda r: fit(ours_model, data, tcfg, seed=r, checkpoint=resume / f"{device.type}-{r}"),
             "plain": lambda r: plain_epoch(plain_model, loader, opt, device, tcfg.label_smoothing)}
    for run in loops.values():  # warm-up both (allocator, kernels)
        run(-1)
    seconds = paired_rounds(loops, rounds, sync=lambda: sync(device))
    for r, (ours, plain) in enumerate(zip(seconds["ours"], seconds["plain"])):
        print(f"  {device.type} round {r + 1}: ours {ours:.3f} s  plain {plain:.3f} s  ratio {plain / ours:.3f}")
    shutil.rmtree(resume, ignore_errors=True)
    return paired_ratio(seconds, "plain", "ours")


def time_to_accuracy(cfg, arch, train, val, target: float, max_epochs: int) -> tuple[str, str]:
    """Seconds until val acc first reaches `target` (training time only), ours vs Adam 1e-3."""
    torch.manual_seed(0)
    model = build_model(arch)
    result = fit(model, train, cfg.teacher.train, seed=0, val=val)
    hit = next((r["seconds"] for r in result.history if r["val_acc"] >= target), None)
    ours = f"{hit:.1f}" if hit is not None else f">{result.seconds:.0f}"
    torch.manual_seed(0)
    model = build_model(arch)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(train.x, train.y), batch_size=cfg.teacher.train.batch_size, shuffle=True)
    spent, adam = 0.0, None
    for _ in range(max_epochs):
        t0 = time.perf_counter()
        plain_epoch(model, loader, opt, torch.device("cpu"), 0.0)
        spent += time.perf_counter() - t0
        if accuracy(model, val) >= target:
            adam = f"{spent:.1f}"
            break
    return ours, adam or f">{spent:.0f}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=31)
    # One thread by default: two were no faster for this model here, and noisier.
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: leave as is)")
    ap.add_argument("--tta", action="store_true", help="also measure time-to-accuracy (minutes on a CPU)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg, arch, train, val, _ = preset_data("mnist1d")
    print(f"train bench: {len(train)} MNIST-1D samples, batch {cfg.teacher.train.batch_size}, "
          f"model {cfg.teacher.model.arch} {cfg.teacher.model.model_dump(include={'dim', 'depth', 'heads'})}")
    speedup = compare(cfg, arch, train, torch.device("cpu"), args.rounds)
    gpu = f"{compare(cfg, arch, train, torch.device('cuda'), args.rounds):.2f}" if torch.cuda.is_available() else "na"
    if args.tta:
        ours, adam = time_to_accuracy(cfg, arch, train, val, 0.94, cfg.teacher.train.epochs * 2)
        print(f"time to val acc 0.94: ours {ours} s, Adam 1e-3 constant {adam} s")
    print(f"train: speedup={speedup:.2f} gpu_speedup={gpu}")


if __name__ == "__main__":
    main()
