"""`refinery forget`: a request is validated against the prepared sample index before
params.yaml is written; every bad request is one line on stderr and changes nothing."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from flows.cli import main
from refinery import config as C

N = 40  # samples 0..39: 0..29 train, 30..34 val, 35..39 test; labels i % 4


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "params.yaml").write_text(C.dump_yaml(C.PipelineConfig()))
    split = ["train"] * 30 + ["val"] * 5 + ["test"] * 5
    index = pd.DataFrame({"sample_id": np.arange(N), "split": split, "label": np.arange(N) % 4,
                          "forget": np.zeros(N, dtype=bool)})
    (tmp_path / "data" / "prepared").mkdir(parents=True)
    index.to_parquet(tmp_path / "data" / "prepared" / "index.parquet")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / ".prefect"))
    return tmp_path


def forget(project, *args) -> int:
    return main(["forget", *args, "--no-run"])


def params(project) -> dict:
    return yaml.safe_load((project / "params.yaml").read_text())


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_ids_file_is_recorded(project, kind, capsys):
    path = project / f"ids.{kind}"
    frame = pd.DataFrame({"sample_id": [3, 7, 11]})
    frame.to_csv(path, index=False) if kind == "csv" else frame.to_parquet(path)
    assert forget(project, "--ids", str(path)) == 0
    recorded = params(project)["forget"]
    assert len(recorded.pop("fingerprint")) == 16  # the ids file's content, so an edit is a new request
    assert recorded == {"mode": "ids", "classes": [3], "fraction": 0.1, "ids_file": f"ids.{kind}", "exact": False}
    assert "3 training samples" in capsys.readouterr().out


def test_classes_fraction_and_exact(project):
    assert forget(project, "--classes", "1,2", "--exact") == 0
    assert params(project)["forget"]["mode"] == "classes" and params(project)["forget"]["classes"] == [1, 2]
    assert params(project)["forget"]["exact"] is True
    assert forget(project, "--fraction", "0.2") == 0
    assert params(project)["forget"]["mode"] == "fraction" and params(project)["forget"]["exact"] is False


@pytest.mark.parametrize("ids, message", [
    ([3, 99], "unknown sample ids [99]"),
    ([3, 3, 5], "duplicate sample ids [3]"),
    ([3, 31], "not in the training split: [31]"),
    (list(range(30)), "every training sample"),
    ([], "empty"),
])
def test_bad_ids_give_one_line_and_change_nothing(project, capsys, ids, message):
    before = (project / "params.yaml").read_text()
    path = project / "ids.csv"
    pd.DataFrame({"sample_id": pd.Series(ids, dtype="int64")}).to_csv(path, index=False)
    assert forget(project, "--ids", str(path)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith("refinery: error:")
    assert (project / "params.yaml").read_text() == before


@pytest.mark.parametrize("args, message", [
    (["--classes", "9"], "unknown class [9]"),
    (["--classes", "0,1,2,3"], "every training sample"),
    (["--classes", "a,b"], "--classes"),
    (["--fraction", "1.5"], "forget.fraction"),
    (["--ids", "missing.csv"], "not found"),
])
def test_bad_requests_change_nothing(project, capsys, args, message):
    before = (project / "params.yaml").read_text()
    assert forget(project, *args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert (project / "params.yaml").read_text() == before


def test_a_request_before_any_run_is_refused(project, capsys):
    (project / "data" / "prepared" / "index.parquet").unlink()
    before = (project / "params.yaml").read_text()
    assert forget(project, "--classes", "1") == 2
    assert "refinery run" in capsys.readouterr().err
    assert (project / "params.yaml").read_text() == before


def test_messages_say_what_was_recorded_not_what_might_rerun(project, capsys):
    assert forget(project, "--classes", "1,2") == 0
    first = capsys.readouterr().out
    assert "forget request recorded in params.yaml" in first and "not run (--no-run)" in first
    assert "rerun" not in first.replace("--no-run", "")  # what reruns is for `refinery run` to say, from DVC
    assert forget(project, "--classes", "1,2") == 0
    assert "forget request unchanged" in capsys.readouterr().out
