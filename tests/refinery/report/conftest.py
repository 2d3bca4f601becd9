"""Synthetic report inputs: small, hand-made metrics, histories and reliability tables, so report
tests run in seconds without the pipeline's artifacts."""
from __future__ import annotations

import pytest
import torch

from refinery.metrics.classification import reliability_table
from refinery.report import ReportInputs

COST = {"teacher": (14_000, 14_000, 900_000.0), "upcycle": (27_000, 18_600, 1_040_000.0),
        "student": (3_900, 3_900, 240_000.0), "scratch": (3_900, 3_900, 240_000.0),
        "unlearn_retrain": (3_900, 3_900, 240_000.0), "unlearn_ssd": (3_900, 3_900, 240_000.0)}
ACC = {"teacher": 0.90, "upcycle": 0.91, "student": 0.85, "scratch": 0.86, "unlearn_retrain": 0.84,
       "unlearn_ssd": 0.80}


def _models() -> dict[str, dict]:
    return {name: dict(test_acc=ACC[name], nll=0.4, ece=0.05, params=p, active_params=a, flops_per_sample=f,
                       latency_ms=0.5, throughput=10_000.0) for name, (p, a, f) in COST.items()}


def _reliability() -> dict[str, list[dict]]:
    gen = torch.Generator().manual_seed(0)
    logits, y = torch.randn(200, 10, generator=gen) * 3, torch.randint(0, 10, (200,), generator=gen)
    return {name: reliability_table(logits, y, 15) for name in COST}


def _histories() -> dict[str, list[dict]]:
    def run(name: str, epochs: int) -> list[dict]:
        return [dict(epoch=e, loss=2.0 / e, lr=0.001, val_acc=0.5 + 0.1 * e, seconds=float(e), run=name)
                for e in range(1, epochs + 1)]
    return {"teacher": run("teacher", 3), "upcycle": run("upcycle", 2),
            "distill": run("student (kd)", 2) + run("scratch", 2)}


def _metrics(models: dict) -> dict:
    unlearn = {"retrain": dict(UA=12.0, RA=95.0, TA=84.0, MIA=20.0, gap=0.0, seconds=10.0),
               "original": dict(UA=2.0, RA=97.0, TA=85.0, MIA=5.0, gap=8.0, seconds=0.0),
               "ssd": dict(UA=10.0, RA=90.0, TA=80.0, MIA=15.0, gap=3.5, seconds=1.0)}
    return {"teacher": {"test_acc": ACC["teacher"]},
            "upcycle": {"test_acc": ACC["upcycle"], "active_params": 18_600, "expert_load_cv": 0.2},
            "distill": {"student": {"test_acc": ACC["student"]}, "scratch": {"test_acc": ACC["scratch"]},
                        "teacher": {"test_acc": ACC["upcycle"]}},
            "unlearn": unlearn,
            "cost": {n: {k: r[k] for k in ("params", "active_params", "flops_per_sample", "latency_ms", "throughput")}
                     for n, r in models.items()},
            "quality": {n: {k: r[k] for k in ("test_acc", "nll", "ece")} for n, r in models.items()}}


def make_inputs() -> ReportInputs:
    """A complete, plausible set of report inputs."""
    models = _models()
    return ReportInputs(
        metrics=_metrics(models), models=models, reliability=_reliability(), histories=_histories(),
        experts=[{"layer": 0, "load": [0.1, 0.4, 0.2, 0.3], "load_cv": 0.5, "router_entropy": 1.3, "drop_rate": 0.0},
                 {"layer": 1, "load": [0.25, 0.25, 0.25, 0.25], "load_cv": 0.0, "router_entropy": 1.38,
                  "drop_rate": 0.01}],
        provenance={"pipeline": "synthetic", "seed": 0, "config_hash": "c0ffee", "git_rev": "abc1234",
                    "stage_hashes": {s: f"hash-{s}" for s in ("prepare", "teacher", "upcycle", "distill", "unlearn",
                                                              "evaluate")},
                    "n_test": 400, "num_classes": 10, "forget_size": 40, "distill_loss": "kd",
                    "data": "digits: 1000 train, 100 val, 400 test samples"})


@pytest.fixture
def inputs() -> ReportInputs:
    return make_inputs()


@pytest.fixture(scope="session")
def rendered() -> tuple[str, str]:
    """(markdown, html) of the synthetic report, rendered once per session (matplotlib is the slow part)."""
    from refinery.report import render_report

    return render_report(make_inputs())
