"""Process set-up that must happen before prefect is imported."""
from __future__ import annotations

import logging
import os
from pathlib import Path


def configure(root: Path) -> None:
    """Keep Prefect's home (and its SQLite database) inside the project, local and quiet."""
    os.environ.setdefault("PREFECT_HOME", str(root / ".prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_API_HOST", "127.0.0.1")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "refinery")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("TQDM_MININTERVAL", "1")
    logging.getLogger("refinery").setLevel(logging.INFO)
    # DVC prints its own lock-file chatter; Prefect would log it a second time.
    logging.getLogger("dvc").setLevel(logging.WARNING)
