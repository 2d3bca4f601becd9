"""The report as data: sections of paragraphs, tables and figures, and the inputs it is built from.

One `Report` is rendered twice, to Markdown (`markdown.py`) and to self-contained HTML
(`html.py`), so both always say the same thing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# How each known column is printed; anything else falls back to `_default_format`.
FORMATS: dict[str, str] = {
    "test_acc": "{:.4f}", "nll": "{:.4f}", "ece": "{:.4f}", "val_acc": "{:.4f}",
    "params": "{:,}", "active_params": "{:,}", "flops_per_sample": "{:,.0f}",
    "latency_ms": "{:.3f}", "throughput": "{:,.0f}",
    "UA": "{:.2f}", "RA": "{:.2f}", "TA": "{:.2f}", "MIA": "{:.2f}", "gap": "{:.2f}", "seconds": "{:.2f}",
    "dUA": "{:+.2f}", "dRA": "{:+.2f}", "dTA": "{:+.2f}", "dMIA": "{:+.2f}",
    "load_cv": "{:.3f}", "router_entropy": "{:.3f}", "drop_rate": "{:.3f}",
}

# Which stage produced each model, so every row can carry that stage's config hash.
MODEL_STAGES = {"teacher": "teacher", "upcycle": "upcycle", "dense_continued": "upcycle", "student": "distill",
                "scratch": "distill"}


def model_stage(model: str) -> str:
    """The pipeline stage that wrote `model` (unlearned variants are `unlearn_<method>`)."""
    return "unlearn" if model.startswith("unlearn_") else MODEL_STAGES.get(model, "evaluate")


def _default_format(value: Any) -> str:
    """Fallback cell text: ints with thousands separators, floats to 4 significant digits."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.4g}"
    return str(value)


def format_cell(column: str, value: Any) -> str:
    """A table cell as text: known columns get their fixed format, missing values print empty."""
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a"
    fmt = FORMATS.get(column)
    if fmt is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return fmt.format(value)
        except ValueError:  # e.g. "{:,}" given a float
            return _default_format(value)
    return _default_format(value)


@dataclass
class Table:
    """Rows of dicts shown under `columns`; `headers` optionally renames columns for display."""
    columns: list[str]
    rows: list[dict]
    headers: dict[str, str] = field(default_factory=dict)

    def header(self, column: str) -> str:
        """The display name of `column`."""
        return self.headers.get(column, column)

    def cells(self) -> list[list[str]]:
        """Every row as formatted cell strings, in column order."""
        return [[format_cell(c, row.get(c)) for c in self.columns] for row in self.rows]


@dataclass
class Figure:
    """A reference to a PNG rendered separately (by key), with its caption."""
    key: str
    caption: str


Block = str | Table | Figure


@dataclass
class Section:
    title: str
    blocks: list[Block]


@dataclass
class Report:
    title: str
    preamble: list[Block]
    sections: list[Section]


@dataclass
class ReportInputs:
    """Everything the report reads, gathered by the evaluate stage (or built by hand in tests).

    - `metrics`: the data/reports/metrics.json object (the contract).
    - `models`: per model, test_acc, nll, ece, params, active_params, flops_per_sample,
      latency_ms and throughput.
    - `reliability`: per model, the rows of `refinery.metrics.reliability_table`.
    - `histories`: per stage, the history table (epoch, loss, val_acc, run, ...) as records.
    - `experts`: the rows of data/upcycle/experts.parquet (layer, load list, load_cv, ...).
    - `recipes`: the rows of data/upcycle/recipes.parquet (model, test_acc, active_params,
      flops_per_sample): the dense teacher, the configured recipe, and with upcycle.compare
      every other recipe and MoLA's three allocations.
    - `provenance`: pipeline, seed, config_hash, git_rev, stage_hashes {stage: hash}, data,
      n_test, num_classes, distill_loss, forget_size.
    """
    metrics: dict
    models: dict[str, dict]
    reliability: dict[str, list[dict]] = field(default_factory=dict)
    histories: dict[str, list[dict]] = field(default_factory=dict)
    experts: list[dict] = field(default_factory=list)
    recipes: list[dict] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)

    def stage_hash(self, stage: str) -> str:
        """The config hash recorded in a stage's manifest, or '?' when it is unknown."""
        return self.provenance.get("stage_hashes", {}).get(stage, "?")

    def stamp(self, stage: str) -> str:
        """'config `abc`, git `rev`' for numbers that `stage` produced."""
        return f"config `{self.stage_hash(stage)}`, git `{self.provenance.get('git_rev', '?')}`"
