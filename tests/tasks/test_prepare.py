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
