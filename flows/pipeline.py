"""Prefect flows: the whole pipeline (DVC-consistent) and a single stage (what dvc.yaml calls)."""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.states import Completed, State

from tasks.entry import run_stage, stage_task

from .dvc_runner import reproduce

# How a stage the pipeline did not run shows in Prefect: a completed task run with this state name.
STATE_NAMES = {"skipped": "Skipped", "restored": "Restored", "ran": "Completed"}
MESSAGES = {"skipped": "up to date (dvc.lock matches its code, params and inputs): skipped",
            "restored": "restored from DVC's run cache: this exact run was done before",
            "ran": "ran"}


@flow(name="refinery-stage", flow_run_name="stage-{name}", log_prints=True)
def stage_flow(name: str, root: str, pipeline: str | None = None) -> str:
    """Run one stage; `dvc repro` calls this through `refinery stage NAME`."""
    return stage_task(name)(root)


def stage_step(root: str, name: str, work: Callable[[], str]) -> str:
    """One task run per stage, whatever DVC decides: `work()` skips, restores or runs it, and the
    task run ends in a state named for what it did."""
    done: list[str] = []

    def decide_and_do(root: str) -> State:
        done.append(work())
        return Completed(name=STATE_NAMES[done[0]], message=MESSAGES[done[0]])

    stage_task(name, body=decide_and_do)(root, return_state=True).result()  # raises if the stage failed
    return done[0]


@flow(name="refinery-pipeline", flow_run_name="run-{pipeline}", log_prints=True)
def pipeline_flow(root: str, force: bool = False, pipeline: str = "params.yaml", overrides: list[str] | None = None,
                  forget: dict | None = None) -> list[dict]:
    """Run every stage that DVC says is out of date, in order, and record each in dvc.lock.
    `pipeline`, `overrides` and `forget` (the preset, the --set overrides and the active forget
    request) are recorded with the flow run; the stages read them from params.yaml."""
    logger = get_run_logger()
    outcomes = reproduce(Path(root), partial(run_stage, root=root), force=force, step=partial(stage_step, root))
    table = [{"stage": o.name, "action": o.action} for o in outcomes]
    create_table_artifact(table, key="pipeline-stages", description="What this pipeline run did per stage")
    logger.info("pipeline: %s", ", ".join(f"{o.name}={o.action}" for o in outcomes))
    return table
