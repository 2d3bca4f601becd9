"""Named numpy arrays in a sharded Zarr v3 group.

The group attrs carry `array_hashes`, a sha256 per array, and `content_hash`, a sha256 of the
canonical JSON of every other attr (the per-array hashes included), so one hash covers the attrs
and the arrays. Opening a group checks its attrs against `content_hash` (cheap: no chunk is read);
a read then checks each array's zarr.json before reading a chunk (the arrays are exactly those
hashed, and declare no more than their chunk files can hold: see MAX_EXPANSION), and the hash of
each array it reads (a partial read too), so an edited attr, a forged shape, a flipped byte or a
lost chunk is caught before anything uses the data. A group written before the attrs were hashed
(no `hash_scheme` attr) is refused: rerun the stage that writes it.

Each array is one shard (one file on disk) of small chunks, so DVC hashes a handful of files
instead of thousands, while readers can still fetch chunks independently.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from .atomic import atomic_path, recover
from .hashing import arrays_hash, attrs_hash

FORMAT = "refinery.arrays/1"
# content_hash = attrs_hash(every attr but itself); the attrs hold `array_hashes`
HASH_SCHEME = "sha256(attrs+array_hashes)/1"
# An array's zarr.json is read before its chunks, and zarr fills a missing chunk with the fill
# value, so a few bytes of metadata could demand gigabytes (2e8 float64 over 1 KB of chunks: 81 s,
# 3.5 GiB). Before reading, an array may declare at most MAX_EXPANSION times the bytes of its chunk
# files plus EXPANSION_SLACK (zstd packs zeros far tighter than 64x, so small arrays get the slack;
# a 5,000-label int64 column was 163x), no chunk file may be missing (write_arrays writes every
# chunk, empty ones too), and one read may declare at most MAX_READ_BYTES in all.
MAX_EXPANSION = 64
EXPANSION_SLACK = 256 << 20
MAX_READ_BYTES = 32 << 30


class ArtifactError(RuntimeError):
    """An artifact on disk is missing, corrupted or not what the reader expects."""


def _chunking(shape: tuple[int, ...], chunk_rows: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if not shape:
        return (), ()
    rows = max(1, min(chunk_rows, shape[0]))
    chunks = (rows, *shape[1:])
    shard_rows = max(rows, -(-shape[0] // rows) * rows)
    return chunks, (shard_rows, *shape[1:])


def write_arrays(dest: Path | str, arrays: Mapping[str, np.ndarray], attrs: dict[str, Any] | None = None,
                 chunk_rows: int = 1024, compress: bool = True) -> str:
    """Atomically write `arrays` as a Zarr v3 group at `dest` with group attrs `attrs`; return
    the content hash recorded in the attrs. Chunks are zstd-compressed unless `compress` is off."""
    per_array = {name: arrays_hash({name: value}) for name, value in arrays.items()}
    attrs = {"format": FORMAT, **json.loads(json.dumps(attrs or {})), "hash_scheme": HASH_SCHEME,
             "array_hashes": per_array}
    digest = attrs["content_hash"] = attrs_hash(attrs)
    with atomic_path(dest) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        # One metadata write: `attrs.update` would rewrite zarr.json once per key (8 writes, 13 ms).
        group.update_attributes(attrs)
        for name, value in arrays.items():
            value = np.ascontiguousarray(value)
            chunks, shards = _chunking(value.shape, chunk_rows)
            kwargs = dict(chunks=chunks, shards=shards) if value.ndim else {}
            arr = group.create_array(name, shape=value.shape, dtype=value.dtype,
                                     compressors=ZstdCodec(level=3) if compress else None,
                                     config={"write_empty_chunks": True}, **kwargs)
            arr[...] = value
    return digest


def open_unverified(path: Path | str) -> zarr.Group:
    """Open a group read-only; its attrs are not checked yet (see `verify_attrs`)."""
    path = Path(path)
    recover(path)  # finish a directory swap that a killed writer left half done
    if not (path / "zarr.json").exists():
        raise ArtifactError(f"{path}: not a Zarr group (missing zarr.json); run the stage that writes it")
    try:
        return zarr.open_group(str(path), mode="r", zarr_format=3)
    except Exception as exc:  # zarr raises several types for damaged metadata
        raise ArtifactError(f"{path}: unreadable Zarr group: {why(exc)}") from None


def open_group(path: Path | str) -> zarr.Group:
    """Open a group read-only, its attrs verified against its content hash (no chunk is read)."""
    group = open_unverified(path)
    verify_attrs(path, dict(group.attrs))
    return group


def verify_attrs(path: Path | str, attrs: dict[str, Any]) -> None:
    """Refuse attrs that do not hash to their `content_hash`, or were written before attrs were hashed."""
    scheme = attrs.get("hash_scheme")
    if scheme is None:
        raise ArtifactError(f"{path}: written before its attrs were hashed (no hash_scheme); "
                            "delete it and rerun the stage that writes it")
    if scheme != HASH_SCHEME:
        raise ArtifactError(f"{path}: unknown hash_scheme {str(scheme)[:80]!r}; expected {HASH_SCHEME!r}")
    try:
        digest = attrs_hash(attrs)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ArtifactError(f"{path}: attrs cannot be hashed: {why(exc)}") from None
    if not isinstance(attrs.get("array_hashes"), dict) or attrs.get("content_hash") != digest:
        raise ArtifactError(f"{path}: attrs do not match the content hash; "
                            "zarr.json was edited or corrupted")


def why(exc: BaseException) -> str:
    """One line saying what went wrong, never empty (a MemoryError has no message)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _differ(found: set[str], expected: set[str]) -> str:
    """'' if the sets agree, else what is missing and what is unexpected, names quoted."""
    return "; ".join(f"{kind} {', '.join(repr(n) for n in sorted(names)[:10])}"
                     for kind, names in (("missing", expected - found), ("unexpected", found - expected)) if names)


def _array_keys(group: zarr.Group, path: Path | str) -> list[str]:
    """The group's array names; listing parses every array's zarr.json (a forged codec fails here)."""
    try:
        return sorted(group.array_keys())
    except Exception as exc:
        raise ArtifactError(f"{path}: unreadable array metadata: {why(exc)}") from None


def _array(group: zarr.Group, path: Path | str, name: str) -> zarr.Array:
    """The array's metadata (its zarr.json); no chunk is read."""
    try:
        arr = group[name]
    except Exception as exc:
        raise ArtifactError(f"{path}/{name}: unreadable array metadata: {why(exc)}") from None
    if not isinstance(arr, zarr.Array):
        raise ArtifactError(f"{path}/{name}: not an array")
    return arr


def _check_arrays(group: zarr.Group, path: Path | str, names: list[str],
                  layout: Mapping[str, tuple[tuple[int, ...], str]] | None) -> dict[str, zarr.Array]:
    """Check the group's arrays against its attrs (and `layout`) before any chunk is read: the
    arrays on disk are exactly those hashed (and laid out), each with the laid-out shape and dtype."""
    found = set(_array_keys(group, path))
    for what, expected in (("the hashed arrays", set(group.attrs["array_hashes"])),
                           ("the declared layout", None if layout is None else set(layout)),
                           ("the arrays asked for", found | set(names))):
        if expected is not None and (wrong := _differ(found, expected)):
            raise ArtifactError(f"{path}: the arrays on disk do not match {what}: {wrong}")
    arrays, total = {name: _array(group, path, name) for name in names}, 0
    for name, arr in arrays.items():
        shape, dtype = layout[name] if layout is not None else (arr.shape, arr.dtype)
        if tuple(arr.shape) != tuple(shape) or str(arr.dtype) != str(dtype):
            raise ArtifactError(f"{path}/{name}: stored as {tuple(arr.shape)} {arr.dtype} but the attrs declare "
                                f"{tuple(shape)} {dtype}")
        total += _check_size(arr, path, name)
    if total > MAX_READ_BYTES:
        raise ArtifactError(f"{path}: the arrays to read declare {total} bytes in all, over MAX_READ_BYTES "
                            f"({MAX_READ_BYTES}) of refinery.store.arrays")
    return arrays


def _check_size(arr: zarr.Array, path: Path | str, name: str) -> int:
    """Refuse an array whose zarr.json declares more than its chunk files can hold (see MAX_EXPANSION)."""
    files = [p for p in (Path(path) / name).rglob("*") if p.is_file() and p.name != "zarr.json"]
    on_disk = sum(p.stat().st_size for p in files)
    declared = math.prod(arr.shape) * arr.dtype.itemsize
    bound = MAX_EXPANSION * on_disk + EXPANSION_SLACK
    if declared > bound:
        raise ArtifactError(f"{path}/{name}: declares {tuple(arr.shape)} {arr.dtype}, {declared} bytes, over "
                            f"{on_disk} bytes of chunk files (at most {bound}); its zarr.json is damaged or forged")
    grid = math.prod(-(-n // c) for n, c in zip(arr.shape, arr.metadata.chunk_grid.chunk_shape))
    if grid > len(files):
        raise ArtifactError(f"{path}/{name}: declares {grid} chunk files but {len(files)} "
                            f"{'is' if len(files) == 1 else 'are'} on disk; chunks are missing or zarr.json is damaged")
    return declared


def _read(arr: zarr.Array, path: Path | str, name: str) -> np.ndarray:
    try:
        return arr[...]
    except Exception as exc:
        raise ArtifactError(f"{path}/{name}: unreadable chunk data: {why(exc)}") from None


def read_group(group: zarr.Group, path: Path | str, names: list[str] | None = None,
               layout: Mapping[str, tuple[tuple[int, ...], str]] | None = None) -> dict[str, np.ndarray]:
    """Read `names` (default: every array) of a group whose attrs were verified (`open_group`,
    `verify_attrs`): first check the arrays' metadata (`_check_arrays`; `layout`, {name: (shape,
    dtype)}, says what must be stored), then read each and verify it against its hash."""
    names = names if names is not None else _array_keys(group, path)
    arrays, per_array, out = _check_arrays(group, path, names, layout), group.attrs["array_hashes"], {}
    for name in names:  # each checked as soon as read, so a bad one is dropped before the next is read
        out[name] = _read(arrays[name], path, name)
        if per_array[name] != arrays_hash({name: out[name]}):
            raise ArtifactError(f"{path}: content hash mismatch in {name}; the arrays are corrupted or were modified")
    return out


def read_arrays(path: Path | str, names: list[str] | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Read `names` (default: every array) and verify the attrs and each array read against their hashes."""
    group = open_group(path)
    return read_group(group, path, names), dict(group.attrs)
