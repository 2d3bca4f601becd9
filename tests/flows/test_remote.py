"""A local-directory DVC remote: the nightly flow's push task uploads every artifact, and its
pull task in a fresh clone restores them all, after which `dvc status` is clean (toy project)."""
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.nightly import pull, push

DVC = str(Path(sys.executable).parent / "dvc")
pytestmark = pytest.mark.flow
# A directory output (like a Zarr store) and a file output, the second depending on the first.
PIPELINE = """
stages:
  make:
    cmd: mkdir -p out/arrays.zarr && echo chunk-$RANDOM > out/arrays.zarr/c0 && echo meta > out/arrays.zarr/zarr.json
    params: [a]
    outs: [out/arrays.zarr]
  summarize:
    cmd: cat out/arrays.zarr/c0 > out/summary.txt
    deps: [out/arrays.zarr]
    outs: [out/summary.txt]
"""


def sh(cwd: Path, *cmd: str) -> str:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=True).stdout


def test_push_then_pull_into_a_fresh_clone(prefect_api, tmp_path):
    project, remote, clone = tmp_path / "project", tmp_path / "remote", tmp_path / "clone"
    project.mkdir()
    (project / "dvc.yaml").write_text(PIPELINE)
    (project / "params.yaml").write_text("a: 1\n")
    sh(project, "git", "init", "-q")
    sh(project, DVC, "init", "-q")
    sh(project, DVC, "repro", "-q")
    sh(project, DVC, "remote", "add", "-d", "local", str(remote))
    sh(project, "git", "add", "-A")
    sh(project, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "toy")

    with temporary_settings({PREFECT_API_URL: prefect_api}):
        assert "no DVC remote" not in push.fn(str(project))
        sh(tmp_path, "git", "clone", "-q", str(project), str(clone))
        assert not (clone / "out" / "arrays.zarr").exists() and not (clone / "out" / "summary.txt").exists()
        assert "no DVC remote" not in pull.fn(str(clone))

    for name in ("out/arrays.zarr/c0", "out/arrays.zarr/zarr.json", "out/summary.txt"):
        assert (clone / name).read_text() == (project / name).read_text()
    assert "up to date" in sh(clone, DVC, "status")
    assert "in sync" in sh(clone, DVC, "status", "--cloud")


def test_no_remote_is_tolerated(prefect_api, tmp_path):
    sh(tmp_path, "git", "init", "-q")
    sh(tmp_path, DVC, "init", "-q")
    with temporary_settings({PREFECT_API_URL: prefect_api}):
        assert pull.fn(str(tmp_path)).startswith("no DVC remote")
        assert push.fn(str(tmp_path)).startswith("no DVC remote")
