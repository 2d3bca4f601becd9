"""Drive dvc.yaml's stages in-process, exactly as `dvc repro` would decide and record them.

For each stage in topological order: skip it when DVC says it has not changed; otherwise remove
its outputs, restore them from DVC's run cache when this exact run was done before, or else
run the stage's Python code, then save, commit and dump it to dvc.lock. Afterwards `dvc status`
is clean and `dvc repro` is a no-op. The repo lock is held throughout, so a second pipeline in
the same workspace fails fast instead of corrupting dvc.lock.
"""
from __future__ import annotations

import logging
import time
from contextlib import chdir, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

log = logging.getLogger("refinery")


class WorkspaceBusy(RuntimeError):
    pass


@dataclass
class StageOutcome:
    name: str
    action: str  # "skipped", "restored" (from DVC's run cache) or "ran"


# The workspace locks this process holds, with how deeply: a command takes the lock before it
# writes anything, and the pipeline it then runs in the same process re-enters it.
_HELD: dict[Path, list] = {}  # root -> [DVC lock object, depth]


@contextmanager
def workspace_lock(root: Path) -> Iterator[object]:
    """Hold the workspace's one lock: DVC's own repo lock (.dvc/tmp/lock), so a refinery command
    and a dvc command (repro, exp run, ...) exclude each other alike. Refuses at once with
    WorkspaceBusy when another process holds it; re-entrant within this process. Yields the
    DVC lock object (a Repo opened under it must use it: DVC asserts its repo lock is held)."""
    from dvc.lock import LockError, make_lock

    root = Path(root).resolve()
    if root in _HELD:
        _HELD[root][1] += 1
        try:
            yield _HELD[root][0]
        finally:
            _HELD[root][1] -= 1
        return
    tmp = root / ".dvc" / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    lock = make_lock(str(tmp / "lock"), tmp_dir=str(tmp), friendly=False)
    try:
        lock.lock()
    except LockError:
        raise WorkspaceBusy(f"{root}: another refinery or dvc command is working in this workspace; "
                            "nothing was written: wait for it to finish") from None
    _HELD[root] = [lock, 1]
    try:
        yield lock
    finally:
        del _HELD[root]
        lock.unlock()


@contextmanager
def locked_repo(root: Path) -> Iterator[object]:
    """Open the DVC repo at `root` holding the workspace lock; fail fast if another command holds it."""
    from dvc.repo import Repo

    with workspace_lock(root) as lock, chdir(root):  # DVC resolves stage paths against the working directory
        recover_lockfile(Path(root))
        repo = Repo(str(root))
        repo.lock = lock  # the lock this process holds, not a second one on the same file
        try:
            yield repo
        finally:
            repo.close()


def lockfile_readable(path: Path) -> bool:
    """Whether `path` parses as a DVC lock file (a mapping with its schema and stages)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "schema" in data and isinstance(data.get("stages"), dict)


def lockfile_snapshot(root: Path) -> Path:
    return root / ".dvc" / "tmp" / "dvc.lock.previous"


def recover_lockfile(root: Path) -> str | None:
    """DVC rewrites dvc.lock in place, so a kill mid-write can leave it cut short, and then every
    later `dvc` and `refinery` command fails on it. Put back the copy taken before that write (it
    lacks only the stage being recorded, which DVC's run cache then restores), or, without one,
    set the broken file aside: every stage is then restored from the run cache or rerun."""
    path = root / "dvc.lock"
    if not path.exists() or lockfile_readable(path):
        return None
    from refinery.store.atomic import write_bytes

    snapshot = lockfile_snapshot(root)
    if snapshot.exists() and lockfile_readable(snapshot):
        write_bytes(path, snapshot.read_bytes())
        log.warning("dvc.lock was cut short (a write interrupted): put back the copy taken before that write")
        return "restored"
    aside = path.with_name(f"dvc.lock.broken-{time.strftime('%Y%m%d-%H%M%S')}")
    path.replace(aside)
    log.warning("dvc.lock was unreadable: moved to %s; stages are restored from DVC's run cache or rerun",
                aside.name)
    return "set aside"


def pipeline_stages(repo) -> list:
    """The stages of dvc.yaml, dependencies first."""
    import networkx as nx

    graph = repo.index.graph
    return [s for s in nx.dfs_postorder_nodes(graph) if getattr(s, "cmd", None)], graph


@dataclass
class Plan:
    """What `dvc repro` would do now: `stale` stages changed themselves (params, code, deps or
    outs); `downstream` ones only read a stale stage's outputs, so they rerun if those change."""
    order: list[str]  # every stage, dependencies first
    stale: list[str]
    downstream: list[str]

    @property
    def todo(self) -> list[str]:
        return [name for name in self.order if name in self.stale or name in self.downstream]

    @property
    def fresh(self) -> list[str]:
        return [name for name in self.order if name not in self.todo]


def plan(root: Path) -> Plan:
    with locked_repo(root) as repo:
        stages, graph = pipeline_stages(repo)
        stale, downstream = [], []
        for stage in stages:
            upstream = list(graph.successors(stage))
            if stage.changed(upstream=upstream):
                stale.append(stage.name)
            elif any(u.name in stale or u.name in downstream for u in upstream):
                downstream.append(stage.name)
        return Plan([s.name for s in stages], stale, downstream)


def changed_stages(root: Path) -> list[str]:
    """Names of the stages that `dvc repro` would run now (upstream changes propagate)."""
    return plan(root).todo


def run_directly(name: str, work: Callable[[], str]) -> str:
    return work()


def reproduce(root: Path, run_stage: Callable[[str], None], force: bool = False,
              step: Callable[[str, Callable[[], str]], str] = run_directly) -> list[StageOutcome]:
    """Decide and do each stage as `dvc repro` would. `step(name, work)` calls `work()`, which
    skips, restores or runs the stage (through `run_stage(name)`) and returns which it did; the
    pipeline flow makes each call a task run, so every stage shows in Prefect, skipped ones too."""
    outcomes = []
    with locked_repo(root) as repo:
        stages, graph = pipeline_stages(repo)
        for stage in stages:
            upstream = list(graph.successors(stage))
            work = partial(do_stage, repo, stage, upstream, run_stage, force)
            outcomes.append(StageOutcome(stage.name, step(stage.name, work)))
    return outcomes


def do_stage(repo, stage, upstream: list, run_stage: Callable[[str], None], force: bool) -> str:
    if not force and not stage.changed(upstream=upstream):
        log.info("stage %s: up to date, skipped", stage.name)
        return "skipped"
    stage.remove_outs(ignore_remove=False, force=False)
    action, corrupt = ("ran", []) if force else restore_verified(repo, stage)
    if action == "ran":
        stage.save_deps()
        run_stage(stage.name)
    stage.save()
    for out in stage.outs:  # a corrupt cache object under the rerun's hash: replace it, not keep it
        if str(out.def_path) in corrupt and out.hash_info and Path(out.cache_path).is_file():
            Path(out.cache_path).unlink()
    stage.commit()
    lock = Path(repo.root_dir) / "dvc.lock"
    if lock.exists():  # DVC writes dvc.lock in place: keep a whole copy to recover from
        from refinery.store.atomic import write_bytes

        write_bytes(lockfile_snapshot(Path(repo.root_dir)), lock.read_bytes())
    stage.dump(update_pipeline=False)
    return action


def restore_verified(repo, stage) -> tuple[str, list[str]]:
    """Restore the stage from DVC's run cache if it holds this exact run, and check what came
    back against the content hashes its manifest recorded when it ran: DVC checks out cache
    objects without reading them, so a corrupted object would otherwise be used and recorded.
    ("restored", []), or ("ran", outputs that did not check out) when there is nothing to restore
    or it does not check out: a warning names them and the stage reruns."""
    from dvc.stage.cache import RunCacheNotFoundError

    try:
        repo.stage_cache.restore(stage)
    except RunCacheNotFoundError:
        return "ran", []
    bad = mismatched_outputs(Path(repo.root_dir), [str(out.def_path) for out in stage.outs])
    if not bad:
        log.info("stage %s: restored from DVC's run cache (this exact run was done before)", stage.name)
        return "restored", []
    log.warning("stage %s: DVC's cache returned %s with other content than the run recorded; removed and "
                "rerunning the stage", stage.name, ", ".join(bad))
    stage.remove_outs(ignore_remove=False, force=False)
    return "ran", bad


def mismatched_outputs(root: Path, outs: list[str]) -> list[str]:
    """The outputs whose content differs from the hashes in the stage's manifest (all of them
    when the manifest itself cannot be read)."""
    import json

    from refinery.store import path_hash

    manifest = next((o for o in outs if o.endswith("manifest.json")), None)
    if manifest is None:
        return []
    try:
        recorded = json.loads((root / manifest).read_text())["outputs"]
    except (OSError, ValueError, KeyError, TypeError):
        return [manifest]
    return [path for path, digest in recorded.items() if (root / path).exists() and path_hash(root / path) != digest]
