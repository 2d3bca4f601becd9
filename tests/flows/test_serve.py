"""`refinery serve` serves the nightly flow as a scheduled deployment: the session's Prefect
server schedules a run, the served runner executes it, and the server records it completed.
The project is a toy DVC pipeline that is already up to date, so the run only checks (no
remote to pull from or push to, every stage skipped): seconds, not minutes."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort
from prefect.settings import PREFECT_API_URL, temporary_settings

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.flow


def toy_project(root: Path) -> Path:
    (root / "dvc.yaml").write_text("stages:\n  first:\n    cmd: echo $RANDOM > out.txt\n    params: [a]\n"
                                   "    outs: [out.txt]\n")
    (root / "params.yaml").write_text("a: 1\n")
    for cmd in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"], [str(BIN / "dvc"), "repro", "-q"],
                ["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "toy"]):
        subprocess.run(cmd, cwd=root, check=True, capture_output=True)
    return root


def completed_runs(api: str, deployment: str) -> list:
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment])),
                                      sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=20)
    return [r for r in runs if r.state and r.state.is_completed()], runs


def test_served_deployment_runs_on_schedule(prefect_api, tmp_path):
    project = toy_project(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_API_URL=prefect_api, PREFECT_HOME=str(tmp_path / ".prefect"),
               PREFECT_RUNNER_POLL_FREQUENCY="2", PATH=f"{BIN}{os.pathsep}{env['PATH']}")
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115  the served process writes it
    serve = subprocess.Popen([str(BIN / "refinery"), "serve", "--interval", "5", "--name", "toy-nightly"],
                             cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    started = time.time()
    try:
        done, runs = [], []
        while time.time() - started < 180 and not done:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(2)
            done, runs = completed_runs(prefect_api, "toy-nightly")
        assert done, f"no completed run in 180 s: {[(r.name, r.state_name) for r in runs]}\n" + \
            (tmp_path / "serve.log").read_text()[-3000:]
        print(f"first scheduled run completed {time.time() - started:.1f}s after serve started")
    finally:
        os.killpg(serve.pid, signal.SIGINT)  # the runner pauses the schedule on a clean shutdown
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
        log.close()
    with temporary_settings({PREFECT_API_URL: prefect_api}), get_client(sync_client=True) as client:
        deployment = client.read_deployment(done[0].deployment_id)
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[done[0].id])),
                                      sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=50)
    assert deployment.parameters == {"root": str(project)}
    done = {t.name.rsplit("-", 1)[0] for t in tasks if t.state and t.state.is_completed()}
    assert {"dvc-pull", "deletion-requests", "dvc-push"} <= done


@pytest.mark.parametrize("args", [["serve", "--interval", "60"], ["deploy", "--pool", "nightly-pool"]],
                         ids=["serve", "deploy"])
def test_serve_and_deploy_without_a_server_say_how_to_start_one(tmp_path, args):
    """No project server and no PREFECT_API_URL: a temporary server would take the schedule or the
    deployment with it when the command ends, so both stop at once and say what to run."""
    project = toy_project(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path / ".prefect")
    started = time.time()
    proc = subprocess.run([str(BIN / "refinery"), *args], cwd=project, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "refinery server start" in proc.stderr and "PREFECT_API_URL" in proc.stderr, proc.stderr
    assert time.time() - started < 60 and not (tmp_path / ".prefect" / "server.json").exists()
