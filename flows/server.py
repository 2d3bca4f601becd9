"""The project's own Prefect server: `refinery ui` (for as long as it runs) and `refinery server
start` (until `refinery server stop`).

While it is up, `.prefect/server.json` holds its URL and process id, and every refinery command
in the project (also the `refinery stage` calls of `dvc repro` and `dvc exp run`) sends its runs
there instead of starting a temporary server of its own, which costs 12-20 s a process. A state
file whose process is gone, or whose server does not answer, is ignored (and removed when the
process is gone). This module imports nothing heavy: the CLI reads it before prefect loads.
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

STATE = "server.json"
START_TIMEOUT = 180  # seconds; a busy 2-core machine has taken over a minute


def state_file(root: Path) -> Path:
    return root / ".prefect" / STATE


def owning_projects(root: Path) -> list[Path]:
    """`root`, and the project above it when `root` is one of DVC's experiment copies
    (`dvc exp run --queue` runs each in `<project>/.dvc/tmp/exps/...`)."""
    parts = root.parts
    for i in range(1, len(parts) - 3):
        if parts[i:i + 3] == (".dvc", "tmp", "exps"):
            return [root, Path(*parts[:i])]
    return [root]


def alive(pid: int) -> bool:
    """Whether process `pid` runs (an exited one nobody has reaped yet, a zombie, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): trust kill(0)


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    """Whether the Prefect server at `api_url` (the project's own, normally on 127.0.0.1)
    answers its health probe: one GET of /health, nothing fetched beyond the status."""
    parts = urllib.parse.urlsplit(f"{api_url}/health")
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        connection.request("GET", parts.path)
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def read_state(root: Path) -> dict | None:
    try:
        return json.loads(state_file(root).read_text())
    except (OSError, ValueError):
        return None


def find_server(root: Path) -> dict | None:
    """The running project server of `root` ({"api_url", "ui_url", "pid", "keep", ...}), or None."""
    for project in owning_projects(root):
        state = read_state(project)
        if not state:
            continue
        if not alive(int(state.get("pid", 0))):
            state_file(project).unlink(missing_ok=True)  # its process is gone: stale
            continue
        if healthy(state["api_url"]):
            return state
    return None


def server_env(root: Path, host: str, port: int) -> dict[str, str]:
    """The server's environment: the project's Prefect home, a UI that calls its own port, and
    concurrency leases kept on disk (under the Prefect home), so that a restarted server still
    knows who holds a slot and frees it when that holder's lease runs out; Prefect's default keeps
    them in memory, and a restart then leaves every held slot counted for good."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.setdefault("PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE", "prefect.server.concurrency.lease_storage.filesystem")
    env.update(PREFECT_HOME=str(root / ".prefect"), PREFECT_SERVER_API_HOST=host, PREFECT_SERVER_API_PORT=str(port),
               PREFECT_UI_API_URL=f"http://{host}:{port}/api", PREFECT_UI_URL=f"http://{host}:{port}",
               PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return env


def die_with_parent() -> None:
    """preexec_fn: the kernel sends SIGTERM to the server when its parent (`refinery ui`) dies,
    even by SIGKILL, so a foreground server never outlives the command that owns it."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: no such call
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def launch(root: Path, host: str, port: int, keep: bool, log: Path | None = None) -> subprocess.Popen:
    """Start `prefect server start` in its own session (its own process group, so stopping it
    stops every process it started). `keep`: detached, output to .prefect/server.log; otherwise
    it dies with this process, its output to `log` (default: this process's)."""
    (root / ".prefect").mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]
    log = root / ".prefect" / "server.log" if keep else log
    out = open(log, "w") if log else None  # noqa: SIM115  the server writes it
    try:
        return subprocess.Popen(cmd, env=server_env(root, host, port), stdout=out,
                                stderr=subprocess.STDOUT if out else None, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=None if keep else die_with_parent)
    finally:
        if out:
            out.close()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_temporary(root: Path) -> str:
    """Start a Prefect server for this command alone and return its API URL. It is stopped at
    interpreter exit, after Prefect's own exit handlers (registered later, so run earlier) have
    sent the last states and logs to it. It runs in a session of its own, so a terminal's Ctrl-C
    reaches the command but not the server, and the command can still report its interrupted
    flow run; if the command is killed outright, the kernel stops the server (PR_SET_PDEATHSIG)."""
    host, port = "127.0.0.1", free_port()
    log = root / ".prefect" / f"server-{os.getpid()}.log"
    proc = launch(root, host, port, keep=False, log=log)

    def stop() -> None:
        # its runs are reported by now; SQLite survives a hard stop, so waiting long for a
        # graceful one only delays the command's exit (Ctrl-C must end it within seconds)
        stop_process(proc.pid, timeout=2)
        log.unlink(missing_ok=True)

    atexit.register(stop)
    wait_healthy(proc, f"http://{host}:{port}/api", log)
    return f"http://{host}:{port}/api"


def wait_healthy(proc: subprocess.Popen, api_url: str, log: Path | None) -> None:
    deadline = time.time() + START_TIMEOUT
    while time.time() < deadline:
        if healthy(api_url, timeout=1):
            return
        if proc.poll() is not None:
            tail = log.read_text()[-1500:] if log and log.exists() else "(its output is above)"
            raise RuntimeError(f"the Prefect server exited with code {proc.returncode} before answering:\n{tail}")
        time.sleep(0.5)
    stop_process(proc.pid)
    raise RuntimeError(f"the Prefect server did not answer at {api_url} within {START_TIMEOUT} s")


def write_state(root: Path, proc: subprocess.Popen, host: str, port: int, keep: bool) -> dict:
    state = {"api_url": f"http://{host}:{port}/api", "ui_url": f"http://{host}:{port}", "pid": proc.pid,
             "keep": keep, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    path = state_file(root)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(path)
    return state


def stop_process(pid: int, timeout: float = 30) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever is left after `timeout`."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + wait
        while time.time() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:  # our child: reap it
                    return
            except ChildProcessError:  # not our child (`refinery server stop`): poll for it
                if not alive(pid):
                    return
            time.sleep(0.2)


def start(root: Path, host: str, port: int, keep: bool) -> tuple[dict, subprocess.Popen]:
    proc = launch(root, host, port, keep)
    try:
        wait_healthy(proc, f"http://{host}:{port}/api", root / ".prefect" / "server.log" if keep else None)
    except BaseException:
        stop_process(proc.pid)
        raise
    return write_state(root, proc, host, port, keep), proc


def stop(root: Path) -> dict | None:
    """Stop the running project server; returns its state, or None when none was running."""
    state = read_state(root)
    if not state:
        return None
    if alive(int(state["pid"])):
        stop_process(int(state["pid"]))
    state_file(root).unlink(missing_ok=True)
    return state


def serve_foreground(root: Path, host: str, port: int, announce) -> int:
    """`refinery ui`: run the server until Ctrl-C or SIGTERM, then stop it and its state file."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    proc = None
    try:
        state, proc = start(root, host, port, keep=False)
        announce(state)
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if proc is not None:
            stop_process(proc.pid)
            if (read_state(root) or {}).get("pid") == proc.pid:
                state_file(root).unlink(missing_ok=True)
        signal.signal(signal.SIGTERM, previous)
