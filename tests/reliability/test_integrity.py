"""Damaged artifacts are caught by their content hash on load; failed writes lose nothing; a
write killed at any step of a directory swap leaves the old or the new version, complete."""
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import zarr

from refinery.store import (ArtifactError, atomic_path, load_checkpoint, read_arrays, read_table, recover,
                            save_checkpoint, write_arrays, write_table)
from refinery.store.atomic import STEPS


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


def test_partial_read_of_a_damaged_group_is_detected(tmp_path):
    """Reading only "x" checks x's own hash: a flipped byte in x fails even a partial read
    (uncompressed, as resume checkpoints are, so no decompressor notices the damage)."""
    arrays = tmp_path / "arrays.zarr"
    write_arrays(arrays, {"x": np.random.default_rng(0).random((300, 4)).astype(np.float32), "y": np.arange(300)},
                 compress=False)
    chunk = chunk_files(arrays / "x")[0]
    raw = bytearray(chunk.read_bytes())
    raw[100] ^= 0x01  # a data byte (the shard index at the end has a checksum of its own)
    chunk.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="x"):
        read_arrays(arrays, ["x"])
    assert read_arrays(arrays, ["y"])[0]["y"].tolist() == list(range(300))  # y is intact


def test_failure_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    """The failure fires inside the atomic write, after the first array reached the disk."""
    path = tmp_path / "m.zarr"
    save_checkpoint(path, {"w": torch.ones(4)}, {"v": 1})
    real, written = zarr.Group.create_array, []

    def failing_second_array(self, name, **kwargs):
        if written:
            raise OSError("injected: disk full")
        written.append(name)
        return real(self, name, **kwargs)

    monkeypatch.setattr(zarr.Group, "create_array", failing_second_array)
    with pytest.raises(OSError, match="injected"):
        save_checkpoint(path, {"w": torch.zeros(4), "b": torch.zeros(2)}, {"v": 2})
    assert written == ["w"]  # one array was on disk when the write failed
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


KILLED_WRITER = """
import os, sys
import numpy as np
import zarr
import refinery.store.atomic as atomic
from refinery.store import write_arrays

path, step = sys.argv[1], sys.argv[2]
atomic._step = lambda name: os._exit(9) if name == step else None
if step == "build":  # killed while the chunks are being written
    real = zarr.Group.create_array
    zarr.Group.create_array = lambda self, name, **kw: os._exit(9) if name == "y" else real(self, name, **kw)
write_arrays(path, {"x": np.full((100, 3), 2, np.float32), "y": np.full(100, 2)})
"""


@pytest.mark.parametrize("step", ["build", *STEPS])
def test_a_kill_at_any_step_of_a_swap_leaves_one_whole_version(tmp_path, step):
    """kill -9 (os._exit) between any two renames of a directory swap: the next open finds the
    old version or the new one, complete, and nothing is left beside it."""
    path = tmp_path / "a.zarr"
    write_arrays(path, {"x": np.full((100, 3), 1, np.float32), "y": np.full(100, 1)})
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path), step], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    arrays, _ = read_arrays(path)
    version = int(arrays["x"][0, 0])
    assert version == (1 if step == "build" else 2)  # rolled back before completion, forward after
    assert (arrays["x"] == version).all() and (arrays["y"] == version).all()
    assert [p.name for p in tmp_path.iterdir()] == ["a.zarr"]


def test_recovery_leaves_a_live_writer_alone(tmp_path):
    path = tmp_path / "a.zarr"
    write_arrays(path, {"x": np.zeros(3)})
    in_progress = tmp_path / f".a.zarr.new-{os.getppid()}-abcdef12"
    in_progress.mkdir()
    recover(path)
    assert in_progress.exists()
