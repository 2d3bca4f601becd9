"""How the training loop uses the device: precision, memory format, compilation, data placement.

airbench's recipe for small models on a GPU (Jordan, "94% on CIFAR-10 in 3.29 seconds on a
single GPU", 2024): keep the whole dataset on the device and slice batches there (no DataLoader
workers, no per-batch copies), bf16 autocast, channels_last for convolutions, and optionally
torch.compile. On this project's 2-core CPU each was measured before being adopted: bf16 ran
0.94x and torch.compile 0.6x after a 43 s warm-up for a small CCT, so "auto" turns both off on
the CPU; tensors in host memory are already "on the device" there. The same code runs on both.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from .config import TrainConfig
from .data.dataset import Arrays

RESIDENT_SHARE = 0.5  # the dataset may take at most this share of free GPU memory


@dataclass(frozen=True)
class Accel:
    device: torch.device
    bf16: bool
    channels_last: bool
    resident: bool
    compile: bool

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)


def fits_on_device(nbytes: int, free_bytes: int) -> bool:
    return nbytes <= RESIDENT_SHARE * free_bytes


def plan(cfg: TrainConfig, device: torch.device, data: Arrays) -> Accel:
    gpu = device.type == "cuda"
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and gpu and torch.cuda.is_bf16_supported())
    images = data.x.dim() == 4  # (N, C, H, W): convolutions over 2-D inputs
    channels_last = images and (cfg.channels_last if cfg.channels_last is not None else gpu)
    resident = True
    if gpu:
        nbytes = sum(t.element_size() * t.nelement() for t in (data.x, data.y, data.ids))
        resident = fits_on_device(nbytes, torch.cuda.mem_get_info(device)[0])
    return Accel(device, bf16, channels_last, resident, cfg.compile)


def place(accel: Accel, model: nn.Module, data: Arrays) -> tuple[nn.Module, Arrays]:
    """Model in the planned memory format (compiled if asked: the returned module runs it) and
    the data on the device when it fits, otherwise left in host memory for per-batch copies."""
    if accel.channels_last:
        model.to(memory_format=torch.channels_last)
    runner = torch.compile(model) if accel.compile else model
    if accel.resident:
        data = data.to(accel.device)
    elif accel.device.type == "cuda":
        data = Arrays(data.x.pin_memory(), data.y.pin_memory(), data.ids.pin_memory())
    return runner, data


def batch(accel: Accel, data: Arrays, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch on the device (sliced there when the data is resident)."""
    x, y, ids = data.x[idx], data.y[idx], data.ids[idx]
    if not accel.resident:
        x, y, ids = (t.to(accel.device, non_blocking=True) for t in (x, y, ids))
    if accel.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y, ids
