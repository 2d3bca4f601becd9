"""Everything read from disk is validated before it is trusted: checkpoint attrs are inside the
content hash, declared shapes and dtypes must match the stored arrays, a declared size must be
backed by bytes on disk, and a Parquet table carries a hash of its values."""
import json
import time

import numpy as np
import pandas as pd
import pytest
import torch
import zarr

import refinery.store.arrays as arrays_module
from refinery.store import (ArtifactError, load_checkpoint, read_arrays, read_table, save_checkpoint,
                            table_metadata, write_arrays, write_table)


def edit_bytes(meta_path, old: str, new: str) -> None:
    """Replace `old` by `new` (same length: a byte edit, not a rewrite) exactly once."""
    raw = meta_path.read_bytes()
    assert len(old) == len(new) and raw.count(old.encode()) == 1, (old, raw[:400])
    meta_path.write_bytes(raw.replace(old.encode(), new.encode()))


# --------------------------------------------------------------------------- 1. attrs in the hash
ATTR_EDITS = {
    "arch": ('"heads": 2', '"heads": 4'),
    "step": ('"step": 7', '"step": 9'),
    "extra": ('"lr": 0.5', '"lr": 0.9'),
    "shapes": ("[\n        2,\n        3\n      ]", "[\n        3,\n        2\n      ]"),
    "packed": ('"packed": false', '"packed": true '),
}


@pytest.mark.parametrize("field", sorted(ATTR_EDITS))
def test_a_one_byte_edit_of_checkpoint_attrs_is_refused(tmp_path, field):
    path = tmp_path / "m.zarr"
    save_checkpoint(path, {"w": torch.randn(2, 3), "b": torch.randn(3)}, {"heads": 2}, step=7, extra={"lr": 0.5})
    load_checkpoint(path)
    edit_bytes(path / "zarr.json", *ATTR_EDITS[field])
    with pytest.raises(ArtifactError, match=r"m\.zarr.*(attr|hash)") as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)


def test_an_edit_of_a_packed_layout_is_refused(tmp_path):
    """Two float32 tensors of 3 values packed in one array: swapping their declared shapes
    would swap their values."""
    path = tmp_path / "m.zarr"
    save_checkpoint(path, {"a": torch.zeros(3), "b": torch.ones(1, 3)}, {}, packed=True)
    edit_bytes(path / "zarr.json", '"a": [\n        3\n      ]', '"a": [\n        1\n      ]')
    with pytest.raises(ArtifactError, match=r"m\.zarr"):
        load_checkpoint(path)


def test_an_attr_edit_fails_even_a_read_of_no_arrays(tmp_path):
    """`read_arrays(path, [])` (attrs only, as evaluate reads the prepared split) checks them too."""
    path = tmp_path / "a.zarr"
    write_arrays(path, {"x": np.arange(4)}, {"num_classes": 10})
    edit_bytes(path / "zarr.json", '"num_classes": 10', '"num_classes": 11')
    with pytest.raises(ArtifactError, match=r"a\.zarr"):
        read_arrays(path, [])


def test_the_hash_covers_attrs_but_not_itself(tmp_path):
    tensors = {"w": torch.ones(3)}
    h1 = save_checkpoint(tmp_path / "a.zarr", tensors, {"heads": 2})
    h2 = save_checkpoint(tmp_path / "b.zarr", tensors, {"heads": 4})
    assert h1 != h2
    assert json.loads((tmp_path / "a.zarr" / "zarr.json").read_text())["attributes"]["content_hash"] == h1
    assert load_checkpoint(tmp_path / "a.zarr")[1]["content_hash"] == h1


def test_a_group_written_before_attrs_were_hashed_is_refused(tmp_path):
    path = tmp_path / "m.zarr"
    save_checkpoint(path, {"w": torch.ones(3)}, {"heads": 2})
    meta = json.loads((path / "zarr.json").read_text())
    del meta["attributes"]["hash_scheme"]
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=r"m\.zarr: written before its attrs were hashed.*rerun"):
        load_checkpoint(path)


# --------------------------------------------------------------------------- 2. forged shapes and dtypes
def forged_checkpoint(path, arrays, dtypes, shapes, packed=False):
    """A checkpoint whose hash is right but whose attrs lie about its arrays (a writer bug, or a
    forger who recomputed the hash): the layout checks must stand on their own."""
    attrs = {"format": "refinery.checkpoint/1", "arch": {}, "dtypes": dtypes, "shapes": shapes, "step": 0,
             "extra": {}, "packed": packed}
    write_arrays(path, arrays, attrs)


@pytest.fixture
def chunk_reads(monkeypatch):
    """Every chunk read (array indexing) made while the test runs."""
    real, reads = zarr.Array.__getitem__, []
    monkeypatch.setattr(zarr.Array, "__getitem__", lambda self, key: reads.append(self.path) or real(self, key))
    return reads


FORGERIES = {
    "shape reshaped into": ({"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, {"w": "float32"}, {"w": [3, 2]},
                            False, r"w.*\(2, 3\).*\(3, 2\)"),
    "bfloat16 over float64": ({"w": np.random.default_rng(0).random(3)}, {"w": "bfloat16"}, {"w": [3]}, False,
                              r"w.*float64.*uint16"),
    "missing tensor": ({"w": np.zeros(3, np.float32)}, {"w": "float32", "b": "float32"}, {"w": [3], "b": [3]},
                       False, r"missing.*'b'"),
    "extra packed array": ({"packed_float32": np.zeros(3, np.float32), "packed_int8": np.zeros(2, np.int8)},
                           {"a": "float32"}, {"a": [3]}, True, r"unexpected.*'packed_int8'"),
    "packed array too long": ({"packed_float32": np.zeros(5, np.float32)}, {"a": "float32"}, {"a": [3]}, True,
                              r"packed_float32.*\(5,\).*\(3,\)"),
    "packed under the wrong dtype": ({"packed_float64": np.zeros(3)}, {"a": "float32"}, {"a": [3]}, True,
                                     r"'packed_float64'"),
    "dtype not a name": ({"w": np.zeros(3, np.float32)}, {"w": ["float32"]}, {"w": [3]}, False, "unsupported dtype"),
    "negative size": ({"w": np.zeros(3, np.float32)}, {"w": "float32"}, {"w": [-1]}, False, "not a list of sizes"),
    "packed not a bool": ({"w": np.zeros(3, np.float32)}, {"w": "float32"}, {"w": [3]}, "no", "packed is 'no'"),
}


@pytest.mark.parametrize("case", sorted(FORGERIES))
def test_attrs_that_lie_about_the_arrays_are_refused_before_any_chunk_is_read(tmp_path, case, chunk_reads):
    arrays, dtypes, shapes, packed, message = FORGERIES[case]
    forged_checkpoint(tmp_path / "m.zarr", arrays, dtypes, shapes, packed)
    with pytest.raises(ArtifactError, match=r"m\.zarr.*" + message):
        load_checkpoint(tmp_path / "m.zarr")
    assert chunk_reads == []


def test_an_edited_array_dtype_is_refused_before_any_chunk_is_read(tmp_path, chunk_reads):
    path = tmp_path / "m.zarr"
    save_checkpoint(path, {"w": torch.randn(4)}, {})
    edit_bytes(path / "w" / "zarr.json", '"data_type": "float32"', '"data_type": "int32"  ')
    with pytest.raises(ArtifactError, match=r"m\.zarr.*w.*int32.*float32"):
        load_checkpoint(path)
    assert chunk_reads == []


# --------------------------------------------------------------------------- 3. memory bombs
BOMB = 200_000_000  # float64 elements: 1.6 GB declared over 1 KB of chunk data


def declare(array_dir, shape, chunk_shape=None, inner_shape=None):
    """Rewrite an array's zarr.json to declare `shape` (and chunk shapes); the chunk files stay."""
    meta = json.loads((array_dir / "zarr.json").read_text())
    meta["shape"] = shape
    if chunk_shape:
        meta["chunk_grid"]["configuration"]["chunk_shape"] = chunk_shape
    if inner_shape:
        meta["codecs"][0]["configuration"]["chunk_shape"] = inner_shape
    (array_dir / "zarr.json").write_text(json.dumps(meta))


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "a.zarr"
    write_arrays(path, {"x": np.random.default_rng(0).random(128), "y": np.arange(3)})
    return path


@pytest.mark.parametrize("chunks", ["grid of missing chunks", "one huge chunk"])
def test_a_declared_size_far_beyond_the_bytes_on_disk_is_refused_at_once(small, chunks, chunk_reads):
    if chunks == "one huge chunk":  # one chunk file, whose index points at 1 KB for 1.6 GB
        declare(small / "x", [BOMB], [BOMB], [BOMB])
    else:  # 1.6 million chunks, of which one is on disk
        declare(small / "x", [BOMB])
    started = time.perf_counter()
    with pytest.raises(ArtifactError, match=r"a\.zarr/x: declares .*1600000000 bytes") as err:
        read_arrays(small)
    assert time.perf_counter() - started < 5 and chunk_reads == []
    assert "\n" not in str(err.value)
    assert read_arrays(small, ["y"])[0]["y"].tolist() == [0, 1, 2]  # a partial read of the rest is fine


def test_a_consistent_forgery_of_a_huge_tensor_is_refused(tmp_path, chunk_reads):
    """Attrs (hash recomputed) and array metadata agree on 2e8 elements in one chunk; it holds 128."""
    path = tmp_path / "m.zarr"
    forged_checkpoint(path, {"w": np.zeros(128)}, {"w": "float64"}, {"w": [BOMB]})
    declare(path / "w", [BOMB], [BOMB], [BOMB])
    with pytest.raises(ArtifactError, match=r"m\.zarr/w: declares"):
        load_checkpoint(path)
    assert chunk_reads == []


def test_a_chunk_grid_beyond_the_chunk_files_is_refused(small):
    """A few KB declared in a million 1-element chunks: small in memory, but a million reads."""
    declare(small / "y", [1_000_000], [1], [1])
    with pytest.raises(ArtifactError, match=r"a\.zarr/y: declares 1000000 chunk files but 1 is on disk"):
        read_arrays(small)


def test_one_read_is_capped_in_all(small, monkeypatch):
    monkeypatch.setattr(arrays_module, "MAX_READ_BYTES", 1000)
    with pytest.raises(ArtifactError, match=r"a\.zarr: the arrays to read declare 1048 bytes in all, over MAX_READ"):
        read_arrays(small)
    assert read_arrays(small, ["y"])[0]["y"].tolist() == [0, 1, 2]


def test_a_read_failure_is_one_line_naming_the_file_and_the_error(small, monkeypatch):
    def out_of_memory(self, key):
        raise MemoryError()

    monkeypatch.setattr(zarr.Array, "__getitem__", out_of_memory)
    with pytest.raises(ArtifactError, match=r"a\.zarr/x: unreadable chunk data: MemoryError$"):
        read_arrays(small, ["x"])


# --------------------------------------------------------------------------- 4. Parquet tables
def small_frame() -> pd.DataFrame:
    return pd.DataFrame({"sample_id": np.arange(6), "split": list("ttvvtx"),
                         "margin": [0.5, np.nan, -1.25, 3.0, 0.0, 2.0],
                         "forget": [True, False, True, False, False, True]})


def same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    try:
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    except AssertionError:
        return False
    return True


def test_every_single_bit_flip_in_a_table_is_refused_or_harmless(tmp_path):
    """Flip one bit of every byte in turn (bit i % 8 of byte i): each read raises ArtifactError
    or returns exactly the values written, never other values, never another exception."""
    path, frame = tmp_path / "t.parquet", small_frame()
    write_table(path, frame, {"stage": "unlearn"})
    raw, wrong = path.read_bytes(), []
    for i in range(len(raw)):
        damaged = bytearray(raw)
        damaged[i] ^= 1 << (i % 8)
        path.write_bytes(bytes(damaged))
        try:
            ok = same(read_table(path), frame)
        except ArtifactError as exc:
            ok = "t.parquet" in str(exc) and "\n" not in str(exc)
        except Exception as exc:  # noqa: BLE001 -- any other exception is a finding
            ok, exc_name = False, type(exc).__name__
            wrong.append(f"byte {i}: {exc_name}")
            continue
        if not ok:
            wrong.append(f"byte {i}: other values read without error")
    assert wrong == [], f"{len(wrong)} of {len(raw)} flips: {wrong[:5]}"


def test_a_table_round_trips_exactly_with_its_hash(tmp_path):
    frame = small_frame().assign(label=pd.array([1, None, 3, 4, None, 6], dtype="Int64"),
                                 when=pd.date_range("2024-01-01", periods=6, freq="h"),
                                 kind=pd.Categorical(list("abcabc")), note=["x", None, "", "y", "z", None])
    write_table(tmp_path / "t.parquet", frame, {"seed": 3})
    assert same(read_table(tmp_path / "t.parquet"), frame)
    assert same(read_table(tmp_path / "t.parquet", columns=["split", "margin"]), frame[["split", "margin"]])
    assert table_metadata(tmp_path / "t.parquet") == {"seed": 3}


def test_an_edit_of_a_table_is_refused_with_its_path(tmp_path):
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    write_table(path, small_frame(), {"seed": 3})
    table = pq.read_table(path)  # keeps the stored hash in its schema metadata
    pq.write_table(table.set_column(2, "margin", table.column("margin").fill_null(9.0)), path)
    with pytest.raises(ArtifactError, match=r"t\.parquet: content hash mismatch"):
        read_table(path)
    with pytest.raises(ArtifactError, match=r"t\.parquet: content hash mismatch"):
        table_metadata(path)


def test_a_table_without_a_hash_is_read_as_before(tmp_path):
    """Tables written by pandas (as tests and users do for a forget request) carry no hash."""
    small_frame().to_parquet(tmp_path / "t.parquet")
    assert same(read_table(tmp_path / "t.parquet"), small_frame())
