"""Damaged artifacts are caught by their content hash on load; failed writes lose nothing."""
import numpy as np
import pandas as pd
import pytest
import torch

from refinery.store import (ArtifactError, atomic_path, load_checkpoint, read_arrays, read_table,
                            save_checkpoint, write_arrays, write_table)


def chunk_files(path):
    return [p for p in path.rglob("*") if p.is_file() and p.name != "zarr.json"]


@pytest.fixture
def arrays(tmp_path):
    path = tmp_path / "arrays.zarr"
    write_arrays(path, {"x": np.random.default_rng(0).random((300, 4)).astype(np.float32), "y": np.arange(300)})
    return path


def test_flipped_byte_in_arrays_is_detected(arrays):
    chunk = chunk_files(arrays / "x")[0]
    raw = bytearray(chunk.read_bytes())
    raw[-10] ^= 0x01
    chunk.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="arrays.zarr"):
        read_arrays(arrays)


def test_deleted_chunk_is_detected(arrays):
    chunk_files(arrays / "y")[0].unlink()
    with pytest.raises(ArtifactError, match="arrays.zarr"):
        read_arrays(arrays)


def test_truncated_checkpoint_is_detected(tmp_path):
    save_checkpoint(tmp_path / "m.zarr", {"w": torch.randn(50), "b": torch.randn(3)}, {})
    chunk = chunk_files(tmp_path / "m.zarr" / "w")[0]
    chunk.write_bytes(chunk.read_bytes()[:-7])
    with pytest.raises(ArtifactError, match="m.zarr"):
        load_checkpoint(tmp_path / "m.zarr")


def test_failure_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "m.zarr"
    save_checkpoint(path, {"w": torch.ones(4)}, {"v": 1})
    import refinery.store.arrays as arrays_module

    def failing_update(*args, **kwargs):
        raise OSError("injected: disk full")

    monkeypatch.setattr(arrays_module.np, "ascontiguousarray", failing_update)
    with pytest.raises(OSError, match="injected"):
        save_checkpoint(path, {"w": torch.zeros(4)}, {"v": 2})
    monkeypatch.undo()
    tensors, attrs = load_checkpoint(path)
    assert torch.equal(tensors["w"], torch.ones(4)) and attrs["arch"] == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.zarr"]


def test_failure_while_writing_a_table_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "t.parquet"
    write_table(path, pd.DataFrame({"a": [1, 2]}))
    import pyarrow.parquet as pq

    def failing_write(table, where, **kwargs):
        with open(where, "wb") as fh:
            fh.write(b"PAR1 half a file")
        raise OSError("injected: killed mid-write")

    monkeypatch.setattr(pq, "write_table", failing_write)
    with pytest.raises(OSError, match="injected"):
        write_table(path, pd.DataFrame({"a": [3, 4, 5]}))
    monkeypatch.undo()
    assert read_table(path)["a"].tolist() == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_interrupted_atomic_write_leaves_no_partial_file(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "out.bin") as tmp:
            tmp.write_bytes(b"partial")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
