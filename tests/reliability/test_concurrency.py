"""Two pipelines in one workspace: the second fails fast with a clear message and touches nothing.
The Prefect server binds to loopback unless told otherwise."""
import hashlib
import os

from flows.dvc_runner import locked_repo
from tests.project import copy_project, run


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def test_second_run_fails_fast_while_the_first_holds_the_workspace(tmp_path, shared_server):
    project = copy_project(tmp_path)
    before = {p: digest(project / p) for p in ("params.yaml", "dvc.lock")}
    with locked_repo(project):  # stands in for a pipeline that is running right now
        proc = run(project, "refinery", "run", check=False)
    assert proc.returncode == 3
    assert "holds this workspace's DVC lock" in proc.stderr and "Traceback" not in proc.stderr
    assert {p: digest(project / p) for p in before} == before
    assert not (project / "data" / "prepared" / "arrays.zarr").exists()


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
