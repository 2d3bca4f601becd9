"""GPU gating: a stage that uses a device claims one device of this host for as long as it runs.

One mechanism does the gating by default: a lock file per device in one folder per host, shared
by every workspace, clone and DVC queue task of every refinery process of the user. A claim is an
exclusive, non-blocking `flock` on `<folder>/<device>.lock`, lowest free device first; the device
becomes CUDA's current one and `claimed_device` says which it is. The kernel drops a flock the
moment its holder dies (even by SIGKILL), so a crashed run frees its device at once. Locks kept
per workspace (the old `.refinery/gpu/`) let two clones both take device 0; hence one folder.

Beside each lock the holder keeps a lease, `<device>.lease` (JSON: host, pid, token, expiry),
rewritten by a daemon thread every lease/3 seconds. A claimer whose flock succeeds still honours
an unexpired lease written by *another* host: on a folder shared across hosts (NFS) flock may not
reach across machines, and then the lease is what tells a live holder from a dead one. A holder
killed on another host stops renewing, so its device is free again within one lease (plus a
poll) of its last renewal, under twice the lease in all. Expiry times are wall-clock seconds:
hosts sharing a folder need synchronised clocks. The leases detect dead holders; they are no
mutual exclusion protocol of their own: two hosts that find a device free at the same instant
can both take it, so a cross-host folder wants working NFS locks too.

A Prefect global concurrency limit is used only on request (REFINERY_GPU_LIMIT=name) and only
when the Prefect API is a server other processes see: one off this host, or the project's own
(`refinery server start`, named in `.prefect/server.json`). A command's temporary server (or
Prefect's in-process one) counts slots nobody else sees; then the request is ignored with one
log line. The limit only spreads work across hosts; the host locks still pick the device. Its
slots are held on a Prefect lease (at least 60 s, Prefect's minimum) that the server's
repossessor frees when a holder is killed; a failed renewal (a server restart) logs a warning
instead of cancelling the training. A server that keeps leases in memory (Prefect's default)
forgets them when it restarts and leaves their slots counted; `refinery server start` therefore
sets PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=prefect.server.concurrency.lease_storage.filesystem
(flows/server.py), and a server started otherwise should too.

Environment:
  REFINERY_GPU_LOCKS  the lock folder (default /tmp/refinery-gpu-<uid>). The default is fixed,
                      not $TMPDIR or $XDG_RUNTIME_DIR: those differ between a login shell, cron
                      and batch jobs of one user, and two folders gate nothing. It is private
                      (mode 0o700, owned by the user, no symlink): in world-writable /tmp another
                      user could otherwise plant the folder, fake leases that hold the GPUs, or
                      symlinks. Hence users do not gate each other by default; to gate a whole
                      box (or several hosts) point every user at one group-writable folder.
  REFINERY_GPU_LEASE  lease seconds (default 30).
  REFINERY_GPU_SLOTS  the device count (default torch.cuda.device_count(); tests force it on a
                      CPU box).
  REFINERY_GPU_LIMIT  opt in to a Prefect global concurrency limit of this name.
Under CUDA_VISIBLE_DEVICES the locks are named after its entries (`2.lock`, `GPU-<uuid>.lock`),
so processes that see different subsets of the GPUs still lock the physical device.
Without a GPU nothing is claimed and stages run on the CPU.
"""
from __future__ import annotations

import fcntl
import ipaddress
import json
import logging
import os
import re
import socket
import stat
import threading
import time
import uuid
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

log = logging.getLogger("refinery")

# The device index claimed by the running task (None: no GPU claimed). A ContextVar, because
# Prefect runs concurrent tasks in threads of one process.
claimed_device: ContextVar[int | None] = ContextVar("claimed_device", default=None)

HOST = socket.gethostname()  # recorded in leases; a lease of another host is honoured until it expires
DEFAULT_LEASE = 30.0
PREFECT_MIN_LEASE = 60.0  # the server rejects shorter concurrency leases
_ignored_limits: set[str] = set()  # REFINERY_GPU_LIMIT names already reported as ignored


def gpu_slots() -> int:
    override = os.environ.get("REFINERY_GPU_SLOTS")
    if override is not None:
        return int(override)
    import torch

    return torch.cuda.device_count()


def lease_seconds() -> float:
    return float(os.environ.get("REFINERY_GPU_LEASE", DEFAULT_LEASE))


def lock_folder() -> Path:
    """The host's device lock folder (see the module docstring for why this default)."""
    configured = os.environ.get("REFINERY_GPU_LOCKS")
    if configured:
        folder = Path(configured)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # an operator's folder keeps its mode
        return folder
    folder = Path("/tmp") / f"refinery-gpu-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise RuntimeError(f"{folder} is not a folder of this user: remove it, or set REFINERY_GPU_LOCKS "
                           "to a folder of your own")
    if info.st_mode & 0o077:
        os.chmod(folder, 0o700)
    return folder


def device_names(count: int) -> list[str]:
    """The lock names of devices 0..count-1: their CUDA_VISIBLE_DEVICES entries when that lists
    them all (the physical device, whatever subset this process sees), else their indices."""
    visible = [re.sub(r"[^A-Za-z0-9._-]", "_", entry.strip())
               for entry in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if entry.strip()]
    return visible[:count] if len(visible) >= count else [str(i) for i in range(count)]


def read_lease(path: Path) -> dict | None:
    try:
        lease = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return lease if isinstance(lease, dict) else None


def write_lease(path: Path, token: str, seconds: float) -> None:
    """Replace the lease whole (write beside, then rename), so a reader never sees half of one."""
    lease = {"host": HOST, "pid": os.getpid(), "token": token, "expires": time.time() + seconds}
    tmp = path.with_name(f".{path.name}.{HOST}.{os.getpid()}.{token[:8]}.tmp")
    tmp.write_text(json.dumps(lease))
    os.replace(tmp, path)


def held_elsewhere(lease: dict | None) -> bool:
    """Whether a lease belongs to a live holder on another host. One of this host is never
    trusted: our own flock succeeding already proved its holder gone."""
    return bool(lease) and lease.get("host") != HOST and float(lease.get("expires", 0)) > time.time()


def try_claim(folder: Path, name: str, seconds: float) -> tuple[int, str] | None:
    """Take device `name` if it is free: (the locked descriptor, our lease token), else None."""
    # Read-only suffices for flock, and lets other users of a shared folder lock a file we made.
    fd = os.open(folder / f"{name}.lock", os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    if held_elsewhere(read_lease(folder / f"{name}.lease")):
        os.close(fd)  # closing drops the flock
        return None
    token = uuid.uuid4().hex
    write_lease(folder / f"{name}.lease", token, seconds)
    return fd, token


class LeaseRenewal(threading.Thread):
    """Rewrites the lease every lease/3 seconds until stopped; stops renewing (and says so) if
    another host took the device over, which only happens when this process stalled a whole lease."""

    def __init__(self, folder: Path, name: str, token: str, seconds: float):
        super().__init__(name=f"gpu-lease-{name}", daemon=True)
        self.folder, self.device, self.token, self.seconds = folder, name, token, seconds
        self.done = threading.Event()

    def run(self) -> None:
        lease_file = self.folder / f"{self.device}.lease"
        while not self.done.wait(self.seconds / 3):
            current = read_lease(lease_file)
            if current and current.get("token") != self.token:
                log.error("device %s was taken over by %s (pid %s): this process did not renew its lease "
                          "for %.0f s; two runs may now share the device", self.device, current.get("host"),
                          current.get("pid"), self.seconds)
                return
            try:
                write_lease(lease_file, self.token, self.seconds)
                os.utime(self.folder / f"{self.device}.lock")  # a /tmp cleaner deletes old files
            except OSError as exc:  # a full or vanished folder: keep training, try again next round
                log.warning("device %s: could not renew its lease: %s", self.device, exc)

    def stop(self) -> None:
        self.done.set()
        self.join()


def release(folder: Path, name: str, fd: int, token: str) -> None:
    lease_file = folder / f"{name}.lease"
    current = read_lease(lease_file)
    if current and current.get("token") == token:
        lease_file.unlink(missing_ok=True)
    os.close(fd)  # drops the flock


def first_free(folder: Path, names: list[str], seconds: float) -> tuple[int, str, int, str] | None:
    """Claim the lowest free device: (its index, its name, the locked descriptor, our lease token)."""
    for index, name in enumerate(names):
        held = try_claim(folder, name, seconds)
        if held:
            return index, name, *held
    return None


@contextmanager
def claim_device(count: int, folder: Path | None = None, lease: float | None = None,
                 poll: float | None = None) -> Iterator[int]:
    """Hold one of `count` devices, lowest free first, waiting while all are taken; yield its index."""
    if folder is None:
        folder = lock_folder()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    seconds = lease or lease_seconds()
    poll = poll or min(0.5, seconds / 4)
    names = device_names(count)
    claim = first_free(folder, names, seconds)
    if claim is None:
        log.info("all %d device(s) are claimed (locks in %s): waiting for one", len(names), folder)
    while claim is None:
        time.sleep(poll)
        claim = first_free(folder, names, seconds)
    index, name, fd, token = claim
    renewal = LeaseRenewal(folder, name, token, seconds)
    renewal.start()
    try:
        yield index
    finally:
        renewal.stop()
        release(folder, name, fd, token)


def shared_server(url: str, root: Path) -> bool:
    """Whether the Prefect API at `url` is seen by other processes: a server off this host, or the
    project's own server named in a `.prefect/server.json` at or above `root` (a DVC queue task's
    workspace lies inside the project). A command's temporary server is on loopback and named nowhere."""
    host = urlsplit(url).hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        return True
    for folder in (root, *root.parents):
        state = read_lease(folder / ".prefect" / "server.json")  # any small JSON object reads the same
        if state and state.get("api_url") == url:
            return True
    return False


def prefect_limit(root: Path) -> str | None:
    """The Prefect limit to hold besides the host lock: REFINERY_GPU_LIMIT when set and the server is
    shared, else None (and one log line per process when the request is ignored)."""
    name = os.environ.get("REFINERY_GPU_LIMIT")
    if not name:
        return None
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if url and shared_server(url, root):
        return name
    if name not in _ignored_limits:
        _ignored_limits.add(name)
        log.warning("REFINERY_GPU_LIMIT=%s ignored: the Prefect API (%s) is a temporary server no other process "
                    "sees; the host's device locks alone gate the GPUs", name, url or "in-process")
    return None


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


def prefect_slot(name: str, slots: int):
    """One slot of limit `name`, on a lease the server takes back from a killed holder."""
    from prefect.concurrency.sync import concurrency

    ensure_limit(name, slots)
    return concurrency(name, occupy=1, strict=True, lease_duration=max(PREFECT_MIN_LEASE, lease_seconds()),
                       raise_on_lease_renewal_failure=False)


@contextmanager
def gpu_slot(root: Path) -> Iterator[int | None]:
    """Hold one device of this host (and a Prefect slot when opted in) for the duration; yield
    the device index, or None (claiming nothing) when there is no GPU."""
    slots = gpu_slots()
    if slots <= 0:
        yield None
        return
    limit = prefect_limit(root)
    with prefect_slot(limit, slots) if limit else nullcontext(), claim_device(slots) as index:
        token = claimed_device.set(index)
        try:
            _make_current(index)
            log.info("holding device %d%s", index, f" and a {limit} slot" if limit else "")
            yield index
        finally:
            claimed_device.reset(token)


def _make_current(index: int) -> None:
    """Make the claimed device CUDA's current one, so code that says plain 'cuda' uses it. Every
    stage computes in the process that claimed (tasks/entry.py), where CUDA may be initialised
    already and CUDA_VISIBLE_DEVICES no longer applies; `pick_device` reads `claimed_device`."""
    import torch

    if torch.cuda.is_available() and index < torch.cuda.device_count():
        torch.cuda.set_device(index)
