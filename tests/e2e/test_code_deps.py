"""Editing a file reruns exactly the stages that import it: `dvc status` after a one-line edit
names those stages and no other (a comment is enough: DVC hashes the file)."""
from __future__ import annotations

import json

import pytest

from tasks.stages import STAGE_NAMES, code_deps
from tests.project import copy_run, run

EDITS = ["refinery/store/arrays.py", "tasks/distill.py", "refinery/metrics/unlearning.py"]


@pytest.fixture(scope="module")
def project(smoke_project, tmp_path_factory):
    """A copy of the smoke run (its data, DVC cache and lock), so the edits stay local."""
    dest = tmp_path_factory.mktemp("code-deps") / "project"
    copy_run(smoke_project, dest)
    return dest


@pytest.mark.parametrize("edited", EDITS)
def test_dvc_status_names_exactly_the_importers(project, edited):
    expected = {name for name in STAGE_NAMES if edited in code_deps(name)}
    assert expected, f"no stage imports {edited}"
    path = project / edited
    original = path.read_text()
    path.write_text(original + "# an edit\n")
    try:
        status = json.loads(run(project, "dvc", "status", "--json").stdout or "{}")
    finally:
        path.write_text(original)
    changed = {name for name, why in status.items() if any("changed deps" in w for w in why if isinstance(w, dict))}
    assert changed == expected, status
    assert json.loads(run(project, "dvc", "status", "--json").stdout or "{}") == {}
