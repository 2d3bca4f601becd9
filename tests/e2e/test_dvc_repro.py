"""`dvc repro` from a fresh copy runs every stage as a Prefect flow, and then `refinery run`
agrees there is nothing left to do."""
from flows.cli import resolve_config, write_params

from tests.project import copy_project, metrics, run


def test_dvc_repro_from_scratch(tmp_path):
    project = copy_project(tmp_path)
    write_params(project, resolve_config(project, "smoke", []))
    out = run(project, "dvc", "repro").stdout
    ran = [line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")]
    assert ran == ["prepare", "teacher", "upcycle", "distill", "unlearn", "evaluate"], out
    assert 0 <= metrics(project)["teacher"]["test_acc"] <= 1
    assert "up to date" in run(project, "refinery", "run").stdout
