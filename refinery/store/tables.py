"""Parquet tables (zstd) and JSON documents, both written atomically."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .arrays import ArtifactError
from .atomic import atomic_path, recover, write_text


def write_table(dest: Path | str, frame: pd.DataFrame, metadata: dict[str, Any] | None = None) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if metadata:
        meta = dict(table.schema.metadata or {})
        meta[b"refinery"] = json.dumps(metadata, sort_keys=True).encode()
        table = table.replace_schema_metadata(meta)
    with atomic_path(dest) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_table(path: Path | str, columns: list[str] | None = None) -> pd.DataFrame:
    path = Path(path)
    recover(path)
    if not path.exists():
        raise ArtifactError(f"{path}: file not found; run the stage that writes it")
    try:
        return pq.read_table(path, columns=columns).to_pandas()
    except (pa.ArrowInvalid, OSError) as exc:
        raise ArtifactError(f"{path}: unreadable Parquet: {exc}") from None


def table_metadata(path: Path | str) -> dict[str, Any]:
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(b"refinery", b"{}"))


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
