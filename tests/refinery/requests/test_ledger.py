"""The deletion ledger is append-only: a second request adds to the first, a key recorded twice
changes nothing, status events keep every earlier row, and the fingerprint prepare depends on
moves with keys and purges only."""
from __future__ import annotations

import pytest

from refinery.requests import LedgerError, add_event, fingerprint, read_ledger, record, version
from refinery.requests.ledger import _rows


def test_requests_accumulate_and_repeats_change_nothing(tmp_path):
    a, _ = record(tmp_path, ["x", "y"], ["cx", "cy"], {"classes": [3]}, note="ticket 1")
    b, repeated = record(tmp_path, ["y", "z"], ["cy", "cz"], {"fraction": 0.1})
    assert (a.request_id, b.request_id, b.keys, repeated) == ("REQ-0001", "REQ-0002", ["z"], ["y"])
    again, repeated = record(tmp_path, ["x", "z"], ["cx", "cz"], {"ids_file": "f.csv"})
    assert again is None and repeated == ["x", "z"] and version(tmp_path) == 2
    requests = read_ledger(tmp_path)
    assert [r.keys for r in requests] == [["x", "y"], ["z"]] and requests[0].note == "ticket 1"


def test_events_append_and_move_status(tmp_path):
    record(tmp_path, ["x"], ["cx"], {})
    before = _rows(tmp_path).copy()
    add_event(tmp_path, ["REQ-0001"], "served", {"method": "finetune"})
    add_event(tmp_path, ["REQ-0001"], "retrained", {"artifacts": {}})
    rows = _rows(tmp_path)
    assert rows.iloc[:len(before)].equals(before)  # nothing earlier rewritten
    (r,) = read_ledger(tmp_path)
    assert r.status == "retrained" and r.reached("served") and not r.reached("purging")
    assert r.event("served")["detail"] == {"method": "finetune"}
    with pytest.raises(LedgerError, match="unknown request REQ-0009"):
        add_event(tmp_path, ["REQ-0009"], "served")
    with pytest.raises(LedgerError, match="unknown event"):
        add_event(tmp_path, ["REQ-0001"], "forgotten")


def test_fingerprint_follows_keys_and_purges_only(tmp_path):
    assert fingerprint(read_ledger(tmp_path)) is None
    record(tmp_path, ["x"], ["cx"], {})
    first = fingerprint(read_ledger(tmp_path))
    add_event(tmp_path, ["REQ-0001"], "served")
    add_event(tmp_path, ["REQ-0001"], "retrained")
    assert fingerprint(read_ledger(tmp_path)) == first  # no data changes: prepare does not rerun
    add_event(tmp_path, ["REQ-0001"], "purging")
    purging = fingerprint(read_ledger(tmp_path))
    assert purging != first
    record(tmp_path, ["y"], ["cy"], {})
    assert fingerprint(read_ledger(tmp_path)) not in (first, purging)


def test_a_damaged_ledger_is_one_line(tmp_path):
    record(tmp_path, ["x"], ["cx"], {})
    path = tmp_path / "requests" / "ledger.parquet"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(LedgerError, match="requests/ledger.parquet: unreadable .*git checkout"):
        read_ledger(tmp_path)
