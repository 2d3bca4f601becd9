"""A stage runs as a Prefect flow whose task run is recorded by the server, with its tags."""
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.sorting import TaskRunSort
from prefect.settings import PREFECT_API_URL, temporary_settings

from refinery.resolve import resolve_config, write_params
from flows.pipeline import stage_flow
from tests.project import copy_project


@pytest.fixture
def api(prefect_api):
    with temporary_settings({PREFECT_API_URL: prefect_api}):
        yield prefect_api


def test_prepare_stage_is_a_recorded_flow_run(api, tmp_path):
    project = copy_project(tmp_path)
    write_params(project, resolve_config(project, "smoke", []))
    state = stage_flow(name="prepare", root=str(project), return_state=True)
    assert state.is_completed()
    assert (project / "data" / "prepared" / "arrays.zarr" / "zarr.json").exists()
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(state.state_details.flow_run_id)
        assert flow_run.name == "stage-prepare"
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])),
                                          sort=TaskRunSort.EXPECTED_START_TIME_DESC, limit=10)
    assert [t.name for t in task_runs] == ["prepare"]
    assert {"stage", "prepare"} <= set(task_runs[0].tags)
    assert task_runs[0].state.is_completed()
