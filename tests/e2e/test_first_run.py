"""What a new user meets after the first run, done for real on a copy of the smoke project:
git shows only the results DVC keeps in git, `dvc plots show` draws every plot with the network
off, and DVC's metrics hold what a user compares (no timings)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dvc_render.html import PAGE_HTML

from tasks.stages import PIPELINE
from tests.project import run
from tests.refinery.report.browser import drawn_plots, ink_fraction, screenshot

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def project(smoke_project, tmp_path_factory) -> Path:
    """A copy of the smoke run (so nothing here writes into the shared one), set up as
    `make setup` leaves a checkout: the offline plot template written and named in DVC's config."""
    dest = tmp_path_factory.mktemp("first-run") / "project"
    shutil.copytree(smoke_project, dest, symlinks=True)
    make = subprocess.run(["make", "--no-print-directory", "plots-template", f"BIN={BIN}"], cwd=dest,
                          capture_output=True, text=True, timeout=300)
    assert make.returncode == 0, make.stdout + make.stderr
    return dest


def results_kept_in_git() -> set[str]:
    """What a run leaves for the user to commit: dvc.lock and the outputs DVC does not cache."""
    return {"dvc.lock", *(p for s in PIPELINE for p in (*s.metrics, *s.uncached))}


def git_changes(project: Path) -> list[str]:
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=project,
                            capture_output=True, text=True, check=True).stdout
    return [line[3:] for line in status.splitlines()]


def test_first_run_leaves_git_clean_but_for_its_results(project):
    run(project, "dvc", "plots", "show")  # writes dvc_plots/index.html, DVC's default place
    assert (project / "dvc_plots" / "index.html").exists()
    kept = results_kept_in_git()
    # params.yaml: `refinery run --pipeline smoke` records the preset it ran, by design
    stray = [p for p in git_changes(project)
             if p != "params.yaml" and not any(p == k or p.startswith(k.rstrip("/") + "/") for k in kept)]
    assert not stray, f"the first run dirtied git beyond its results: {stray}"


def test_dvc_plots_show_draws_every_plot_offline(project, tmp_path):
    out = tmp_path / "plots"
    run(project, "dvc", "plots", "show", "-o", str(out))
    page = out / "index.html"
    text = page.read_text()
    assert not re.search(r"<script[^>]*\bsrc\s*=", text, flags=re.I), "the page loads a script from elsewhere"
    plots = drawn_plots(page, tmp_path / "probe")
    assert len(plots) >= 10 and all(p["marks"] or p["ink"] for p in plots), plots
    ids = {p["id"] for p in plots}
    assert "data_reports_plots_history_distill-student_csv" in ids  # named by role, not by loss
    assert ink_fraction(screenshot(page, tmp_path / "shot" / "plots.png")) > 0.02


def test_dvc_default_page_is_blank_offline(project, tmp_path):
    """The control that shows the probe sees a blank page: DVC's own page, which loads Vega from a CDN."""
    template = tmp_path / "dvc-default.html"
    template.write_text(PAGE_HTML)
    out = tmp_path / "plots"
    run(project, "dvc", "plots", "show", "--html-template", str(template), "-o", str(out))
    assert re.search(r"<script[^>]*\bsrc\s*=\s*\"https://", (out / "index.html").read_text())
    plots = drawn_plots(out / "index.html", tmp_path / "probe")
    assert plots and not any(p["marks"] or p["ink"] for p in plots), plots


def test_dvc_metrics_hold_no_timings(project):
    shown = json.loads(run(project, "dvc", "metrics", "show", "--json").stdout)
    files = shown[""]["data"]
    assert set(files) == {"data/reports/metrics.json"}, set(files)

    def keys(obj: dict, prefix: str = "") -> list[str]:
        return [k for name, v in obj.items()
                for k in (keys(v, f"{prefix}{name}.") if isinstance(v, dict) else [f"{prefix}{name}"])]

    metrics = keys(files["data/reports/metrics.json"]["data"])
    assert "distill.student.test_acc" in metrics and "unlearn.retrain.gap" in metrics
    timed = [k for k in metrics if re.search(r"seconds|latency|throughput", k)]
    assert not timed, timed
    details = json.loads((project / "data" / "reports" / "details.json").read_text())
    assert "latency_ms" in details["cost"]["teacher"] and "seconds" in details["unlearn"]["retrain"]
