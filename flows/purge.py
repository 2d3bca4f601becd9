"""The purge: once requests are retrained exactly, delete their samples' bytes for good.

Steps, each safe to repeat, so a purge killed at any point is finished by the next one:
1. the ledger marks the requests `purging` (one atomic write): from then on prepare leaves their
   samples out of everything, the kept-apart D_f included;
2. the pipeline reruns: prepare rewrites data/prepared/forgotten.zarr without them (the arrays
   the models trained on do not change, so no model retrains); the unlearn stage scores the next
   pending request, or the config's simulated one;
3. every cache under .refinery/cache/ (teacher logits, importances, SISA shards, resume states)
   is dropped: they are rebuilt on demand;
4. DVC's cache keeps only what the workspace uses now (`dvc gc --workspace`), and so does the
   default DVC remote when one is configured (`--cloud`); DVC's run cache, which points at old
   outputs, is cleared;
5. the byte scan (refinery/requests/scan.py) must find none of their samples; only then does the
   ledger mark them `purged`, with the scan's result.
What the purge cannot reach (other clones' caches, branches and experiments that name old
versions, other remotes) is listed in the README.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from .run_cli import say


def purgeable(root: Path, wanted: list[str] | None):
    """The requests to purge: those asked for (each must be retrained), else every retrained one."""
    from refinery.requests import LedgerError, read_ledger

    requests = read_ledger(root)
    if wanted:
        known = {r.request_id: r for r in requests}
        missing = [w for w in wanted if w not in known]
        if missing:
            raise LedgerError(f"unknown request {missing[0]} (known: {', '.join(known) or 'none'})")
        early = [w for w in wanted if not known[w].reached("retrained")]
        if early:
            raise LedgerError(f"{early[0]} is not retrained exactly yet ({known[early[0]].status}); the nightly run "
                              "(or `refinery forget ... --exact`) retrains first, so no live model needs its samples")
        return [known[w] for w in wanted if not known[w].reached("purged")]
    return [r for r in requests if r.reached("retrained") and not r.reached("purged")]


def drop_caches(root: Path) -> list[str]:
    dropped = []
    for folder in (root / ".refinery" / "cache", root / ".refinery" / "resume"):
        if folder.exists():
            shutil.rmtree(folder)
            dropped.append(str(folder.relative_to(root)))
    return dropped


def collect_dvc_cache(root: Path) -> list[str]:
    """`dvc gc --workspace --force [--cloud]` under the workspace lock this process holds (DVC's
    own lock taken again would fail, so the repo is given a no-op one for the call)."""
    from contextlib import chdir

    from dvc.lock import LockNoop
    from dvc.repo import Repo

    from .dvc_runner import workspace_lock

    done = ["DVC's cache less what the workspace uses (dvc gc --workspace)"]
    with workspace_lock(root), chdir(root):
        repo = Repo(str(root))
        repo.lock = LockNoop()
        try:
            remote = bool(repo.config.get("core", {}).get("remote"))
            repo.gc(workspace=True, force=True, cloud=remote)
        finally:
            repo.close()
    if remote:
        done.append("the default remote likewise (--cloud)")
    runs = root / ".dvc" / "cache" / "runs"
    if runs.exists():
        shutil.rmtree(runs)
        done.append("the run cache")
    return done


def purge(root: Path, wanted: list[str] | None = None) -> int:
    from refinery.requests import add_event
    from refinery.requests.scan import scan

    from .dvc_runner import workspace_lock
    from .publish import run_and_publish

    with workspace_lock(root):
        targets = purgeable(root, wanted)
        if not targets:
            say("nothing to purge: no request is retrained and not yet purged")
            return 0
        ids = [r.request_id for r in targets]
        add_event(root, [r.request_id for r in targets if not r.reached("purging")], "purging")
        say(f"purging {', '.join(ids)}: prepare leaves their samples out from now on")
        code = run_and_publish(root)  # `refinery run` stamps the ledger's new fingerprint: prepare reruns
        if code:
            return code
        done = drop_caches(root) + collect_dvc_cache(root)
        say(f"dropped: {', '.join(done)}")
        contents = [c for r in targets for c in r.contents]
        found = scan(root, contents)
        if found:
            say("purge NOT finished: the scan still finds their samples in " +
                ", ".join(f"{h.where} ({h.rows})" for h in found))
            return 1
        add_event(root, ids, "purged", {"dropped": done, "scan": "data/, .refinery/, .dvc/cache: none found"})
        say(f"purged {', '.join(ids)}: the scan finds none of their {len(contents)} samples; commit "
            "requests/ledger.parquet and dvc.lock")
        return 0
