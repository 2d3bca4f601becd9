"""The prepare stage on user data: an .npz with a published test split, resolved relative to
the project root; bad data fails with one DataSourceError line and writes nothing."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from refinery import config as C
from refinery.data import DataSourceError, load_prepared
from tasks.common import Workspace
from tasks.prepare import prepare


def workspace(tmp_path, data: dict) -> Workspace:
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    cfg = C.validate({"data": data, "forget": {"mode": "fraction", "fraction": 0.1}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(C.to_dict(cfg)))
    return Workspace(tmp_path)


def test_npz_with_published_split(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "user.npz", x=rng.normal(size=(60, 1, 12)), y=np.arange(60) % 3,
             x_test=rng.normal(size=(9, 1, 12)), y_test=np.arange(9) % 3)
    ws = workspace(tmp_path, {"source": "npz", "path": "user.npz", "split": "published"})
    prepare(ws)
    data = load_prepared(ws.stage_dir("prepare") / "arrays.zarr")
    assert len(data.test) == 9 and data.num_classes == 3 and data.in_shape == (1, 12)


def test_bad_data_writes_nothing(tmp_path):
    x = np.zeros((30, 1, 4))
    x[7, 0, 2] = np.nan
    np.savez(tmp_path / "user.npz", x=x, y=np.arange(30) % 3)
    ws = workspace(tmp_path, {"source": "npz", "path": "user.npz"})
    with pytest.raises(DataSourceError, match=r"user.npz: inputs contain NaN .*sample 7"):
        prepare(ws)
    assert not ws.stage_dir("prepare").exists() or not any(ws.stage_dir("prepare").iterdir())


def test_ledger_requests_are_kept_apart_then_gone_and_copies_left_out(tmp_path, caplog):
    from refinery.requests import add_event, record
    from refinery.store import open_group, read_table

    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 1, 6)).astype(np.float32)
    np.savez(tmp_path / "user.npz", x=x, y=np.arange(60) % 3)
    ws = workspace(tmp_path, {"source": "npz", "path": "user.npz"})
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["forget"]["exact"] = True
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    prepare(ws)
    index = read_table(ws.stage_dir("prepare") / "index.parquet")
    chosen = index[index["split"] == "train"].iloc[:2]
    record(tmp_path, chosen["sample_key"].tolist(), chosen["content"].tolist(), {"ids_file": "a.csv"})
    prepare(ws)
    out = ws.stage_dir("prepare")
    index = read_table(out / "index.parquet")
    apart = index[index["split"] == "forgotten"]
    assert sorted(apart["sample_key"]) == sorted(chosen["sample_key"]) and (apart["sample_id"] >= 58).all()
    assert open_group(out / "forgotten.zarr")["x"].shape[0] == 2 and open_group(out / "arrays.zarr")["x"].shape[0] == 58
    assert open_group(out / "arrays.zarr").attrs["honours"] == ["REQ-0001"]
    assert sorted(read_table(out / "forget.parquet")["sample_key"]) == sorted(chosen["sample_key"])

    add_event(tmp_path, ["REQ-0001"], "purging")
    np.savez(tmp_path / "user.npz", x=np.concatenate([x, x[chosen.index[:1]]]), y=np.arange(61) % 3)
    raw["data"]["fingerprint"] = "changed"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    prepare(ws)
    index = read_table(out / "index.parquet")
    assert not set(index["sample_key"]) & set(chosen["sample_key"]) and len(index) == 58  # the copy left out too
    assert open_group(out / "forgotten.zarr")["x"].shape[0] == 0
    assert open_group(out / "arrays.zarr").attrs["honours"] == ["REQ-0001"]
    assert "left out" in caplog.text and "deleted by REQ-0001" in caplog.text
    # no pending request: the config's simulated request is scored, and never leaves training
    assert read_table(out / "forget.parquet")["sample_id"].lt(58).all() and (index["split"] != "forgotten").all()
