"""Process set-up that must happen before prefect is imported.

Prefect reads its settings once, when it is first imported: a setting put in the environment
afterwards silently does not apply. So the CLI parses its arguments and calls `configure` first,
and imports every module that imports prefect (flows.pipeline, tasks.entry, ...) only after it.
This module imports nothing heavy.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path


def find_root(start: Path | None = None) -> Path:
    """The project root: the nearest folder upwards holding dvc.yaml (else the cwd).
    (tasks.common.find_root is the same for stage code; this one loads no torch.)"""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").exists():
            return folder
    return here


def configure(root: Path) -> None:
    """Keep Prefect's home (its SQLite database, results and state) inside the project, local and
    quiet; let a temporary server take its time to start on a busy machine; send refinery's own
    log lines (epochs, accuracies, unlearning scores) to the run's logs in Prefect."""
    os.environ.setdefault("PREFECT_HOME", str(root / ".prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_API_HOST", "127.0.0.1")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "refinery")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("TQDM_MININTERVAL", "1")
    logging.getLogger("refinery").setLevel(logging.INFO)
    # DVC prints its own lock-file chatter; Prefect would log it a second time.
    logging.getLogger("dvc").setLevel(logging.WARNING)


def use_project_server(root: Path) -> str | None:
    """Point this process (and the `refinery stage` processes DVC starts from it) at the project's
    running Prefect server, unless PREFECT_API_URL already names one. Returns the API URL in use,
    or None: then Prefect starts a temporary server in this process, with the settings above."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    from .server import find_server

    state = find_server(root)
    if state:
        os.environ["PREFECT_API_URL"] = state["api_url"]
        return state["api_url"]
    return None
