"""GPU gating: a stage that uses a device holds one slot of the Prefect global concurrency limit
`gpu` (sized to the GPU count, created when missing) and, while it holds it, one device.

Why two mechanisms: Prefect's limit counts slots but does not say *which* GPU a holder may use.
So inside the slot a task claims a device by taking an exclusive, non-blocking `flock` on
`.refinery/gpu/<index>.lock` (lowest free index first) and makes that device current. With as
many slots as devices, a slot holder always finds a free device; two concurrent runs on a 2-GPU
box get devices 0 and 1. The kernel drops a flock when its process dies, so a crashed run never
leaves a device claimed (Prefect's lease likewise expires). Without a GPU nothing is taken and
stages run on the CPU.

Environment: REFINERY_GPU_SLOTS overrides the device count (tests force 1 on a CPU box; a
shared Prefect server for several machines may want it); REFINERY_GPU_LIMIT renames the limit
(e.g. one limit per host on a shared server, since Prefect's limits are server-wide).
"""
from __future__ import annotations

import fcntl
import logging
import os
import time
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator

log = logging.getLogger("refinery")

# The device index claimed by the running task (None: no GPU claimed). A ContextVar, because
# Prefect runs concurrent tasks in threads of one process.
claimed_device: ContextVar[int | None] = ContextVar("claimed_device", default=None)


def gpu_slots() -> int:
    override = os.environ.get("REFINERY_GPU_SLOTS")
    if override is not None:
        return int(override)
    import torch

    return torch.cuda.device_count()


def limit_name() -> str:
    return os.environ.get("REFINERY_GPU_LIMIT", "gpu")


def ensure_limit(name: str, slots: int) -> None:
    """Create the global concurrency limit `name` with `slots` slots unless it exists. An
    existing limit is left as it is: an operator may have sized it on purpose."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
            return
        except ObjectNotFound:
            pass
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots))
            log.info("created Prefect global concurrency limit %r with %d slot(s)", name, slots)
        except ObjectAlreadyExists:  # another run created it between our read and our create
            pass


@contextmanager
def claim_device(root: Path, count: int, poll: float = 0.5) -> Iterator[int]:
    """Hold an exclusive lock on one of `count` device lock files; yield its index."""
    folder = root / ".refinery" / "gpu"
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        for index in range(count):
            handle = open(folder / f"{index}.lock", "a+")  # noqa: SIM115  held until released
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                yield index
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        # Only reachable when something outside the Prefect limit holds a device lock
        # (e.g. a second Prefect server pointed at the same workspace): wait for it.
        time.sleep(poll)


@contextmanager
def gpu_slot(root: Path) -> Iterator[int | None]:
    """Hold a `gpu` slot and one device for the duration; yield the device index, or None
    (and take no slot) when there is no GPU."""
    slots = gpu_slots()
    if slots <= 0:
        yield None
        return
    from prefect.concurrency.sync import concurrency

    name = limit_name()
    ensure_limit(name, slots)
    with concurrency(name, occupy=1, strict=True), claim_device(root, slots) as index:
        token = claimed_device.set(index)
        try:
            _make_current(index)
            log.info("holding %s slot, device %d", name, index)
            yield index
        finally:
            claimed_device.reset(token)


def _make_current(index: int) -> None:
    """Make the claimed device CUDA's current one, so code that says plain 'cuda' uses it."""
    import torch

    if torch.cuda.is_available() and index < torch.cuda.device_count():
        torch.cuda.set_device(index)
