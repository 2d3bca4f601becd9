"""Parquet (image bytes or arrays) and .npz (x, y) load; bad files fail with one clear line."""
import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from refinery.data import DataSourceError, load_source


def png(seed, size=(5, 4)):
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_parquet_with_image_bytes_and_string_labels(tmp_path):
    path = tmp_path / "d.parquet"
    pd.DataFrame({"img": [png(i) for i in range(4)], "cls": ["b", "a", "b", "c"]}).to_parquet(path)
    src = load_source("parquet", path=path, image_column="img", label_column="cls")
    assert src.x.shape == (4, 3, 4, 5) and src.y.tolist() == [1, 0, 1, 2] and src.num_classes == 3


def test_parquet_with_array_column(tmp_path):
    path = tmp_path / "a.parquet"
    rows = [np.arange(12, dtype=np.float32) + i for i in range(5)]
    pd.DataFrame({"image": rows, "label": [0, 1, 0, 1, 2]}).to_parquet(path)
    src = load_source("parquet", path=path)
    assert src.x.shape == (5, 1, 12) and np.array_equal(src.x[2, 0], rows[2])


def test_parquet_errors(tmp_path):
    path = tmp_path / "bad.parquet"
    pd.DataFrame({"image": [png(0), png(1, (6, 4))], "label": [0, 1]}).to_parquet(path)
    with pytest.raises(DataSourceError, match=r"bad.parquet: row 1 has shape .*data.resize"):
        load_source("parquet", path=path)
    pd.DataFrame({"image": [[1.0, np.nan], [0.0, 1.0]], "label": [0, 1]}).to_parquet(path)
    with pytest.raises(DataSourceError, match="bad.parquet: inputs contain NaN"):
        load_source("parquet", path=path)
    pd.DataFrame({"image": [[1.0, 2.0], [0.0, 1.0]], "label": [0, -1]}).to_parquet(path)
    with pytest.raises(DataSourceError, match="label -1 out of range"):
        load_source("parquet", path=path)
    with pytest.raises(DataSourceError, match="no column 'pixels'"):
        load_source("parquet", path=path, image_column="pixels")
    path.write_bytes(b"PAR1 truncated")
    with pytest.raises(DataSourceError, match="bad.parquet: cannot read Parquet"):
        load_source("parquet", path=path)


def test_npz_with_published_test(tmp_path):
    path = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.normal(size=(10, 1, 4, 4)), y=np.arange(10) % 3,
             x_test=rng.normal(size=(4, 1, 4, 4)), y_test=np.array([0, 1, 2, 2]))
    src = load_source("npz", path=path, resize=(2, 2))
    assert src.x.shape == (14, 1, 2, 2) and src.published_test.sum() == 4 and src.num_classes == 3


def test_npz_errors(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x=np.array([[0.0, np.inf]] * 3), y=np.array([0, 1, 0]))
    with pytest.raises(DataSourceError, match="bad.npz: inputs contain NaN or infinite"):
        load_source("npz", path=path)
    np.savez(path, x=np.zeros((3, 2)), y=np.array([0.5, 1, 0]))
    with pytest.raises(DataSourceError, match="bad.npz:y: labels must be integers"):
        load_source("npz", path=path)
    np.savez(path, x=np.zeros((3, 2)), y=np.array([0, 1, 0], dtype=object))
    with pytest.raises(DataSourceError, match="without pickle"):
        load_source("npz", path=path)
    np.savez(path, features=np.zeros((3, 2)))
    with pytest.raises(DataSourceError, match="needs arrays 'x' and 'y'"):
        load_source("npz", path=path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataSourceError, match="bad.npz: not a readable .npz"):
        load_source("npz", path=path)
