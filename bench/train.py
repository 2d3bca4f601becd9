"""Benchmark: one teacher epoch of refinery.train.fit against a plain PyTorch tutorial loop.

Same model (the mnist1d pipeline's teacher CCT), same data (MNIST-1D, published split,
training part), same batch size, AdamW and label smoothing. Ours runs as the teacher stage
runs it: one `fit` over many epochs, with one-cycle LR, gradient clipping, an epoch hook and
a resume checkpoint every epoch. The plain loop is the tutorial one: a shuffling DataLoader
over a TensorDataset, batches moved to the device each step. On the CPU the two run in
lockstep, one plain step before each of ours, so a busy machine slows both alike; the figure
is the median over epochs of plain seconds / ours. With CUDA the pair runs again on the GPU,
alternating whole epochs (lockstep would sync our queue every step).

Optionally (--tta), time-to-accuracy on MNIST-1D: seconds until val accuracy first reaches
0.94 for our default recipe (one-cycle AdamW, label smoothing) vs Adam 1e-3 at constant LR.

Last line: `train: speedup=X gpu_speedup=Y`, X = plain time / our time (above 1: ours faster).
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from refinery.data import Arrays
from refinery.models import build_model
from refinery.train import CHECKPOINT_THREAD, Hooks, accuracy, aux_loss_of_layers, cross_entropy_loss, fit

from .presets import preset_data
from .timing import paired_ratio

def plain_steps(model, loader, opt, device, label_smoothing) -> Iterator[None]:
    """The tutorial loop, one step per `next`, epoch after epoch."""
    model.train()
    while True:
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb, label_smoothing=label_smoothing)
            loss.backward()
            opt.step()
            yield


def plain_epoch(model, loader, opt, device, label_smoothing) -> None:
    for _ in zip(range(len(loader)), plain_steps(model, loader, opt, device, label_smoothing)):
        pass


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def wait_for_checkpoint_writes() -> None:
    for thread in threading.enumerate():
        if thread.name == CHECKPOINT_THREAD:
            thread.join()


def compare(cfg, arch, train: Arrays, device: torch.device, epochs: int, serial_checkpoint: bool = False) -> float:
    """Median over epochs of (plain-epoch seconds / our-epoch seconds).

    Ours is one `fit` of `epochs` + 1 epochs, as the teacher stage runs it; the plain loop runs
    from its hooks, and our epoch is its wall time less the plain time in it. On the CPU the two
    run in lockstep: our loss hook first runs one plain step, so a machine that slows down for a
    moment slows both alike (both take the same steps an epoch). On a GPU that would sync our
    queue every step, so the plain loop runs a whole epoch in our epoch hook instead.

    Our checkpoint is copied on our time and written on the writer thread while training goes
    on, as in a real run (on a GPU the hook lets the write finish, uncharged, before the plain
    epoch). With `serial_checkpoint` our epoch is charged the whole write, the cost without a
    spare core. The first epoch is a warm-up and holds fit's set-up; it is dropped."""
    tcfg = cfg.teacher.train.model_copy(update={"epochs": epochs + 1})
    ours_model, plain_model = build_model(arch).to(device), build_model(arch).to(device)
    plain_model.load_state_dict(ours_model.state_dict())
    opt = torch.optim.AdamW(plain_model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    loader = DataLoader(TensorDataset(train.x, train.y), batch_size=tcfg.batch_size, shuffle=True)
    plain = plain_steps(plain_model, loader, opt, device, tcfg.label_smoothing)
    ours_loss = cross_entropy_loss(tcfg.label_smoothing, aux_loss_of_layers(ours_model))  # fit's default
    lockstep = device.type == "cpu"
    seconds: dict[str, list[float]] = {"ours": [], "plain": []}
    plain_in_epoch, mark = 0.0, time.perf_counter()

    def timed_plain_steps(n: int) -> float:
        sync(device)
        start = time.perf_counter()
        with torch.autocast(device.type, enabled=False):  # our bf16 autocast is not the plain loop's
            for _ in range(n):
                next(plain)
        sync(device)
        return time.perf_counter() - start

    def plain_step_then_our_loss(model, x, y, ids, at=None):
        nonlocal plain_in_epoch
        plain_in_epoch += timed_plain_steps(1)
        return ours_loss(model, x, y, ids, at)

    def end_of_epoch(record: dict) -> None:
        nonlocal plain_in_epoch, mark
        sync(device)
        ours_end = time.perf_counter()
        if serial_checkpoint or not lockstep:
            wait_for_checkpoint_writes()
        if serial_checkpoint:
            ours_end = time.perf_counter()
        seconds["ours"].append(ours_end - mark - plain_in_epoch)
        seconds["plain"].append(plain_in_epoch if lockstep else timed_plain_steps(len(loader)))
        plain_in_epoch, mark = 0.0, time.perf_counter()

    resume = Path(tempfile.mkdtemp(prefix="bench-train-"))
    hooks = Hooks(loss=plain_step_then_our_loss if lockstep else ours_loss, on_epoch=end_of_epoch)
    try:
        fit(ours_model, train.to(device), tcfg, seed=0, checkpoint=resume / device.type, hooks=hooks)
    finally:
        shutil.rmtree(resume, ignore_errors=True)
    seconds = {name: times[1:] for name, times in seconds.items()}  # drop the warm-up epoch
    for r, (ours, plain) in enumerate(zip(seconds["ours"], seconds["plain"])):
        print(f"  {device.type} epoch {r + 1}: ours {ours:.3f} s  plain {plain:.3f} s  ratio {plain / ours:.3f}")
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
    ap.add_argument("--epochs", type=int, default=31, help="timed epochs of each loop")
    ap.add_argument("--serial-checkpoint", action="store_true",
                    help="charge our whole checkpoint write to our epoch instead of overlapping it")
    # One thread by default: two were no faster for this model here, and noisier.
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: leave as is)")
    ap.add_argument("--tta", action="store_true", help="also measure time-to-accuracy (minutes on a CPU)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg, arch, train, val, _ = preset_data("mnist1d")
    print(f"train bench: {len(train)} MNIST-1D samples, batch {cfg.teacher.train.batch_size}, "
          f"model {cfg.teacher.model.arch} {cfg.teacher.model.model_dump(include={'dim', 'depth', 'heads'})}")
    speedup = compare(cfg, arch, train, torch.device("cpu"), args.epochs, args.serial_checkpoint)
    gpu = "na"
    if torch.cuda.is_available():
        gpu = f"{compare(cfg, arch, train, torch.device('cuda'), args.epochs, args.serial_checkpoint):.2f}"
    if args.tta:
        ours, adam = time_to_accuracy(cfg, arch, train, val, 0.94, cfg.teacher.train.epochs * 2)
        print(f"time to val acc 0.94: ours {ours} s, Adam 1e-3 constant {adam} s")
    print(f"train: speedup={speedup:.2f} gpu_speedup={gpu}")


if __name__ == "__main__":
    main()
