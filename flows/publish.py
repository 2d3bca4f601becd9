"""After a run that serves deletion requests: move their status in the ledger and publish the
model that serves them (data/deploy/, refinery/requests/receipt.py).

What the run did is read from what prepare wrote (data/prepared/forget.parquet's metadata): the
requests it served and whether exactly. Exact: the requests become `retrained`, with the old and
new content hash of every artifact that changed, and the retrained student is published.
Approximate: they become `served`, with the serving method's scores against retrain, and that
method's model is published.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .run_cli import cmd_run, say

AUDIT_KEYS = ("UA", "RA", "TA", "MIA", "gap")


def artifact_hashes(root: Path) -> dict[str, str]:
    """{output path: content hash} from every live stage manifest."""
    from refinery.requests.receipt import manifests

    return {out: h for m in manifests(root).values() for out, h in m.get("outputs", {}).items()}


def serve_method(cfg, unlearned: dict) -> str:
    """The configured method, or the one with the smallest Avg.Gap to retrain on this request."""
    rows = {m: r for m, r in unlearned.items()
            if isinstance(r, dict) and "gap" in r and m not in ("original", "retrain")}
    if cfg.forget.serve_method:
        if cfg.forget.serve_method not in rows:
            raise ValueError(f"forget.serve_method: {cfg.forget.serve_method!r} is not among the unlearn stage's "
                             f"methods ({', '.join(rows)})")
        return cfg.forget.serve_method
    return min(rows, key=lambda m: rows[m]["gap"])


def member_path(cfg, path: str) -> str:
    """`path` of the run's model: in a seed group, that of the member trained with `seed` (or the first)."""
    from tasks.stages import seeded_path

    if not cfg.seeds:
        return path
    return seeded_path(path, cfg.seed if cfg.seed in cfg.seeds else cfg.seeds[0])


def publish_served(root: Path, before: dict[str, str]) -> None:
    """Move the requests the last run served and publish their model (nothing when it served none)."""
    from refinery import config as C
    from refinery.requests import add_event, read_ledger
    from refinery.requests.receipt import publish
    from refinery.store import read_json, table_metadata

    forget_set = root / "data" / "prepared" / "forget.parquet"
    ledger = {r.request_id: r for r in read_ledger(root)}
    if not forget_set.exists() or not ledger:
        return  # no deletion request was ever recorded: nothing to move or publish
    meta = table_metadata(forget_set)
    serving = meta.get("requests", [])
    cfg = C.validate(C.read_yaml(root / "params.yaml"), "params.yaml")
    honours = [r.request_id for r in ledger.values() if r.reached("retrained")]
    if meta.get("exact") and serving:
        after = artifact_hashes(root)
        changed = {p: {"old": before.get(p), "new": h} for p, h in after.items() if before.get(p) != h}
        moved = [rid for rid in serving if not ledger[rid].reached("retrained")]
        add_event(root, moved, "retrained", {"artifacts": changed})
        card = publish(root, root / member_path(cfg, "data/distill/student.zarr"), "retrained", honours + moved, [])
        say(f"{', '.join(moved) or 'requests'} retrained exactly ({len(changed)} artifacts rebuilt); "
            f"published data/deploy/ (ledger version {card['ledger_version']})")
        return
    if not serving:
        return
    unlearned = read_json(root / member_path(cfg, "data/unlearn/metrics.json"))
    method = serve_method(cfg, unlearned)
    audit = {k: unlearned[method].get(k) for k in AUDIT_KEYS} | {
        "retrain": {k: unlearned["retrain"].get(k) for k in AUDIT_KEYS if k != "gap"}}
    moved = [rid for rid in serving if not ledger[rid].reached("served")]
    add_event(root, moved, "served", {"method": method, "audit": audit})
    card = publish(root, root / member_path(cfg, f"data/unlearn/models/{method}.zarr"), method, honours, serving)
    say(f"{', '.join(serving)} served approximately by {method} (Avg.Gap to retrain {audit['gap']:.2f}); "
        f"published data/deploy/ (ledger version {card['ledger_version']}); the nightly run retrains exactly")


def run_and_publish(root: Path, pipeline: str | None = None) -> int:
    before = artifact_hashes(root)
    code = cmd_run(argparse.Namespace(pipeline=pipeline, set=[], force=False, seeds=None), root, forget_request=True)
    if code == 0:
        publish_served(root, before)
    return code
