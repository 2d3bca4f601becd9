"""The `plots:` section of the project's dvc.yaml renders the CSVs the report writes.

Runs `dvc plots show` in a throwaway DVC project (no git) holding only that section and
synthetic plot data, so it needs no pipeline run.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from refinery.report import plot_files, write_plot_data

ROOT = Path(__file__).resolve().parents[3]


def dvc(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def plots_project(tmp_path, inputs) -> Path:
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"plots": plots}))
    write_plot_data(tmp_path / "data" / "reports" / "plots", inputs)
    init = dvc(tmp_path, "init", "--no-scm", "-q")
    assert init.returncode == 0, init.stderr
    return tmp_path


def test_every_plot_file_is_declared(inputs):
    """Each CSV the report writes falls under some plot definition in dvc.yaml."""
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    declared = set()
    for entry in plots:
        (plot_id, props), = entry.items()
        declared |= set(props.get("y", {})) if isinstance(props.get("y"), dict) else {plot_id}
    for rel in plot_files(inputs):
        path = f"data/reports/plots/{rel}"
        assert any(path == d or path.startswith(d.rstrip("/") + "/") for d in declared), path


def test_dvc_plots_show_renders_every_plot(plots_project, inputs):
    shown = dvc(plots_project, "plots", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    result = json.loads(shown.stdout)
    assert not result.get("errors"), result.get("errors")
    names = set(result["data"])
    assert {"Accuracy vs cost", "Unlearning UA (%)", "Unlearning RA (%)", "Unlearning MIA-efficacy (%)",
            "Expert load per MoE layer"} <= names
    assert "data/reports/plots/history/distill-student.csv" in names
    assert {f"data/reports/plots/reliability/{m.replace('_', '-')}.csv" for m in inputs.models} <= names
    html = dvc(plots_project, "plots", "show", "-o", "out")
    assert html.returncode == 0, html.stderr
    page = (plots_project / "out" / "index.html").read_text()
    assert page.count("vegaEmbed(") >= len(names)
