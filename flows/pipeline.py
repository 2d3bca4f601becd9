"""Prefect flows: the whole pipeline (DVC-consistent) and a single stage (what dvc.yaml calls)."""
from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from tasks.entry import stage_task

from .dvc_runner import reproduce


@flow(name="refinery-stage", flow_run_name="stage-{name}", log_prints=True)
def stage_flow(name: str, root: str) -> str:
    """Run one stage; `dvc repro` calls this through `refinery stage NAME`."""
    return stage_task(name)(root)


@flow(name="refinery-pipeline", log_prints=True)
def pipeline_flow(root: str, force: bool = False) -> list[dict]:
    """Run every stage that DVC says is out of date, in order, and record each in dvc.lock."""
    logger = get_run_logger()
    outcomes = reproduce(Path(root), lambda name: stage_task(name)(root), force=force)
    table = [{"stage": o.name, "action": o.action} for o in outcomes]
    create_table_artifact(table, key="pipeline-stages", description="What this pipeline run did per stage")
    logger.info("pipeline: %s", ", ".join(f"{o.name}={o.action}" for o in outcomes))
    return table
