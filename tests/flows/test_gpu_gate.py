"""GPU gating (tasks/gpu.py): host device locks give each holder its own device; a Prefect limit,
when opted in on a shared server, lets no more device-using tasks run at once than it has slots,
and on a temporary server the request is ignored with one log line."""
import json
import logging
import threading
import time
import uuid

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.gpu import claim_device, gpu_slot

pytestmark = pytest.mark.flow


def limit_names() -> set[str]:
    with get_client(sync_client=True) as client:
        return {limit.name for limit in client.read_global_concurrency_limits(limit=200, offset=0)}


@pytest.fixture
def one_slot(prefect_api, monkeypatch, tmp_path):
    """One GPU slot, forced on a CPU box, with locks and a limit of this test's own."""
    name = f"gpu-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("REFINERY_GPU_SLOTS", "1")
    monkeypatch.setenv("REFINERY_GPU_LIMIT", name)
    monkeypatch.setenv("REFINERY_GPU_LOCKS", str(tmp_path / "locks"))
    with temporary_settings({PREFECT_API_URL: prefect_api}):
        yield name


def test_one_slot_serializes_gpu_tasks(one_slot, prefect_api, tmp_path):
    """On the project's own server (named in .prefect/server.json) the opted-in limit is used."""
    (tmp_path / ".prefect").mkdir()
    (tmp_path / ".prefect" / "server.json").write_text(json.dumps({"api_url": prefect_api}))

    @task(tags=["gpu"])
    def on_gpu(label: str) -> tuple:
        with gpu_slot(tmp_path) as device:
            start = time.monotonic()
            time.sleep(1.5)
            return label, device, start, time.monotonic()

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def two_at_once() -> list:
        futures = [on_gpu.submit(label) for label in ("a", "b")]
        return [f.result() for f in futures]

    (_, dev_a, start_a, end_a), (_, dev_b, start_b, end_b) = two_at_once()
    assert dev_a == dev_b == 0
    assert end_a <= start_b or end_b <= start_a, "the two GPU tasks overlapped"
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(one_slot)
    assert limit.limit == 1  # created on first use
    assert limit.active_slots == 0  # both slots given back


def test_limit_on_temporary_server_falls_back_to_host_locks(one_slot, tmp_path, caplog):
    """A loopback server that no server.json names is a command's temporary one: no limit is
    taken, one log line says so, and the host lock still hands out the device."""
    caplog.set_level(logging.INFO, logger="refinery")
    for _ in range(2):
        with gpu_slot(tmp_path) as device:
            assert device == 0
    ignored = [r for r in caplog.records if "REFINERY_GPU_LIMIT" in r.getMessage()]
    assert len(ignored) == 1 and "temporary server" in ignored[0].getMessage()
    assert one_slot not in limit_names()


def test_no_gpu_takes_no_slot(prefect_api, monkeypatch, tmp_path):
    name = f"gpu-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("REFINERY_GPU_SLOTS", "0")
    monkeypatch.setenv("REFINERY_GPU_LIMIT", name)
    monkeypatch.setenv("REFINERY_GPU_LOCKS", str(tmp_path / "locks"))
    with temporary_settings({PREFECT_API_URL: prefect_api}):
        with gpu_slot(tmp_path) as device:
            assert device is None
        assert name not in limit_names()
    assert not (tmp_path / "locks").exists()


def test_concurrent_holders_get_different_devices(tmp_path):
    """Two holders in threads of one process on a 2-GPU box claim devices 0 and 1 (no Prefect)."""
    seen, both_in = [], threading.Barrier(2)

    def hold():
        with claim_device(2, folder=tmp_path, lease=1) as index:
            seen.append(index)
            both_in.wait(timeout=10)  # both hold a device at the same time

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == [0, 1]
