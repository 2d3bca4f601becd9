"""`refinery sweep`'s machinery on a toy DVC project (seconds a point): a 2x2 grid, each point a
flow run on a work pool served by two local workers, each in a clone of its own; all four are
experiments in the origin (`dvc exp show`), whose workspace stays as it was."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.sweep import DirtyWorkspace, parse_grid, point_name, run_sweep, sweep_commit

DVC = str(Path(sys.executable).parent / "dvc")
pytestmark = pytest.mark.flow
TRAIN = """import json, yaml
p = yaml.safe_load(open("params.yaml"))
json.dump({"score": len(p["loss"]) + p["seed"]}, open("metrics.json", "w"))
"""
STAGE = """
stages:
  train:
    cmd: PYTHON train.py
    deps: [train.py]
    params: [loss, seed]
    metrics: [metrics.json: {cache: false}]
"""


@pytest.fixture
def toy(tmp_path):
    (tmp_path / "dvc.yaml").write_text(STAGE.replace("PYTHON", sys.executable))
    (tmp_path / "params.yaml").write_text("loss: kd\nseed: 0\n")
    (tmp_path / "train.py").write_text(TRAIN)
    for cmd in (["git", "init", "-q"], [DVC, "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "toy"]):
        subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True)
    return tmp_path


def test_parse_grid_is_the_cartesian_product():
    assert parse_grid(["distill.loss=kd,pld", "seed=0,1,2"])[:2] == [{"distill.loss": "kd", "seed": "0"},
                                                                     {"distill.loss": "kd", "seed": "1"}]
    assert len(parse_grid(["distill.loss=kd,sinkhorn,pld", "seed=0,1,2"])) == 9
    with pytest.raises(ValueError):
        parse_grid(["seed"])


def test_point_names_are_git_refs():
    assert point_name("sweep-1", {"distill.loss": "kd", "seed": "0"}) == "sweep-1-distill-loss-kd-seed-0"


def test_a_dirty_workspace_is_refused(toy):
    (toy / "params.yaml").write_text("loss: pld\nseed: 0\n")
    with pytest.raises(DirtyWorkspace, match="params.yaml"):
        sweep_commit(toy)


def test_sweep_of_four_points_is_four_experiments(prefect_api, toy, monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    before = (toy / "params.yaml").read_text()
    with temporary_settings({PREFECT_API_URL: prefect_api}):  # this process; the workers read the environment
        done = run_sweep(toy, ["loss=kd,sinkhorn", "seed=0,1"], workers=2)
    assert sorted(done.values()) == ["Completed"] * 4, done
    assert (toy / "params.yaml").read_text() == before
    assert not list((toy / ".dvc" / "tmp" / "sweeps").glob("*")), "the clones are deleted"
    shown = json.loads(subprocess.run([DVC, "exp", "show", "--json"], cwd=toy, capture_output=True, text=True,
                                      check=True).stdout)
    experiments = [exp for commit in shown for exp in (commit.get("experiments") or [])]
    params = set()
    for exp in experiments:
        data = exp["revs"][0]["data"]
        p = data["params"]["params.yaml"]["data"]
        params.add((p["loss"], p["seed"]))
        assert data["metrics"]["metrics.json"]["data"]["score"] == len(p["loss"]) + p["seed"]
    assert params == {("kd", 0), ("kd", 1), ("sinkhorn", 0), ("sinkhorn", 1)}
