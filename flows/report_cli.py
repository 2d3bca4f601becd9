"""`refinery report [--compare REV]`: the summary table in the terminal, and metric diffs through DVC.

The table is read from data/reports/metrics.json (the contract, plus `quality.<model>`), so it
needs no model, torch or matplotlib. `--compare REV` runs `dvc metrics diff REV` (a git revision,
branch or tag) and falls back to `dvc exp diff REV` (a DVC experiment name).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from refinery.report import format_cell

METRICS = Path("data/reports/metrics.json")
DETAILS = Path("data/reports/details.json")
MODEL_COLUMNS = ["test_acc", "nll", "ece", "params", "active_params", "flops_per_sample", "latency_ms", "throughput"]
PIPELINE_ORDER = ["teacher", "upcycle", "student", "scratch"]
UNLEARN_COLUMNS = ["UA", "RA", "TA", "MIA", "gap", "seconds"]


def make_console() -> Console:
    """A console that writes to the current stdout; wide when stdout is not a terminal (pipes, tests)."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


def load_metrics(root: Path) -> dict:
    """data/reports/metrics.json merged with details.json (cost, times), or a FileNotFoundError
    whose message is the one-line fix."""
    path = root / METRICS
    if not path.exists():
        raise FileNotFoundError(f"{METRICS} not found; run `make run` first (or `refinery run`)")
    metrics = read_json_file(path)
    details = root / DETAILS
    return merged(metrics, read_json_file(details)) if details.exists() else metrics


class ReportError(ValueError):
    """A report file that cannot be read (one line, exit code 2)."""


def read_json_file(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path}: unreadable ({exc}); `refinery run --force` writes it again") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object; rerun the pipeline")
    return data


def merged(a: dict, b: dict) -> dict:
    """`a` with `b`'s keys added, section by section (the two files never hold the same leaf)."""
    out = dict(a)
    for key, value in b.items():
        out[key] = merged(out[key], value) if isinstance(out.get(key), dict) and isinstance(value, dict) else value
    return out


def model_rows(metrics: dict) -> dict[str, dict]:
    """Per model, quality and cost; old metrics.json files without `quality` still give what they have."""
    rows: dict[str, dict] = {}
    for name, cost in metrics.get("cost", {}).items():
        rows.setdefault(name, {}).update(cost)
    for name, quality in metrics.get("quality", {}).items():
        rows.setdefault(name, {}).update(quality)
    contract_acc = {"teacher": metrics.get("teacher", {}), "upcycle": metrics.get("upcycle", {}),
                    "student": metrics.get("distill", {}).get("student", {}),
                    "scratch": metrics.get("distill", {}).get("scratch", {})}
    for name, section in contract_acc.items():
        if "test_acc" in section:
            rows.setdefault(name, {}).setdefault("test_acc", section["test_acc"])
    order = {name: i for i, name in enumerate(PIPELINE_ORDER)}
    return dict(sorted(rows.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))


def rich_table(title: str, key: str, columns: list[str], rows: dict[str, dict]) -> Table:
    """A rich table with a first column `key` and one right-aligned column per metric."""
    table = Table(title=title, title_justify="left")
    table.add_column(key, style="bold")
    for column in columns:
        table.add_column(column, justify="right")
    for name, row in rows.items():
        table.add_row(name, *(format_cell(c, row.get(c)) for c in columns))
    return table


def provenance_line(root: Path) -> str:
    """Config hash of the evaluate stage and where the full report is."""
    manifest = root / "data" / "reports" / "manifest.json"
    config = json.loads(manifest.read_text()).get("config_hash", "?") if manifest.exists() else "?"
    return f"evaluate config {config}; full report: data/reports/report.html (and report.md)"


def interval(summary: dict | None, scale: float = 1.0) -> str:
    """A seed group's `mean [low, high]` cell."""
    if not isinstance(summary, dict) or summary.get("mean") is None:
        return ""
    low, high = summary.get("ci_low"), summary.get("ci_high")
    spread = f" [{low * scale:.2f}, {high * scale:.2f}]" if low is not None and high is not None else ""
    return f"{summary['mean'] * scale:.2f}{spread}"


def print_group_summary(metrics: dict, console: Console) -> None:
    """A seed group: each model's accuracy with its 95% CI, and every paired verdict."""
    models = Table(title=f"Models on the test set, {len(metrics.get('seeds', []))} seeds: accuracy % "
                         "(mean [95% CI])", title_justify="left")
    for column in ("model", "test_acc", "ece"):
        models.add_column(column, justify="left" if column == "model" else "right")
    for name, row in metrics.get("quality", {}).items():
        models.add_row(name, interval(row.get("test_acc"), 100.0), interval(row.get("ece")))
    console.print(models)
    verdicts = Table(title="Paired verdicts over seeds (paired t-test)", title_justify="left")
    for column in ("comparison", "mean diff", "95% CI", "p", "verdict"):
        verdicts.add_column(column)
    for v in metrics.get("verdicts", {}).values():
        num = lambda x, spec="+.4g": "n/a" if x is None else format(x, spec)  # noqa: E731  (NaN is stored as null)
        verdicts.add_row(v["label"], num(v["mean_diff"]), f"[{num(v['ci_low'])}, {num(v['ci_high'])}]",
                         num(v["p_value"], ".3g"), v["verdict"])
    console.print(verdicts)


def staleness_line(root: Path) -> str | None:
    """A warning when the numbers shown are not those of the workspace as it is now."""
    from .dvc_runner import plan

    if not (root / "dvc.yaml").exists():
        return None
    try:
        todo = plan(root)
    except Exception as exc:  # a run holds the workspace, or DVC cannot read it: say so, show the numbers
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        return f"[yellow]cannot tell whether these results are current: {reason}[/yellow]"
    if not todo.todo:
        return None
    return (f"[bold red]OUT OF DATE[/bold red]: {', '.join(todo.stale)} changed since these results were computed"
            f"{' (and ' + ', '.join(todo.downstream) + ' follow)' if todo.downstream else ''}; "
            "they are the last completed run's; `refinery run` brings them up to date")


def requests_table(root: Path) -> Table | None:
    """Deletion requests and their status (`refinery requests show ID` gives a receipt)."""
    from refinery.requests import read_ledger

    requests = read_ledger(root)
    if not requests:
        return None
    table = Table(title="Deletion requests (receipts: refinery requests show ID)", title_justify="left")
    for column in ("request", "received", "samples", "status", "served by"):
        table.add_column(column)
    for r in requests:
        served = r.event("served")
        how = "retrained" if r.reached("retrained") else (served["detail"].get("method") if served else "-")
        table.add_row(r.request_id, r.received, str(len(r.keys)), r.status, how)
    return table


def print_summary(root: Path, console: Console) -> None:
    """The per-model table and the unlearning audit table, the deletion requests, and a warning
    when the workspace changed since the results were computed."""
    metrics = load_metrics(root)
    warning = staleness_line(root)
    if warning:
        console.print(warning)
    if "verdicts" in metrics:  # a seed group's aggregate
        print_group_summary(metrics, console)
    else:
        console.print(rich_table("Models on the test set", "model", MODEL_COLUMNS, model_rows(metrics)))
        unlearn = {k: v for k, v in metrics.get("unlearn", {}).items() if isinstance(v, dict)}
        if unlearn:
            console.print(rich_table("Unlearning (%, gap to retrain)", "method", UNLEARN_COLUMNS, unlearn))
    requests = requests_table(root)
    if requests is not None:
        console.print(requests)
    console.print(provenance_line(root))


def dvc_json(root: Path, args: list[str]) -> tuple[dict | None, str]:
    """Run `python -m dvc ARGS --json` in the project; (parsed output, '') or (None, error line)."""
    proc = subprocess.run([sys.executable, "-m", "dvc", *args, "--json"], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        return None, lines[-1] if lines else f"dvc {' '.join(args)} failed ({proc.returncode})"
    try:
        return json.loads(proc.stdout or "{}"), ""
    except json.JSONDecodeError:
        return None, f"dvc {' '.join(args)}: unreadable output"


def metric_diffs(root: Path, rev: str) -> dict[str, dict]:
    """{metric: {old, new, diff}} for data/reports/metrics.json between REV and the workspace."""
    out, error = dvc_json(root, ["metrics", "diff", rev, "--targets", str(METRICS)])
    if out is None:  # perhaps an experiment name rather than a git revision
        exp, exp_error = dvc_json(root, ["exp", "diff", rev])
        if exp is None:
            raise ValueError(f"cannot compare with {rev!r}: {error or exp_error}")
        out = exp.get("metrics", {})
    return next((v for k, v in out.items() if Path(k) == METRICS), {})


def print_compare(root: Path, rev: str, console: Console) -> None:
    """The metrics that changed between REV and the workspace, as a table."""
    load_metrics(root)
    diffs = metric_diffs(root, rev)
    if not diffs:
        console.print(f"No metric in {METRICS} differs between {rev} and the workspace.")
        return
    table = Table(title=f"{METRICS}: {rev} -> workspace", title_justify="left")
    for column, justify in (("metric", "left"), (rev, "right"), ("workspace", "right"), ("change", "right")):
        table.add_column(column, justify=justify)
    for name, d in sorted(diffs.items()):
        change = d.get("diff")
        table.add_row(name, *(format_cell("", v) for v in (d.get("old"), d.get("new"))),
                      "" if change is None else f"{change:+.4g}" if isinstance(change, (int, float)) else str(change))
    console.print(table)


def print_report(root: Path, compare: str | None = None) -> int:
    """`refinery report`: print the summary (or, with `compare`, the diff against a revision); exit code."""
    console = make_console()
    if compare is None:
        print_summary(Path(root), console)
        return 0
    try:
        print_compare(Path(root), compare, console)
    except ValueError as exc:
        print(f"refinery: error: {exc}", file=sys.stderr)
        return 2
    return 0
