"""`refinery run --pipeline smoke --seeds 2`, for real: two members trained apart on one split, an
aggregate whose means and intervals come from the members' own numbers, and DVC consistent."""
import json

import pytest
from scipy import stats

from tests.project import copy_run, metrics, run


@pytest.fixture(scope="module")
def group(smoke_project, tmp_path_factory):
    project = tmp_path_factory.mktemp("seeds") / "project"
    copy_run(smoke_project, project)
    out = run(project, "refinery", "run", "--pipeline", "smoke", "--seeds", "2").stdout
    return project, out


def member(project, seed: int, path: str) -> dict:
    return json.loads((project / "data" / "seeds" / str(seed) / path).read_text())


def test_members_train_apart_on_one_split(group):
    project, out = group
    assert "seed group of 2 seeds [0, 1]" in out, out
    # prepare is shared and was already made by the single-seed run: not redone
    assert "prepare" not in out.split("to run")[1].split(";")[0], out
    hashes = [json.loads((project / f"data/seeds/{s}/teacher/model.zarr/zarr.json").read_text())["attributes"]
              ["content_hash"] for s in (0, 1)]
    assert hashes[0] != hashes[1]  # the seeds' teachers differ: the training seed reached them
    splits = {member(project, s, "teacher/manifest.json")["inputs"]["data/prepared/arrays.zarr"] for s in (0, 1)}
    assert len(splits) == 1       # ... and both read the one prepared split


def test_aggregate_is_computed_from_the_members(group):
    project, _ = group
    m = metrics(project)
    accs = [member(project, s, "reports/metrics.json")["distill"]["student"]["test_acc"] for s in (0, 1)]
    student = m["distill"]["student"]["test_acc"]
    assert student["n"] == 2 and student["mean"] == pytest.approx(sum(accs) / 2)
    half = stats.t.ppf(0.975, 1) * abs(accs[0] - accs[1]) / 2 ** 0.5 / 2 ** 0.5
    assert student["ci_high"] - student["mean"] == pytest.approx(half, abs=1e-9)
    kd = m["compare"]["kd_vs_scratch"]
    scratch = [member(project, s, "reports/metrics.json")["distill"]["scratch"]["test_acc"] for s in (0, 1)]
    assert kd["n"] == 2 and kd["mean_diff"] == pytest.approx((sum(accs) - sum(scratch)) / 2)
    assert {"forget", "retain", "test"} <= set(m["klom"]["finetune"])  # KLoM needs the group's models
    report = (project / "data" / "reports" / "report.md").read_text()
    assert "2 seeds" in report and "paired t-test" in report


def test_dvc_sees_the_group_as_done(group):
    project, _ = group
    assert "up to date" in run(project, "dvc", "status").stdout
    shown = json.loads(run(project, "dvc", "metrics", "show", "--json").stdout)
    flat = json.dumps(shown)
    assert '"mean"' in flat and '"ci_low"' in flat and "data/seeds" not in flat  # only the aggregate is a metric
    again = run(project, "refinery", "run", "--pipeline", "smoke", "--seeds", "2").stdout
    assert "nothing to run" in again, again
