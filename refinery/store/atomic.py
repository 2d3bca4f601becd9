"""Atomic writes: build the artifact beside its destination, then rename it into place.

A reader sees either the previous version or the new one, never a half-written one, even if the
writing process is killed at any instant.

A file is replaced by one rename. A directory cannot be, so its swap is a short journal of
renames, each of which leaves a state that `recover` can finish:

    1. build     .NAME.tmp-<pid>-<id>     (incomplete: removed on recovery)
    2. complete  -> .NAME.new-<pid>-<id>  (complete: from here on recovery rolls forward)
    3. aside     NAME -> .NAME.old-<pid>-<id>
    4. place     .NAME.new-... -> NAME
    5. clean     remove .NAME.old-...

`recover(dest)` runs before every write and every open of `dest`. For each journal entry whose
writer is no longer alive, it removes an incomplete build, finishes a complete one (moving the
current version aside first), and removes what a finished swap left behind. Entries of a live
writer are left alone, so a reader never interferes with a write in progress.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator

STEPS = ("complete", "aside", "place", "clean")


def _step(name: str) -> None:
    """A point between two renames of a directory swap (tests stop the process here)."""


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _journal(dest: Path) -> dict[str, dict[str, Path]]:
    """{tag: {kind: path}} of the swap entries beside `dest` whose writer has died."""
    entries: dict[str, dict[str, Path]] = {}
    prefix = f".{dest.name}."
    with contextlib.suppress(FileNotFoundError):
        for path in dest.parent.iterdir():
            kind, _, tag = path.name.removeprefix(prefix).partition("-")
            if not path.name.startswith(prefix) or kind not in ("tmp", "new", "old") or not tag:
                continue
            pid = tag.split("-")[0]
            if pid.isdigit() and not _alive(int(pid)):
                entries.setdefault(tag, {})[kind] = path
    return entries


def recover(dest: Path | str) -> None:
    """Finish or undo any directory swap at `dest` that a killed writer left half done."""
    dest = Path(dest)
    entries = _journal(dest)
    for tag in sorted(entries, key=lambda t: min(p.lstat().st_mtime for p in entries[t].values())):
        parts = entries[tag]
        if "tmp" in parts:
            _remove(parts["tmp"])  # never completed
        if "new" in parts:  # completed: roll forward
            old = parts.get("old") or dest.with_name(f".{dest.name}.old-{tag}")
            if dest.exists() and not parts.get("old"):
                os.replace(dest, old)
            os.replace(parts["new"], dest)
            _fsync_dir(dest.parent)
            _remove(old)
        elif "old" in parts:
            if dest.exists():
                _remove(parts["old"])  # the swap finished; only its cleanup was cut short
            else:
                os.replace(parts["old"], dest)  # nothing newer to place: roll back


def _swap_dir(tmp: Path, dest: Path, tag: str) -> None:
    new, old = dest.with_name(f".{dest.name}.new-{tag}"), dest.with_name(f".{dest.name}.old-{tag}")
    os.replace(tmp, new)
    _fsync_dir(dest.parent)
    _step("complete")
    had_old = dest.exists()
    if had_old:
        os.replace(dest, old)
    _step("aside")
    os.replace(new, dest)
    _fsync_dir(dest.parent)
    _step("place")
    if had_old:
        _remove(old)
    _step("clean")


@contextlib.contextmanager
def atomic_path(dest: Path | str) -> Iterator[Path]:
    """Yield a temporary sibling path; on success it replaces `dest` (file or directory).

    On any exception the temporary is removed and `dest` is left untouched."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    recover(dest)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = dest.with_name(f".{dest.name}.tmp-{tag}")
    try:
        yield tmp
        if tmp.is_dir() and not tmp.is_symlink():
            _swap_dir(tmp, dest, tag)
        else:
            os.replace(tmp, dest)
            _fsync_dir(dest.parent)
    except OSError as exc:
        if exc.filename:
            raise
        # a write deep inside a library (a zarr chunk) fails without a path: name the artifact
        raise OSError(exc.errno, exc.strerror or str(exc), str(dest)) from exc
    finally:
        _remove(tmp)


def write_bytes(dest: Path | str, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def write_text(dest: Path | str, text: str) -> None:
    write_bytes(dest, text.encode())
