"""kill -9 while requests are recorded or moved: the ledger stays readable, and each request is
either recorded whole (every key with its content hash) or not at all; no status is half written."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from refinery.requests import read_ledger
from refinery.requests.ledger import ledger_path

WRITER = """
import sys
from pathlib import Path
from refinery.requests import add_event, record
root, start = Path(sys.argv[1]), int(sys.argv[2])
for n in range(start, start + 10_000):
    keys = [f"s{n}-{i}" for i in range(50)]
    request, _ = record(root, keys, [f"c{n}-{i}" for i in range(50)], {"ids_file": "x.csv"}, note=f"n{n}")
    add_event(root, [request.request_id], "served", {"method": "finetune", "n": n})
    print(n, flush=True)
"""


@pytest.mark.parametrize("delay", [0.0, 0.013, 0.05, 0.21, 0.6])
def test_kill_while_recording_leaves_whole_requests(tmp_path, delay):
    start = 0
    for _ in range(3):  # kill three times: each writer starts from what the last left
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(start)], stdout=subprocess.PIPE,
                                text=True, start_new_session=True)
        proc.stdout.readline()  # the writer is past its imports and has written once
        time.sleep(delay)  # then a kill lands somewhere in the next writes
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        requests = read_ledger(tmp_path)  # readable after every kill
        for r in requests:
            n = int(r.note[1:])
            assert r.keys == [f"s{n}-{i}" for i in range(50)] and r.contents == [f"c{n}-{i}" for i in range(50)]
            assert [e["event"] for e in r.events] in ([], ["served"])
            assert not r.events or r.events[0]["detail"] == {"method": "finetune", "n": n}
        ids = [r.request_id for r in requests]
        assert ids == [f"REQ-{i:04d}" for i in range(1, len(ids) + 1)]
        start += 10_000
    assert ledger_path(tmp_path).exists() and len(read_ledger(tmp_path)) >= 1
