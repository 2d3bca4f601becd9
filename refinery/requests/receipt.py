"""Publishing the deployed model, and the receipt of a deletion request.

`publish` copies the model that serves requests to `data/deploy/model.zarr` with `card.json`: the
model it came from, how it honours the ledger (requests retrained exactly, requests served
approximately and by which method), the ledger version, and the lineage: each stage manifest's
hash and the requests its training data honoured.

`receipt` answers for one request: what was done (its events), what was rebuilt (old and new
content hashes per artifact, recorded when it was retrained), the audit of the approximate step
against retraining, a lineage check, and the byte scan (refinery/requests/scan.py).
The lineage check passes when the request was retrained exactly and
- none of its keys is in the live prepared data (index.parquet, outside the kept-apart D_f),
- every live stage manifest that read the prepared arrays records the request among those its
  training data honoured, and read the arrays that are live now,
- the deployed model's card honours it.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..store import atomic_path, path_hash, read_json, read_table, write_json
from .ledger import Request, read_ledger, version
from .scan import scan

DEPLOY = Path("data") / "deploy"
PREPARED = Path("data") / "prepared"


def manifests(root: Path) -> dict[str, dict]:
    """{path: manifest} of every live stage manifest under data/ (a seed group's members too)."""
    found = {}
    for path in sorted((root / "data").rglob("manifest.json")):
        if DEPLOY in path.relative_to(root).parents:
            continue
        try:
            found[str(path.relative_to(root))] = read_json(path)
        except (OSError, ValueError):
            continue
    return found


def publish(root: Path, model: Path, served_by: str, honours: list[str], serving: list[str]) -> dict:
    """Copy `model` to data/deploy/model.zarr and write its card; return the card."""
    root = Path(root)
    card = {"model": str(Path(model).relative_to(root)), "content_hash": path_hash(model), "served_by": served_by,
            "ledger_version": version(root), "honours": sorted(honours), "serves_approximately": sorted(serving),
            "lineage": {p: {"hash": path_hash(root / p), "honours": m.get("ledger", {}).get("honours")}
                        for p, m in manifests(root).items() if "ledger" in m}}
    with atomic_path(root / DEPLOY / "model.zarr") as tmp:
        shutil.copytree(model, tmp)
    write_json(root / DEPLOY / "card.json", card)
    return card


def lineage_check(root: Path, request: Request) -> dict:
    """Whether no live artifact depends on the request's samples; `problems` says why not."""
    root, problems = Path(root), []
    if not request.reached("retrained"):
        problems.append("served approximately only: the lineage still trained on its samples until the exact "
                        "retrain (the nightly run)")
    keys = set(request.keys)
    index_path = root / PREPARED / "index.parquet"
    if index_path.exists():
        index = read_table(index_path, ["sample_key", "split"])
        live = index[index["sample_key"].isin(keys) & (index["split"] != "forgotten")]
        if len(live):
            shown = ", ".join(live["sample_key"][:3])
            problems.append(f"{len(live)} of its samples are in the prepared data ({shown})")
    arrays_hash = path_hash(root / PREPARED / "arrays.zarr") if (root / PREPARED / "arrays.zarr").exists() else None
    for path, manifest in manifests(root).items():
        if "ledger" not in manifest:
            continue
        if request.request_id not in manifest["ledger"].get("honours", []):
            problems.append(f"{path}: its training data did not honour {request.request_id}")
        read = manifest.get("inputs", {}).get(str(PREPARED / "arrays.zarr"))
        if read is not None and read != arrays_hash:
            problems.append(f"{path}: trained on an older version of the prepared arrays")
    card_path = root / DEPLOY / "card.json"
    card = read_json(card_path) if card_path.exists() else None
    if card is None:
        problems.append("no deployed model (data/deploy/card.json)")
    elif request.request_id not in card.get("honours", []):
        problems.append(f"the deployed model ({card.get('served_by')}) does not honour it exactly")
    return {"ok": not problems, "problems": problems}


def receipt(root: Path, request_id: str, with_scan: bool = True) -> dict:
    requests = {r.request_id: r for r in read_ledger(root)}
    if request_id not in requests:
        raise KeyError(f"no request {request_id} (known: {', '.join(requests) or 'none'})")
    r = requests[request_id]
    served, retrained = r.event("served"), r.event("retrained")
    found = scan(root, r.contents) if with_scan else []
    return {"request_id": r.request_id, "received": r.received, "note": r.note, "how": r.how, "status": r.status,
            "samples": len(r.keys), "events": [{"event": "recorded", "time": r.received}] + r.events,
            "served": served["detail"] if served else None,
            "rebuilt": retrained["detail"].get("artifacts") if retrained else None,
            "lineage": lineage_check(root, r),
            "scan": None if not with_scan else {"ok": not found, "found": [vars(h) for h in found],
                                                 "expected": "" if r.reached("purged") else
                                                 "D_f is kept apart (data/prepared/forgotten.zarr) until the purge"}}


def render(doc: dict) -> str:
    """The receipt as text for a terminal."""
    lines = [f"{doc['request_id']}: {doc['samples']} samples, received {doc['received']}, status {doc['status']}"
             + (f" ({doc['note']})" if doc["note"] else ""), f"  chosen by: {json.dumps(doc['how'], sort_keys=True)}"]
    lines += [f"  {e['time']}  {e['event']}" for e in doc["events"]]
    if doc["served"]:
        served = doc["served"]
        lines.append(f"  served approximately by {served.get('method')}: {json.dumps(served.get('audit'))}")
    if doc["rebuilt"]:
        lines.append("  rebuilt (sha256, first 12 digits; --json gives them whole):")
    for path, change in (doc["rebuilt"] or {}).items():
        lines.append(f"    {path}: {(change.get('old') or '-')[:12]} -> {(change.get('new') or '-')[:12]}")
    lineage = doc["lineage"]
    lines.append(f"  lineage check: {'passed' if lineage['ok'] else 'NOT passed'}")
    lines += [f"    - {p}" for p in lineage["problems"]]
    if doc["scan"] is not None:
        found = doc["scan"]["found"]
        lines.append(f"  byte scan of data/, .refinery/ and .dvc/cache: "
                     f"{'none of its samples found' if not found else f'found in {len(found)} place(s)'}")
        lines += [f"    - {h['where']}: {h['rows']} sample(s)" for h in found]
        if found and doc["scan"]["expected"]:
            lines.append(f"    ({doc['scan']['expected']})")
    return "\n".join(lines)
