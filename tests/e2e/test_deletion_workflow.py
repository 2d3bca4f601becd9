"""The deletion workflow end to end on a user's image folder: two requests recorded through the
CLI, one served approximately and then both retrained exactly, purged, new images added, a deleted
image re-added under a new name, and every receipt checked. Real DVC, Prefect, Zarr, Parquet."""
from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pandas as pd
from PIL import Image

from refinery.requests import read_ledger
from refinery.requests.scan import scan, scan_dvc_store
from refinery.store import read_table
from tests.project import copy_project, run, start

CLASSES = 3
NIGHTLY = "from flows.nightly import nightly_flow; nightly_flow(root='.', purge_retrained=False)"
SETTINGS = ["--set", "data.source=imagefolder", "--set", "data.path=images", "--set", "forget.mode=fraction"]


def write_images(folder, start: int, count: int, seed: int) -> None:
    """`count` noisy 8x8 grey images per class, named img<start+i>.png; class c is brighter."""
    rng = np.random.default_rng(seed)
    for c in range(CLASSES):
        (folder / str(c)).mkdir(parents=True, exist_ok=True)
        for i in range(start, start + count):
            pixels = np.clip(rng.normal(60 + 60 * c, 30, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(folder / str(c) / f"img{i:03d}.png")


def index(project) -> pd.DataFrame:
    return read_table(project / "data" / "prepared" / "index.parquet")


def request_file(project, name: str, keys: list[str]):
    pd.DataFrame({"sample_key": keys}).to_csv(project / name, index=False)
    return name


def deleted_bytes(project, keys: list[str]) -> list[bytes]:
    """The float32 input bytes of `keys` as prepared (what must vanish from every store)."""
    return [(np.asarray(Image.open(project / "images" / k), dtype=np.float32)[None] / 255.0).tobytes() for k in keys]


def raw_occurrences(project, needles: list[bytes]) -> list[str]:
    """Files under data/, .refinery/ and .dvc/cache whose raw bytes hold any needle (uncompressed copies)."""
    found = []
    for top in ("data", ".refinery", ".dvc/cache"):
        for path in (project / top).rglob("*") if (project / top).exists() else []:
            if path.is_file() and not path.is_symlink():
                blob = path.read_bytes()
                found += [str(path)] * any(n in blob for n in needles)
    return found


def test_requests_from_record_to_receipt(tmp_path):
    project = copy_project(tmp_path / "project")
    write_images(project / "images", 0, 24, seed=0)
    run(project, "refinery", "run", "--pipeline", "smoke", *SETTINGS)
    first = index(project)
    train = first.loc[first["split"] == "train", "sample_key"].tolist()
    a_keys, b_keys = train[:3], train[3:6]

    # A: served at once, approximately, and published with a model card.
    a_file = request_file(project, "a.csv", a_keys)
    out = run(project, "refinery", "forget", "--ids", a_file, "--note", "ticket 1").stdout
    assert "recorded REQ-0001" in out and "served approximately" in out, out
    card = json.loads((project / "data" / "deploy" / "card.json").read_text())
    assert card["serves_approximately"] == ["REQ-0001"] and card["honours"] == []
    served = run(project, "refinery", "requests", "show", "REQ-0001", "--check", check=False)
    assert served.returncode == 1 and "lineage check: NOT passed" in served.stdout  # the teacher still saw A
    # Recording the same samples again changes nothing.
    assert "nothing new" in run(project, "refinery", "forget", "--ids", "a.csv", "--no-run").stdout
    # B, recorded only; the nightly flow retrains the lineage without A and B, kept apart until the purge.
    run(project, "refinery", "forget", "--ids", request_file(project, "b.csv", b_keys), "--no-run")
    run(project, "python", "-c", NIGHTLY)
    assert {r.request_id: r.status for r in read_ledger(project)} == {"REQ-0001": "retrained",
                                                                      "REQ-0002": "retrained"}
    card = json.loads((project / "data" / "deploy" / "card.json").read_text())
    assert card["served_by"] == "retrained" and card["honours"] == ["REQ-0001", "REQ-0002"]
    contents = [c for r in read_ledger(project) for c in r.contents]
    before = scan(project, contents)
    assert any("forgotten.zarr" in h.where for h in before) and any(".dvc" in h.where for h in before), before
    remote = tmp_path / "remote"  # the team's DVC remote holds the kept-apart D_f too, until the purge
    run(project, "dvc", "remote", "add", "-d", "store", str(remote))
    run(project, "dvc", "push")
    assert scan_dvc_store(remote / "files" / "md5", contents)
    assert raw_occurrences(project, deleted_bytes(project, a_keys + b_keys)) == []  # stores compress: see scan()

    # kill -9 in the middle of the purge: the ledger is readable, the requests marked purging (so no
    # run brings their samples back), and the next purge finishes the job.
    purging = start(project, "refinery", "requests", "purge")
    deadline = time.monotonic() + 300
    while {r.status for r in read_ledger(project)} != {"purging"} and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(purging.pid, signal.SIGKILL)
    purging.wait()
    assert {r.status for r in read_ledger(project)} == {"purging"}
    run(project, "refinery", "requests", "purge")
    assert {r.status for r in read_ledger(project)} == {"purged"}
    assert scan(project, contents) == [] and scan_dvc_store(remote / "files" / "md5", contents) == []

    # New images, and A's first image again under a new name: prepare leaves the copy out.
    write_images(project / "images", 24, 4, seed=1)
    copy = a_keys[0].split("/")[0] + "/readded.png"
    (project / "images" / copy).write_bytes((project / "images" / a_keys[0]).read_bytes())
    rerun = run(project, "refinery", "run")
    assert f"left out {copy}" in rerun.stdout + rerun.stderr
    after = index(project)
    assert not set(after["sample_key"]) & set(a_keys + b_keys + [copy])
    common = first.merge(after, on="sample_key", suffixes=("_before", "_after"))
    assert len(common) == len(first) - 6 and (common["split_before"] == common["split_after"]).all()
    assert len(after) == len(first) - 6 + 4 * CLASSES

    for request_id in ("REQ-0001", "REQ-0002"):
        shown = run(project, "refinery", "requests", "show", request_id, "--check", check=False)
        assert shown.returncode == 0 and "lineage check: passed" in shown.stdout, shown.stdout + shown.stderr
    listing = run(project, "refinery", "requests", "list").stdout
    assert "REQ-0001" in listing and "ticket 1" in listing and "purged" in listing
    assert scan(project, contents) == []
    assert raw_occurrences(project, deleted_bytes(project, a_keys + b_keys)) == []
