"""Session-wide fixtures. One real Prefect server (SQLite, loopback) serves every flow and
end-to-end test, so each CLI call connects to it instead of starting a server of its own."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from refinery.runtime import configure_cpu  # noqa: E402

configure_cpu()  # before torch loads, as the CLI does

import pytest  # noqa: E402

from flows.server import healthy  # noqa: E402
from tests.project import API_URL, copy_project, copy_run, run  # noqa: E402

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory) -> str:
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false")
    log = open(home / "server.log", "w")  # noqa: SIM115  the server writes it until the session ends
    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.time() + 120
    while time.time() < deadline:
        if healthy(url):
            break
        if server.poll() is not None:
            raise RuntimeError(f"Prefect server exited: {(home / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    else:
        server.kill()
        raise RuntimeError("Prefect server did not become healthy within 120 s")
    yield url
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


@pytest.fixture(scope="session")
def shared_server(prefect_api):
    """Point every CLI call made through tests.project.run at the session's Prefect server."""
    API_URL["url"] = prefect_api
    yield prefect_api


@pytest.fixture
def smoke_copy(smoke_project, tmp_path) -> Path:
    """A private copy of the session's smoke run, for a test that changes it."""
    return copy_run(smoke_project, tmp_path / "project")


@pytest.fixture(scope="session")
def smoke_project(tmp_path_factory, shared_server) -> Path:
    """One `refinery run --pipeline smoke` in a copy of the project, shared by the session."""
    project = copy_project(tmp_path_factory.mktemp("smoke"))
    run(project, "refinery", "run", "--pipeline", "smoke")
    return project
