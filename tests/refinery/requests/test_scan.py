"""The byte scan finds deleted samples in Zarr arrays under data/ and in directory versions
stored in DVC's cache, and nowhere else."""
from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np

from refinery.data.keys import content_hashes
from refinery.requests.scan import scan
from refinery.store import write_arrays


def dvc_store(root, folder) -> None:
    """Store `folder` in root/.dvc/cache as DVC does: each file by md5, and a .dir listing."""
    cache = root / ".dvc" / "cache" / "files" / "md5"
    listing = []
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        md5 = hashlib.md5(f.read_bytes()).hexdigest()
        (cache / md5[:2]).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, cache / md5[:2] / md5[2:])
        listing.append({"md5": md5, "relpath": f.relative_to(folder).as_posix()})
    text = json.dumps(listing)
    md5 = hashlib.md5(text.encode()).hexdigest()
    (cache / md5[:2]).mkdir(parents=True, exist_ok=True)
    (cache / md5[:2] / f"{md5[2:]}.dir").write_text(text)


def test_scan_finds_samples_in_data_and_dvc_cache(tmp_path):
    x = np.random.default_rng(0).normal(size=(20, 1, 4, 4)).astype(np.float32)
    deleted = content_hashes(x[[3, 11]]).tolist()
    write_arrays(tmp_path / "data" / "prepared" / "arrays.zarr", {"x": x, "y": np.arange(20)})
    write_arrays(tmp_path / "old" / "arrays.zarr", {"x": x[:10], "y": np.arange(10)})
    dvc_store(tmp_path, tmp_path / "old")
    shutil.rmtree(tmp_path / "old")
    hits = {h.where: h.rows for h in scan(tmp_path, deleted)}
    assert hits["data/prepared/arrays.zarr/x"] == 2
    assert [rows for where, rows in hits.items() if where.startswith(".dvc/cache")] == [1]
    write_arrays(tmp_path / "data" / "prepared" / "arrays.zarr", {"x": np.delete(x, [3, 11], 0), "y": np.arange(18)})
    assert [h.where for h in scan(tmp_path, deleted)] == [w for w in hits if w.startswith(".dvc")]
    assert scan(tmp_path, content_hashes(x[[5]] + 1).tolist()) == []
