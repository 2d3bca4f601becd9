"""An opted-in Prefect GPU limit on the project's server (`refinery server start`): a restart of
the server while a slot is held, and then the holder killed with SIGKILL, leave no slot taken for
good; the slot is free again once the holder's lease runs out."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows import server
from tests.project import PROJECT

HOLDER = """
import sys, time
from pathlib import Path
from tasks.gpu import gpu_slot
with gpu_slot(Path(sys.argv[1])) as device:
    print("held", device, flush=True)
    time.sleep(3600)
"""


def active_slots(url: str, name: str) -> int:
    with temporary_settings({PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(name).active_slots


def test_restart_and_killed_holder_leave_no_slot_taken(tmp_path):
    name, port = f"gpu-restart-{uuid.uuid4().hex[:8]}", server.free_port()
    state, proc = server.start(tmp_path, "127.0.0.1", port, keep=True)
    url = state["api_url"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_API_URL=url, PREFECT_HOME=str(tmp_path / ".prefect"), REFINERY_GPU_SLOTS="1",
               REFINERY_GPU_LIMIT=name, REFINERY_GPU_LOCKS=str(tmp_path / "locks"), PYTHONPATH=str(PROJECT))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], env=env, stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        assert holder.stdout.readline().startswith("held 0")
        assert active_slots(url, name) == 1
        os.killpg(proc.pid, signal.SIGKILL)  # the server dies with the slot held ...
        proc.wait()
        state, proc = server.start(tmp_path, "127.0.0.1", port, keep=True)  # ... and comes back
        assert active_slots(url, name) == 1  # the live holder still holds it
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
        deadline = time.monotonic() + 180  # Prefect's shortest lease (60 s) and its repossessor's period
        while active_slots(url, name) and time.monotonic() < deadline:
            time.sleep(3)
        assert active_slots(url, name) == 0, "the killed holder's slot stayed taken after the restart"
    finally:
        for p in (holder, proc):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
