"""Two pipelines in one workspace: the second fails fast with a clear message and touches nothing.
The Prefect server binds to loopback unless told otherwise."""
import hashlib
import os
import subprocess
import time

from flows.dvc_runner import locked_repo
from tests.project import API_URL, BIN, copy_project, run


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def test_second_run_fails_fast_while_the_first_holds_the_workspace(tmp_path, shared_server):
    project = copy_project(tmp_path)
    before = {p: digest(project / p) for p in ("params.yaml", "dvc.lock")}
    with locked_repo(project):  # stands in for a pipeline that is running right now
        proc = run(project, "refinery", "run", check=False)
    assert proc.returncode == 3
    assert "another refinery or dvc command" in proc.stderr and "Traceback" not in proc.stderr
    assert {p: digest(project / p) for p in before} == before
    assert not (project / "data" / "prepared" / "arrays.zarr").exists()


def test_two_runs_started_together_one_works_the_other_is_refused_at_once(smoke_copy):
    """Both change a param of the unlearn stage; whichever takes the workspace lock first runs,
    the other says so in one line within seconds, exit 3, and writes nothing."""
    project = smoke_copy
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(project / ".prefect"), PREFECT_API_URL=API_URL["url"])
    started = time.monotonic()
    procs = [subprocess.Popen([str(BIN / "refinery"), "run", "--set", f"unlearn.finetune.epochs={n}"], cwd=project,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in (2, 3)]
    ended = {}
    while len(ended) < 2:
        for i, p in enumerate(procs):
            if i not in ended and p.poll() is not None:
                ended[i] = time.monotonic() - started
        time.sleep(0.1)
    outs = [p.communicate() for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 3], outs
    loser = next(i for i, p in enumerate(procs) if p.returncode == 3)
    errors = [line for line in outs[loser][1].splitlines() if line.strip()]
    assert len(errors) == 1 and "another refinery or dvc command" in errors[0], outs[loser]
    assert ended[loser] < 30  # at once, not after starting a server and a flow
    winner_epochs = (2, 3)[1 - loser]  # params.yaml holds the winner's value, not the loser's
    assert f"epochs: {winner_epochs}" in (project / "params.yaml").read_text().split("finetune:")[1][:40]


def test_prefect_binds_loopback_by_default(monkeypatch, tmp_path):
    from flows.cli import build_parser
    from flows.env import configure

    monkeypatch.delenv("PREFECT_SERVER_API_HOST", raising=False)
    for key in ("PREFECT_HOME", "PREFECT_SERVER_ANALYTICS_ENABLED", "PREFECT_LOGGING_EXTRA_LOGGERS",
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "TQDM_MININTERVAL"):
        monkeypatch.setenv(key, os.environ.get(key, "1"))
    configure(tmp_path)
    assert os.environ["PREFECT_SERVER_API_HOST"] == "127.0.0.1"
    monkeypatch.delenv("PREFECT_SERVER_API_HOST")
    assert build_parser().parse_args(["ui"]).host == "127.0.0.1"
