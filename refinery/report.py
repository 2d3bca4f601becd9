"""The pipeline report as Markdown: every model on one test set, and unlearning against retrain."""
from __future__ import annotations

from typing import Any


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(rows: list[dict], columns: list[str], digits: int = 4) -> str:
    head = "| " + " | ".join(columns) + " |\n| " + " | ".join("---" for _ in columns) + " |\n"
    return head + "".join("| " + " | ".join(_fmt(r.get(c, ""), digits) for c in columns) + " |\n" for r in rows)


def render_markdown(metrics: dict, models: dict[str, dict], context: dict) -> str:
    """`metrics` is data/reports/metrics.json; `models` has per-model quality and cost rows."""
    lines = [f"# refinery report: {context.get('pipeline', '?')}", "",
             f"Config hash `{context.get('config_hash', '?')}`, git revision `{context.get('git_rev', '?')}`, "
             f"seed {context.get('seed', '?')}.", "",
             f"Data: {context.get('data', '')}", "", "## Models on the test set", ""]
    rows = [dict(model=name, **row) for name, row in models.items()]
    lines.append(table(rows, ["model", "test_acc", "nll", "ece", "params", "active_params",
                              "flops_per_sample", "latency_ms", "throughput"]))
    up = metrics.get("upcycle", {})
    teacher_acc = metrics.get("teacher", {}).get("test_acc", float("nan"))
    verdict = "beats" if up.get("test_acc", 0) > teacher_acc else "does not beat"
    lines += ["## Upcycling", "", f"The upcycled MoE ({up.get('test_acc', float('nan')):.4f}) {verdict} the dense "
              f"teacher ({teacher_acc:.4f}); mean expert-load CV {up.get('expert_load_cv', float('nan')):.3f}.", ""]
    d = metrics.get("distill", {})
    s, sc = d.get("student", {}).get("test_acc", float("nan")), d.get("scratch", {}).get("test_acc", float("nan"))
    verdict = "beats" if s > sc else "does not beat"
    lines += ["## Distillation", "", f"The KD student ({s:.4f}) {verdict} the scratch student ({sc:.4f}); "
              f"its teacher scored {d.get('teacher', {}).get('test_acc', float('nan')):.4f}. One seed: differences "
              "below about a point are within seed noise.", ""]
    un = metrics.get("unlearn", {})
    rows = [dict(method=name, **vals) for name, vals in un.items() if isinstance(vals, dict)]
    lines += ["## Unlearning (scores in %, gap to retrain)", "",
              table(rows, ["method", "UA", "RA", "TA", "MIA", "gap", "seconds"], digits=2)]
    return "\n".join(lines) + "\n"
