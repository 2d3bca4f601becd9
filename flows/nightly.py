"""The nightly flow a team schedules: pull new data from the DVC remote, rerun what changed
(edited files under data.path, new deletion requests), push the artifacts back.

Deletion requests: every request still served only approximately is retrained exactly tonight
(`forget.exact` is set for the run, so the whole lineage trains without its samples), the
retrained student is published to data/deploy/ and the requests move to `retrained`; then they
are purged (flows/purge.py: caches, DVC's cache and remote, the byte scan) before the push.

`refinery serve --cron "0 3 * * *"` serves it from this process (flow.serve); `refinery deploy
--pool NAME` registers it on a process work pool for `prefect worker start --pool NAME`.
Only the network steps (pull, push) retry; stages are deterministic and never do.
"""
from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from .dvc_runner import workspace_lock
from .pipeline import pipeline_flow
from .sweep import DVC_LIMIT, dvc

FLOW_SOURCE = Path(__file__).resolve().parents[1]  # the folder holding the `flows` package
ENTRYPOINT = "flows/nightly.py:nightly_flow"


def has_remote(root: Path) -> bool:
    return bool(dvc(root, "remote", "list").strip())


@task(name="dvc-pull", retries=3, retry_delay_seconds=30, cache_policy=NO_CACHE)
def pull(root: str) -> str:
    if not has_remote(Path(root)):
        return "no DVC remote configured; nothing pulled"
    # --allow-missing: outputs of stages that never ran anywhere are not on the remote yet;
    # the pipeline builds those. Network errors still fail (and retry).
    return dvc(Path(root), "pull", "--allow-missing").strip() or "pulled"


@task(name="dvc-push", retries=3, retry_delay_seconds=30, cache_policy=NO_CACHE)
def push(root: str) -> str:
    if not has_remote(Path(root)):
        return "no DVC remote configured; nothing pushed"
    return dvc(Path(root), "push").strip() or "pushed"


@task(name="deletion-requests", retries=0, cache_policy=NO_CACHE)
def exact_tonight(root: str) -> list[str]:
    """The requests not yet retrained exactly; when there are any, set `forget.exact` for the run."""
    from refinery import config as C
    from refinery.requests import read_ledger
    from refinery.resolve import write_params

    waiting = [r.request_id for r in read_ledger(Path(root)) if not r.reached("retrained")]
    if waiting:
        cfg = C.validate(C.read_yaml(Path(root) / "params.yaml"), "params.yaml")
        write_params(Path(root), cfg.model_copy(update={"forget": cfg.forget.model_copy(update={"exact": True})}))
    return waiting


@task(name="user-data", retries=0, cache_policy=NO_CACHE)
def refresh_user_data(root: str) -> str:
    """Re-stamp data.fingerprint and forget.fingerprint in params.yaml, so files changed under
    data.path, or an edited ids file, rerun prepare. Without either there is nothing to stamp,
    and params.yaml is left to the pipeline."""
    from refinery import config as C

    from refinery.resolve import resolve_config, write_params

    params = Path(root) / "params.yaml"
    raw = C.read_yaml(params) if params.exists() else {}
    data = raw.get("data") if isinstance(raw, dict) else None
    forget = raw.get("forget") if isinstance(raw, dict) else None
    by_ids = isinstance(forget, dict) and forget.get("mode") == "ids"
    from refinery.requests.ledger import ledger_path

    if not (isinstance(data, dict) and data.get("path")) and not by_ids and not ledger_path(Path(root)).exists():
        return "no data.path, ids file or deletion ledger: nothing to stamp"
    cfg = resolve_config(Path(root), None, [])
    write_params(Path(root), cfg)
    return f"user data {cfg.data.path}: fingerprint {cfg.data.fingerprint}"


def preset_name(root: str) -> str:
    """The `name` params.yaml records (the preset it came from), for the pipeline's flow run."""
    from refinery import config as C

    params = Path(root) / "params.yaml"
    raw = C.read_yaml(params) if params.exists() else {}
    return str(raw.get("name", "params.yaml")) if isinstance(raw, dict) else "params.yaml"


@flow(name="refinery-nightly", log_prints=True)
def nightly_flow(root: str, purge_retrained: bool = True) -> dict:
    from prefect.concurrency.sync import concurrency

    from .publish import artifact_hashes, publish_served
    from .purge import purge

    logger = get_run_logger()
    pulled = pull(root)
    logger.info("%s", pulled)
    # The workspace lock before params.yaml is re-stamped, held through the pipeline: a command
    # started meanwhile is refused instead of writing under it. The pipeline also holds the `dvc`
    # slot: a sweep in the same workspace waits for it instead of failing on the lock.
    with workspace_lock(Path(root)), concurrency(DVC_LIMIT, occupy=1, strict=True):
        waiting = exact_tonight(root)
        logger.info("deletion requests to retrain exactly: %s", ", ".join(waiting) or "none")
        logger.info("%s", refresh_user_data(root))
        before = artifact_hashes(Path(root))
        table = pipeline_flow(root=root, pipeline=preset_name(root))
        publish_served(Path(root), before)
        if purge_retrained and purge(Path(root)) != 0:
            raise RuntimeError("purge not finished: see its log; the next night retries it")
    pushed = push(root)
    logger.info("%s", pushed)
    return {"pull": pulled, "stages": table, "push": pushed}


def serve(root: Path, name: str, cron: str | None = None, interval: float | None = None) -> None:
    """Serve the nightly flow as deployment `refinery-nightly/NAME` until interrupted; the
    runner starts each scheduled run in a subprocess."""
    from tasks.gpu import ensure_limit

    ensure_limit(DVC_LIMIT, 1)
    # limit=1: a night's run that overruns delays the next instead of racing it for the workspace.
    nightly_flow.serve(name=name, cron=cron, interval=interval, parameters={"root": str(root)}, limit=1)


def deploy(root: Path, name: str, pool: str, cron: str | None) -> str:
    """Register the nightly flow on process work pool `pool` (created when missing)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    source = nightly_flow.from_source(source=str(FLOW_SOURCE), entrypoint=ENTRYPOINT)
    # to_deployment + apply rather than flow.deploy: deploy also lists the pool's workers, a call
    # this Prefect client / server pair rejects (422: null `limit`), and it needs no image anyway.
    deployment = source.to_deployment(name=name, work_pool_name=pool, cron=cron, parameters={"root": str(root)})
    return str(deployment.apply(work_pool_name=pool))
