"""Process-wide CPU settings for training small models on a shared machine.

Call `configure_cpu()` once, first thing, before torch is imported (this module imports
nothing heavy). Entry points call it: the CLI, the benches, the test session.

- OpenMP threads that spin while waiting make small models several times slower whenever
  another process shares the cores (a Prefect server, DVC, a second run): 20 steps of the
  digits CCT took 0.52 s on 1 thread, 2.81 s on 2 spinning threads, 0.67 s on 2 passive ones.
- glibc returns freed blocks above a dynamic threshold (128 KiB at first) to the kernel, so a
  training step that frees and reallocates its activations page-faults them in afresh every
  time. Keeping blocks up to 64 MiB on the heap and not trimming it makes allocation reuse
  memory, as PyTorch's CPU tuning guide gets from jemalloc or tcmalloc. Measured here: one MoE
  layer's forward and backward went from 156 ms to 128 ms, the dense FFN from 129 to 114 ms.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, <malloc.h>
MMAP_THRESHOLD = 64 << 20
TRIM_THRESHOLD = 1 << 30


def configure_cpu() -> bool:
    """Passive OpenMP waiting (unless already set) and glibc heap reuse. Returns whether the
    allocator was tuned (False off glibc, for example on macOS, where nothing changes)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
