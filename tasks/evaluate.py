"""evaluate: score every model on the test set, write metrics.json (the contract's quality keys,
DVC's metrics) and details.json (its cost and timing keys), the DVC plot CSVs and the report
(Markdown + self-contained HTML), and publish the summary to Prefect."""
from __future__ import annotations

import subprocess

from refinery import config as C
from refinery.data import load_prepared
from refinery.unlearn import sisa  # noqa: F401  registers the SISA ensemble, so its saved model loads
from refinery.metrics.classification import accuracy, ece, nll, reliability_table
from refinery.metrics.cost import cost_report
from refinery.report import ReportInputs, render_report, summary_rows, write_plot_data
from refinery.store import read_arrays, read_json, read_table, write_json, write_text
from refinery.train import predict_logits

from .common import Workspace, log, write_manifest
from .models import load_model
from .stages import STAGE_NAMES

HISTORY_STAGES = ("teacher", "upcycle", "distill")
COST_KEYS = ("params", "active_params", "flops_per_sample", "latency_ms", "throughput")
# Code folders whose uncommitted edits make a git revision an incomplete description of a result.
CODE_PATHS = ("refinery", "tasks", "flows", "dvc.yaml", "pipelines")
DETAIL_SECTIONS = ("cost",)                           # per model; latency and throughput are wall-clock
UNLEARN_SCORES = ("UA", "RA", "TA", "MIA", "gap")     # the rest of a method's row (seconds...) is detail


def model_paths(ws: Workspace) -> dict:
    """Checkpoint path of every model to score, keyed by the name the report uses."""
    paths = {"teacher": ws.stage_dir("teacher") / "model.zarr", "upcycle": ws.stage_dir("upcycle") / "model.zarr",
             "student": ws.stage_dir("distill") / "student.zarr", "scratch": ws.stage_dir("distill") / "scratch.zarr"}
    dense = ws.stage_dir("upcycle") / "dense.zarr"  # the teacher trained for the MoE's extra steps
    if dense.exists():
        paths["dense_continued"] = dense
    for path in sorted((ws.stage_dir("unlearn") / "models").glob("*.zarr")):
        paths[f"unlearn_{path.stem}"] = path
    return paths


def report_inputs_paths(ws: Workspace) -> list:
    """Non-model files the report reads: the evaluate stage's declared inputs that are tables,
    metrics and manifests (tasks/stages.py)."""
    paths = [ws.root / dep for dep in ws.declared("evaluate").deps if dep.endswith((".parquet", ".json"))]
    return [p for p in paths if p.exists()]


def git_rev(ws: Workspace) -> str:
    """Short HEAD revision, with '+dirty' when the pipeline's code has uncommitted changes."""
    try:
        run = lambda *a: subprocess.run(["git", *a], cwd=ws.root, capture_output=True, text=True)  # noqa: E731
        head = run("rev-parse", "--short", "HEAD")
        if head.returncode != 0:
            return "unknown"
        dirty = run("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS).stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


def score_models(ws: Workspace, cfg: C.PipelineConfig, data) -> tuple[dict, dict]:
    """Quality and cost of every model on the test set, and each model's reliability table."""
    test, bins = data.test, cfg.evaluate.ece_bins
    models, reliability = {}, {}
    for name, path in model_paths(ws).items():
        model, _ = load_model(path)
        logits = predict_logits(model, test.x)
        cost = cost_report(model, data.in_shape, example_input=test.x[:64],
                           latency_repeats=cfg.evaluate.latency_repeats, throughput_batch=cfg.evaluate.throughput_batch)
        models[name] = dict(test_acc=accuracy(logits, test.y), nll=nll(logits, test.y),
                            ece=ece(logits, test.y, bins), **{k: cost[k] for k in COST_KEYS})
        reliability[name] = reliability_table(logits, test.y, bins)
        log.info("evaluate %-18s acc %.4f ece %.4f flops %.3g", name, models[name]["test_acc"], models[name]["ece"],
                 cost["flops_per_sample"])
    return models, reliability


def contract_metrics(cfg: C.PipelineConfig, models: dict, experts: list[dict], unlearn: dict) -> dict:
    """The DESIGN.md contract object, plus `quality.<model>.{test_acc,nll,ece}`; `split_metrics`
    divides it between metrics.json and details.json."""
    return {
        "teacher": {"test_acc": models["teacher"]["test_acc"]},
        "upcycle": {"test_acc": models["upcycle"]["test_acc"], "active_params": models["upcycle"]["active_params"],
                    "expert_load_cv": float(sum(e["load_cv"] for e in experts) / max(len(experts), 1))},
        "distill": {"student": {"test_acc": models["student"]["test_acc"]},
                    "scratch": {"test_acc": models["scratch"]["test_acc"]},
                    "teacher": {"test_acc": models[cfg.distill.teacher]["test_acc"]}},
        "unlearn": {k: v for k, v in unlearn.items() if isinstance(v, dict)},
        "cost": {name: {k: row[k] for k in COST_KEYS} for name, row in models.items()},
        "quality": {name: {k: row[k] for k in ("test_acc", "nll", "ece")} for name, row in models.items()},
    }


def split_metrics(contract: dict) -> tuple[dict, dict]:
    """(metrics.json, details.json): DVC's metrics hold what a user compares between runs
    (accuracies, calibration, unlearning scores); wall-clock times and per-model cost go to
    details.json, which is no DVC metric, so a rerun's timings never show as changed metrics.
    Both keep the contract's key paths: merging them gives the whole contract object back."""
    metrics = {k: v for k, v in contract.items() if k not in DETAIL_SECTIONS}
    details = {k: contract[k] for k in DETAIL_SECTIONS if k in contract}
    methods = {m: row for m, row in contract.get("unlearn", {}).items() if isinstance(row, dict)}
    metrics["unlearn"] = {m: {k: v for k, v in row.items() if k in UNLEARN_SCORES} for m, row in methods.items()}
    details["unlearn"] = {m: {k: v for k, v in row.items() if k not in UNLEARN_SCORES} for m, row in methods.items()}
    return metrics, details


def read_records(path) -> list[dict]:
    """A Parquet table as plain records (lists instead of arrays), or [] when the file is absent."""
    if not path.exists():
        return []
    frame = read_table(path)
    return [{k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in row.items()}
            for row in frame.to_dict(orient="records")]


def provenance(ws: Workspace, cfg: C.PipelineConfig, data, unlearn: dict) -> dict:
    """Where the numbers came from: config hashes (pipeline and per stage), git revision, data."""
    hashes = {}
    for name in STAGE_NAMES[:-1]:
        manifest = ws.stage_dir(name) / "manifest.json"
        hashes[name] = read_json(manifest).get("config_hash", "?") if manifest.exists() else "?"
    hashes["evaluate"] = C.config_hash({"evaluate": cfg.evaluate.model_dump(mode="json")})
    distill_metrics = ws.stage_dir("distill") / "metrics.json"
    return {"pipeline": cfg.name, "seed": cfg.seed, "config_hash": C.config_hash(cfg), "git_rev": git_rev(ws),
            "stage_hashes": hashes, "n_test": len(data.test), "num_classes": data.num_classes,
            "forget_size": unlearn.get("forget_size"), "unlearn_audit": unlearn.get("audit", []),
            "unlearn_exact": bool(unlearn.get("exact")), "retrained_stages": unlearn.get("retrained_stages", []),
            "distill_loss": read_json(distill_metrics).get("loss", cfg.distill.loss) if distill_metrics.exists()
            else cfg.distill.loss,
            "dataset": dataset_name(cfg.data),
            "data": f"{dataset_name(cfg.data)}: {len(data.train)} train, {len(data.val)} val, {len(data.test)} test "
                    f"samples ({split_used(ws, cfg)} test split)"}


def dataset_name(d: C.DataConfig) -> str:
    """The data set as a user names it: the source, and the path of a user's files."""
    return f"{d.source} from {d.path}" if d.path else d.source


def split_used(ws: Workspace, cfg: C.PipelineConfig) -> str:
    """'published' or 'stratified', as prepare resolved data.split (older arrays: the configured mode)."""
    _, attrs = read_arrays(ws.stage_dir("prepare") / "arrays.zarr", [])
    return str(attrs.get("split", cfg.data.split))


def publish_artifacts(rows: list[dict], markdown: str) -> bool:
    """Summary table and report as Prefect artifacts ("refinery-summary", "refinery-report").

    Only inside a Prefect task run; a failure to publish is logged and never fails the stage.
    Returns whether both artifacts were published.
    """
    try:
        from prefect.artifacts import create_markdown_artifact, create_table_artifact
        from prefect.context import TaskRunContext

        if TaskRunContext.get() is None:
            return False
        create_table_artifact(rows, key="refinery-summary", description="Every model on the test set")
        create_markdown_artifact(markdown, key="refinery-report", description="refinery evaluation report")
        return True
    except Exception as exc:  # noqa: BLE001 - artifacts are a courtesy
        log.warning("evaluate: Prefect artifacts not published: %s", exc)
        return False


def evaluate(ws: Workspace) -> None:
    """Score every model, then write metrics.json, details.json, plots/, report.md, report.html and the manifest."""
    cfg = ws.config()
    out, arrays = ws.stage_dir("evaluate"), ws.stage_dir("prepare") / "arrays.zarr"
    data = load_prepared(arrays)
    models, reliability = score_models(ws, cfg, data)
    experts = read_records(ws.stage_dir("upcycle") / "experts.parquet")
    unlearn = read_json(ws.stage_dir("unlearn") / "metrics.json")
    metrics = contract_metrics(cfg, models, experts, unlearn)
    quality, details = split_metrics(metrics)
    write_json(out / "metrics.json", quality)
    write_json(out / "details.json", details)
    recipes = ws.stage_dir("upcycle") / "recipes.parquet"
    inputs = ReportInputs(metrics=metrics, models=models, reliability=reliability, experts=experts,
                          recipes=read_records(recipes) if recipes.exists() else [],
                          histories={s: read_records(ws.stage_dir(s) / "history.parquet") for s in HISTORY_STAGES},
                          provenance=provenance(ws, cfg, data, unlearn))
    write_plot_data(out / "plots", inputs)
    markdown, html = render_report(inputs)
    write_text(out / "report.md", markdown)
    write_text(out / "report.html", html)
    write_manifest(ws, "evaluate", cfg)
    publish_artifacts(summary_rows(inputs), markdown)
