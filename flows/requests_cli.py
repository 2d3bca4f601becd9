"""`refinery requests list | show ID | purge [ID ...]`: the deletion ledger, receipts, the purge."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .errors import UsageError
from .run_cli import say


def request_rows(root: Path) -> list[str]:
    """One line per request: id, received, samples, status, how chosen, note."""
    from refinery.requests import read_ledger

    return [f"{r.request_id}  {r.received}  {len(r.keys):>6} samples  {r.status:<9}  "
            f"{json.dumps(r.how, sort_keys=True)}{'  ' + r.note if r.note else ''}" for r in read_ledger(root)]


def cmd_requests(args: argparse.Namespace, root: Path) -> int:
    if args.action == "list":
        rows = request_rows(root)
        print("\n".join(rows) if rows else "no deletion requests (requests/ledger.parquet is empty or absent)")
        return 0
    if args.action == "show":
        if len(args.ids) != 1:
            raise UsageError("requests show: give one request id, e.g. `refinery requests show REQ-0001`")
        from refinery.requests.receipt import receipt, render

        try:
            doc = receipt(root, args.ids[0], with_scan=not args.no_scan)
        except KeyError as exc:
            raise UsageError(str(exc.args[0])) from None
        print(json.dumps(doc, indent=2, sort_keys=True) if args.json else render(doc))
        passed = doc["lineage"]["ok"] and (doc["scan"] is None or doc["scan"]["ok"])
        return 0 if passed or not args.check else 1
    from .purge import purge

    say("purge: every retrained request" if not args.ids else f"purge: {', '.join(args.ids)}")
    from .run_cli import say_prefect

    say_prefect(root)
    return purge(root, args.ids or None)


def add_parser(sub) -> None:
    requests = sub.add_parser("requests", help="deletion requests: list them, show a receipt, purge the retrained")
    requests.add_argument("action", choices=["list", "show", "purge"])
    requests.add_argument("ids", nargs="*", metavar="ID", help="request ids (show: one; purge: default all retrained)")
    requests.add_argument("--json", action="store_true", help="show: the receipt as JSON")
    requests.add_argument("--no-scan", action="store_true", help="show: skip the byte scan")
    requests.add_argument("--check", action="store_true",
                          help="show: exit 1 unless the lineage check and the byte scan pass")
