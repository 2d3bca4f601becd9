"""The pipeline report: every model on one test set, in Markdown, self-contained HTML and DVC plot CSVs.

    inputs = ReportInputs(metrics, models, reliability, histories, experts, provenance)
    report = build_report(inputs)                      # sections with plain verdicts
    render_markdown(report)                            # report.md
    render_html(report, render_figures(inputs))        # report.html, PNGs inlined as data URIs
    write_plot_data(reports_dir / "plots", inputs)     # CSVs that `dvc plots show` renders

Nothing here imports prefect or dvc.
"""
from __future__ import annotations

from .document import Figure, Report, ReportInputs, Section, Table, format_cell, model_stage
from .html import render_html
from .markdown import render_markdown
from .plot_data import plot_files, write_plot_data
from .sections import SUMMARY_COLUMNS, accuracy_verdict, build_report, compare_accuracy, pareto_models, summary_rows


def render_report(inputs: ReportInputs) -> tuple[str, str]:
    """(Markdown, HTML) of the full report; the figures are drawn here (matplotlib is imported lazily)."""
    from .figures import render_figures

    report = build_report(inputs)
    return render_markdown(report), render_html(report, render_figures(inputs))


__all__ = ["Figure", "Report", "ReportInputs", "SUMMARY_COLUMNS", "Section", "Table", "accuracy_verdict",
           "build_report",
           "compare_accuracy", "format_cell", "model_stage", "pareto_models", "plot_files", "render_html",
           "render_markdown", "render_report", "summary_rows", "write_plot_data"]
