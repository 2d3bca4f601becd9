"""A checkpoint can carry data, never code: loading never unpickles, and forged metadata is refused."""
import json
import pickle

import numpy as np
import pytest
import torch
import zarr

from refinery.store import ArtifactError, load_checkpoint, save_checkpoint


class Boom:
    def __reduce__(self):
        return (exec, ("raise SystemExit('pickle payload executed')",))


@pytest.fixture
def no_unpickling(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint load tried to unpickle")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(torch, "load", refuse)


def test_pickle_bytes_inside_an_array_stay_inert_bytes(tmp_path, no_unpickling):
    payload = torch.from_numpy(np.frombuffer(pickle.dumps(Boom()), dtype=np.uint8).copy())
    save_checkpoint(tmp_path / "m.zarr", {"w": torch.randn(3), "blob": payload}, {})
    tensors, _ = load_checkpoint(tmp_path / "m.zarr")
    assert torch.equal(tensors["blob"], payload)


def test_pickle_in_attrs_is_only_a_string(tmp_path, no_unpickling):
    save_checkpoint(tmp_path / "m.zarr", {"w": torch.randn(3)}, {"evil": pickle.dumps(Boom()).hex()})
    _, attrs = load_checkpoint(tmp_path / "m.zarr")
    assert isinstance(attrs["arch"]["evil"], str)


def forge(path, **changes):
    meta_path = path / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"].update(changes)
    meta_path.write_text(json.dumps(meta))


def test_forged_dtype_is_refused(tmp_path, no_unpickling):
    save_checkpoint(tmp_path / "m.zarr", {"w": torch.randn(3)}, {})
    forge(tmp_path / "m.zarr", dtypes={"w": "object"})
    with pytest.raises(ArtifactError, match="m.zarr"):
        load_checkpoint(tmp_path / "m.zarr")


def test_unexpected_array_is_refused(tmp_path, no_unpickling):
    save_checkpoint(tmp_path / "m.zarr", {"w": torch.randn(3)}, {})
    group = zarr.open_group(str(tmp_path / "m.zarr"), mode="a")
    group.create_array("extra", shape=(1,), dtype="uint8")
    with pytest.raises(ArtifactError, match="m.zarr"):
        load_checkpoint(tmp_path / "m.zarr")


def test_not_a_checkpoint_is_refused(tmp_path):
    (tmp_path / "m.zarr").mkdir()
    (tmp_path / "m.zarr" / "weights.pt").write_bytes(pickle.dumps({"w": 1}))
    with pytest.raises(ArtifactError, match="not a Zarr group"):
        load_checkpoint(tmp_path / "m.zarr")
    forge_path = tmp_path / "n.zarr"
    save_checkpoint(forge_path, {"w": torch.randn(2)}, {})
    forge(forge_path, format="torch.save")
    with pytest.raises(ArtifactError, match="not a refinery checkpoint"):
        load_checkpoint(forge_path)


def test_project_never_calls_unsafe_loaders():
    from tests.project import PROJECT

    offenders = []
    for folder in ("refinery", "tasks", "flows"):
        for path in (PROJECT / folder).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if ("torch.load(" in line and "weights_only=True" not in line) or "pickle.loads(" in line:
                    offenders.append(f"{path.relative_to(PROJECT)}:{number}")
    assert offenders == []


def test_image_folder_entries_escaping_the_root_are_refused(tmp_path):
    from PIL import Image

    from refinery.data import DataSourceError, load_source

    root, outside = tmp_path / "root", tmp_path / "outside"
    for folder in (root / "a", root / "b", outside):
        folder.mkdir(parents=True)
    for i, folder in enumerate((root / "a", root / "b", outside)):
        Image.fromarray(np.full((4, 4), i * 60, dtype=np.uint8)).save(folder / "0.png")
    (root / "b" / "escape.png").symlink_to(outside / "0.png")
    with pytest.raises(DataSourceError, match="escape.png: leads outside"):
        load_source("imagefolder", path=root)
    (root / "b" / "escape.png").unlink()
    (root / "c").symlink_to(root / ".." / "outside")
    with pytest.raises(DataSourceError, match="leads outside"):
        load_source("imagefolder", path=root)


def test_cifar_batch_with_a_code_payload_is_refused_without_running_it(tmp_path):
    from refinery.data import DataSourceError, load_source

    good = pickle.dumps({b"data": np.zeros((1, 3072), dtype=np.uint8), b"labels": [0]}, protocol=2)
    for name in ("data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
        (tmp_path / name).write_bytes(good)
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({"data": Boom(), "labels": [0]}, protocol=2))
    with pytest.raises(DataSourceError, match="data_batch_1"):
        load_source("cifar10", path=tmp_path)
