"""Helpers for tests that run the real project: a throwaway copy of it, driven through the real
CLI, with a real Prefect server and real DVC. Nothing is mocked."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path


PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TIMING_KEYS = {"latency_ms", "throughput", "seconds", "train_seconds"}


def copy_project(dest: Path) -> Path:
    """Copy the working tree (tracked and untracked-but-not-ignored files) into a fresh git repo."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                           cwd=PROJECT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = PROJECT / name
        generated = name == "dvc.lock" or (name.startswith("data/") and not name.endswith(".gitignore"))
        if src.is_file() and not generated:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        subprocess.run(cmd, cwd=dest, check=True)
    return dest


def copy_run(source: Path, dest: Path) -> Path:
    """A copy of a finished run of the project (data, caches, dvc.lock), without its Prefect home."""
    shutil.copytree(source, dest, symlinks=True, ignore=shutil.ignore_patterns(".prefect"))
    return dest


API_URL: dict[str, str] = {}  # set by the session's Prefect server fixture


def command_env(project: Path) -> dict[str, str]:
    """The environment of a project command: the virtualenv first on PATH, the project's Prefect
    home, and the session's Prefect server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PREFECT_HOME"] = str(project / ".prefect")
    env.update({"PREFECT_API_URL": API_URL["url"]} if API_URL else {})
    return env


def start(project: Path, *args: str) -> subprocess.Popen:
    """Start a project command in a session of its own (so a test can signal its whole group)."""
    return subprocess.Popen([str(BIN / args[0]), *args[1:]], cwd=project, env=command_env(project),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def run(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a project command (refinery, dvc, ...) from the virtualenv, inside `project`,
    recording its flow runs on the session's Prefect server."""
    proc = subprocess.run([str(BIN / args[0]), *args[1:]], cwd=project, env=command_env(project),
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def metrics(project: Path) -> dict:
    return json.loads((project / "data" / "reports" / "metrics.json").read_text())


def details(project: Path) -> dict:
    """What the report keeps beside the DVC metrics: per-model cost and wall-clock times."""
    return json.loads((project / "data" / "reports" / "details.json").read_text())


def without_timings(obj):
    if isinstance(obj, dict):
        return {k: without_timings(v) for k, v in obj.items() if k not in TIMING_KEYS and "seconds" not in k}
    return obj
