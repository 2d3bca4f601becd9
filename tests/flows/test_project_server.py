"""The project's own Prefect server: while `refinery server start` keeps it up (or `refinery ui`
runs), every command in the project records there, the `refinery stage` calls of `dvc repro`
too, and none starts a temporary server; `--port` reaches the UI's API URL; `refinery server
stop`, and stopping `refinery ui` by SIGTERM or even SIGKILL, leave no server behind. These
tests start servers of their own: the server is what they test."""
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from flows.server import alive, healthy
from tests.flows.test_pipeline_records import pipeline_runs, task_runs
from tests.project import BIN
from tasks.stages import STAGE_NAMES

pytestmark = pytest.mark.flow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def user_env() -> dict:
    """A user's shell: no Prefect settings at all, the venv on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return dict(env, PATH=f"{BIN}{os.pathsep}{env['PATH']}")


def cli(project, *args) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(BIN / args[0]), *args[1:]], cwd=project, env=user_env(), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"{args}: {proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def ui_api_url(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ui-settings", timeout=10) as response:
        return json.load(response)["api_url"]


def port_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def project(smoke_copy):
    return smoke_copy


def test_server_start_is_used_by_every_command_until_stop(project):
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    cli(project, "refinery", "server", "start", "--port", str(port))
    state = json.loads((project / ".prefect" / "server.json").read_text())
    try:
        assert state["api_url"] == api and alive(state["pid"])
        assert ui_api_url(port) == api  # the UI calls the API on its own port, not 4200
        assert f"127.0.0.1:{port}" in cli(project, "refinery", "server", "status").stdout
        run = cli(project, "refinery", "run")
        assert f"recording in the server at {api}" in run.stdout, run.stdout
        assert "temporary server" not in run.stdout + run.stderr
        (flow_run,) = pipeline_runs(api, project)
        assert sorted(task_runs(api, flow_run)) == sorted(STAGE_NAMES)
        repro = cli(project, "dvc", "repro", "--force", "--single-item", "evaluate")
        assert "temporary server" not in repro.stdout + repro.stderr, repro.stdout + repro.stderr
        assert "evaluate" in task_runs_of_stage_flows(api)
    finally:
        cli(project, "refinery", "server", "stop")
    assert not alive(state["pid"]) and not (project / ".prefect" / "server.json").exists()
    assert port_closed(port)
    assert "no project server" in subprocess.run([str(BIN / "refinery"), "server", "status"], cwd=project,
                                                 env=user_env(), capture_output=True, text=True).stdout


def task_runs_of_stage_flows(api: str) -> set:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["refinery-stage"])),
                                     sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=20)
    return {r.parameters["name"] for r in runs if r.state and r.state.is_completed()}


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_stopping_ui_stops_its_server(project, how):
    port = free_port()
    log = open(project / "ui.log", "w")  # noqa: SIM115  the ui writes it until it stops
    ui = subprocess.Popen([str(BIN / "refinery"), "ui", "--port", str(port)], cwd=project, env=user_env(),
                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    state_file = project / ".prefect" / "server.json"
    server_pid = None
    try:
        deadline = time.time() + 180
        while not (state_file.exists() and healthy(f"http://127.0.0.1:{port}/api")):
            assert ui.poll() is None and time.time() < deadline, (project / "ui.log").read_text()[-3000:]
            time.sleep(0.5)
        server_pid = json.loads(state_file.read_text())["pid"]
        assert ui_api_url(port) == f"http://127.0.0.1:{port}/api"
        ui.send_signal(how)  # to refinery ui alone, not its process group
        ui.wait(timeout=60)
        deadline = time.time() + 60
        while alive(server_pid) and time.time() < deadline:
            time.sleep(0.5)
        assert not alive(server_pid), f"server {server_pid} outlived refinery ui ({how.name})"
        assert port_closed(port)
        if how == signal.SIGTERM:
            assert ui.returncode == 0 and not state_file.exists()
            assert "Prefect server stopped" in (project / "ui.log").read_text()
    finally:
        if ui.poll() is None:
            os.killpg(ui.pid, signal.SIGKILL)
        if server_pid and alive(server_pid):  # a failed check must not leave a server behind either
            os.killpg(server_pid, signal.SIGKILL)
        log.close()


def test_a_stale_state_file_is_ignored_and_removed(tmp_path):
    from flows.server import find_server, state_file

    gone = subprocess.Popen(["true"])
    gone.wait()
    state_file(tmp_path).parent.mkdir()
    state_file(tmp_path).write_text(json.dumps({"api_url": f"http://127.0.0.1:{free_port()}/api", "pid": gone.pid}))
    assert find_server(tmp_path) is None
    assert not state_file(tmp_path).exists()


def test_dvc_experiment_copies_find_their_projects_server(tmp_path):
    from flows.server import owning_projects

    copy = tmp_path / "proj" / ".dvc" / "tmp" / "exps" / "standalone" / "tmpabc"
    assert owning_projects(copy) == [copy, tmp_path / "proj"]
    assert owning_projects(tmp_path / "proj") == [tmp_path / "proj"]
