"""The pipeline, declared once: each stage's name, artifact inputs, outputs, params and the
module it runs. The stage list, `dvc.yaml` and every stage's manifest come from here.

A stage's code dependencies are not written by hand: they are the project files its entry
module imports, followed import by import (`code_deps`), so an edit to any file a stage runs
reruns that stage and no other. `python -m tasks.stages` rewrites `dvc.yaml` from this
declaration; a test fails while the committed `dvc.yaml` differs from what it would write.

This module imports nothing heavy (no torch, no prefect), so the CLI can read it at once.
"""
from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE_PACKAGES = ("refinery", "tasks")  # what a stage's code can live in; flows only orchestrate


@dataclass(frozen=True)
class Stage:
    name: str
    deps: tuple[str, ...]                 # artifacts read, relative to the project root
    outs: tuple[str, ...]                 # artifacts written (cached by DVC)
    params: tuple[str, ...]               # params.yaml keys read
    metrics: tuple[str, ...] = ()         # DVC metrics files (not cached)
    uncached: tuple[str, ...] = ()        # outputs DVC tracks but does not cache (plot CSVs)
    timed: tuple[str, ...] = ()           # outputs that record wall-clock times (differ run to run)
    gpu: bool = False                     # holds a device slot while it runs
    manifest_params: tuple[str, ...] = field(default=())  # params in the manifest (default: params)

    @property
    def module(self) -> str:
        return f"tasks.{self.name}"

    @property
    def manifest(self) -> str:
        return next(o for o in self.outs if o.endswith("manifest.json"))

    @property
    def recorded_params(self) -> tuple[str, ...]:
        return self.manifest_params or self.params

    @property
    def reproducible_outs(self) -> tuple[str, ...]:
        """The outputs a rerun with the same seed must reproduce bit for bit."""
        return tuple(o for o in self.outs if o != self.manifest and o not in self.timed)

    def for_seed(self, seed: int) -> Stage:
        """This stage as one member of a seed group: its own outputs under data/seeds/<seed>/,
        reading the shared prepared data and its own seed's upstream outputs. A member's metrics
        file is a plain output: DVC's metrics are the group's aggregate (data/reports/metrics.json)."""
        move = lambda paths: tuple(seeded_path(p, seed) for p in paths)  # noqa: E731
        return replace(self, deps=move(self.deps), outs=move(self.outs), uncached=move(self.uncached + self.metrics),
                       timed=move(self.timed), metrics=())


P, T, U, D, N, R = "data/prepared", "data/teacher", "data/upcycle", "data/distill", "data/unlearn", "data/reports"

PIPELINE: tuple[Stage, ...] = (
    Stage("prepare", deps=(), params=("seed", "data", "forget"),
          outs=(f"{P}/arrays.zarr", f"{P}/forgotten.zarr", f"{P}/index.parquet", f"{P}/forget.parquet",
                f"{P}/manifest.json")),
    Stage("teacher", deps=(f"{P}/arrays.zarr",), params=("seed", "device", "threads", "teacher"), gpu=True,
          outs=(f"{T}/model.zarr", f"{T}/history.parquet", f"{T}/manifest.json"), timed=(f"{T}/history.parquet",),
          uncached=(f"{T}/metrics.json",), manifest_params=("seed", "threads", "teacher")),
    Stage("upcycle", deps=(f"{P}/arrays.zarr", f"{T}/model.zarr"), params=("seed", "device", "threads", "upcycle"),
          gpu=True,
          outs=(f"{U}/model.zarr", f"{U}/dense.zarr", f"{U}/history.parquet", f"{U}/experts.parquet",
                f"{U}/recipes.parquet", f"{U}/manifest.json"), timed=(f"{U}/history.parquet",),
          uncached=(f"{U}/metrics.json",), manifest_params=("seed", "threads", "upcycle")),
    Stage("distill", deps=(f"{P}/arrays.zarr", f"{T}/model.zarr", f"{U}/model.zarr"),
          params=("seed", "device", "threads", "distill"), gpu=True,
          outs=(f"{D}/teacher_logits.zarr", f"{D}/student.zarr", f"{D}/scratch.zarr", f"{D}/random_teacher.zarr",
                f"{D}/history.parquet", f"{D}/manifest.json"), timed=(f"{D}/history.parquet",),
          uncached=(f"{D}/metrics.json",), manifest_params=("seed", "threads", "distill")),
    Stage("unlearn", deps=(f"{P}/arrays.zarr", f"{P}/forgotten.zarr", f"{P}/forget.parquet", f"{T}/model.zarr",
                           f"{U}/model.zarr", f"{D}/student.zarr", f"{D}/teacher_logits.zarr"),
          params=("seed", "device", "threads", "unlearn", "teacher.train", "upcycle.train", "distill", "forget.exact"),
          gpu=True,
          outs=(f"{N}/models", f"{N}/forget_scores.parquet", f"{N}/margins.parquet", f"{N}/manifest.json"),
          uncached=(f"{N}/metrics.json",), manifest_params=("seed", "threads", "unlearn", "forget.exact")),
    Stage("evaluate", deps=(
        f"{P}/arrays.zarr", f"{P}/index.parquet", f"{T}/model.zarr", f"{U}/model.zarr", f"{U}/dense.zarr",
        f"{U}/experts.parquet",
        f"{U}/recipes.parquet", f"{D}/student.zarr", f"{D}/scratch.zarr", f"{N}/models", f"{N}/metrics.json",
        f"{T}/history.parquet", f"{U}/history.parquet", f"{D}/history.parquet", f"{D}/metrics.json",
        f"{P}/manifest.json", f"{T}/manifest.json", f"{U}/manifest.json", f"{D}/manifest.json", f"{N}/manifest.json"),
          params=("threads", "evaluate"),
          outs=(f"{R}/report.md", f"{R}/report.html", f"{R}/details.json", f"{R}/manifest.json"),
          timed=(f"{R}/report.md", f"{R}/report.html", f"{R}/details.json"),
          uncached=(f"{R}/plots",), metrics=(f"{R}/metrics.json",)),
)

STAGES: dict[str, Stage] = {s.name: s for s in PIPELINE}
STAGE_NAMES: tuple[str, ...] = tuple(STAGES)
GPU_STAGES = frozenset(s.name for s in PIPELINE if s.gpu)

# --------------------------------------------------------------------------- seed groups
# With `seeds: [...]` every stage after prepare runs once per seed, over the one split and
# forget request that `seed` draws (so the seeds' models differ only in their training
# randomness, paired verdicts compare methods rather than splits, and per-sample KLoM sees the
# same samples under every seed); `aggregate` then summarises the group in data/reports/.
SEED_ROOT = "data/seeds"
SHARED = (P,)              # artifacts every member of a group reads, made once
SEEDED_STAGES: tuple[str, ...] = tuple(s.name for s in PIPELINE if s.name != "prepare")
AGGREGATE = "aggregate"


def seeded_path(path: str, seed: int) -> str:
    """data/teacher/model.zarr -> data/seeds/<seed>/teacher/model.zarr (shared paths unchanged)."""
    if path.startswith(SHARED) or not path.startswith("data/"):
        return path
    return f"{SEED_ROOT}/{seed}/{path.removeprefix('data/')}"


def aggregate_stage(seeds: list[int]) -> Stage:
    """The stage that reads every member's results and writes the group's report and metrics."""
    reads = (f"{R}/metrics.json", f"{R}/details.json", f"{R}/plots", f"{N}/margins.parquet")
    deps = tuple(seeded_path(r, s) for s in seeds for r in reads)
    return Stage(AGGREGATE, deps=deps, params=("seed", "seeds", "evaluate"),
                 outs=(f"{R}/report.md", f"{R}/report.html", f"{R}/details.json", f"{R}/manifest.json"),
                 timed=(f"{R}/report.md", f"{R}/report.html", f"{R}/details.json"),
                 uncached=(f"{R}/plots",), metrics=(f"{R}/metrics.json",))


def dvc_name(name: str, seed: int | None) -> str:
    """The name of a stage in dvc.yaml: `teacher`, or `teacher-seed3` for a member of a group."""
    return name if seed is None else f"{name}-seed{seed}"


def parse_dvc_name(text: str) -> tuple[str, int | None]:
    """`teacher-seed3` -> ("teacher", 3); `teacher` -> ("teacher", None)."""
    name, sep, seed = text.rpartition("-seed")
    if sep and seed.isdigit() and name in SEEDED_STAGES:
        return name, int(seed)
    return text, None


def declared(name: str, seed: int | None = None, seeds: list[int] | None = None) -> Stage:
    """The declaration of stage `name`, as the member for `seed` of a group, or the group's aggregate."""
    if name == AGGREGATE:
        if not seeds:
            raise ValueError("stage 'aggregate' summarises a seed group; params.yaml sets no `seeds`")
        return aggregate_stage(seeds)
    decl = stage(name)
    return decl.for_seed(seed) if seed is not None and name in SEEDED_STAGES else decl


def instances(seeds: list[int] | None) -> list[tuple[str, Stage, int | None]]:
    """Every stage of dvc.yaml as (dvc name, declaration, seed): the pipeline, or with a seed
    group, prepare, each member's stages and the aggregate."""
    if not seeds:
        return [(s.name, s, None) for s in PIPELINE]
    members = [(dvc_name(n, seed), declared(n, seed), seed) for seed in seeds for n in SEEDED_STAGES]
    return [(PIPELINE[0].name, PIPELINE[0], None), *members, (AGGREGATE, aggregate_stage(seeds), None)]


def stage(name: str) -> Stage:
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGE_NAMES)}")
    return STAGES[name]


# --------------------------------------------------------------------------- code dependencies
def _module_file(module: str, root: Path = ROOT) -> Path | None:
    """The project file of `module`, if it is one of ours."""
    if module.split(".")[0] not in CODE_PACKAGES:
        return None
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(module: str, file: Path) -> set[str]:
    """Every module `file` names in an import statement, anywhere in it (functions too)."""
    package = module if file.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    # importing a.b.c runs a/__init__ and a/b/__init__ first
    return {".".join(m.split(".")[:i]) for m in found for i in range(1, m.count(".") + 2)}


@cache
def code_modules(entry: str, root: Path = ROOT) -> dict[str, Path]:  # noqa: B019  (a few entries, per process)
    """The project modules that importing `entry` can run, by static import walking."""
    seen: dict[str, Path] = {}
    todo = [entry]
    while todo:
        module = todo.pop()
        file = _module_file(module, root)
        if module in seen or file is None:
            continue
        seen[module] = file
        todo.extend(m for m in _imports(module, file) if m not in seen)
    return dict(sorted(seen.items()))


def code_deps(name: str, root: Path = ROOT) -> list[str]:
    """The files of stage `name`'s code (module tasks.<name>), relative to the root, sorted."""
    return sorted(str(f.relative_to(root)) for f in code_modules(f"tasks.{name}", root).values())


# --------------------------------------------------------------------------- dvc.yaml
HEADER = """\
# Written by `python -m tasks.stages` from tasks/stages.py: edit that file, not this one.
# Each stage runs as a Prefect flow through `bin/refinery stage NAME` (the project's own
# interpreter, so no PATH is needed: a DVC queue and a worker run it too); `refinery run` walks the
# same graph in one flow and leaves the same dvc.lock. A stage's code deps are every project
# file its task module imports, so an edit reruns exactly the stages that run that file.
"""

PLOTS = [
    {"data/reports/plots/history": {"title": "Training curves (loss, validation accuracy)", "template": "linear",
                                    "x": "epoch", "y": ["loss", "val_acc"]}},
    {"data/reports/plots/reliability": {"title": "Reliability diagram (15 bins)", "template": "simple",
                                        "x": "confidence", "y": "accuracy", "x_label": "mean confidence in bin",
                                        "y_label": "accuracy in bin"}},
    {"Accuracy vs cost": {"template": "scatter", "x": "flops_per_sample",
                          "y": {"data/reports/plots/frontier.csv": "test_acc"},
                          "x_label": "FLOPs per sample", "y_label": "test accuracy"}},
    *({f"Unlearning {label}": {"template": "bar_horizontal", "x": key,
                               "y": {"data/reports/plots/unlearning.csv": "method"}}}
      for key, label in (("UA", "UA (%)"), ("RA", "RA (%)"), ("MIA", "MIA-efficacy (%)"))),
    {"Expert load per MoE layer": {"template": "bar_horizontal", "x": "load",
                                   "y": {"data/reports/plots/expert_load.csv": "expert"}}},
]


def dvc_stage(s: Stage, root: Path = ROOT, seed: int | None = None) -> dict:
    cmd = f"bin/refinery stage {s.name}" + (f" --seed {seed}" if seed is not None else "")
    out: dict = {"cmd": cmd, "deps": [*s.deps, *code_deps(s.name, root)],
                 "params": list(s.params), "outs": [*s.outs, *({u: {"cache": False}} for u in s.uncached)]}
    if s.metrics:
        out["metrics"] = [{m: {"cache": False}} for m in s.metrics]
    if not s.deps and not out["deps"]:
        del out["deps"]
    return out


def render_dvc_yaml(root: Path = ROOT, seeds: list[int] | None = None) -> str:
    import yaml

    stages = {name: dvc_stage(s, root, seed) for name, s, seed in instances(seeds)}
    doc = {"stages": stages, "plots": PLOTS}
    return HEADER + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=120)


def params_seeds(root: Path) -> list[int] | None:
    """The seed group params.yaml asks for (None without one), read without validating the rest."""
    import yaml

    path = root / "params.yaml"
    raw = yaml.safe_load(path.read_text()) if path.exists() else None
    seeds = raw.get("seeds") if isinstance(raw, dict) else None
    return [int(s) for s in seeds] if isinstance(seeds, list) and len(seeds) > 1 else None


def sync_dvc_yaml(root: Path = ROOT) -> bool:
    """Rewrite `root`/dvc.yaml when the declaration, the imports or the seed group changed; True if rewritten."""
    from refinery.store import write_text

    text, path = render_dvc_yaml(root, params_seeds(root)), root / "dvc.yaml"
    if path.exists() and path.read_text() == text:
        return False
    write_text(path, text)
    return True


def main(argv: list[str]) -> int:
    if "--check" in argv:
        if (ROOT / "dvc.yaml").read_text() != render_dvc_yaml(ROOT, params_seeds(ROOT)):
            print(f"{ROOT / 'dvc.yaml'}: stale; run `.venv/bin/python -m tasks.stages` to rewrite it", file=sys.stderr)
            return 1
        return 0
    if sync_dvc_yaml():
        print(f"{ROOT / 'dvc.yaml'}: rewritten from tasks/stages.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
