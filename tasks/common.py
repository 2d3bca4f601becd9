"""What every stage shares: the workspace layout, the active config, the device, manifests,
and progress reporting into Prefect."""
from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch

from refinery import config as C
from refinery.store import path_hash, write_json

from .stages import Stage, declared

log = logging.getLogger("refinery")


def find_root(start: Path | None = None) -> Path:
    """The project root: the nearest folder upwards holding dvc.yaml (else the cwd)."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").exists():
            return folder
    return here


@dataclass(frozen=True)
class Workspace:
    """The project at `root`, as one member of a seed group when `seed` is set: then every stage
    after prepare reads and writes under data/seeds/<seed>/ and trains with that seed."""
    root: Path
    seed: int | None = None

    @classmethod
    def here(cls) -> Workspace:
        return cls(find_root())

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    def declared(self, name: str, seeds: list[int] | None = None) -> Stage:
        """Stage `name`'s declaration as this workspace runs it (tasks/stages.py)."""
        return declared(name, self.seed, seeds)

    def stage_dir(self, name: str) -> Path:
        """The folder of a stage's outputs (where its manifest lives)."""
        return self.root / Path(self.declared(name).manifest).parent

    def resume_path(self, name: str) -> Path:
        """Per-epoch training state; outside DVC's outputs so it survives a crash and a rerun."""
        member = "" if self.seed is None else f"-seed{self.seed}"
        return self.root / ".refinery" / "resume" / f"{name}{member}.zarr"

    def clear_resume(self, name: str) -> None:
        shutil.rmtree(self.resume_path(name), ignore_errors=True)

    def config(self) -> C.PipelineConfig:
        """The config a stage runs with: params.yaml, with a group member's own training seed."""
        cfg = C.load(self.params)
        return cfg if self.seed is None else cfg.model_copy(update={"seed": self.seed})


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: 'cuda' was requested but no CUDA device is available")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":  # the device this task claimed with its `gpu` slot (tasks/gpu.py)
        from .gpu import claimed_device

        index = claimed_device.get()
        return torch.device("cuda") if index is None else torch.device("cuda", index)
    return torch.device(choice)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def params_of(cfg: C.PipelineConfig, keys: Iterable[str]) -> dict:
    """{key: value} of dotted params.yaml keys (`seed`, `teacher.train`, ...) as plain JSON."""
    out = {}
    for key in keys:
        node = cfg
        for part in key.split("."):
            node = getattr(node, part)
        out[key] = node.model_dump(mode="json") if hasattr(node, "model_dump") else node
    return out


def stage_identity(ws: Workspace, cfg: C.PipelineConfig, name: str, **extra) -> dict:
    """Everything a stage's training run depends on besides its code: every param the stage
    declares and the content hash of every input. Training resumes only under the same identity."""
    decl = ws.declared(name)
    return {"stage": name, "params": params_of(cfg, decl.params), "inputs": input_hashes(ws, decl.deps), **extra}


def input_hashes(ws: Workspace, deps: Iterable[str]) -> dict[str, str | None]:
    """Content hash of each input; None for one that is absent (a stage run outside the pipeline)."""
    return {dep: path_hash(ws.root / dep) if (ws.root / dep).exists() else None for dep in deps}


def write_manifest(ws: Workspace, name: str, cfg: C.PipelineConfig, extra: dict | None = None,
                   extra_inputs: Iterable[Path] = ()) -> None:
    """Record the stage's config (its declared params) and the content hashes of its declared
    inputs and outputs (tasks/stages.py), plus `extra` sections and inputs named in params."""
    decl = ws.declared(name, cfg.seeds)
    sections = dict(params_of(cfg, decl.recorded_params), **(extra or {}))
    outputs = [o for o in (*decl.outs, *decl.uncached) if o != decl.manifest and (ws.root / o).exists()]
    write_json(ws.root / decl.manifest, {
        "stage": name,
        "config_hash": C.config_hash(sections),
        "config": sections,
        "inputs": {**input_hashes(ws, decl.deps),
                   **{str(Path(p).resolve().relative_to(ws.root)): path_hash(p) for p in extra_inputs}},
        "outputs": {out: path_hash(ws.root / out) for out in outputs},
        "runtime": runtime(),
        **honoured(ws, decl.deps),
    })


def honoured(ws: Workspace, deps: Iterable[str]) -> dict:
    """{"ledger": {"honours": [request ids]}} for a stage that reads the prepared arrays: the
    deletion requests its training data honoured (none of their samples were in it)."""
    arrays = next((d for d in deps if d.endswith("prepared/arrays.zarr")), None)
    if arrays is None or not (ws.root / arrays / "zarr.json").exists():
        return {}
    from refinery.store import open_group

    return {"ledger": {"honours": list(open_group(ws.root / arrays).attrs.get("honours", []))}}


def runtime() -> dict:
    """What besides code, config and inputs can change a result: library versions and threads."""
    import platform

    import numpy

    return {"torch": torch.__version__, "numpy": numpy.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "cuda": torch.version.cuda if torch.cuda.is_available() else None}


def artifact_key(text: str) -> str:
    """`text` as a Prefect artifact key, which allows only lowercase letters, digits and dashes
    (`distill-random_teacher-progress` -> `distill-random-teacher-progress`)."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")


def progress_reporter(key: str, description: str) -> Callable[[dict], None]:
    """An epoch hook that shows training progress as a Prefect progress artifact, when in a run."""
    state: dict = {}
    key = artifact_key(key)

    def report(record: dict) -> None:
        pct = 100.0 * record["epoch"] / record["epochs"]
        text = f"{description}: epoch {record['epoch']}/{record['epochs']}, loss {record['loss']:.4f}"
        if "val_acc" in record:
            text += f", val acc {record['val_acc']:.4f}"
        log.info(text)
        try:
            from prefect.artifacts import create_progress_artifact, update_progress_artifact
            from prefect.context import TaskRunContext

            if TaskRunContext.get() is None:
                return
            if "id" not in state:
                state["id"] = create_progress_artifact(pct, key=key, description=description)
            else:
                update_progress_artifact(state["id"], pct, description=text)
        except Exception as exc:  # progress is a courtesy; never fail training over it
            log.warning("progress artifact %s not updated: %s", key, exc)

    return report
