"""Parquet tables (zstd) and JSON documents, both written atomically.

A table carries a sha256 of its content in its Parquet key-value metadata (HASH_KEY): the column
names, every other metadata entry (pandas' and refinery's) and each column's values, taken from
the table as the Parquet reader returns it (see `content_hash`). `read_table` and
`table_metadata` read the whole table and check it, so a flipped bit never reads as other values.
A table without the hash (written by pandas, or by refinery before the hash) is read unchecked.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .arrays import ArtifactError, why
from .atomic import atomic_path, recover, write_text

HASH_KEY = b"refinery.sha256"


def content_hash(table: pa.Table) -> str:
    """sha256 of a table read from Parquet: its row count, column names, metadata (less HASH_KEY),
    and per column its type, the validity of each row and the valid values, so nothing that the
    reader leaves unspecified (the bytes under a null, chunk boundaries) enters the hash."""
    h = hashlib.sha256(f"{table.num_rows}|{json.dumps(table.column_names)}|".encode())
    meta = table.schema.metadata or {}
    for key in sorted(k for k in meta if k != HASH_KEY):
        h.update(b"%d|%s|%d|%s" % (len(key), key, len(meta[key]), meta[key]))
    for name, column in zip(table.column_names, table.columns):
        arr = column.combine_chunks()
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        h.update(f"|{name}|{arr.type}|".encode())
        h.update(pc.is_valid(arr).to_numpy(zero_copy_only=False).tobytes())
        h.update(_values_bytes(arr.drop_null()))
    return h.hexdigest()


def _values_bytes(values: pa.Array) -> bytes:
    """Null-free values as bytes: numbers, booleans and times as numpy bytes, anything else
    (strings, bytes, nested values) as canonical JSON."""
    t = values.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_temporal(t):
        data = values.to_numpy(zero_copy_only=False)
        if data.dtype.kind != "O":
            return data.dtype.str.encode() + b"|" + data.tobytes()
    return b"json|" + json.dumps(values.to_pylist(), sort_keys=True, default=repr).encode()


def write_table(dest: Path | str, frame: pd.DataFrame, metadata: dict[str, Any] | None = None) -> None:
    """Write `frame` atomically, with `metadata` (see `table_metadata`) and its content hash.

    The hash is of the table as written then read back (one extra write and read of a small
    file), so that it is exactly what `read_table` will see."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    if metadata:
        meta[b"refinery"] = json.dumps(metadata, sort_keys=True).encode()
    table = table.replace_schema_metadata(meta)
    with atomic_path(dest) as tmp:
        pq.write_table(table, tmp, compression="zstd")
        meta[HASH_KEY] = content_hash(pq.read_table(tmp)).encode()
        pq.write_table(table.replace_schema_metadata(meta), tmp, compression="zstd")


def _read_checked(path: Path | str) -> pa.Table:
    """The whole table at `path`, checked against its content hash (if it has one)."""
    path = Path(path)
    recover(path)
    if not path.exists():
        raise ArtifactError(f"{path}: file not found; run the stage that writes it")
    try:
        table = pq.read_table(path)
        stored = (table.schema.metadata or {}).get(HASH_KEY)
        digest = content_hash(table) if stored is not None else None
    except Exception as exc:  # pyarrow raises many types for a damaged file
        raise ArtifactError(f"{path}: unreadable Parquet: {why(exc)}") from None
    if stored is not None and stored != digest.encode():
        raise ArtifactError(f"{path}: content hash mismatch; the table is corrupted or was modified, "
                            "rerun the stage that writes it")
    return table


def read_table(path: Path | str, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a table (or `columns` of it) written by `write_table`, checked against its content hash."""
    table = _read_checked(path)
    try:
        return (table if columns is None else table.select(columns)).to_pandas()
    except Exception as exc:  # a damaged table without a hash, or a column that is not there
        raise ArtifactError(f"{path}: unreadable table: {why(exc)}") from None


def table_metadata(path: Path | str) -> dict[str, Any]:
    """The `metadata` a table was written with, checked with the table's content hash."""
    meta = _read_checked(path).schema.metadata or {}
    try:
        return json.loads(meta.get(b"refinery", b"{}"))
    except ValueError as exc:
        raise ArtifactError(f"{path}: unreadable table metadata: {why(exc)}") from None


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(dest: Path | str, obj: Any) -> None:
    write_text(dest, json.dumps(_finite(obj), indent=2, sort_keys=True) + "\n")


def read_json(path: Path | str) -> Any:
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: file not found; run the stage that writes it")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not valid JSON: {exc}") from None
