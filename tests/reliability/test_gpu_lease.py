"""Device claims hold across workspaces and processes (tasks/gpu.py): one lock folder per host,
a flock the kernel drops when its holder dies, and a lease that frees a device held by a dead
holder on another host (where flock may not reach) within twice the lease, and not before the
lease expires. Real processes hold the claims; the GPUs are forced with REFINERY_GPU_SLOTS."""
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tasks import gpu
from tasks.gpu import claim_device, lock_folder, read_lease

REPO = Path(__file__).resolve().parents[2]
LEASE = 1.0

# argv: mode (slot: gpu_slot(root), the whole stage path; claim: claim_device), root, out file,
# host to record in leases ("" for this one). Holds the device until `<out>.release` exists.
HOLDER = """
import os, sys, time
from pathlib import Path
import tasks.gpu as gpu
mode, root, out, host = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
if host:
    gpu.HOST = host
claim = gpu.gpu_slot(root) if mode == "slot" else gpu.claim_device(int(os.environ["REFINERY_GPU_SLOTS"]))
with claim as device:
    Path(f"{out}.tmp").write_text(str(device))
    os.replace(f"{out}.tmp", out)
    while not Path(f"{out}.release").exists():
        time.sleep(0.05)
"""


@pytest.fixture
def locks(tmp_path, monkeypatch):
    folder = tmp_path / "locks"
    monkeypatch.setenv("REFINERY_GPU_LOCKS", str(folder))
    monkeypatch.setenv("REFINERY_GPU_LEASE", str(LEASE))
    monkeypatch.delenv("REFINERY_GPU_LIMIT", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return folder


def start_holder(out: Path, slots: int, mode: str = "claim", root: Path | None = None, host: str = ""):
    env = dict(os.environ, REFINERY_GPU_SLOTS=str(slots), PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-c", HOLDER, mode, str(root or out.parent), str(out), host],
                            cwd=REPO, env=env)


def wait_claimed(out: Path, proc: subprocess.Popen, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while not out.exists():
        assert proc.poll() is None, f"the holder exited with {proc.returncode} before claiming"
        assert time.monotonic() < deadline, "the holder claimed no device"
        time.sleep(0.05)
    return int(out.read_text())


def seconds_to_claim(folder: Path, slots: int = 1) -> tuple[int, float]:
    start = time.monotonic()
    with claim_device(slots, folder=folder, lease=LEASE, poll=0.05) as index:
        return index, time.monotonic() - start


def test_two_workspaces_share_the_host_locks(tmp_path, locks):
    """Two projects (different roots), the same host: two processes hold devices 0 and 1 at once."""
    roots = [tmp_path / "clone-a", tmp_path / "clone-b"]
    procs = []
    for root in roots:
        root.mkdir()
        procs.append(start_holder(root / "device", 2, mode="slot", root=root))
    try:
        devices = {wait_claimed(root / "device", proc) for root, proc in zip(roots, procs)}
    finally:
        for root in roots:
            Path(f"{root / 'device'}.release").touch()
        for proc in procs:
            proc.wait(timeout=30)
    assert devices == {0, 1}
    assert all(proc.returncode == 0 for proc in procs)
    assert not (roots[0] / ".refinery").exists() and not (roots[1] / ".refinery").exists()


def test_killed_holder_frees_its_device_at_once(tmp_path, locks):
    holder = start_holder(tmp_path / "device", 1)
    assert wait_claimed(tmp_path / "device", holder) == 0
    start = time.monotonic()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    index, _ = seconds_to_claim(locks)
    assert index == 0
    assert time.monotonic() - start < 2 * LEASE


def test_killed_holder_on_another_host_frees_its_device_within_two_leases(tmp_path, locks):
    """A holder recording another host: its dead flock proves nothing to that host's claimers, so the
    device waits for its lease, which it renewed while alive and which lapses within 2 x lease."""
    holder = start_holder(tmp_path / "device", 1, host="other-host")
    assert wait_claimed(tmp_path / "device", holder) == 0
    time.sleep(2 * LEASE)  # it holds past its first lease: only renewals keep it
    assert read_lease(locks / "0.lease")["host"] == "other-host"
    start = time.monotonic()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    index, _ = seconds_to_claim(locks)
    waited = time.monotonic() - start
    assert index == 0
    assert waited < 2 * LEASE
    assert waited > LEASE / 3, "the lease of the dead holder was not honoured"


def write_foreign_lease(folder: Path, device: str, expires_in: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{device}.lease").write_text(json.dumps(
        {"host": "other-host", "pid": 1, "token": "theirs", "expires": time.time() + expires_in}))


def test_stale_foreign_lease_is_taken_over_after_expiry_not_before(locks):
    write_foreign_lease(locks, "0", expires_in=1.5 * LEASE)
    index, waited = seconds_to_claim(locks)
    assert index == 0
    assert 1.4 * LEASE <= waited < 2 * LEASE
    assert read_lease(locks / "0.lease") is None  # our own lease, removed on release


def test_live_foreign_lease_sends_the_claim_to_the_next_device(locks):
    write_foreign_lease(locks, "0", expires_in=60)
    index, waited = seconds_to_claim(locks, slots=2)
    assert index == 1 and waited < LEASE


def test_lease_is_renewed_while_held(locks):
    with claim_device(1, folder=locks, lease=0.6) as index:
        first = read_lease(locks / "0.lease")
        time.sleep(1.5)  # 2.5 leases
        later = read_lease(locks / "0.lease")
    assert index == 0
    assert later["token"] == first["token"] and later["host"] == gpu.HOST and later["pid"] == os.getpid()
    assert later["expires"] > time.time() - 0.2 > first["expires"]


def test_default_lock_folder_is_private_and_per_user(monkeypatch, tmp_path):
    monkeypatch.delenv("REFINERY_GPU_LOCKS", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # not consulted: every process of the user finds one folder
    monkeypatch.setattr(tempfile, "tempdir", None)
    folder = lock_folder()
    info = folder.lstat()
    assert folder == Path("/tmp") / f"refinery-gpu-{os.getuid()}"
    assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) == 0o700
