"""Zarr checkpoints and Parquet tables round-trip bit-exactly; damage and failures are caught."""
import numpy as np
import pandas as pd
import pytest
import torch

from refinery.store import (ArtifactError, atomic_path, load_checkpoint, read_arrays, read_table,
                            save_checkpoint, write_arrays, write_table)


def tensors():
    g = torch.Generator().manual_seed(0)
    return {"layer.weight": torch.randn(7, 5, generator=g), "layer.bias": torch.randn(5, generator=g).double(),
            "half": torch.randn(3, generator=g).bfloat16(), "count": torch.tensor(42),
            "mask": torch.tensor([True, False])}


def bits(t: torch.Tensor) -> bytes:
    t = t.reshape(-1).contiguous()
    return t.view(torch.uint8).numpy().tobytes() if t.dtype != torch.bool else t.numpy().tobytes()


@pytest.mark.parametrize("packed", [False, True])
def test_checkpoint_round_trip_is_bit_exact(tmp_path, packed):
    original = tensors()
    digest = save_checkpoint(tmp_path / "m.zarr", original, {"backbone": "x"}, step=3, packed=packed)
    loaded, attrs = load_checkpoint(tmp_path / "m.zarr")
    assert attrs["content_hash"] == digest and attrs["step"] == 3 and attrs["arch"] == {"backbone": "x"}
    for name, value in original.items():
        assert loaded[name].dtype == value.dtype and loaded[name].shape == value.shape
        assert bits(loaded[name]) == bits(value), name


def test_checkpoint_has_one_array_per_tensor(tmp_path):
    save_checkpoint(tmp_path / "m.zarr", tensors(), {})
    arrays, _ = read_arrays(tmp_path / "m.zarr")
    assert set(arrays) == set(tensors())


def test_flipped_byte_is_detected(tmp_path):
    save_checkpoint(tmp_path / "m.zarr", {"w": torch.randn(64)}, {}, packed=False)
    chunk = next(p for p in (tmp_path / "m.zarr" / "w").rglob("*") if p.is_file() and p.name != "zarr.json")
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="m.zarr"):
        load_checkpoint(tmp_path / "m.zarr")


def test_failed_write_keeps_previous_version(tmp_path):
    write_arrays(tmp_path / "a.zarr", {"x": np.arange(10)})
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "a.zarr") as tmp:
            write_arrays(tmp, {"x": np.zeros(3)})
            raise RuntimeError("disk full")
    data, _ = read_arrays(tmp_path / "a.zarr")
    assert np.array_equal(data["x"], np.arange(10))
    assert [p.name for p in tmp_path.iterdir()] == ["a.zarr"]


def test_sharded_arrays_are_few_files(tmp_path):
    write_arrays(tmp_path / "a.zarr", {"x": np.random.rand(5000, 8).astype(np.float32)}, chunk_rows=256)
    files = [p for p in (tmp_path / "a.zarr").rglob("*") if p.is_file()]
    assert len(files) <= 3  # group + array metadata + one shard


def test_parquet_round_trip_and_missing_file(tmp_path):
    frame = pd.DataFrame({"sample_id": np.arange(5), "split": list("ttvvt"), "forget": [True, False] * 2 + [True]})
    write_table(tmp_path / "t.parquet", frame)
    pd.testing.assert_frame_equal(read_table(tmp_path / "t.parquet"), frame)
    with pytest.raises(ArtifactError, match="nope.parquet: file not found"):
        read_table(tmp_path / "nope.parquet")
