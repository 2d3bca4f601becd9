"""`refinery forget`: a request is resolved to sample keys against the prepared sample index and
appended to the ledger; every bad request is one line on stderr and writes nothing; a second
request adds to the first instead of replacing it."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from flows.cli import main
from refinery import config as C
from refinery.requests import read_ledger

N = 40  # samples 0..39: 0..29 train, 30..34 val, 35..39 test; labels i % 4


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "params.yaml").write_text(C.dump_yaml(C.PipelineConfig()))
    split = ["train"] * 30 + ["val"] * 5 + ["test"] * 5
    index = pd.DataFrame({"sample_id": np.arange(N), "sample_key": [f"k{i}" for i in range(N)], "split": split,
                          "label": np.arange(N) % 4, "forget": np.zeros(N, dtype=bool),
                          "content": [f"c{i}" for i in range(N)]})
    (tmp_path / "data" / "prepared").mkdir(parents=True)
    index.to_parquet(tmp_path / "data" / "prepared" / "index.parquet")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / ".prefect"))
    return tmp_path


def forget(project, *args) -> int:
    return main(["forget", *args, "--no-run"])


def params(project) -> dict:
    return yaml.safe_load((project / "params.yaml").read_text())


def ledger(project) -> dict[str, list[str]]:
    return {r.request_id: r.keys for r in read_ledger(project)}


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_ids_file_is_recorded_as_keys(project, kind, capsys):
    path = project / f"ids.{kind}"
    frame = pd.DataFrame({"sample_id": [3, 7, 11]})
    frame.to_csv(path, index=False) if kind == "csv" else frame.to_parquet(path)
    assert forget(project, "--ids", str(path), "--note", "ticket 7") == 0
    assert ledger(project) == {"REQ-0001": ["k11", "k3", "k7"]}
    request = read_ledger(project)[0]
    assert request.contents == ["c11", "c3", "c7"] and request.note == "ticket 7" and request.status == "recorded"
    assert params(project)["forget"]["fingerprint"].startswith("ledger:")  # the ledger reruns prepare
    assert "recorded REQ-0001" in capsys.readouterr().out


def test_keys_file_and_a_second_request_adds_to_the_first(project):
    """The defect: a new request replaced the last one, bringing its samples back."""
    pd.DataFrame({"sample_key": ["k1", "k2"]}).to_csv(project / "keys.csv", index=False)
    assert forget(project, "--ids", "keys.csv") == 0
    assert forget(project, "--classes", "1", "--exact") == 0
    assert forget(project, "--fraction", "0.2") == 0
    got = ledger(project)
    assert list(got) == ["REQ-0001", "REQ-0002", "REQ-0003"] and got["REQ-0001"] == ["k1", "k2"]
    assert got["REQ-0002"] == [f"k{i}" for i in range(30) if i % 4 == 1 and i != 1]  # k1 is A's already
    assert len(got["REQ-0003"]) == 6 and not set(got["REQ-0003"]) & set(got["REQ-0001"] + got["REQ-0002"])
    assert params(project)["forget"]["exact"] is False  # each request says how it is served now


@pytest.mark.parametrize("ids, message", [
    ([3, 99], "unknown sample ids [99]"),
    ([3, 3, 5], "duplicate samples ['k3']"),
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
    assert (project / "params.yaml").read_text() == before and not (project / "requests").exists()


@pytest.mark.parametrize("args, message", [
    (["--classes", "9"], "unknown class [9]"),
    (["--classes", "0,1,2,3"], "every training sample"),
    (["--classes", "a,b"], "--classes"),
    (["--fraction", "1.5"], "--fraction"),
    (["--ids", "missing.csv"], "not found"),
])
def test_bad_requests_change_nothing(project, capsys, args, message):
    before = (project / "params.yaml").read_text()
    assert forget(project, *args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert (project / "params.yaml").read_text() == before and not (project / "requests").exists()


def test_a_request_before_any_run_is_refused(project, capsys):
    (project / "data" / "prepared" / "index.parquet").unlink()
    before = (project / "params.yaml").read_text()
    assert forget(project, "--classes", "1") == 2
    assert "refinery run" in capsys.readouterr().err
    assert (project / "params.yaml").read_text() == before


def test_messages_say_what_was_recorded_not_what_might_rerun(project, capsys):
    assert forget(project, "--classes", "1,2") == 0
    first = capsys.readouterr().out
    assert "recorded REQ-0001" in first and "not run (--no-run)" in first
    assert "rerun" not in first.replace("--no-run", "")  # what reruns is for `refinery run` to say, from DVC
    assert forget(project, "--classes", "1,2") == 0
    assert "nothing new" in capsys.readouterr().out and len(read_ledger(project)) == 1
