"""Storage: Zarr arrays and checkpoints, Parquet tables, JSON metrics, atomic writes."""
from .arrays import ArtifactError, open_group, read_arrays, write_arrays
from .atomic import atomic_path, recover, write_text
from .checkpoint import load_checkpoint, packed_checkpoint, save_checkpoint
from .hashing import path_hash
from .tables import read_json, read_table, table_metadata, write_json, write_table

__all__ = [
    "ArtifactError", "atomic_path", "load_checkpoint", "open_group", "packed_checkpoint", "path_hash", "read_arrays",
    "read_json", "read_table", "recover", "save_checkpoint", "table_metadata", "write_arrays", "write_json",
    "write_table", "write_text",
]
