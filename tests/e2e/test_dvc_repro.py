"""`dvc repro` from a fresh copy runs every stage as a Prefect flow, and then `refinery run`
agrees there is nothing left to do."""
from refinery.resolve import resolve_config, write_params

from tasks.stages import STAGE_NAMES
from tests.project import copy_project, metrics, run


def test_dvc_repro_from_scratch(tmp_path):
    project = copy_project(tmp_path)
    write_params(project, resolve_config(project, "smoke", []))
    out = run(project, "dvc", "repro").stdout
    ran = [line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")]
    assert ran == list(STAGE_NAMES), out
    # Something was learned: ten balanced digit classes put chance at 0.10 +- 0.016 on the 360
    # test samples; the 3-epoch smoke teacher scores about 0.36.
    assert metrics(project)["teacher"]["test_acc"] > 0.2, metrics(project)["teacher"]
    assert "up to date" in run(project, "refinery", "run").stdout
