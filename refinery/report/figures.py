"""PNG figures for report.html, drawn with matplotlib's Agg canvas.

Figures are built on `matplotlib.figure.Figure` with an explicit `FigureCanvasAgg`, never through
pyplot, so no global backend or GUI state is touched and rendering works headless anywhere.
Each function returns PNG bytes, or None when it has nothing to draw.
"""
from __future__ import annotations

import io
import math

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure

from .document import ReportInputs
from .sections import pareto_models

DPI = 100
# Fixed metadata: the PNG bytes then depend only on the data, not on the matplotlib build date.
PNG_METADATA = {"Software": "refinery"}


def png_bytes(fig: MplFigure) -> bytes:
    """Render a figure to PNG bytes through the Agg canvas."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata=PNG_METADATA)
    return buffer.getvalue()


def _grid(count: int, cols: int, size: tuple[float, float]) -> tuple[MplFigure, list]:
    """A figure with `count` axes in rows of `cols`; unused grid cells are hidden."""
    cols = max(1, min(cols, count))
    rows = math.ceil(count / cols)
    fig = MplFigure(figsize=(size[0] * cols, size[1] * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


def training_figure(histories: dict[str, list[dict]]) -> bytes | None:
    """Per stage: training loss (solid, left axis) and validation accuracy (dashed, right axis)."""
    stages = [s for s, rows in histories.items() if rows]
    if not stages:
        return None
    fig, axes = _grid(len(stages), 3, (4.2, 3.2))
    for ax, stage in zip(axes, stages):
        rows, acc_ax = histories[stage], ax.twinx()
        for i, run in enumerate(dict.fromkeys(r.get("run", stage) for r in rows)):
            pts = [r for r in rows if r.get("run", stage) == run]
            color = f"C{i}"
            ax.plot([r["epoch"] for r in pts], [r["loss"] for r in pts], "-o", ms=3, color=color, label=f"{run} loss")
            if all(r.get("val_acc") is not None for r in pts):
                acc_ax.plot([r["epoch"] for r in pts], [r["val_acc"] for r in pts], "--s", ms=3, color=color,
                            label=f"{run} val acc")
        ax.set(title=stage, xlabel="epoch", ylabel="training loss")
        acc_ax.set_ylabel("validation accuracy")
        acc_ax.set_ylim(0, 1)
        handles = ax.get_legend_handles_labels()[0] + acc_ax.get_legend_handles_labels()[0]
        ax.legend(handles=handles, fontsize=7, loc="best")
    return png_bytes(fig)


def reliability_figure(reliability: dict[str, list[dict]], ece: dict[str, float] | None = None) -> bytes | None:
    """One reliability diagram per model: accuracy per confidence bin (bars), each bin's mean
    confidence (red ticks) and the diagonal of perfect calibration; ECE in the title."""
    if not reliability:
        return None
    fig, axes = _grid(len(reliability), 4, (3.0, 3.0))
    for ax, (model, rows) in zip(axes, reliability.items()):
        full = [r for r in rows if r["count"]]
        ax.bar([r["lo"] for r in full], [r["accuracy"] for r in full], width=[r["hi"] - r["lo"] for r in full],
               align="edge", color="C0", edgecolor="white", label="accuracy")
        ax.scatter([(r["lo"] + r["hi"]) / 2 for r in full], [r["confidence"] for r in full], marker="_", s=120,
                   color="C3", linewidths=2, label="mean confidence", zorder=3)
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        title = model if not ece or model not in ece else f"{model} (ECE {ece[model]:.3f})"
        ax.set(title=title, xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy")
        ax.title.set_fontsize(9)
    axes[0].legend(fontsize=7, loc="upper left")
    return png_bytes(fig)


def frontier_figure(models: dict[str, dict]) -> bytes | None:
    """Test accuracy against FLOPs per sample (log) and batch-1 latency; frontier models labelled."""
    if not models:
        return None
    front = set(pareto_models(models))
    fig, axes = _grid(2, 2, (5.0, 3.8))
    for ax, key, label in ((axes[0], "flops_per_sample", "FLOPs per sample"), (axes[1], "latency_ms",
                                                                               "latency at batch 1 (ms)")):
        for i, (name, row) in enumerate(models.items()):
            marker = "*" if name in front else "o"
            ax.scatter(row[key], row["test_acc"], s=90 if name in front else 40, marker=marker, color=f"C{i % 10}",
                       label=name, alpha=0.8)
            if name in front:  # only the frontier is labelled: cheap models often sit on top of each other
                ax.annotate(name, (row[key], row["test_acc"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set(xlabel=label, ylabel="test accuracy")
        ax.grid(alpha=0.3)
    axes[0].set_title("accuracy vs FLOPs (* = frontier)")
    axes[1].set_title("accuracy vs latency")
    axes[1].legend(fontsize=7, loc="best")
    return png_bytes(fig)


def unlearning_figure(metrics: dict) -> bytes | None:
    """Grouped bars: UA, RA, TA and MIA (%) per unlearning method."""
    methods = {k: v for k, v in metrics.get("unlearn", {}).items() if isinstance(v, dict)}
    if not methods:
        return None
    keys = ["UA", "RA", "TA", "MIA"]
    fig = MplFigure(figsize=(max(6.0, 1.6 * len(methods)), 3.6), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(keys)
    for j, key in enumerate(keys):
        xs = [i + (j - 1.5) * width for i in range(len(methods))]
        ax.bar(xs, [row.get(key) or 0.0 for row in methods.values()], width=width, label=key, color=f"C{j}")
    ax.set_xticks(range(len(methods)), list(methods))
    ax.set(ylabel="%", ylim=(0, 105), title="unlearning scores (target: retrain)")
    ax.legend(ncols=4, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    return png_bytes(fig)


def experts_figure(experts: list[dict]) -> bytes | None:
    """Bars of each expert's share of routed tokens, one group per MoE layer."""
    if not experts:
        return None
    fig = MplFigure(figsize=(max(5.0, 1.8 * len(experts)), 3.2), layout="constrained")
    ax = fig.subplots()
    count = max(len(e.get("load", [])) for e in experts)
    width = 0.8 / max(count, 1)
    for i in range(count):
        xs = [layer + (i - (count - 1) / 2) * width for layer in range(len(experts))]
        ax.bar(xs, [e["load"][i] if i < len(e.get("load", [])) else 0.0 for e in experts], width=width,
               label=f"expert {i}", color=f"C{i % 10}")
    ax.axhline(1.0 / max(count, 1), color="k", ls="--", lw=1, label="balanced")
    ax.set_xticks(range(len(experts)), [f"layer {e['layer']}" for e in experts])
    ax.set(ylabel="share of routed tokens", title="expert load per MoE layer")
    ax.legend(fontsize=7, ncols=2)
    return png_bytes(fig)


def render_figures(inputs: ReportInputs) -> dict[str, bytes]:
    """Every report figure as PNG bytes, keyed like the `Figure` blocks in sections.py."""
    ece = {m: r["ece"] for m, r in inputs.models.items() if r.get("ece") is not None}
    figures = {"training": training_figure(inputs.histories),
               "reliability": reliability_figure(inputs.reliability, ece),
               "frontier": frontier_figure(inputs.models), "unlearning": unlearning_figure(inputs.metrics),
               "experts": experts_figure(inputs.experts)}
    return {key: png for key, png in figures.items() if png}
