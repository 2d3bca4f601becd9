"""Caches outside DVC's outputs (resume states, reusable intermediate results under .refinery/):
an entry that cannot be read is dropped and recomputed, never a reason for a run to fail."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Callable, TypeVar

from .arrays import ArtifactError
from .atomic import recover

log = logging.getLogger("refinery")
T = TypeVar("T")


def read_cache(path: Path | str, load: Callable[[Path], T]) -> T | None:
    """The cache entry (a Zarr group) at `path` read by `load`, or None when there is none. One
    that cannot be read (corrupt, truncated, forged: its content hash or structure does not
    check out) is removed with a warning naming it, and the caller recomputes it."""
    path = Path(path)
    recover(path)  # a write cut short by a kill: finish or undo it first
    if not (path / "zarr.json").exists():
        return None
    try:
        return load(path)
    except (ArtifactError, KeyError, ValueError, TypeError, OSError) as exc:
        log.warning("cache entry %s is unreadable (%s): removed; recomputing it", path, exc)
        shutil.rmtree(path, ignore_errors=True)
        return None
