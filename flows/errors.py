"""Which errors a refinery command states in one line (exit 2, or 3 for a busy workspace) instead
of a traceback: the user's (a bad config, data, request or artifact) and the machine's refusals
(disk full, no permission). Imports only the standard library: the CLI reads it before prefect."""
from __future__ import annotations

import errno
import importlib
import logging
import sys

# The errors a user can fix: one line on stderr and exit code 2, no traceback.
USER_ERROR_TYPES = {"refinery.config": "ConfigError", "refinery.data.base": "DataSourceError",
                    "refinery.data.forget": "ForgetRequestError", "refinery.store.arrays": "ArtifactError",
                    "refinery.train": "TrainingDiverged", "flows.report_cli": "ReportError"}
# What the machine refuses (disk full, file too large, read-only, no permission): one line, exit 2.
MACHINE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


class NoTracebackForOneLineErrors(logging.Filter):
    """Prefect logs a failed run's exception with its traceback; for an error `main` states in
    one line, the traceback is noise (the run's state in Prefect still names the error)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None and one_line(record.exc_info[1]) is not None:
            record.exc_info, record.exc_text = None, None
        return True


def quiet_one_line_errors() -> None:
    """Put the filter on every handler Prefect's logging set up (call after prefect is imported)."""
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in list(logging.Logger.manager.loggerDict)
                                      if name.startswith("prefect"))]
    for handler in {h for lg in loggers for h in lg.handlers}:
        if not any(isinstance(f, NoTracebackForOneLineErrors) for f in handler.filters):
            handler.addFilter(NoTracebackForOneLineErrors())


class UsageError(Exception):
    """A command used in a way that cannot work (one line, exit code 2)."""


def user_errors() -> tuple[type, ...]:
    """The user-error classes of the modules loaded so far: an error of a module that was never
    imported cannot have been raised, and importing one here would cost seconds."""
    loaded = (getattr(sys.modules[m], name) for m, name in USER_ERROR_TYPES.items() if m in sys.modules)
    return (UsageError, FileNotFoundError, *loaded)


def all_user_errors() -> tuple[type, ...]:
    """Every user-error class (imports their modules)."""
    for module in USER_ERROR_TYPES:
        importlib.import_module(module)
    return user_errors()


def one_line(exc: BaseException) -> tuple[int, str] | None:
    """(exit code, the line to print) for an error stated in one line; None for a bug."""
    busy = sys.modules.get("flows.dvc_runner")
    if busy is not None and isinstance(exc, busy.WorkspaceBusy):
        return 3, str(exc)
    if isinstance(exc, user_errors()):
        return 2, str(exc)
    if isinstance(exc, OSError) and exc.errno in MACHINE_ERRNOS:
        return 2, f"{exc.filename or 'a file'}: {exc.strerror}"
    return None
