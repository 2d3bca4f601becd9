"""What `refinery run` records in Prefect: refinery's own log lines inside the task run of their
stage, the run's preset and overrides on the flow run, and one task run per stage whatever DVC
decided for it (ran, restored from the run cache, or skipped). Real CLI, real DVC, the session's
Prefect server."""
import json
import urllib.request
import uuid

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId, LogFilter
from prefect.client.schemas.filters import LogFilterFlowRunId
from prefect.client.schemas.sorting import FlowRunSort, LogSort, TaskRunSort
from prefect.settings import PREFECT_API_URL, temporary_settings

from tasks.stages import STAGE_NAMES
from tests.project import copy_run, run

pytestmark = pytest.mark.flow


def pipeline_runs(api: str, project) -> list:
    """The refinery-pipeline flow runs recorded for `project`, oldest first."""
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["refinery-pipeline"])),
                                     sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=200)
    return [r for r in runs if r.parameters.get("root") == str(project)]


def task_runs(api: str, flow_run) -> dict:
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])),
                                     sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=50)
    return {t.name: t for t in runs}


def logs(api: str, flow_run) -> list:
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        return client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])), limit=200, offset=0,
                                 sort=LogSort.TIMESTAMP_ASC)


def artifact_keys(api: str, flow_run) -> set:
    """Keys of the flow run's artifacts (the REST call: this client sends fields the server refuses)."""
    body = {"artifacts": {"flow_run_id": {"any_": [str(flow_run.id)]}}, "limit": 100, "offset": 0,
            "sort": "CREATED_DESC"}
    request = urllib.request.Request(f"{api}/artifacts/filter", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return {a["key"] for a in json.load(response)}


def copy_of(smoke_project, tmp_path):
    dest = tmp_path / f"copy-{uuid.uuid4().hex[:6]}"
    copy_run(smoke_project, dest)
    return dest


def test_stage_log_lines_are_in_prefect_under_their_task_run(smoke_project, shared_server):
    flow_run = pipeline_runs(shared_server, smoke_project)[0]  # the fixture's run (others may follow)
    assert flow_run.state.is_completed()
    assert flow_run.parameters["pipeline"] == "smoke" and flow_run.parameters["overrides"] == []
    assert flow_run.parameters["forget"]["mode"] and "pipeline:smoke" in flow_run.tags
    stage_of = {t.id: name for name, t in task_runs(shared_server, flow_run).items()}
    lines = [(stage_of.get(line.task_run_id), line.message) for line in logs(shared_server, flow_run)
             if line.name == "refinery"]
    assert any(stage == "teacher" and "epoch 1/" in message for stage, message in lines), lines
    assert any(stage == "evaluate" and " acc 0." in message for stage, message in lines), lines
    assert any(stage == "unlearn" and " UA " in message for stage, message in lines), lines
    # every training run's progress artifact, the random-teacher control's too (its name has an underscore)
    keys = artifact_keys(shared_server, flow_run)
    assert {"teacher-progress", "upcycle-progress", "distill-student-progress", "distill-random-teacher-progress",
            "pipeline-stages"} <= keys, keys


def test_every_stage_is_a_task_run_when_all_are_skipped_or_restored(smoke_project, shared_server, tmp_path):
    project = copy_of(smoke_project, tmp_path)
    out = run(project, "refinery", "run").stdout
    assert "up to date" in out and "up to date, skipped: " + ", ".join(STAGE_NAMES) in out, out
    (skipped,) = pipeline_runs(shared_server, project)
    tasks = task_runs(shared_server, skipped)
    assert sorted(tasks) == sorted(STAGE_NAMES)
    assert {t.state.type.value for t in tasks.values()} == {"COMPLETED"}
    assert {t.state.name for t in tasks.values()} == {"Skipped"}, {n: t.state.name for n, t in tasks.items()}

    # evaluate with other params, then back: the second time DVC's run cache has the result
    run(project, "refinery", "run", "--set", "evaluate.ece_bins=7")
    out = run(project, "refinery", "run", "--set", "evaluate.ece_bins=15").stdout
    assert "to run (or restore from DVC's run cache): evaluate" in out, out
    assert "restored from DVC's run cache: evaluate" in out, out
    _, changed, restored = pipeline_runs(shared_server, project)
    assert changed.parameters["overrides"] == ["evaluate.ece_bins=7"]
    states = {name: t.state.name for name, t in task_runs(shared_server, restored).items()}
    assert states == dict.fromkeys(STAGE_NAMES[:-1], "Skipped") | {"evaluate": "Restored"}, states
    assert {name: t.state.name for name, t in task_runs(shared_server, changed).items()}["evaluate"] == "Completed"
