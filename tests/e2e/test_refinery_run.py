"""`refinery run --pipeline smoke`, for real: the metrics contract and DVC consistency.
(Determinism is in tests/reliability/test_determinism.py.)

The tests share one smoke run; the one that changes a parameter does so in a copy of it.
"""
import json

from tests.project import copy_run, details, metrics, run


def test_metrics_contract_is_complete(smoke_project):
    m, d = metrics(smoke_project), details(smoke_project)
    assert 0 <= m["teacher"]["test_acc"] <= 1
    assert {"test_acc", "active_params", "expert_load_cv"} <= set(m["upcycle"])
    assert m["upcycle"]["active_params"] < d["cost"]["upcycle"]["params"]
    for model in ("student", "scratch", "teacher"):
        assert 0 <= m["distill"][model]["test_acc"] <= 1
    for method in ("retrain", "finetune", "ssd"):
        assert {"UA", "RA", "TA", "MIA", "gap"} <= set(m["unlearn"][method])
        assert "seconds" in d["unlearn"][method]
        assert all(0 <= m["unlearn"][method][k] <= 100 for k in ("UA", "RA", "TA", "MIA"))
    assert m["unlearn"]["retrain"]["gap"] == 0
    for model in ("teacher", "upcycle", "student"):
        assert {"params", "flops_per_sample", "latency_ms", "throughput"} <= set(d["cost"][model])
    assert (smoke_project / "data" / "reports" / "report.md").stat().st_size > 0


def test_every_artifact_records_config_and_inputs(smoke_project):
    manifest = json.loads((smoke_project / "data" / "teacher" / "manifest.json").read_text())
    assert manifest["config_hash"] and "data/prepared/arrays.zarr" in manifest["inputs"]
    assert "data/teacher/model.zarr" in manifest["outputs"]


def test_dvc_agrees_nothing_is_left_to_do(smoke_project):
    assert "up to date" in run(smoke_project, "dvc", "status").stdout
    repro = run(smoke_project, "dvc", "repro").stdout
    assert "Running stage" not in repro, repro
    again = run(smoke_project, "refinery", "run").stdout
    assert "up to date" in again


def test_changing_an_unlearn_param_reruns_only_unlearn_and_evaluate(smoke_project, tmp_path):
    project = tmp_path / "project"
    copy_run(smoke_project, project)
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("alpha: 10.0", "alpha: 5.0"))
    out = run(project, "dvc", "repro").stdout
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == {"unlearn", "evaluate"}, out
    assert "up to date" in run(project, "dvc", "status").stdout
