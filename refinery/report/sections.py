"""Build the report's sections (data, teacher, upcycling, distillation, unlearning, cost) from
`ReportInputs`, with plain verdicts: a method that does not beat its baseline is said not to.

Accuracy comparisons use the binomial standard error of a difference of two accuracies on the
same n test samples, sqrt((p1(1-p1) + p2(1-p2)) / n) (ignoring their correlation, which only
makes the bound conservative). A difference under 2 SE is called noise, never an improvement.
"""
from __future__ import annotations

import math

from .document import Figure, Report, ReportInputs, Section, Table, model_stage

SUMMARY_COLUMNS = ["model", "test_acc", "nll", "ece", "params", "active_params", "flops_per_sample",
                   "latency_ms", "throughput", "config"]
COST_COLUMNS = ["model", "params", "active_params", "flops_per_sample", "latency_ms", "throughput", "test_acc"]
NAN = float("nan")


def accuracy_verdict(acc_a: float, acc_b: float, n: int) -> tuple[str, float, float]:
    """('worse' | 'noise' | 'beats', difference in points, 2 SE in points) for a vs b."""
    diff = 100.0 * (acc_a - acc_b)
    se2 = 200.0 * math.sqrt((acc_a * (1 - acc_a) + acc_b * (1 - acc_b)) / max(n, 1))
    return ("worse" if diff <= 0 else "noise" if diff < se2 else "beats"), diff, se2


def compare_accuracy(name_a: str, acc_a: float, name_b: str, acc_b: float, n: int) -> str:
    """One sentence saying whether `a` beats `b` on accuracy, and whether the gap is noise."""
    if not (math.isfinite(acc_a) and math.isfinite(acc_b)):
        return f"{name_a} and {name_b} cannot be compared: an accuracy is missing."
    verdict, diff, se2 = accuracy_verdict(acc_a, acc_b, n)
    head = f"{name_a} ({acc_a:.4f}) vs {name_b} ({acc_b:.4f}): {diff:+.2f} points"
    if verdict == "worse":
        return f"{head}. {name_a} does not beat {name_b}."
    if verdict == "noise":
        return (f"{head}, within the noise of one seed on {n} test samples (2 SE = {se2:.2f} points): "
                f"not a demonstrated improvement over {name_b}.")
    subject = name_a[0].lower() + name_a[1:]
    return f"{head}, more than 2 SE ({se2:.2f} points) on {n} test samples, so {subject} beats {name_b} (one seed)."


def _acc(inputs: ReportInputs, model: str) -> float:
    """A model's test accuracy, NaN when the model is missing."""
    return float(inputs.models.get(model, {}).get("test_acc", NAN))


def summary_rows(inputs: ReportInputs) -> list[dict]:
    """One row per model: quality, cost and the config hash of the stage that produced it."""
    return [dict(model=name, config=inputs.stage_hash(model_stage(name)), **row) for name, row in inputs.models.items()]


def _last_val_acc(inputs: ReportInputs, stage: str) -> str:
    """The last validation accuracy of each run of a stage, as text."""
    rows = inputs.histories.get(stage, [])
    parts = []
    for run in dict.fromkeys(r.get("run", stage) for r in rows):
        last = [r for r in rows if r.get("run", stage) == run][-1]
        if last.get("val_acc") is not None:
            parts.append(f"{run}: {last['val_acc']:.4f} after epoch {last['epoch']}")
    return "; ".join(parts) if parts else "no validation history recorded"


def data_section(inputs: ReportInputs) -> Section:
    """Data set sizes, chance level and the forget request."""
    p = inputs.provenance
    forget = p.get("forget_size")
    text = [f"{p.get('data', 'unknown data')} ({inputs.stamp('prepare')}).",
            f"Every model below is scored on the same {p.get('n_test', '?')} test samples"
            + (f"; {p.get('num_classes')} classes, so chance is {1 / p['num_classes']:.4f}." if p.get("num_classes")
               else ".")]
    if forget is not None:
        text.append(f"Forget request: {forget} training samples to be deleted (see the unlearning audit).")
    return Section("Data", text)


def teacher_section(inputs: ReportInputs) -> Section:
    """The dense teacher against chance, with the training curves."""
    acc, n = _acc(inputs, "teacher"), int(inputs.provenance.get("n_test", 0))
    blocks: list = [f"Dense teacher ({inputs.stamp('teacher')}): validation accuracy "
                    f"{_last_val_acc(inputs, 'teacher')}."]
    classes = inputs.provenance.get("num_classes")
    if classes:
        blocks.append(compare_accuracy("The teacher", acc, "chance", 1.0 / classes, n))
    blocks.append(Figure("training", "Training curves per stage: loss and validation accuracy per epoch."))
    return Section("Teacher", blocks)


def upcycle_section(inputs: ReportInputs) -> Section:
    """The MoE against its dense teacher, its extra cost, and expert load per layer."""
    n = int(inputs.provenance.get("n_test", 0))
    up, dense = inputs.models.get("upcycle", {}), inputs.models.get("teacher", {})
    blocks: list = [f"Upcycled MoE ({inputs.stamp('upcycle')}).",
                    compare_accuracy("The upcycled MoE", _acc(inputs, "upcycle"), "the dense teacher",
                                     _acc(inputs, "teacher"), n)]
    if "dense_continued" in inputs.models:  # the fair baseline: the dense teacher trained the same extra steps
        blocks.append(compare_accuracy("The upcycled MoE", _acc(inputs, "upcycle"),
                                       "the dense teacher trained for the same extra steps",
                                       _acc(inputs, "dense_continued"), n))
    if up and dense:
        blocks.append(f"It costs {up['active_params'] / dense['active_params']:.2f}x the teacher's active parameters "
                      f"and {up['flops_per_sample'] / dense['flops_per_sample']:.2f}x its FLOPs per sample.")
    cv = inputs.metrics.get("upcycle", {}).get("expert_load_cv")
    if cv is not None:
        blocks.append(f"Expert load per layer (mean coefficient of variation {cv:.3f}; 0 is perfectly balanced):")
    rows = [dict(layer=r.get("layer"), load=", ".join(f"{x:.3f}" for x in r.get("load", [])),
                 load_cv=r.get("load_cv"), router_entropy=r.get("router_entropy"), drop_rate=r.get("drop_rate"))
            for r in inputs.experts]
    if rows:
        blocks += [Table(["layer", "load", "load_cv", "router_entropy", "drop_rate"], rows),
                   Figure("experts", "Share of routed tokens per expert, per MoE layer.")]
    return Section("Upcycling", blocks + recipe_blocks(inputs.recipes, n))


def recipe_blocks(recipes: list[dict], n: int) -> list:
    """With upcycle.compare: every recipe against the dense teacher, and the verdict on the best."""
    dense = next((r for r in recipes if r["model"] == "dense teacher"), None)
    moe = [r for r in recipes if not r["model"].startswith("dense teacher")]
    if dense is None or len(moe) < 2:  # only the configured recipe: the section above says it all
        return []
    best = max(moe, key=lambda r: r["test_acc"])
    rows = [dict(r, active_params_vs_dense=r["active_params"] / dense["active_params"],
                 flops_vs_dense=r["flops_per_sample"] / dense["flops_per_sample"]) for r in recipes]
    return ["Every recipe from the same teacher and seed (upcycle.compare), MoLA at an equal total of experts:",
            Table(["model", "test_acc", "active_params", "flops_per_sample", "active_params_vs_dense",
                   "flops_vs_dense"], rows),
            compare_accuracy(f"The best recipe ({best['model']})", best["test_acc"], "the dense teacher",
                             dense["test_acc"], n)]


def distill_section(inputs: ReportInputs) -> Section:
    """The KD student against the scratch student and its teacher, with reliability diagrams."""
    n = int(inputs.provenance.get("n_test", 0))
    loss = inputs.provenance.get("distill_loss", "?")
    d = inputs.metrics.get("distill", {})
    teacher_acc = float(d.get("teacher", {}).get("test_acc", NAN))
    blocks: list = [f"Student distilled with the `{loss}` loss ({inputs.stamp('distill')}); its teacher scored "
                    f"{teacher_acc:.4f}.",
                    "The scratch student has the same architecture and training, without a teacher.",
                    compare_accuracy("The KD student", _acc(inputs, "student"), "the scratch student",
                                     _acc(inputs, "scratch"), n),
                    compare_accuracy("The KD student", _acc(inputs, "student"), "its teacher", teacher_acc, n)]
    student, teacher = inputs.models.get("student"), inputs.models.get("teacher")
    if student and teacher:
        blocks.append(f"The student has {student['params'] / teacher['params']:.2f}x the dense teacher's parameters "
                      f"and {student['flops_per_sample'] / teacher['flops_per_sample']:.2f}x its FLOPs per sample.")
    blocks.append(Figure("reliability", "Reliability diagrams (15 bins): accuracy vs confidence per model; "
                                        "the diagonal is perfect calibration."))
    return Section("Distillation", blocks)


def _unlearn_verdict(name: str, row: dict, baseline: dict | None, retrain: dict | None) -> str:
    """One method's gap to retrain, whether it beats doing nothing, and its time relative to retraining."""
    text = f"`{name}`: gap to retrain {row.get('gap', NAN):.2f}"
    if baseline is not None:
        verdict = "beats" if row.get("gap", NAN) < baseline.get("gap", NAN) else "does not beat"
        text += f"; it {verdict} doing nothing (the original model's gap {baseline.get('gap', NAN):.2f})"
    if retrain and retrain.get("seconds") and row.get("seconds") is not None:
        text += f"; it took {row['seconds'] / retrain['seconds']:.2f}x retraining's time"
    return text + "."


def unlearn_section(inputs: ReportInputs) -> Section:
    """The unlearning audit: every method's scores and their differences to retrain."""
    methods = {k: v for k, v in inputs.metrics.get("unlearn", {}).items() if isinstance(v, dict)}
    retrain, original = methods.get("retrain"), methods.get("original")
    rows = []
    for name, row in methods.items():
        out = dict(method=name, **row)
        if retrain:
            out.update({f"d{k}": row.get(k, NAN) - retrain.get(k, NAN) for k in ("UA", "RA", "TA", "MIA")})
        rows.append(out)
    blocks: list = [f"Scores in %, measured against retraining without the forget set, the gold standard "
                    f"({inputs.stamp('unlearn')}). dX is the method minus retrain; gap is the mean |dX|.",
                    Table(["method", "UA", "RA", "TA", "MIA", "gap", "dUA", "dRA", "dTA", "dMIA", "seconds"], rows)]
    if retrain is None:
        blocks.append("No retrain baseline was run, so no method can be judged against it.")
    for name, row in methods.items():
        if name not in ("retrain", "original"):
            blocks.append(_unlearn_verdict(name, row, original, retrain))
    blocks.append(Figure("unlearning", "UA, RA, TA and MIA-efficacy per method (%); retrain is the target."))
    blocks += _audit_blocks(inputs.provenance)
    return Section("Unlearning audit", blocks)


def _audit_blocks(p: dict) -> list:
    """Checks beyond the papers: is the forget set removed or only suppressed?"""
    blocks: list = []
    if p.get("unlearn_exact"):
        blocks.append("Exact deletion: the forget set was removed from the data and these stages were retrained "
                      f"without it: {', '.join(p.get('retrained_stages', []))}.")
    rows = p.get("unlearn_audit") or []
    if rows:
        blocks += ["Audit beyond the papers. probe_acc: a linear probe on frozen features separating the forget "
                   "set from test samples of the same classes (50% means the features no longer tell them apart; "
                   "higher suggests suppression rather than removal). relearn_steps: fine-tuning epochs on D_f until "
                   "its accuracy recovers (fast relearning also suggests suppression). noisy_UA: UA on noise-perturbed "
                   "forget samples.",
                   Table(sorted({k for r in rows for k in r}, key=lambda k: (k != "method", k)), rows)]
    return blocks


def pareto_models(models: dict[str, dict]) -> list[str]:
    """Models no other model beats on both test accuracy (higher) and FLOPs per sample (lower)."""
    def dominated(a: dict) -> bool:
        """Whether some model is at least as good on both axes and better on one."""
        return any(b["test_acc"] >= a["test_acc"] and b["flops_per_sample"] <= a["flops_per_sample"]
                   and (b["test_acc"] > a["test_acc"] or b["flops_per_sample"] < a["flops_per_sample"])
                   for b in models.values())
    return [name for name, row in models.items() if not dominated(row)]


def cost_section(inputs: ReportInputs) -> Section:
    """Parameters, FLOPs, latency and throughput of every model, and the accuracy-vs-FLOPs frontier."""
    rows = [dict(model=name, **row) for name, row in inputs.models.items()]
    front = pareto_models(inputs.models) if inputs.models else []
    return Section("Cost", [
        f"Latency is the median of batch-1 forwards; throughput is samples/s at a large batch "
        f"(evaluate config `{inputs.stage_hash('evaluate')}`, git `{inputs.provenance.get('git_rev', '?')}`; "
        "timings depend on the machine).",
        Table(COST_COLUMNS, rows),
        f"On the accuracy-vs-FLOPs frontier (not beaten on both): {', '.join(f'`{m}`' for m in front) or 'none'}.",
        Figure("frontier", "Test accuracy against FLOPs per sample and batch-1 latency; frontier models labelled."),
    ])


def build_report(inputs: ReportInputs) -> Report:
    """The whole report: a summary of every model, then one section per pipeline stage."""
    p = inputs.provenance
    preamble = [f"Pipeline config `{p.get('config_hash', '?')}`, git revision `{p.get('git_rev', '?')}`, "
                f"seed {p.get('seed', '?')}. Each section names the config hash of the stage that produced its "
                "numbers; one seed, so small differences are noise.",
                Table(SUMMARY_COLUMNS, summary_rows(inputs))]
    sections = [data_section(inputs), teacher_section(inputs), upcycle_section(inputs), distill_section(inputs),
                unlearn_section(inputs), cost_section(inputs)]
    return Report(report_title(p), preamble, sections)


def report_title(p: dict) -> str:
    """Names the data set (source, and the path of a user's files) and the preset that ran on it."""
    dataset, pipeline = p.get("dataset"), p.get("pipeline", "?")
    return f"refinery report: {dataset} ({pipeline} preset)" if dataset else f"refinery report: {pipeline}"
