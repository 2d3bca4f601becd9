"""aggregate: a seed group in one place. Reads every member's metrics, details and margins
(data/seeds/<seed>/), writes data/reports/metrics.json (DVC's metrics: per metric n, mean, std
and 95% CI; per comparison the paired mean difference, CI and p-value; KLoM), details.json
(every member's numbers, the summaries of cost and times, and each verdict in words), the plot
CSVs (each member's curves side by side, the means of the bar and scatter plots) and the report."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from refinery import config as C
from refinery.report import render_html, render_markdown
from refinery.report.seed_group import build_group_report, group_metrics, group_results
from refinery.store import read_json, read_table, write_json, write_text
from refinery.store.atomic import atomic_path

from .common import Workspace, log, write_manifest
from .evaluate import git_rev

MEAN_PLOTS = {"frontier.csv": "model", "unlearning.csv": "method"}  # averaged over the members, row by row


def read_members(ws: Workspace, seeds: list[int]) -> tuple[dict, dict, dict]:
    """(metrics, details, margins) of every member, keyed by seed."""
    metrics, details, margins = {}, {}, {}
    for seed in seeds:
        reports = Workspace(ws.root, seed).stage_dir("evaluate")
        metrics[seed] = read_json(reports / "metrics.json")
        details[seed] = read_json(reports / "details.json")
        table = Workspace(ws.root, seed).stage_dir("unlearn") / "margins.parquet"
        if table.exists():
            margins[seed] = read_table(table)
    return metrics, details, margins


def write_group_plots(ws: Workspace, seeds: list[int], out) -> None:
    """data/reports/plots: each member's curves and reliability tables named by seed (DVC draws
    one line per file), and the row-wise means of the scatter and bar tables."""
    sources = {seed: Workspace(ws.root, seed).stage_dir("evaluate") / "plots" for seed in seeds}
    with atomic_path(out / "plots") as dest:
        dest.mkdir(parents=True)
        for seed, source in sources.items():
            for folder in ("history", "reliability"):
                for csv in sorted((source / folder).glob("*.csv")):
                    (dest / folder).mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(csv, dest / folder / f"seed{seed}-{csv.name}")
        for name, key in MEAN_PLOTS.items():
            frames = [pd.read_csv(source / name) for source in sources.values() if (source / name).exists()]
            if frames:
                pd.concat(frames).groupby(key, sort=False).mean(numeric_only=True).reset_index().to_csv(
                    dest / name, index=False)


def aggregate(ws: Workspace) -> None:
    cfg = ws.config()
    seeds = list(cfg.seeds or [])
    out = ws.root / Path(ws.declared("aggregate", seeds).manifest).parent
    metrics, details, margins = read_members(ws, seeds)
    results = group_results(metrics, details, margins)
    write_json(out / "metrics.json", group_metrics(results))
    write_json(out / "details.json", {
        "seeds": seeds, "data_seed": cfg.seed, "members": {str(s): {"metrics": metrics[s], "details": details[s]}
                                                           for s in seeds},
        "summaries": {k: v.to_dict() for k, v in results["detail_summaries"].items()},
        "verdicts": {key: dict(c.to_dict(), label=label) for key, (label, c) in results["comparisons"].items()}})
    write_group_plots(ws, seeds, out)
    provenance = {"pipeline": cfg.name, "data_seed": cfg.seed, "git_rev": git_rev(ws),
                  "config_hash": C.config_hash(cfg)}
    report = build_group_report(results, seeds, provenance)
    write_text(out / "report.md", render_markdown(report))
    write_text(out / "report.html", render_html(report, {}))
    for label, comparison in results["comparisons"].values():
        log.info("aggregate: %s: %s (n=%d, mean %+.4f, CI [%+.4f, %+.4f])", label, comparison.verdict,
                 comparison.n, comparison.mean_diff, comparison.ci_low, comparison.ci_high)
    write_manifest(ws, "aggregate", cfg)
