"""`refinery sweep`'s machinery: a 2x2 grid fanned out on a local Dask cluster through Prefect,
one DVC experiment per point, all listed by `dvc exp show` (a toy DVC project: seconds)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.sweep import parse_grid, run_sweep

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


def test_sweep_of_four_points_is_four_experiments(prefect_api, toy):
    with temporary_settings({PREFECT_API_URL: prefect_api}):
        done = run_sweep(toy, ["loss=kd,sinkhorn", "seed=0,1"], workers=2)
    assert sorted(done) == ["loss=kd,seed=0", "loss=kd,seed=1", "loss=sinkhorn,seed=0", "loss=sinkhorn,seed=1"]
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
