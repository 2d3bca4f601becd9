"""An exact deletion request on the smoke run, end to end: `refinery forget --fraction 0.1 --exact`
retrains the whole lineage without the samples (it crashed in distill when sample ids ran past a
table sized train + val + test), and `refinery report` says when its numbers are out of date."""
from __future__ import annotations

import json

import yaml

from refinery.requests import read_ledger
from refinery.store import open_group, read_table
from tests.project import run


def test_exact_fraction_request_retrains_without_the_samples(smoke_copy):
    project = smoke_copy
    assert "OUT OF DATE" not in run(project, "refinery", "report").stdout
    out = run(project, "refinery", "forget", "--fraction", "0.1", "--exact").stdout
    assert "retrained exactly" in out, out
    (request,) = read_ledger(project)
    assert request.status == "retrained"
    index = read_table(project / "data" / "prepared" / "index.parquet")
    apart = index[index["split"] == "forgotten"]
    assert sorted(apart["sample_key"]) == sorted(request.keys) and len(apart) == len(request.keys) > 0
    assert open_group(project / "data" / "prepared" / "forgotten.zarr")["x"].shape[0] == len(request.keys)
    unlearned = json.loads((project / "data" / "unlearn" / "metrics.json").read_text())
    assert unlearned["exact"] is True and unlearned["forget_size"] == len(request.keys)
    for stage in ("teacher", "upcycle", "distill", "unlearn"):
        manifest = json.loads((project / "data" / stage / "manifest.json").read_text())
        assert manifest["ledger"]["honours"] == [request.request_id], stage
    shown = run(project, "refinery", "requests", "show", request.request_id, "--no-scan").stdout
    assert "lineage check: passed" in shown, shown

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["teacher"]["train"]["epochs"] += 1
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    report = run(project, "refinery", "report").stdout
    assert "OUT OF DATE" in report and "teacher" in report.split("OUT OF DATE")[1], report
