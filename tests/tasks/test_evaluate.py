"""The evaluate stage's pieces that need no trained models: the metrics contract, the deps it
declares in dvc.yaml, provenance, and best-effort Prefect artifacts."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import yaml

from tasks import evaluate as ev
from tasks.common import Workspace

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = {"teacher.test_acc", "upcycle.test_acc", "upcycle.active_params", "upcycle.expert_load_cv",
            "distill.student.test_acc", "distill.scratch.test_acc", "distill.teacher.test_acc"}


def flat(obj: dict, prefix: str = "") -> set[str]:
    keys = set()
    for k, v in obj.items():
        keys |= flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}"}
    return keys


def fake_models() -> dict:
    row = dict(test_acc=0.5, nll=1.0, ece=0.1, params=10, active_params=8, flops_per_sample=100.0, latency_ms=1.0,
               throughput=5.0)
    return {name: dict(row) for name in ("teacher", "upcycle", "student", "scratch", "unlearn_ssd")}


def test_metrics_keep_the_contract_keys():
    cfg = SimpleNamespace(distill=SimpleNamespace(teacher="upcycle"))
    unlearn = {"retrain": dict(UA=1.0, RA=2.0, TA=3.0, MIA=4.0, gap=0.0, seconds=1.0), "forget_size": 3,
               "target": "student"}
    metrics = ev.contract_metrics(cfg, fake_models(), [{"load_cv": 0.2}, {"load_cv": 0.4}], unlearn)
    keys = flat(metrics)
    assert keys >= CONTRACT
    assert {f"unlearn.retrain.{k}" for k in ("UA", "RA", "TA", "MIA", "gap", "seconds")} <= keys
    assert {f"cost.unlearn_ssd.{k}" for k in ("params", "flops_per_sample", "latency_ms", "throughput")} <= keys
    assert {"quality.teacher.nll", "quality.student.ece"} <= keys
    assert "unlearn.forget_size" not in keys and "unlearn.target" not in keys
    assert abs(metrics["upcycle"]["expert_load_cv"] - 0.3) < 1e-12


def deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def test_dvc_metrics_hold_quality_and_details_hold_cost_and_times():
    cfg = SimpleNamespace(distill=SimpleNamespace(teacher="upcycle"))
    unlearn = {"retrain": dict(UA=1.0, RA=2.0, TA=3.0, MIA=4.0, gap=0.0, seconds=1.0),
               "ssd": dict(UA=1.0, RA=2.0, TA=3.0, MIA=4.0, gap=0.5, seconds=0.2, seconds_with_importance=0.3)}
    contract = ev.contract_metrics(cfg, fake_models(), [{"load_cv": 0.2}], unlearn)
    metrics, details = ev.split_metrics(contract)
    keys = flat(metrics)
    assert keys >= CONTRACT | {f"unlearn.{m}.{k}" for m in unlearn for k in ("UA", "RA", "TA", "MIA", "gap")}
    assert {"quality.teacher.nll", "quality.student.ece"} <= keys
    timing = {"seconds", "latency_ms", "throughput", "train_seconds"}
    assert not [k for k in keys if k.rsplit(".", 1)[-1] in timing or "seconds" in k], keys
    assert not [k for k in keys if k.startswith("cost.")]
    moved = {"cost.teacher.latency_ms", "cost.unlearn_ssd.params", "unlearn.ssd.seconds_with_importance"}
    assert moved <= flat(details)
    assert deep_merge(metrics, details) == contract  # nothing lost, no key renamed


def test_every_file_the_report_reads_is_a_dvc_dependency(tmp_path):
    ws = Workspace(tmp_path)
    for stage in ("prepare", "teacher", "upcycle", "distill", "unlearn"):
        for name in ("history.parquet", "metrics.json", "manifest.json", "experts.parquet", "recipes.parquet"):
            (ws.stage_dir(stage) / name).parent.mkdir(parents=True, exist_ok=True)
            (ws.stage_dir(stage) / name).write_text("")
    deps = set(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["evaluate"]["deps"])
    read = {p.relative_to(tmp_path).as_posix() for p in ev.report_inputs_paths(ws)}
    assert read and read <= deps, read - deps
    assert "refinery/report/sections.py" in deps


def test_git_rev_outside_a_repository_is_unknown(tmp_path):
    assert ev.git_rev(Workspace(tmp_path)) == "unknown"


def test_publish_artifacts_is_a_no_op_outside_a_task_run():
    assert ev.publish_artifacts([{"model": "teacher", "test_acc": 0.5}], "# report") is False


def test_publish_artifacts_uses_stable_keys(monkeypatch):
    import prefect.artifacts
    import prefect.context

    calls = []
    monkeypatch.setattr(prefect.context.TaskRunContext, "get", classmethod(lambda cls: object()))
    monkeypatch.setattr(prefect.artifacts, "create_table_artifact", lambda *a, **k: calls.append(("table", a, k)))
    monkeypatch.setattr(prefect.artifacts, "create_markdown_artifact", lambda *a, **k: calls.append(("md", a, k)))
    assert ev.publish_artifacts([{"model": "teacher"}], "# report") is True
    assert [(kind, k["key"]) for kind, _, k in calls] == [("table", "refinery-summary"), ("md", "refinery-report")]
    assert calls[0][1][0] == [{"model": "teacher"}] and calls[1][1][0] == "# report"


def test_publish_artifacts_never_fails_the_stage(monkeypatch):
    import prefect.artifacts
    import prefect.context

    def boom(*args, **kwargs):
        raise RuntimeError("api down")

    monkeypatch.setattr(prefect.context.TaskRunContext, "get", classmethod(lambda cls: object()))
    monkeypatch.setattr(prefect.artifacts, "create_table_artifact", boom)
    assert ev.publish_artifacts([], "# report") is False


def test_report_library_imports_neither_prefect_nor_dvc():
    import subprocess
    import sys

    code = ("import sys, refinery.report, refinery.report.figures; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('prefect', 'dvc', 'tasks', 'flows')]; "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
