"""CSV files for DVC plots (data/reports/plots/), declared under `plots:` in dvc.yaml.

    history/<stage>[-<role>].csv   epoch, loss, val_acc, lr, seconds, run   training curve per stage and run,
                                   named by the run's role (distill-student.csv), not its loss
    reliability/<model>.csv        bin, lo, hi, confidence, accuracy, count   reliability diagram per model
    frontier.csv                   model, test_acc, flops_per_sample, latency_ms, ...   accuracy vs cost
    unlearning.csv                 method, UA, RA, TA, MIA, gap, seconds   unlearning bars
    expert_load.csv                expert (e.g. "L0 E1"), layer, index, load   MoE expert load

Files are built in memory (`plot_files`) and written as one directory swap (`write_plot_data`),
so a model or method that disappeared from the pipeline leaves no stale CSV behind.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from ..store import atomic_path
from .document import ReportInputs

HISTORY_FIELDS = ["epoch", "loss", "val_acc", "lr", "seconds", "run"]
RELIABILITY_FIELDS = ["bin", "lo", "hi", "confidence", "accuracy", "count"]
FRONTIER_FIELDS = ["model", "test_acc", "nll", "ece", "params", "active_params", "flops_per_sample", "latency_ms",
                   "throughput"]
UNLEARN_FIELDS = ["method", "UA", "RA", "TA", "MIA", "gap", "seconds"]
EXPERT_FIELDS = ["expert", "layer", "index", "load"]


def slug(text: str) -> str:
    """A file-name-safe lower-case form: 'student (kd)' -> 'student-kd'."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "unnamed"


def to_csv(rows: list[dict], fields: list[str]) -> str:
    """CSV text with a header; missing or None values become empty cells."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fields})
    return buffer.getvalue()


def run_role(run: str) -> str:
    """What a run is, without what it was trained with: 'student (kd)' -> 'student'."""
    return re.sub(r"\s*\([^)]*\)\s*$", "", str(run)) or str(run)


def history_csvs(histories: dict[str, list[dict]]) -> dict[str, str]:
    """One CSV per (stage, run), named by the run's role, so `dvc plots diff` lines up the student
    of a `kd` run with the student of a `dkd` run; the `run` column keeps the full name. A run
    named like its stage gets just the stage's name."""
    files = {}
    for stage, rows in histories.items():
        runs = list(dict.fromkeys(r.get("run", stage) for r in rows))
        roles = [slug(run_role(run)) for run in runs]
        for run, role in zip(runs, roles):
            role = role if roles.count(role) == 1 else slug(run)  # two runs of one role: keep them apart
            name = stage if role == slug(stage) else f"{stage}-{role}"
            files[f"history/{name}.csv"] = to_csv([dict(r, run=run) for r in rows if r.get("run", stage) == run],
                                                  HISTORY_FIELDS)
    return files


def reliability_csvs(reliability: dict[str, list[dict]]) -> dict[str, str]:
    """One CSV per model with its non-empty bins (empty bins have no confidence to plot)."""
    return {f"reliability/{slug(model)}.csv": to_csv([dict(bin=i, **r) for i, r in enumerate(rows) if r["count"]],
                                                      RELIABILITY_FIELDS)
            for model, rows in reliability.items()}


def frontier_csv(models: dict[str, dict]) -> str:
    """Every model's accuracy and cost, one row each."""
    return to_csv([dict(model=name, **row) for name, row in models.items()], FRONTIER_FIELDS)


def unlearning_csv(metrics: dict) -> str:
    """One row per unlearning method (retrain included) from metrics.json's `unlearn` section."""
    methods = {k: v for k, v in metrics.get("unlearn", {}).items() if isinstance(v, dict)}
    return to_csv([dict(method=name, **row) for name, row in methods.items()], UNLEARN_FIELDS)


def expert_load_csv(experts: list[dict]) -> str:
    """One row per (layer, expert): the share of routed tokens that expert received."""
    rows = [dict(expert=f"L{e['layer']} E{i}", layer=e["layer"], index=i, load=load)
            for e in experts for i, load in enumerate(e.get("load", []))]
    return to_csv(rows, EXPERT_FIELDS)


def plot_files(inputs: ReportInputs) -> dict[str, str]:
    """Every plot CSV, keyed by its path relative to data/reports/plots/."""
    files = {**history_csvs(inputs.histories), **reliability_csvs(inputs.reliability),
             "frontier.csv": frontier_csv(inputs.models), "unlearning.csv": unlearning_csv(inputs.metrics)}
    if inputs.experts:
        files["expert_load.csv"] = expert_load_csv(inputs.experts)
    return files


def write_plot_data(dest: Path | str, inputs: ReportInputs) -> list[Path]:
    """Replace the directory `dest` with the plot CSVs in one atomic swap; returns the files written."""
    dest = Path(dest)
    files = plot_files(inputs)
    with atomic_path(dest) as tmp:
        tmp.mkdir(parents=True)
        for rel, text in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return [dest / rel for rel in files]
