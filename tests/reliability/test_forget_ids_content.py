"""A request's ids file is read by content: editing it and forgetting again records a new request
for the new samples (and the ledger's stamp in params.yaml changes, so DVC reruns prepare and what
follows), not "nothing new"."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from flows.cli import main
from refinery import config as C
from refinery.requests import read_ledger

N = 40


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "params.yaml").write_text(C.dump_yaml(C.PipelineConfig()))
    index = pd.DataFrame({"sample_id": np.arange(N), "sample_key": [f"k{i}" for i in range(N)],
                          "split": ["train"] * 30 + ["val"] * 5 + ["test"] * 5, "label": np.arange(N) % 4,
                          "forget": np.zeros(N, dtype=bool), "content": [f"c{i}" for i in range(N)]})
    (tmp_path / "data" / "prepared").mkdir(parents=True)
    index.to_parquet(tmp_path / "data" / "prepared" / "index.parquet")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / ".prefect"))
    return tmp_path


def test_an_edited_ids_file_is_a_new_request(project, capsys):
    ids = project / "ids.csv"
    ids.write_text("sample_id\n1\n2\n")
    assert main(["forget", "--ids", "ids.csv", "--no-run"]) == 0
    first = (project / "params.yaml").read_text()
    ids.write_text("sample_id\n1\n5\n")  # the same path, other samples
    capsys.readouterr()
    assert main(["forget", "--ids", "ids.csv", "--no-run"]) == 0
    out = capsys.readouterr().out
    assert "nothing new" not in out and "recorded REQ-0002" in out, out
    assert (project / "params.yaml").read_text() != first
    assert [r.keys for r in read_ledger(project)] == [["k1", "k2"], ["k5"]]
    assert yaml.safe_load((project / "params.yaml").read_text())["forget"]["fingerprint"].startswith("ledger:")


def test_user_data_is_fingerprinted_by_content(tmp_path):
    """An edit that keeps a file's size and modification time still changes the stamp."""
    import os

    from refinery.data import fingerprint

    (tmp_path / "a").mkdir()
    f = tmp_path / "a" / "x.bin"
    f.write_bytes(b"0123456789")
    stat = f.stat()
    first = fingerprint(tmp_path / "a")
    f.write_bytes(b"0123456780")  # same size
    os.utime(f, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same time
    assert fingerprint(tmp_path / "a") != first
