"""GPU gating (tasks/gpu.py): the Prefect `gpu` limit lets no more device-using tasks run at
once than it has slots, and each slot holder gets its own device."""
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


@pytest.fixture
def one_slot(prefect_api, monkeypatch):
    """One GPU slot, forced on a CPU box, in a limit of this test's own."""
    name = f"gpu-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("REFINERY_GPU_SLOTS", "1")
    monkeypatch.setenv("REFINERY_GPU_LIMIT", name)
    with temporary_settings({PREFECT_API_URL: prefect_api}):
        yield name


def test_one_slot_serializes_gpu_tasks(one_slot, tmp_path):
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
        assert client.read_global_concurrency_limit_by_name(one_slot).limit == 1  # created on first use


def test_no_gpu_takes_no_slot(prefect_api, monkeypatch, tmp_path):
    name = f"gpu-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("REFINERY_GPU_SLOTS", "0")
    monkeypatch.setenv("REFINERY_GPU_LIMIT", name)
    with temporary_settings({PREFECT_API_URL: prefect_api}):
        with gpu_slot(tmp_path) as device:
            assert device is None
        with get_client(sync_client=True) as client:
            assert name not in {limit.name for limit in client.read_global_concurrency_limits(limit=200, offset=0)}


def test_concurrent_holders_get_different_devices(tmp_path):
    """Two slot holders on a 2-GPU box claim devices 0 and 1 (file locks, no Prefect)."""
    seen, both_in = [], threading.Barrier(2)

    def hold():
        with claim_device(tmp_path, 2) as index:
            seen.append(index)
            both_in.wait(timeout=10)  # both hold a device at the same time

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == [0, 1]
