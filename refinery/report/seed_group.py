"""A seed group's results: per-metric means with 95% CIs, paired verdicts and KLoM, as data and as a report.

The members of a group share the split and the forget request and differ in their training seed
(tasks/stages.py), so metric i of seed s and metric j of the same seed form a pair. Every verdict
is a paired comparison over the seeds (`refinery.metrics.aggregate.compare_paired`, the paired
t interval: mean of the per-seed differences +- t_{0.975, n-1} s_d / sqrt(n)), never one run:

- KD: the student minus the same student trained from scratch (CE only);
- MoE: the upcycled MoE minus the dense teacher trained for the same extra steps (and minus the
  dense teacher it started from);
- unlearning: each method's Avg.Gap to retrain against doing nothing (`original`), and every pair
  of methods (lower is better). Avg.Gap is the distance to retrain, so "method vs retrain" is the
  gap's own CI.

KLoM (refinery/metrics/klom.py) needs the group: per sample, the margins under the N unlearned
models against those under the N retrained models. Its P95 over samples gets a percentile
bootstrap CI over samples (seeded), a statement about these models on these samples.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import combinations

import numpy as np
import pandas as pd

from ..metrics.aggregate import Comparison, Summary, aggregate, compare_metrics, flatten
from ..metrics.klom import PERCENTILE, klom
from .document import Report, Section, Table

KLOM_SPLITS = ("forget", "retain", "test")
BASELINES = ("original", "retrain")   # unlearning rows that are not methods: no unlearning, and the gold standard
MODEL_ORDER = ("teacher", "dense_continued", "upcycle", "student", "scratch")


def comparison_specs(per_seed: Mapping[int, Mapping]) -> list[tuple[str, str, str, str, bool]]:
    """(key, label, metric a, metric b, higher is better) of every verdict the group's metrics allow."""
    first = flatten(next(iter(per_seed.values())))
    specs = [("kd_vs_scratch", "student (KD) − scratch student", "distill.student.test_acc",
              "distill.scratch.test_acc", True)]
    if "quality.dense_continued.test_acc" in first:
        specs.append(("moe_vs_dense_equal_steps", "upcycled MoE − dense teacher trained the same extra steps",
                      "upcycle.test_acc", "quality.dense_continued.test_acc", True))
    specs.append(("moe_vs_teacher", "upcycled MoE − the dense teacher it started from", "upcycle.test_acc",
                  "teacher.test_acc", True))
    methods = unlearn_methods(per_seed)
    specs += [(f"unlearn_{m}_vs_original", f"{m} − no unlearning (Avg.Gap)", f"unlearn.{m}.gap",
               "unlearn.original.gap", False) for m in methods]
    specs += [(f"unlearn_{a}_vs_{b}", f"{a} − {b} (Avg.Gap)", f"unlearn.{a}.gap", f"unlearn.{b}.gap", False)
              for a, b in combinations(methods, 2)]
    return [s for s in specs if s[2] in first and s[3] in first]


def unlearn_methods(per_seed: Mapping[int, Mapping]) -> list[str]:
    """The unlearning methods every member ran, in the order the first member lists them."""
    rows = [m.get("unlearn", {}) for m in per_seed.values()]
    return [m for m in rows[0] if m not in BASELINES and all(m in r for r in rows)]


def group_comparisons(per_seed: Mapping[int, Mapping]) -> dict[str, tuple[str, Comparison]]:
    """{key: (label, paired comparison)} over the members' metrics."""
    return {key: (label, compare_metrics(per_seed, a, b, names=(a, b), higher_is_better=better))
            for key, label, a, b, better in comparison_specs(per_seed)}


def margins_by_model(tables: Mapping[int, pd.DataFrame]) -> dict[str, dict[str, np.ndarray]]:
    """{model: {split: (N_seeds, n) margins}} with samples aligned by id across the members."""
    out: dict[str, dict[str, np.ndarray]] = {}
    frame = pd.concat([t.assign(seed=s) for s, t in tables.items()], ignore_index=True)
    for (model, split), part in frame.groupby(["model", "split"], sort=False):
        wide = part.pivot_table(index="seed", columns="sample_id", values="margin", aggfunc="first")
        if wide.shape[0] == len(tables):  # a model some members lack cannot be compared
            out.setdefault(str(model), {})[str(split)] = wide.dropna(axis=1).to_numpy()
    return out


def percentile_ci(values: np.ndarray, q: float = PERCENTILE, n_boot: int = 2000, seed: int = 0,
                  level: float = 0.95) -> tuple[float, float, float]:
    """(P_q, low, high): the q-th percentile of `values` and its percentile-bootstrap CI over samples."""
    values = np.asarray(values, dtype=np.float64)
    point = float(np.percentile(values, q))
    rng = np.random.default_rng(seed)
    boot = np.percentile(values[rng.integers(0, len(values), size=(n_boot, len(values)))], q, axis=1)
    return point, float(np.quantile(boot, (1 - level) / 2)), float(np.quantile(boot, (1 + level) / 2))


def klom_group(tables: Mapping[int, pd.DataFrame]) -> dict[str, dict[str, dict]]:
    """{model: {split: {p95, ci_low, ci_high, n_samples, n_models}}}: KLoM of each model against
    retrain, over the members' margins (retrain itself is the reference, so it is left out)."""
    by_model = margins_by_model(tables)
    reference = by_model.get("retrain", {})
    out: dict[str, dict[str, dict]] = {}
    for model, splits in by_model.items():
        if model == "retrain":
            continue
        for split in KLOM_SPLITS:
            if split in splits and split in reference and splits[split].shape[1]:
                p95, low, high = percentile_ci(klom(splits[split], reference[split]))
                out.setdefault(model, {})[split] = {"p95": p95, "ci_low": low, "ci_high": high,
                                                    "n_samples": int(splits[split].shape[1]),
                                                    "n_models": int(splits[split].shape[0])}
    return out


def nest(flat: Mapping[str, Mapping]) -> dict:
    """{"a.b": {...}} -> {"a": {"b": {...}}}, the shape of metrics.json."""
    out: dict = {}
    for path, value in flat.items():
        node = out
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = dict(value)
    return out


def summary_cells(s: Summary | None, scale: float = 1.0) -> str:
    """`mean ± std [low, high]` (n/a where a seed group of one has no spread)."""
    if s is None or s.n == 0:
        return ""
    text = f"{s.mean * scale:.2f}"
    if s.n > 1 and math.isfinite(s.std):
        text += f" ± {s.std * scale:.2f} [{s.ci_low * scale:.2f}, {s.ci_high * scale:.2f}]"
    return text


def group_results(per_seed: Mapping[int, Mapping], details: Mapping[int, Mapping],
                  margins: Mapping[int, pd.DataFrame]) -> dict:
    """Everything the group's metrics.json, details.json and report hold."""
    return {"summaries": aggregate(per_seed), "detail_summaries": aggregate(details),
            "comparisons": group_comparisons(per_seed), "klom": klom_group(margins) if margins else {}}


def group_metrics(results: dict) -> dict:
    """metrics.json of a group: each quality metric's n, mean, std and 95% CI; each comparison's
    mean difference, CI and p-value; each model's KLoM P95 with its CI."""
    out = nest({k: {f: v for f, v in s.to_dict().items() if f != "level"} for k, s in results["summaries"].items()})
    out["compare"] = {key: {f: getattr(c, f) for f in ("n", "mean_diff", "ci_low", "ci_high", "p_value")}
                      for key, (_, c) in results["comparisons"].items()}
    out["klom"] = results["klom"]
    return out


def build_group_report(results: dict, seeds: list[int], provenance: Mapping[str, object]) -> Report:
    """The report of a seed group: the models, the verdicts, unlearning with KLoM and relearning."""
    s, d = results["summaries"], results["detail_summaries"]
    preamble = [f"Seed group of {len(seeds)} seeds {list(seeds)}; every member trains on the one split and forget "
                f"request of data seed {provenance.get('data_seed')}. Cells: mean ± standard deviation [95% CI, "
                "Student t over seeds]. Verdicts: paired t-test over seeds (the CI of the mean per-seed difference).",
                f"Pipeline `{provenance.get('pipeline')}`, code `{provenance.get('git_rev')}`, config "
                f"`{provenance.get('config_hash')}`. Each member's own report: "
                + ", ".join(f"`data/seeds/{seed}/reports/report.md`" for seed in seeds) + "."]
    models = [m for m in MODEL_ORDER if f"quality.{m}.test_acc" in s]
    models += sorted({k.split(".")[1] for k in s if k.startswith("quality.")} - set(models))
    model_table = Table(["model", "test_acc", "nll", "ece"], [
        {"model": m, **{k: summary_cells(s.get(f"quality.{m}.{k}"), 100.0 if k == "test_acc" else 1.0)
                        for k in ("test_acc", "nll", "ece")}} for m in models],
        headers={"test_acc": "test accuracy (%)"})
    verdicts = Table(["comparison", "n", "diff", "ci", "p", "verdict"], [
        {"comparison": label, "n": c.n, "diff": f"{c.mean_diff * (100 if 'acc' in c.a else 1):+.2f}",
         "ci": f"[{c.ci_low * (100 if 'acc' in c.a else 1):+.2f}, {c.ci_high * (100 if 'acc' in c.a else 1):+.2f}]",
         "p": f"{c.p_value:.3g}", "verdict": c.verdict} for label, c in results["comparisons"].values()],
        headers={"diff": "mean difference", "ci": "95% CI"})
    sections = [Section("Models on the test set", [model_table]),
                Section("Verdicts", ["Accuracy differences in points; Avg.Gap differences in points of Avg.Gap "
                                     "(lower is better).", verdicts])]
    sections.append(unlearning_section(s, d, results["klom"]))
    return Report(f"refinery report: {provenance.get('pipeline')}, {len(seeds)} seeds", preamble, sections)


def unlearning_section(s: Mapping[str, Summary], d: Mapping[str, Summary], klom_rows: dict) -> Section:
    methods = sorted({k.split(".")[1] for k in s if k.startswith("unlearn.")},
                     key=lambda m: (m not in BASELINES, BASELINES.index(m) if m in BASELINES else 0, m))
    rows = [{"method": m, **{k: summary_cells(s.get(f"unlearn.{m}.{k}")) for k in ("UA", "RA", "TA", "MIA", "gap")},
             "relearn": summary_cells(d.get(f"unlearn.{m}.relearn_excess_returned"))} for m in methods]
    table = Table(["method", "UA", "RA", "TA", "MIA", "gap", "relearn"], rows,
                  headers={"gap": "Avg.Gap", "relearn": "relearned − retrain's (points)"})
    blocks: list = ["UA, RA, TA, MIA-efficacy in %, Avg.Gap = mean |difference| to retrain over the four. "
                    "Relearning: forget accuracy regained by fine-tuning on the retain set alone, minus what retrain "
                    "regains the same way (above 0: the forgotten samples were suppressed, not removed).", table]
    if klom_rows:
        klom_table = Table(["model", *KLOM_SPLITS], [
            {"model": m, **{sp: (f"{v[sp]['p95']:.3f} [{v[sp]['ci_low']:.3f}, {v[sp]['ci_high']:.3f}]"
                                 if sp in v else "") for sp in KLOM_SPLITS}} for m, v in klom_rows.items()])
        blocks += ["KLoM (Georgiev et al. 2025): per sample, KL divergence between the margins under the group's "
                   "unlearned models and under its retrained models; the table gives the 95th percentile over "
                   "samples with a bootstrap CI over samples. 0 is indistinguishable from retrain.", klom_table]
    return Section("Unlearning", blocks)
