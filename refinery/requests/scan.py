"""The byte scan: find any copy of deleted samples' input arrays in the workspace, the caches and
DVC's cache.

A sample is found by its content hash (refinery/data/keys.py: sha256 of its float32 input), so
the scan decompresses and reads every Zarr array it can open, row by row:
- every Zarr array under `data/` and `.refinery/`;
- every directory version in DVC's cache (`.dvc/cache/files/md5/**.dir`): each is rebuilt as a
  tree of links to its cached files and its Zarr arrays read, so an old version of the prepared
  arrays is found even though DVC stores it under content hashes.
Arrays whose rows are not float32 samples of the deleted samples' shape (logits, ids, weights)
cannot hold them and are skipped. Files that are not Zarr (tables, JSON) hold ids, keys and
scores, never input arrays.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from ..data.keys import content_hashes

ROOTS = ("data", ".refinery")
DVC_CACHE = Path(".dvc") / "cache" / "files" / "md5"


@dataclass
class Hit:
    where: str      # the array's path (for DVC's cache: the .dir object and the path inside it)
    rows: int       # how many of its rows are deleted samples


def _arrays_under(folder: Path):
    """(path, zarr array) for every Zarr v3 array under `folder` that opens."""
    for meta in sorted(folder.rglob("zarr.json")):
        try:
            doc = json.loads(meta.read_text())
            if doc.get("node_type") != "array":
                continue
            yield meta.parent, zarr.open_array(str(meta.parent), mode="r")
        except (OSError, ValueError, KeyError, TypeError):  # damaged or not Zarr: it cannot be read as samples
            continue


def _matches(array, wanted: set[str], row_shape: tuple | None) -> int:
    if array.dtype != np.float32 or array.ndim < 2 or (row_shape is not None and tuple(array.shape[1:]) != row_shape):
        return 0
    found = 0
    for start in range(0, array.shape[0], 4096):
        found += sum(h in wanted for h in content_hashes(np.asarray(array[start:start + 4096])).tolist())
    return found


def _dvc_trees(cache: Path):
    """(.dir object, folder) for each directory version in a DVC cache or local remote laid out
    as files/md5/<2>/<30> (`cache`), rebuilt from links."""
    if not cache.exists():
        return
    for listing in sorted(cache.rglob("*.dir")):
        try:
            entries = json.loads(listing.read_text())
        except (OSError, ValueError):
            continue
        with tempfile.TemporaryDirectory(prefix="refinery-scan-") as tmp:
            for entry in entries:
                md5, rel = entry.get("md5", ""), entry.get("relpath", "")
                target = cache / md5[:2] / md5[2:]
                if not md5 or not rel or ".." in Path(rel).parts or not target.exists():
                    continue
                link = Path(tmp) / rel
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(target)
            yield listing, Path(tmp)


def scan(root: Path, contents: list[str], row_shape: tuple | None = None) -> list[Hit]:
    """Every place under `root` holding one of the samples whose content hashes are `contents`."""
    root, wanted, hits = Path(root), set(contents), []
    if not wanted:
        return hits
    for top in ROOTS:
        if (root / top).exists():
            for path, array in _arrays_under(root / top):
                if n := _matches(array, wanted, row_shape):
                    hits.append(Hit(str(path.relative_to(root)), n))
    return hits + scan_dvc_store(root / DVC_CACHE, contents, row_shape, label=root)


def scan_dvc_store(cache: Path, contents: list[str], row_shape: tuple | None = None,
                   label: Path | None = None) -> list[Hit]:
    """The same search through a DVC cache or a local DVC remote (its `files/md5` folder); hits
    are named relative to `label` when given."""
    wanted, hits = set(contents), []
    for listing, tree in _dvc_trees(Path(cache)):
        name = listing.relative_to(label) if label is not None else listing
        for path, array in _arrays_under(tree):
            if n := _matches(array, wanted, row_shape):
                hits.append(Hit(f"{name}:{path.relative_to(tree)}", n))
    return hits
