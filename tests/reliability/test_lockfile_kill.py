"""dvc.lock survives a kill while DVC writes it: DVC rewrites the file in place, so a kill -9 at
that moment leaves it cut short or empty. The next `refinery run` puts back the copy taken
before that write (or sets the broken file aside), restores what DVC's run cache holds, and
leaves the workspace as an uninterrupted run does: exit 0, `dvc status` clean, the same metrics."""

import pytest

from tests.project import metrics, run


@pytest.fixture
def project(smoke_copy):
    return smoke_copy


@pytest.mark.parametrize("cut", ["half", "empty"])
@pytest.mark.parametrize("snapshot", [True, False])
def test_a_cut_short_lockfile_is_recovered(project, cut, snapshot):
    expected = metrics(project)
    lock = project / "dvc.lock"
    text = lock.read_text()
    # cut mid-line, as a kill mid-write does: the text ends in "    md" (not valid YAML)
    lock.write_text(text[: text.index("md5:", len(text) // 2) + 2] if cut == "half" else "")
    if not snapshot:
        (project / ".dvc" / "tmp" / "dvc.lock.previous").unlink(missing_ok=True)
    out = run(project, "refinery", "run")
    assert "dvc.lock" in out.stdout + out.stderr  # the recovery is said, not silent
    assert "up to date" in run(project, "dvc", "status").stdout
    assert metrics(project) == expected
