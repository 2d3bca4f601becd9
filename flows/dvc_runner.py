"""Drive dvc.yaml's stages in-process, exactly as `dvc repro` would decide and record them.

For each stage in topological order: skip it when DVC says it has not changed; otherwise remove
its outputs, restore them from DVC's run cache when this exact run was done before, or else
run the stage's Python code, then save, commit and dump it to dvc.lock. Afterwards `dvc status`
is clean and `dvc repro` is a no-op. The repo lock is held throughout, so a second pipeline in
the same workspace fails fast instead of corrupting dvc.lock.
"""
from __future__ import annotations

import logging
from contextlib import chdir, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

log = logging.getLogger("refinery")


class WorkspaceBusy(RuntimeError):
    pass


@dataclass
class StageOutcome:
    name: str
    action: str  # "skipped", "restored" (from DVC's run cache) or "ran"


@contextmanager
def locked_repo(root: Path) -> Iterator[object]:
    """Open the DVC repo at `root` holding its lock; fail fast if another command holds it."""
    from dvc.lock import LockError
    from dvc.repo import Repo

    with chdir(root):  # DVC resolves stage paths against the working directory
        repo = Repo(str(root))
        try:
            try:
                repo.lock.lock()
            except LockError:
                raise WorkspaceBusy(f"{root}: another refinery or dvc command holds this workspace's DVC lock; "
                                    "wait for it to finish") from None
            try:
                yield repo
            finally:
                repo.lock.unlock()
        finally:
            repo.close()


def pipeline_stages(repo) -> list:
    """The stages of dvc.yaml, dependencies first."""
    import networkx as nx

    graph = repo.index.graph
    return [s for s in nx.dfs_postorder_nodes(graph) if getattr(s, "cmd", None)], graph


def changed_stages(root: Path) -> list[str]:
    """Names of the stages that `dvc repro` would run now (upstream changes propagate)."""
    with locked_repo(root) as repo:
        stages, graph = pipeline_stages(repo)
        dirty: set = set()
        for stage in stages:
            upstream = list(graph.successors(stage))
            if any(u in dirty for u in upstream) or stage.changed(upstream=upstream):
                dirty.add(stage)
        return [s.name for s in stages if s in dirty]


def reproduce(root: Path, run_stage: Callable[[str], None], force: bool = False) -> list[StageOutcome]:
    from dvc.stage.cache import RunCacheNotFoundError

    outcomes = []
    with locked_repo(root) as repo:
        stages, graph = pipeline_stages(repo)
        for stage in stages:
            upstream = list(graph.successors(stage))
            if not force and not stage.changed(upstream=upstream):
                log.info("stage %s: up to date, skipped", stage.name)
                outcomes.append(StageOutcome(stage.name, "skipped"))
                continue
            stage.remove_outs(ignore_remove=False, force=False)
            try:
                if force:
                    raise RunCacheNotFoundError(stage)
                repo.stage_cache.restore(stage)
                action = "restored"
                log.info("stage %s: restored from DVC's run cache", stage.name)
            except RunCacheNotFoundError:
                stage.save_deps()
                run_stage(stage.name)
                action = "ran"
            stage.save()
            stage.commit()
            stage.dump(update_pipeline=False)
            outcomes.append(StageOutcome(stage.name, action))
    return outcomes
