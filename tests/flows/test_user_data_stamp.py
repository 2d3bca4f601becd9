"""The nightly flow re-stamps data.fingerprint, so files changed under data.path rerun prepare."""
import numpy as np
import yaml

from refinery.resolve import resolve_config, write_params
from flows.nightly import refresh_user_data
from tests.project import copy_project


def test_nightly_restamps_the_fingerprint_of_user_data_only(tmp_path):
    project = copy_project(tmp_path / "p")
    before = (project / "params.yaml").read_text()
    assert refresh_user_data.fn(str(project)) == "no data.path, ids file or deletion ledger: nothing to stamp"
    assert (project / "params.yaml").read_text() == before

    np.savez(project / "d.npz", x=np.zeros((20, 4), np.float32), y=np.arange(20) % 2)
    write_params(project, resolve_config(project, "smoke", ["data.source=npz", "data.path=d.npz"]))
    first = yaml.safe_load((project / "params.yaml").read_text())["data"]["fingerprint"]
    assert first
    np.savez(project / "d.npz", x=np.ones((30, 4), np.float32), y=np.arange(30) % 2)
    assert "user data d.npz: fingerprint" in refresh_user_data.fn(str(project))
    assert yaml.safe_load((project / "params.yaml").read_text())["data"]["fingerprint"] != first
