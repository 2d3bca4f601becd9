"""`refinery report`: the terminal summary, the missing-metrics error, and `--compare REV`."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flows.cli import build_parser
from flows.report_cli import print_report

METRICS = {
    "teacher": {"test_acc": 0.9}, "upcycle": {"test_acc": 0.91, "active_params": 18600, "expert_load_cv": 0.2},
    "distill": {"student": {"test_acc": 0.85}, "scratch": {"test_acc": 0.86}, "teacher": {"test_acc": 0.91}},
    "unlearn": {"retrain": {"UA": 12.0, "RA": 95.0, "TA": 84.0, "MIA": 20.0, "gap": 0.0, "seconds": 10.0},
                "ssd": {"UA": 10.0, "RA": 90.0, "TA": 80.0, "MIA": 15.0, "gap": 3.5, "seconds": 1.0}},
    "cost": {"teacher": {"params": 14283, "active_params": 14283, "flops_per_sample": 904832.0, "latency_ms": 1.5,
                         "throughput": 5000.0},
             "student": {"params": 3947, "active_params": 3947, "flops_per_sample": 239424.0, "latency_ms": 0.3,
                         "throughput": 40000.0}},
    "quality": {"teacher": {"test_acc": 0.9, "nll": 0.31, "ece": 0.04},
                "student": {"test_acc": 0.85, "nll": 0.52, "ece": 0.07}},
}


def write_metrics(root: Path, metrics: dict) -> None:
    path = root / "data" / "reports" / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True))


def test_report_prints_the_summary_table(tmp_path, capsys):
    write_metrics(tmp_path, METRICS)
    assert print_report(tmp_path) == 0
    out = capsys.readouterr().out
    for text in ("Models on the test set", "teacher", "student", "upcycle", "scratch", "0.3100", "14,283",
                 "904,832", "Unlearning", "ssd", "3.50"):
        assert text in out, text


def test_report_without_metrics_says_run_make_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `make run` first"):
        print_report(tmp_path)


def test_cli_parses_compare():
    assert build_parser().parse_args(["report", "--compare", "HEAD~1"]).compare == "HEAD~1"
    assert build_parser().parse_args(["report"]).compare is None


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True,
                   capture_output=True)


def test_compare_diffs_metrics_against_a_revision(tmp_path, capsys):
    git(tmp_path, "init", "-q")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True, capture_output=True)
    write_metrics(tmp_path, METRICS)
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "baseline")
    write_metrics(tmp_path, {**METRICS, "teacher": {"test_acc": 0.95}})
    assert print_report(tmp_path, compare="HEAD") == 0
    out = capsys.readouterr().out
    assert "teacher.test_acc" in out and "+0.05" in out
    assert "distill.student.test_acc" not in out  # unchanged metrics are not listed
    assert print_report(tmp_path, compare="no-such-rev") == 2
    assert "cannot compare with 'no-such-rev'" in capsys.readouterr().err
