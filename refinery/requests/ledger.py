"""The deletion ledger: every request a data owner made, append-only, versioned with the project.

`requests/ledger.parquet` (committed with the code, not a DVC output) holds one row per event:

    seq, request_id, time (UTC, ISO 8601), event, note, how (JSON), keys (JSON), contents (JSON), detail (JSON)

A request's first row is its `recorded` event and carries its sample keys, their content hashes
(refinery/data/keys.py) and how they were chosen; later rows move its status:

    recorded -> served (approximately, by method M, with its audit) -> retrained (exactly, the
    whole lineage without its samples) -> purging -> purged (bytes gone; the scan found none)

The forget set of a run is the union of every recorded request; no event removes a key, so no
command brings a forgotten sample back. The file is rewritten whole through an atomic rename, so
a kill at any moment leaves the old ledger or the new one, each readable, never half a request.
A writer first checks that the new file extends the old one row for row.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, UTC
from pathlib import Path

import pandas as pd

from ..store import read_table, write_table

LEDGER = Path("requests") / "ledger.parquet"
STATUSES = ("recorded", "served", "retrained", "purging", "purged")
COLUMNS = ("seq", "request_id", "time", "event", "note", "how", "keys", "contents", "detail")


class LedgerError(ValueError):
    """A request that cannot be recorded, or a ledger that cannot be read, in one line."""


@dataclass
class Request:
    request_id: str
    received: str
    note: str
    how: dict
    keys: list[str]
    contents: list[str]
    events: list[dict] = field(default_factory=list)  # {"event", "time", "detail"} in order

    @property
    def status(self) -> str:
        return self.events[-1]["event"] if self.events else "recorded"

    def reached(self, status: str) -> bool:
        """Whether the request has reached `status` (or a later one)."""
        return STATUSES.index(self.status) >= STATUSES.index(status)

    def event(self, name: str) -> dict | None:
        return next((e for e in reversed(self.events) if e["event"] == name), None)


def ledger_path(root: Path) -> Path:
    return Path(root) / LEDGER


def _rows(root: Path) -> pd.DataFrame:
    path = ledger_path(root)
    if not path.exists():
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "seq" else "object") for c in COLUMNS})
    try:
        frame = read_table(path)
    except Exception as exc:
        raise LedgerError(f"{LEDGER}: unreadable ({exc}); restore it from git (`git checkout {LEDGER}`)") from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise LedgerError(f"{LEDGER}: missing columns {missing}; restore it from git")
    return frame


def read_ledger(root: Path) -> list[Request]:
    """Every request, in the order received, with its events."""
    requests: dict[str, Request] = {}
    for row in _rows(root).sort_values("seq").itertuples(index=False):
        if row.event == "recorded":
            requests[row.request_id] = Request(row.request_id, row.time, row.note, json.loads(row.how),
                                               json.loads(row.keys), json.loads(row.contents))
        elif row.request_id in requests:
            requests[row.request_id].events.append({"event": row.event, "time": row.time,
                                                    "detail": json.loads(row.detail)})
    return list(requests.values())


def version(root: Path) -> int:
    """The ledger's version: how many events it holds (every write appends at least one)."""
    return len(_rows(root))


def _append(root: Path, rows: list[dict]) -> None:
    old = _rows(root)
    start = int(old["seq"].max()) + 1 if len(old) else 0
    new = pd.DataFrame([{**r, "seq": start + i} for i, r in enumerate(rows)], columns=list(COLUMNS))
    frame = pd.concat([old, new], ignore_index=True) if len(old) else new
    frame["seq"] = frame["seq"].astype("int64")
    write_table(ledger_path(root), frame[list(COLUMNS)])


def now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def record(root: Path, keys: list[str], contents: list[str], how: dict, note: str = "") -> tuple[Request | None, list]:
    """Append a request for `keys` (with their content hashes); return (the request, or None when
    every key was already recorded, and the keys that were). Recording a key twice changes nothing."""
    if len(keys) != len(contents) or not keys:
        raise LedgerError("a request needs at least one sample key, each with its content hash")
    earlier = read_ledger(root)
    known = {k for r in earlier for k in r.keys}
    fresh = [(k, c) for k, c in zip(keys, contents) if k not in known]
    repeated = [k for k in keys if k in known]
    if not fresh:
        return None, repeated
    request_id = f"REQ-{len(earlier) + 1:04d}"
    row = {"request_id": request_id, "time": now(), "event": "recorded", "note": note,
           "how": json.dumps(how, sort_keys=True), "keys": json.dumps([k for k, _ in fresh]),
           "contents": json.dumps([c for _, c in fresh]), "detail": "{}"}
    _append(root, [row])
    return next(r for r in read_ledger(root) if r.request_id == request_id), repeated


def add_event(root: Path, request_ids: list[str], event: str, detail: dict | None = None) -> None:
    """Move each request in `request_ids` to `event`, in one write."""
    if event not in STATUSES[1:]:
        raise LedgerError(f"unknown event {event!r} (known: {', '.join(STATUSES[1:])})")
    if not request_ids:
        return
    known = {r.request_id for r in read_ledger(root)}
    unknown = sorted(set(request_ids) - known)
    if unknown:
        raise LedgerError(f"unknown request {unknown[0]} (known: {', '.join(sorted(known)) or 'none'})")
    stamp = now()
    _append(root, [{"request_id": rid, "time": stamp, "event": event, "note": "", "how": "{}", "keys": "[]",
                    "contents": "[]", "detail": json.dumps(detail or {}, sort_keys=True)} for rid in request_ids])


def fingerprint(requests: list[Request]) -> str | None:
    """What of the ledger a preparation depends on: each request's keys and contents, and whether
    its purge has begun (a purged sample leaves even the kept-apart forget set). Status events
    that change nothing in the data (served, retrained) leave it unchanged."""
    if not requests:
        return None
    h = hashlib.sha256()
    for r in requests:
        h.update(json.dumps([r.request_id, r.keys, r.contents, r.reached("purging")]).encode())
    return h.hexdigest()[:16]
